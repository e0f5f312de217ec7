"""SKFlow's super-kernel update (Sun et al., NeurIPS 2022), official ``core/update.py``.

Three pieces, named after (and keyed like) the official modules:

* :class:`SuperKernelBlock` = ``PCBlock4_Deep_nopool_res``: a 1x1 feed-forward,
  a chain of residual depthwise convolutions (the "super kernel": a small and a
  large kernel, 1 and 15 in the published models), a pointwise conv and an
  output feed-forward.
* :class:`SKMotionEncoder` = ``SKMotionEncoder6_Deep_nopool_res``: RAFT's motion
  encoder with every 3x3/7x7 convolution replaced by a super-kernel block.
* :class:`SKUpdateBlock` = ``SKUpdateBlock6_Deep_nopoolres_AllDecoder``: GMA's
  update block in which the GRU is REPLACED by a super-kernel block. There are
  no gates and no tanh: the new hidden state is a plain function of
  cat(net, inp, motion, aggregated motion) and is unbounded. The flow head is a
  super-kernel block too; the convex-upsampling ``mask`` and the GMA
  ``aggregator`` are as in GMA.

Submodule names (``encoder.convc1.conv_list.0``, ``gru.ffn1.0``, ``flow_head.pw``,
``mask.2``, ``aggregator.to_v``, ...) match the official ones, so the update-block
part of an SKFlow checkpoint loads without renaming.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .attention import Aggregate, QueryKey
from .update import corr_planes, mask_head

__all__ = ["SuperKernelBlock", "SKMotionEncoder", "SKUpdateBlock"]


class SuperKernelBlock(nn.Module):
    """The official ``PCBlock4_Deep_nopool_res(C_in, C_out, k_conv)``.

    ::

        x = gelu(x + ffn1(x))
        for conv in conv_list:          # depthwise k x k, same padding
            x = gelu(x + conv(x))
        x = gelu(x + pw(x))
        return ffn2(x)

    ``ffn1``/``ffn2`` widen to ``int(1.5 * in_dim)`` channels with a GELU between.

    Args:
        in_dim: input channels (kept by every residual stage).
        out_dim: output channels (only ``ffn2`` changes the width).
        kernels: odd depthwise kernel sizes, applied in order.

    forward(x [B, in_dim, H, W]) -> [B, out_dim, H, W].
    """

    def __init__(self, in_dim: int, out_dim: int, kernels: Sequence[int] = (1, 15)) -> None:
        super().__init__()
        kernels = tuple(int(k) for k in kernels)
        if not kernels:
            raise ValueError("SuperKernelBlock: kernels must not be empty")
        if any(k < 1 or k % 2 == 0 for k in kernels):
            # padding k//2 keeps H x W only for odd k; an even kernel would grow the map by one
            raise ValueError(f"SuperKernelBlock: kernels must be positive odd sizes, got {kernels}")
        self.kernels = kernels
        wide = int(1.5 * in_dim)  # the official width, int() truncation included
        self.conv_list = nn.ModuleList(
            nn.Conv2d(in_dim, in_dim, k, padding=k // 2, groups=in_dim) for k in kernels
        )
        self.ffn1 = nn.Sequential(nn.Conv2d(in_dim, wide, 1), nn.GELU(), nn.Conv2d(wide, in_dim, 1))
        self.pw = nn.Conv2d(in_dim, in_dim, 1)
        self.ffn2 = nn.Sequential(nn.Conv2d(in_dim, wide, 1), nn.GELU(), nn.Conv2d(wide, out_dim, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.gelu(x + self.ffn1(x))
        for conv in self.conv_list:
            x = F.gelu(x + conv(x))
        x = F.gelu(x + self.pw(x))
        return self.ffn2(x)


class SKMotionEncoder(nn.Module):
    """The official ``SKMotionEncoder6_Deep_nopool_res``: correlation + flow -> motion features.

    ::

        cor = convc2(gelu(convc1(corr)))            # L(2r+1)^2 -> corr_dims[0] -> corr_dims[1]
        flo = convf2(convf1(flow))                  # 2 -> flow_dims[0] (1x1) -> flow_dims[1]
        out = conv(cat(cor, flo))                   # -> out_dim - 2
        return cat(out, flow)                       # out_dim channels, the flow itself last

    Args:
        corr_levels, corr_radius: the correlation lookup, L * (2r+1)^2 channels.
        kernels: depthwise kernels of every super-kernel block here.
        corr_dims: widths after ``convc1`` and ``convc2`` (official 256, 192).
        flow_dims: widths after ``convf1`` and ``convf2`` (official 128, 64).
        out_dim: output channels including the 2 flow channels (official 128).

    forward(flow [B, 2, H, W], corr [B, L(2r+1)^2, H, W]) -> [B, out_dim, H, W].
    """

    def __init__(
        self,
        corr_levels: int = 4,
        corr_radius: int = 4,
        kernels: Sequence[int] = (1, 15),
        corr_dims: tuple[int, int] = (256, 192),
        flow_dims: tuple[int, int] = (128, 64),
        out_dim: int = 128,
    ) -> None:
        super().__init__()
        if out_dim <= 2:
            raise ValueError(f"SKMotionEncoder: out_dim includes the 2 flow channels, so must exceed 2, got {out_dim}")
        self.out_dim = out_dim
        self.convc1 = SuperKernelBlock(corr_planes(corr_levels, corr_radius), corr_dims[0], kernels)
        self.convc2 = SuperKernelBlock(corr_dims[0], corr_dims[1], kernels)
        self.convf1 = nn.Conv2d(2, flow_dims[0], 1)
        self.convf2 = SuperKernelBlock(flow_dims[0], flow_dims[1], kernels)
        self.conv = SuperKernelBlock(corr_dims[1] + flow_dims[1], out_dim - 2, kernels)

    def forward(self, flow: torch.Tensor, corr: torch.Tensor) -> torch.Tensor:
        cor = self.convc2(F.gelu(self.convc1(corr)))
        flo = self.convf2(self.convf1(flow))  # official: no activation between convf1 and convf2
        out = self.conv(torch.cat([cor, flo], dim=1))
        return torch.cat([out, flow], dim=1)  # the raw flow rides along, as in RAFT


class SKUpdateBlock(nn.Module):
    """The official ``SKUpdateBlock6_Deep_nopoolres_AllDecoder``: GMA's update with super kernels, no GRU.

    ::

        motion = encoder(flow, corr)                         # [B, M, H, W]
        glob   = aggregator(attention, motion)               # [B, M, H, W]
        net    = gru(cat(net, inp, motion, glob))            # a SuperKernelBlock, not a GRU
        delta  = flow_head(net)                              # [B, 2, H, W]
        mask   = 0.25 * self.mask(net)                       # [B, 576, H, W]

    ``gru`` keeps its official name for checkpoint keys but has no gates and no
    tanh: the new ``net`` replaces the old one outright and is unbounded.

    Args:
        corr_levels, corr_radius: the correlation lookup.
        hidden_dim: channels of ``net`` (official 128).
        context_dim: channels of ``inp`` (official 128).
        kernels: depthwise kernels of the encoder and the flow head (official (1, 15)).
        update_kernels: depthwise kernels of ``gru`` (official (1, 7)).
        motion_dims: (corr_dims, flow_dims, out_dim) of :class:`SKMotionEncoder`;
            M = out_dim (official 128).
        softmax: :class:`~.attention.Aggregate`'s mode, ``fused`` or ``explicit``.

    forward(net [B, hidden, H, W], inp [B, context, H, W], corr [B, L(2r+1)^2, H, W],
    flow [B, 2, H, W], attention: QueryKey from ``Attention(context_dim, heads=1, dim_head=...)``)
    -> (net [B, hidden, H, W], mask [B, 576, H, W], delta_flow [B, 2, H, W]).
    """

    def __init__(
        self,
        corr_levels: int = 4,
        corr_radius: int = 4,
        hidden_dim: int = 128,
        context_dim: int = 128,
        kernels: Sequence[int] = (1, 15),
        update_kernels: Sequence[int] = (1, 7),
        motion_dims: tuple[tuple[int, int], tuple[int, int], int] = ((256, 192), (128, 64), 128),
        softmax: str = "fused",
    ) -> None:
        super().__init__()
        corr_dims, flow_dims, motion_dim = motion_dims
        self.encoder = SKMotionEncoder(corr_levels, corr_radius, kernels, corr_dims, flow_dims, motion_dim)
        # official: 128 + hidden + hidden + 128 = motion + net + inp + aggregated motion
        self.gru = SuperKernelBlock(hidden_dim + context_dim + 2 * motion_dim, hidden_dim, update_kernels)
        self.flow_head = SuperKernelBlock(hidden_dim, 2, kernels)
        self.mask = mask_head(hidden_dim)
        # values as wide as the attention's queries (official: both 128): CPU flash attention needs
        # equal head dims, else SDPA falls back to storing the (HW)^2 matrix; project back to motion_dim
        self.aggregator = Aggregate(dim=motion_dim, heads=1, dim_head=context_dim, softmax=softmax)

    def forward(
        self,
        net: torch.Tensor,
        inp: torch.Tensor,
        corr: torch.Tensor,
        flow: torch.Tensor,
        attention: QueryKey,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        motion = self.encoder(flow, corr)
        motion_global = self.aggregator(attention, motion)
        net = self.gru(torch.cat([net, inp, motion, motion_global], dim=1))  # official order: net first
        delta_flow = self.flow_head(net)
        mask = 0.25 * self.mask(net)  # RAFT's gradient-balancing scale
        return net, mask, delta_flow
