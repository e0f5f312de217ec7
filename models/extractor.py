"""RAFT's feature and context encoders (1/8 resolution).

Submodule names follow RAFT's ``core/extractor.py`` (conv1, norm1, layer1.0.conv1,
layer1.0.downsample.0, ...) so the official checkpoints' keys match.
"""

from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ["NORM_FNS", "make_norm", "ResidualBlock", "BottleneckBlock", "BasicEncoder", "SmallEncoder"]

NORM_FNS = ("group", "batch", "instance", "none")


def make_norm(norm_fn: str, planes: int, num_groups: int = 8) -> nn.Module:
    """The normalization layer RAFT uses for ``norm_fn`` on ``planes`` channels.

    Instance norm has no affine parameters and no running stats (as in RAFT), so
    it acts the same in train and eval mode.
    """
    if norm_fn == "group":
        return nn.GroupNorm(num_groups=num_groups, num_channels=planes)
    if norm_fn == "batch":
        return nn.BatchNorm2d(planes)
    if norm_fn == "instance":
        return nn.InstanceNorm2d(planes)
    if norm_fn == "none":
        return nn.Sequential()
    raise ValueError(f"norm_fn must be one of {NORM_FNS}, got {norm_fn!r}")


class ResidualBlock(nn.Module):
    """Two 3x3 convs with a (strided 1x1) shortcut: [B, in_planes, H, W] -> [B, planes, H/stride, W/stride]."""

    def __init__(self, in_planes: int, planes: int, norm_fn: str = "group", stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, padding=1, stride=stride)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, padding=1)
        self.relu = nn.ReLU(inplace=True)
        groups = planes // 8
        self.norm1 = make_norm(norm_fn, planes, groups)
        self.norm2 = make_norm(norm_fn, planes, groups)
        if stride == 1:
            self.downsample = None
        else:
            self.norm3 = make_norm(norm_fn, planes, groups)
            self.downsample = nn.Sequential(nn.Conv2d(in_planes, planes, kernel_size=1, stride=stride), self.norm3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.norm1(self.conv1(x)))
        y = self.relu(self.norm2(self.conv2(y)))
        if self.downsample is not None:
            x = self.downsample(x)
        return self.relu(x + y)


class BottleneckBlock(nn.Module):
    """1x1 -> 3x3 (strided) -> 1x1 with a shortcut: [B, in_planes, H, W] -> [B, planes, H/stride, W/stride]."""

    def __init__(self, in_planes: int, planes: int, norm_fn: str = "group", stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes // 4, kernel_size=1, padding=0)
        self.conv2 = nn.Conv2d(planes // 4, planes // 4, kernel_size=3, padding=1, stride=stride)
        self.conv3 = nn.Conv2d(planes // 4, planes, kernel_size=1, padding=0)
        self.relu = nn.ReLU(inplace=True)
        groups = planes // 8
        self.norm1 = make_norm(norm_fn, planes // 4, groups)
        self.norm2 = make_norm(norm_fn, planes // 4, groups)
        self.norm3 = make_norm(norm_fn, planes, groups)
        if stride == 1:
            self.downsample = None
        else:
            self.norm4 = make_norm(norm_fn, planes, groups)
            self.downsample = nn.Sequential(nn.Conv2d(in_planes, planes, kernel_size=1, stride=stride), self.norm4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.norm1(self.conv1(x)))
        y = self.relu(self.norm2(self.conv2(y)))
        y = self.relu(self.norm3(self.conv3(y)))
        if self.downsample is not None:
            x = self.downsample(x)
        return self.relu(x + y)


class _Encoder(nn.Module):
    """Shared stem/body/head wiring; subclasses set the widths and the block type."""

    block: type[nn.Module]
    widths: tuple[int, int, int, int]  # stem, layer1, layer2, layer3

    def __init__(self, output_dim: int = 128, norm_fn: str = "batch", dropout: float = 0.0) -> None:
        super().__init__()
        if norm_fn not in NORM_FNS:
            raise ValueError(f"{type(self).__name__}: norm_fn must be one of {NORM_FNS}, got {norm_fn!r}")
        self.norm_fn = norm_fn
        stem, w1, w2, w3 = self.widths
        self.norm1 = make_norm(norm_fn, stem, 8)
        self.conv1 = nn.Conv2d(3, stem, kernel_size=7, stride=2, padding=3)
        self.relu1 = nn.ReLU(inplace=True)
        self.in_planes = stem
        self.layer1 = self._make_layer(w1, stride=1)
        self.layer2 = self._make_layer(w2, stride=2)
        self.layer3 = self._make_layer(w3, stride=2)
        self.conv2 = nn.Conv2d(w3, output_dim, kernel_size=1)
        self.dropout = nn.Dropout2d(p=dropout) if dropout > 0 else None
        for m in self.modules():  # RAFT's initialization
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d, nn.GroupNorm)) and m.weight is not None:
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def _make_layer(self, dim: int, stride: int) -> nn.Sequential:
        layer1 = self.block(self.in_planes, dim, self.norm_fn, stride=stride)
        layer2 = self.block(dim, dim, self.norm_fn, stride=1)
        self.in_planes = dim
        return nn.Sequential(layer1, layer2)

    def forward(self, x: torch.Tensor | list[torch.Tensor] | tuple[torch.Tensor, ...]):
        """[B, 3, H, W] -> [B, output_dim, H/8, W/8] (ceil); a list/tuple of images runs as one batch
        (shared batch-norm statistics, as in RAFT) and returns a tuple."""
        is_list = isinstance(x, (tuple, list))
        if is_list:
            batch = x[0].shape[0]
            x = torch.cat(list(x), dim=0)
        x = self.relu1(self.norm1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        x = self.conv2(x)
        if self.training and self.dropout is not None:
            x = self.dropout(x)
        if is_list:
            return torch.split(x, [batch] * (x.shape[0] // batch), dim=0)
        return x


class BasicEncoder(_Encoder):
    """RAFT's encoder (widths 64/64/96/128, residual blocks), output [B, output_dim, H/8, W/8]."""

    block = ResidualBlock
    widths = (64, 64, 96, 128)


class SmallEncoder(_Encoder):
    """RAFT-small's encoder (widths 32/32/64/96, bottleneck blocks), output [B, output_dim, H/8, W/8]."""

    block = BottleneckBlock
    widths = (32, 32, 64, 96)
