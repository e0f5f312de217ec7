"""RAFT (Teed & Deng, ECCV 2020) on pyflowops correlation.

Module names follow the official ``core/raft.py`` (fnet, cnet, update_block), so
checkpoints written by the official code load once DataParallel's ``module.``
prefix is stripped.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from .correlation import CORR_MODES, make_corr_block
from .extractor import BasicEncoder, SmallEncoder
from .update import BasicUpdateBlock, SmallUpdateBlock
from .upsample import InputPadder, bilinear_upsample8, convex_upsample, coords_grid

__all__ = ["RAFT", "RAFTConfig", "RAFT_CONFIGS"]


@dataclass(frozen=True)
class RAFTConfig:
    """Widths of one RAFT configuration."""

    hidden_dim: int
    context_dim: int
    corr_levels: int
    corr_radius: int
    small: bool


RAFT_CONFIGS = {
    "full": RAFTConfig(hidden_dim=128, context_dim=128, corr_levels=4, corr_radius=4, small=False),
    "small": RAFTConfig(hidden_dim=96, context_dim=64, corr_levels=4, corr_radius=3, small=True),
}


class RAFT(nn.Module):
    """Recurrent All-Pairs Field Transforms.

    Args:
        size: ``full`` (BasicEncoder 256 instance-norm features, batch-norm
            context, hidden/context 128, radius 4, convex upsampling) or
            ``small`` (SmallEncoder, hidden 96, context 64, radius 3, bilinear upsampling).
        corr: ``allpairs``, ``onthefly`` or ``auto`` (see ``make_corr_block``).
        corr_memory_budget: bytes for ``corr="auto"`` (None = 2 GiB).
        dropout: dropout of both encoders (RAFT trains with 0).

    forward(image1, image2, iters=12, flow_init=None):
        image1, image2: [B, 3, H, W] float, 0..255, any H and W (padded inside to
            multiples of 8 and to at least 64, results cropped back).
        flow_init: optional [B, 2, H'/8, W'/8] flow at 1/8 of the padded size
            (in 1/8-resolution pixels) to start from.
        Train mode: list of ``iters`` flows [B, 2, H, W]; eval mode: the final flow [B, 2, H, W].
    """

    def __init__(
        self, size: str = "full", corr: str = "auto", corr_memory_budget: int | None = None, dropout: float = 0.0
    ) -> None:
        super().__init__()
        if size not in RAFT_CONFIGS:
            raise ValueError(f"RAFT: size must be one of {tuple(RAFT_CONFIGS)}, got {size!r}")
        if corr not in CORR_MODES:
            raise ValueError(f"RAFT: corr must be one of {CORR_MODES}, got {corr!r}")
        self.size = size
        self.config = cfg = RAFT_CONFIGS[size]
        self.corr = corr
        self.corr_memory_budget = corr_memory_budget
        self.hidden_dim, self.context_dim = cfg.hidden_dim, cfg.context_dim
        self.corr_levels, self.corr_radius = cfg.corr_levels, cfg.corr_radius
        cdim = cfg.hidden_dim + cfg.context_dim
        if cfg.small:
            self.fnet = SmallEncoder(output_dim=128, norm_fn="instance", dropout=dropout)
            self.cnet = SmallEncoder(output_dim=cdim, norm_fn="none", dropout=dropout)
            self.update_block = SmallUpdateBlock(cfg.corr_levels, cfg.corr_radius, cfg.hidden_dim, cfg.context_dim)
        else:
            self.fnet = BasicEncoder(output_dim=256, norm_fn="instance", dropout=dropout)
            self.cnet = BasicEncoder(output_dim=cdim, norm_fn="batch", dropout=dropout)
            self.update_block = BasicUpdateBlock(cfg.corr_levels, cfg.corr_radius, cfg.hidden_dim, cfg.context_dim)

    def freeze_bn(self) -> None:
        """Put batch-norm layers in eval mode (RAFT does this after its first training stage)."""
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.eval()

    @staticmethod
    def _check_images(image1: torch.Tensor, image2: torch.Tensor) -> None:
        for name, img in (("image1", image1), ("image2", image2)):
            if img.dim() != 4 or img.shape[1] != 3:
                raise ValueError(f"RAFT: {name} must be [B, 3, H, W], got {list(img.shape)}")
            if not img.is_floating_point():
                raise ValueError(f"RAFT: {name} must be a float tensor (0..255), got {img.dtype}")
        if image1.shape != image2.shape:
            raise ValueError(
                f"RAFT: image1 and image2 must have the same shape, got {list(image1.shape)} and {list(image2.shape)}"
            )

    def forward(
        self, image1: torch.Tensor, image2: torch.Tensor, iters: int = 12, flow_init: torch.Tensor | None = None
    ):
        self._check_images(image1, image2)
        if iters < 1:
            raise ValueError(f"RAFT: iters must be >= 1, got {iters}")
        # Tiny images are padded up to what the pyramid's coarsest level needs (RAFT itself fails there).
        padder = InputPadder(image1.shape, min_size=8 * 2 ** (self.corr_levels - 1))
        image1, image2 = padder.pad(image1, image2)
        image1 = 2 * (image1 / 255.0) - 1.0
        image2 = 2 * (image2 / 255.0) - 1.0
        b, _, h, w = image1.shape
        h8, w8 = h // 8, w // 8
        device_type = image1.device.type

        fmap1, fmap2 = self.fnet([image1, image2])
        # Correlation and coordinates in float32, outside autocast (RAFT's autocast(enabled=False) islands).
        with torch.autocast(device_type=device_type, enabled=False):
            corr_fn = make_corr_block(
                fmap1.float(), fmap2.float(), self.corr, self.corr_levels, self.corr_radius, self.corr_memory_budget
            )
            coords0 = coords_grid(b, h8, w8, device=image1.device)
            coords1 = coords0.clone()
            if flow_init is not None:
                if flow_init.shape != (b, 2, h8, w8):
                    raise ValueError(f"RAFT: flow_init must be [{b}, 2, {h8}, {w8}], got {list(flow_init.shape)}")
                coords1 = coords1 + flow_init.float()

        cnet = self.cnet(image1)
        net, inp = torch.split(cnet, [self.hidden_dim, self.context_dim], dim=1)
        net, inp = torch.tanh(net), torch.relu(inp)

        predictions = []
        for _ in range(iters):
            coords1 = coords1.detach()  # RAFT: no gradient through the lookup positions across iterations
            with torch.autocast(device_type=device_type, enabled=False):
                corr = corr_fn(coords1)
            flow = coords1 - coords0
            net, up_mask, delta_flow = self.update_block(net, inp, corr, flow)
            coords1 = coords1 + delta_flow.float()
            if self.training:  # the sequence loss needs every iteration's full-resolution flow
                predictions.append(padder.unpad(self._upsample(coords1 - coords0, up_mask)))
        if self.training:
            return predictions
        return padder.unpad(self._upsample(coords1 - coords0, up_mask))

    @staticmethod
    def _upsample(flow: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """[B, 2, H/8, W/8] -> [B, 2, H, W] float32: convex with the mask head, bilinear without (small)."""
        return bilinear_upsample8(flow) if mask is None else convex_upsample(flow, mask)
