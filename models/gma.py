"""GMA (Jiang et al., ICCV 2021): RAFT with global motion aggregation.

Module names follow the official ``core/network.py`` (``RAFTGMA``: fnet, cnet,
update_block, att), so official checkpoints load once ``module.`` is stripped.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .attention import SOFTMAX_MODES, Attention, QueryKey
from .raft import RAFT
from .update import GMAUpdateBlock

__all__ = ["GMA"]


class GMA(RAFT):
    """RAFT whose update block also reads attention-aggregated motion features.

    Args:
        size, corr, corr_memory_budget, dropout, corr_block: as :class:`RAFT`.
        softmax: ``fused`` (scaled_dot_product_attention: no (HW/64)^2 matrix is
            stored, so 2048^2 inputs fit) or ``explicit`` (the official matrix).

    forward(image1, image2, iters=12, flow_init=None): as :class:`RAFT`
        (images [B, 3, H, W] 0..255; train: list of flows [B, 2, H, W]; eval: the final flow).
    """

    def __init__(self, size: str = "full", corr: str = "auto", softmax: str = "fused", **options) -> None:
        if softmax not in SOFTMAX_MODES:
            raise ValueError(f"{type(self).__name__}: softmax must be one of {SOFTMAX_MODES}, got {softmax!r}")
        self.softmax = softmax  # read by _make_update_block during RAFT.__init__
        super().__init__(size=size, corr=corr, **options)
        cdim = self.context_dim
        # One head over the context features (GMA's networks use num_heads=1, dim_head = context width).
        self.att = Attention(dim=cdim, heads=1, dim_head=cdim, max_pos_size=160)

    def _make_update_block(self) -> nn.Module:
        cfg = self.config
        return GMAUpdateBlock(
            cfg.corr_levels, cfg.corr_radius, cfg.hidden_dim, cfg.context_dim, small=cfg.small, softmax=self.softmax
        )

    def update_inputs(self, inp: torch.Tensor) -> tuple[QueryKey]:
        """The attention's queries and keys over the context features, shared by every iteration."""
        return (self.att(inp),)
