"""SRFlowNet (SRFlow): high-resolution facial flow on an SKFlow backbone.

SRFlow publishes no code; a summary of the paper names SKFlow (NeurIPS 2022) as
the backbone: GMA's skeleton whose motion encoder and GRU are replaced by
"super kernel" blocks (large depthwise convolutions, see :mod:`.skflow`). Its
training adds regularization from masks and Sobel/difference gradients:
:func:`pyflowops_models.losses.srflownet_loss`. Module names follow SKFlow's
``SK_Decoder`` (fnet, cnet, update_block, att).
"""

from __future__ import annotations

import torch.nn as nn

from .gma import GMA
from .skflow import SKUpdateBlock

__all__ = ["SRFlowNet", "SK_KERNELS"]

# (motion-encoder kernels, update kernels, motion widths ((corr1, corr2), (flow1, flow2), out)).
SK_KERNELS = {
    "full": ((1, 15), (1, 7), ((256, 192), (128, 64), 128)),  # SKFlow's published scripts/train.sh
    "small": ((1, 7), (1, 5), ((96, 64), (64, 32), 82)),  # ours, for CPU work
}


class SRFlowNet(GMA):
    """GMA with SKFlow's super-kernel update block (convex upsampling in both sizes).

    Args:
        size: ``full`` (SKFlow: BasicEncoders, hidden/context 128, radius 4,
            kernels 1+15 / 1+7) or ``small`` (SmallEncoders, hidden 96, context 64,
            radius 3, kernels 1+7 / 1+5).
        corr, corr_memory_budget, dropout, corr_block, softmax: as :class:`GMA`.

    forward(image1, image2, iters=12, flow_init=None): as :class:`RAFT`
        (images [B, 3, H, W] 0..255; train: list of flows [B, 2, H, W]; eval: the final flow).
    """

    def _make_update_block(self) -> nn.Module:
        cfg = self.config
        kernels, update_kernels, motion_dims = SK_KERNELS[self.size]
        return SKUpdateBlock(
            cfg.corr_levels,
            cfg.corr_radius,
            cfg.hidden_dim,
            cfg.context_dim,
            kernels=kernels,
            update_kernels=update_kernels,
            motion_dims=motion_dims,
            softmax=self.softmax,
        )
