"""A small CNN recogniser for onset -> apex flow maps (u, v, optical strain), as in STSTNet / OFF-ApexNet."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["MicroExpressionNet"]


def _stage(in_channels: int, out_channels: int) -> nn.Sequential:
    """conv3x3 stride 2 - BN - ReLU: ``[B, in, S, S] -> [B, out, ceil(S / 2), ceil(S / 2)]``."""
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, stride=2, padding=1, bias=False),
                         nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))


class MicroExpressionNet(nn.Module):
    """Micro-expression classifier: ``[B, in_channels, S, S]`` maps (S >= 16, any size) -> logits ``[B, num_classes]``.

    Three stages of conv3x3 (stride 2) - BatchNorm - ReLU with widths ``width``, ``2 width``, ``2 width``
    (S -> S/2 -> S/4 -> S/8), adaptive average pooling to a ``grid x grid`` map (3 x 3: upper / middle /
    lower face by left / centre / right), dropout, a linear layer. 58.2k parameters at ``width=32``,
    15.3k at 16. The grid, not a global average, because *where* the face moves (brows, mouth corners)
    tells the classes apart; a global average keeps only what moved. The strided convolutions (rather
    than conv-conv-maxpool blocks) keep it cheap: a LOSO fold (~350 maps of 48 x 48, 40 epochs) trains
    in seconds on one CPU core, and face flow at 48 px is smooth enough to sample at stride 2.

    What it is: a plain CNN on optical flow + optical strain, the family of STSTNet (Liong et al. 2019:
    u, v, strain at 28 x 28, three shallow conv streams) and OFF-ApexNet (Gan et al. 2019: u, v, two conv
    streams). Inputs are standardised inside: ``forward`` standardises each channel by the buffers
    ``mean`` and ``std`` ([in_channels], set by the trainer from its training set; 0 and 1 by
    default), so a saved model carries its own input statistics.

    What it is not: MMNet (Li et al., IJCAI 2022) takes frames, not flow. Its main branch applies
    continuous-attention (CA) blocks to the onset-apex difference image (muscle-motion patterns with
    little identity), and a ViT-based position-calibration (PC) sub-branch turns the onset frame into
    facial position embeddings that are added to the main branch's features. Neither the attention
    blocks nor the transformer are here: only "a small network on motion, not appearance", and the
    pooling grid as a crude stand-in for position information.

    Args: ``num_classes`` >= 2 outputs; ``in_channels`` of the maps; ``width`` of the first stage;
    ``dropout`` before the linear layer; ``grid``: side of the pooled map.
    """

    def __init__(self, num_classes: int = 3, in_channels: int = 3, width: int = 32, dropout: float = 0.3,
                 grid: int = 3):
        super().__init__()
        if num_classes < 2 or in_channels < 1 or width < 1:
            raise ValueError(f"need num_classes >= 2, in_channels >= 1, width >= 1; got {num_classes}, "
                             f"{in_channels}, {width}")
        if grid < 1:
            raise ValueError(f"grid must be >= 1, got {grid}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.num_classes, self.in_channels, self.width, self.grid = num_classes, in_channels, width, grid
        self.register_buffer("mean", torch.zeros(in_channels))
        self.register_buffer("std", torch.ones(in_channels))
        self.features = nn.Sequential(_stage(in_channels, width), _stage(width, 2 * width),
                                      _stage(2 * width, 2 * width))
        self.pool = nn.AdaptiveAvgPool2d(grid)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(2 * width * grid * grid, num_classes)

    def set_input_stats(self, mean, std) -> None:
        """Store the per-channel input ``mean`` and ``std`` ([in_channels]; std <= 1e-8 becomes 1)."""
        mean = torch.as_tensor(mean, dtype=torch.float32).reshape(-1)
        std = torch.as_tensor(std, dtype=torch.float32).reshape(-1)
        if mean.numel() != self.in_channels or std.numel() != self.in_channels:
            raise ValueError(f"mean and std must have {self.in_channels} values, got {mean.numel()}, {std.numel()}")
        self.mean.copy_(mean)
        self.std.copy_(torch.where(std > 1e-8, std, torch.ones_like(std)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [B, in_channels, S, S]`` (raw maps; standardised here) -> logits ``[B, num_classes]``."""
        if x.ndim != 4 or x.shape[1] != self.in_channels or min(x.shape[-2:]) < 16:
            raise ValueError(f"expected input [B, {self.in_channels}, S, S] with S >= 16, got {tuple(x.shape)}")
        x = (x - self.mean.view(1, -1, 1, 1)) / self.std.view(1, -1, 1, 1)
        x = self.pool(self.features(x)).flatten(1)
        return self.classifier(self.dropout(x))
