"""RAFT's recurrent update: motion encoders, GRUs, flow head and update blocks.

Names follow RAFT's ``core/update.py`` (encoder.convc1, gru.convz1, flow_head.conv1,
mask.0, ...) so the official checkpoints' keys match.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .attention import Aggregate, QueryKey

__all__ = [
    "FlowHead",
    "ConvGRU",
    "SepConvGRU",
    "SmallMotionEncoder",
    "BasicMotionEncoder",
    "SmallUpdateBlock",
    "BasicUpdateBlock",
    "GMAUpdateBlock",
    "corr_planes",
    "mask_head",
]


def corr_planes(corr_levels: int, corr_radius: int) -> int:
    """Channels of a correlation lookup: L * (2r+1)^2."""
    return corr_levels * (2 * corr_radius + 1) ** 2


def mask_head(hidden_dim: int) -> nn.Sequential:
    """Convex-upsampling weights: hidden [B, hidden_dim, H, W] -> logits [B, 64*9, H, W] (RAFT's ``mask``)."""
    return nn.Sequential(
        nn.Conv2d(hidden_dim, 256, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(256, 64 * 9, 1, padding=0)
    )


class FlowHead(nn.Module):
    """[B, input_dim, H, W] -> flow update [B, 2, H, W]."""

    def __init__(self, input_dim: int = 128, hidden_dim: int = 256) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(input_dim, hidden_dim, 3, padding=1)
        self.conv2 = nn.Conv2d(hidden_dim, 2, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.relu(self.conv1(x)))


class ConvGRU(nn.Module):
    """3x3 convolutional GRU: h [B, hidden_dim, H, W], x [B, input_dim, H, W] -> new h."""

    def __init__(self, hidden_dim: int = 128, input_dim: int = 192 + 128) -> None:
        super().__init__()
        self.convz = nn.Conv2d(hidden_dim + input_dim, hidden_dim, 3, padding=1)
        self.convr = nn.Conv2d(hidden_dim + input_dim, hidden_dim, 3, padding=1)
        self.convq = nn.Conv2d(hidden_dim + input_dim, hidden_dim, 3, padding=1)

    def forward(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        hx = torch.cat([h, x], dim=1)
        z = torch.sigmoid(self.convz(hx))
        r = torch.sigmoid(self.convr(hx))
        q = torch.tanh(self.convq(torch.cat([r * h, x], dim=1)))
        return (1 - z) * h + z * q


class SepConvGRU(nn.Module):
    """GRU with separable kernels: a 1x5 pass then a 5x1 pass. Shapes as :class:`ConvGRU`."""

    def __init__(self, hidden_dim: int = 128, input_dim: int = 192 + 128) -> None:
        super().__init__()
        c = hidden_dim + input_dim
        self.convz1 = nn.Conv2d(c, hidden_dim, (1, 5), padding=(0, 2))
        self.convr1 = nn.Conv2d(c, hidden_dim, (1, 5), padding=(0, 2))
        self.convq1 = nn.Conv2d(c, hidden_dim, (1, 5), padding=(0, 2))
        self.convz2 = nn.Conv2d(c, hidden_dim, (5, 1), padding=(2, 0))
        self.convr2 = nn.Conv2d(c, hidden_dim, (5, 1), padding=(2, 0))
        self.convq2 = nn.Conv2d(c, hidden_dim, (5, 1), padding=(2, 0))

    @staticmethod
    def _step(h, x, convz, convr, convq):
        hx = torch.cat([h, x], dim=1)
        z = torch.sigmoid(convz(hx))
        r = torch.sigmoid(convr(hx))
        q = torch.tanh(convq(torch.cat([r * h, x], dim=1)))
        return (1 - z) * h + z * q

    def forward(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        h = self._step(h, x, self.convz1, self.convr1, self.convq1)  # horizontal
        return self._step(h, x, self.convz2, self.convr2, self.convq2)  # vertical


class SmallMotionEncoder(nn.Module):
    """(flow [B, 2, H, W], corr [B, L(2r+1)^2, H, W]) -> motion features [B, 82, H, W] (80 + the flow)."""

    def __init__(self, corr_levels: int = 4, corr_radius: int = 3) -> None:
        super().__init__()
        self.convc1 = nn.Conv2d(corr_planes(corr_levels, corr_radius), 96, 1, padding=0)
        self.convf1 = nn.Conv2d(2, 64, 7, padding=3)
        self.convf2 = nn.Conv2d(64, 32, 3, padding=1)
        self.conv = nn.Conv2d(128, 80, 3, padding=1)

    def forward(self, flow: torch.Tensor, corr: torch.Tensor) -> torch.Tensor:
        cor = F.relu(self.convc1(corr))
        flo = F.relu(self.convf2(F.relu(self.convf1(flow))))
        out = F.relu(self.conv(torch.cat([cor, flo], dim=1)))
        return torch.cat([out, flow], dim=1)


class BasicMotionEncoder(nn.Module):
    """(flow [B, 2, H, W], corr [B, L(2r+1)^2, H, W]) -> motion features [B, 128, H, W] (126 + the flow)."""

    def __init__(self, corr_levels: int = 4, corr_radius: int = 4) -> None:
        super().__init__()
        self.convc1 = nn.Conv2d(corr_planes(corr_levels, corr_radius), 256, 1, padding=0)
        self.convc2 = nn.Conv2d(256, 192, 3, padding=1)
        self.convf1 = nn.Conv2d(2, 128, 7, padding=3)
        self.convf2 = nn.Conv2d(128, 64, 3, padding=1)
        self.conv = nn.Conv2d(64 + 192, 128 - 2, 3, padding=1)

    def forward(self, flow: torch.Tensor, corr: torch.Tensor) -> torch.Tensor:
        cor = F.relu(self.convc2(F.relu(self.convc1(corr))))
        flo = F.relu(self.convf2(F.relu(self.convf1(flow))))
        out = F.relu(self.conv(torch.cat([cor, flo], dim=1)))
        return torch.cat([out, flow], dim=1)


class SmallUpdateBlock(nn.Module):
    """RAFT-small's update: ConvGRU(96) on cat(context 64, motion 82); no mask head (bilinear upsampling).

    forward(net [B, hidden, H, W], inp [B, 64, H, W], corr, flow [B, 2, H, W])
    -> (net, None, delta_flow [B, 2, H, W]).
    """

    def __init__(self, corr_levels: int = 4, corr_radius: int = 3, hidden_dim: int = 96, context_dim: int = 64):
        super().__init__()
        self.encoder = SmallMotionEncoder(corr_levels, corr_radius)
        self.gru = ConvGRU(hidden_dim=hidden_dim, input_dim=82 + context_dim)
        self.flow_head = FlowHead(hidden_dim, hidden_dim=128)

    def forward(self, net, inp, corr, flow):
        motion = self.encoder(flow, corr)
        net = self.gru(net, torch.cat([inp, motion], dim=1))
        return net, None, self.flow_head(net)


class BasicUpdateBlock(nn.Module):
    """RAFT's update: SepConvGRU(128) on cat(context 128, motion 128), flow head and convex-upsampling mask.

    forward(net [B, hidden, H, W], inp [B, context, H, W], corr, flow [B, 2, H, W])
    -> (net, mask [B, 576, H, W], delta_flow [B, 2, H, W]).
    """

    def __init__(self, corr_levels: int = 4, corr_radius: int = 4, hidden_dim: int = 128, context_dim: int = 128):
        super().__init__()
        self.encoder = BasicMotionEncoder(corr_levels, corr_radius)
        self.gru = SepConvGRU(hidden_dim=hidden_dim, input_dim=128 + context_dim)
        self.flow_head = FlowHead(hidden_dim, hidden_dim=256)
        self.mask = mask_head(hidden_dim)

    def forward(self, net, inp, corr, flow):
        motion = self.encoder(flow, corr)
        net = self.gru(net, torch.cat([inp, motion], dim=1))
        delta_flow = self.flow_head(net)
        mask = 0.25 * self.mask(net)  # RAFT scales the mask logits to balance gradients
        return net, mask, delta_flow


class GMAUpdateBlock(nn.Module):
    """GMA's update: RAFT's, with the motion features also aggregated globally by attention.

    The GRU reads cat(inp, motion, aggregated motion). Full: BasicMotionEncoder
    (128), SepConvGRU(128), convex-upsampling mask (official ``GMAUpdateBlock``
    names); small: SmallMotionEncoder (82), ConvGRU, no mask (bilinear upsampling).

    forward(net [B, hidden, H, W], inp [B, context, H, W], corr, flow [B, 2, H, W], attention: QueryKey)
    -> (net, mask [B, 576, H, W] or None, delta_flow [B, 2, H, W]).
    """

    def __init__(
        self,
        corr_levels: int = 4,
        corr_radius: int = 4,
        hidden_dim: int = 128,
        context_dim: int = 128,
        small: bool = False,
        softmax: str = "fused",
    ) -> None:
        super().__init__()
        motion_dim = 82 if small else 128
        gru_input = context_dim + 2 * motion_dim
        if small:
            self.encoder = SmallMotionEncoder(corr_levels, corr_radius)
            self.gru = ConvGRU(hidden_dim=hidden_dim, input_dim=gru_input)
            self.flow_head = FlowHead(hidden_dim, hidden_dim=128)
            self.mask = None
        else:
            self.encoder = BasicMotionEncoder(corr_levels, corr_radius)
            self.gru = SepConvGRU(hidden_dim=hidden_dim, input_dim=gru_input)
            self.flow_head = FlowHead(hidden_dim, hidden_dim=256)
            self.mask = mask_head(hidden_dim)
        # values as wide as the attention's queries (official: both 128): CPU flash attention needs
        # equal head dims, else SDPA falls back to storing the (HW)^2 matrix; project back to motion_dim
        self.aggregator = Aggregate(dim=motion_dim, heads=1, dim_head=context_dim, softmax=softmax)

    def forward(self, net, inp, corr, flow, attention: QueryKey):
        motion = self.encoder(flow, corr)
        motion_global = self.aggregator(attention, motion)
        net = self.gru(net, torch.cat([inp, motion, motion_global], dim=1))
        delta_flow = self.flow_head(net)
        mask = None if self.mask is None else 0.25 * self.mask(net)  # RAFT's gradient-balancing scale
        return net, mask, delta_flow
