"""RAFT (Teed & Deng, ECCV 2020) on pyflowops correlation.

Module names follow the official ``core/raft.py`` (fnet, cnet, update_block), so
checkpoints written by the official code load once DataParallel's ``module.``
prefix is stripped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, NamedTuple

import torch
import torch.nn as nn

from .correlation import CORR_MODES, make_corr_block
from .extractor import BasicEncoder, SmallEncoder
from .update import BasicUpdateBlock, SmallUpdateBlock
from .upsample import InputPadder, bilinear_upsample8, convex_upsample, coords_grid

__all__ = ["RAFT", "RAFTConfig", "RAFT_CONFIGS", "FlowState"]


class FlowState(NamedTuple):
    """What every update iteration of one image pair shares (built by ``RAFT.encode``).

    coords0, coords1: [B, 2, H/8, W/8] float32 grids (x, y); net [B, hidden, H/8, W/8];
    inp [B, context, H/8, W/8]; corr_fn: coords -> [B, L(2r+1)^2, H/8, W/8];
    update_inputs: extra arguments of the update block (GMA: the attention's QueryKey).
    """

    padder: InputPadder
    corr_fn: Callable
    coords0: torch.Tensor
    coords1: torch.Tensor
    net: torch.Tensor
    inp: torch.Tensor
    update_inputs: tuple


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
        corr_block: replaces :func:`make_corr_block` (same signature); the
            benchmarks pass RAFT's grid_sample CorrBlock to compare against.

    forward(image1, image2, iters=12, flow_init=None):
        image1, image2: [B, 3, H, W] float, 0..255, any H and W (padded inside to
            multiples of 8 and to at least 64, results cropped back).
        flow_init: optional [B, 2, H'/8, W'/8] flow at 1/8 of the padded size
            (in 1/8-resolution pixels) to start from.
        Train mode: list of ``iters`` flows [B, 2, H, W]; eval mode: the final flow [B, 2, H, W].
    """

    def __init__(
        self,
        size: str = "full",
        corr: str = "auto",
        corr_memory_budget: int | None = None,
        dropout: float = 0.0,
        corr_block: Callable | None = None,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        if size not in RAFT_CONFIGS:
            raise ValueError(f"{name}: size must be one of {tuple(RAFT_CONFIGS)}, got {size!r}")
        if corr not in CORR_MODES:
            raise ValueError(f"{name}: corr must be one of {CORR_MODES}, got {corr!r}")
        self.size = size
        self.config = cfg = RAFT_CONFIGS[size]
        self.corr = corr
        self.corr_memory_budget = corr_memory_budget
        self.hidden_dim, self.context_dim = cfg.hidden_dim, cfg.context_dim
        self.corr_levels, self.corr_radius = cfg.corr_levels, cfg.corr_radius
        cdim = cfg.hidden_dim + cfg.context_dim
        self.corr_block = make_corr_block if corr_block is None else corr_block
        if cfg.small:
            self.fnet = SmallEncoder(output_dim=128, norm_fn="instance", dropout=dropout)
            self.cnet = SmallEncoder(output_dim=cdim, norm_fn="none", dropout=dropout)
        else:
            self.fnet = BasicEncoder(output_dim=256, norm_fn="instance", dropout=dropout)
            self.cnet = BasicEncoder(output_dim=cdim, norm_fn="batch", dropout=dropout)
        self.update_block = self._make_update_block()

    def freeze_bn(self) -> None:
        """Put batch-norm layers in eval mode (RAFT does this after its first training stage)."""
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.eval()

    def _make_update_block(self) -> nn.Module:
        """The recurrent update (GMA, SRFlowNet override it)."""
        cfg = self.config
        if cfg.small:
            return SmallUpdateBlock(cfg.corr_levels, cfg.corr_radius, cfg.hidden_dim, cfg.context_dim)
        return BasicUpdateBlock(cfg.corr_levels, cfg.corr_radius, cfg.hidden_dim, cfg.context_dim)

    def _check_images(self, image1: torch.Tensor, image2: torch.Tensor) -> None:
        name = type(self).__name__
        for arg, img in (("image1", image1), ("image2", image2)):
            if not isinstance(img, torch.Tensor) or img.dim() != 4 or img.shape[1] != 3:
                shape = list(img.shape) if isinstance(img, torch.Tensor) else type(img).__name__
                raise ValueError(f"{name}: {arg} must be [B, 3, H, W], got {shape}")
            if not img.is_floating_point():
                raise ValueError(f"{name}: {arg} must be a float tensor (0..255), got {img.dtype}")
        if image1.shape != image2.shape:
            raise ValueError(
                f"{name}: image1 and image2 must have the same shape, got {list(image1.shape)} and {list(image2.shape)}"
            )

    def context(self, image1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Context of normalized image 1 [B, 3, H, W] -> (net [B, hidden, H/8, W/8] tanh, inp [B, context, ...] relu)."""
        net, inp = torch.split(self.cnet(image1), [self.hidden_dim, self.context_dim], dim=1)
        return torch.tanh(net), torch.relu(inp)

    def update_inputs(self, inp: torch.Tensor) -> tuple:
        """Extra per-pair inputs of every update step after (net, inp, corr, flow): none for RAFT."""
        return ()

    def encode(
        self, image1: torch.Tensor, image2: torch.Tensor, flow_init: torch.Tensor | None = None
    ) -> FlowState:
        """Everything the iterations share: padding, features, correlation block, context.

        image1, image2: [B, 3, H, W] float 0..255; flow_init: None or [B, 2, H'/8, W'/8].
        """
        self._check_images(image1, image2)
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
            corr_fn = self.corr_block(
                fmap1.float(), fmap2.float(), self.corr, self.corr_levels, self.corr_radius, self.corr_memory_budget
            )
            coords0 = coords_grid(b, h8, w8, device=image1.device)
            coords1 = coords0.clone()
            if flow_init is not None:
                if flow_init.shape != (b, 2, h8, w8):
                    raise ValueError(
                        f"{type(self).__name__}: flow_init must be [{b}, 2, {h8}, {w8}], got {list(flow_init.shape)}"
                    )
                coords1 = coords1 + flow_init.float()
        net, inp = self.context(image1)
        return FlowState(padder, corr_fn, coords0, coords1, net, inp, self.update_inputs(inp))

    def decode(self, update_block: nn.Module, state: FlowState, iters: int):
        """Run ``iters`` updates of ``update_block`` from ``state``.

        Train mode: the list of ``iters`` flows [B, 2, H, W]; eval mode: the final flow [B, 2, H, W].
        """
        if iters < 1:
            raise ValueError(f"{type(self).__name__}: iters must be >= 1, got {iters}")
        device_type = state.coords0.device.type
        coords0, coords1, net = state.coords0, state.coords1, state.net
        predictions = []
        for _ in range(iters):
            coords1 = coords1.detach()  # RAFT: no gradient through the lookup positions across iterations
            with torch.autocast(device_type=device_type, enabled=False):
                corr = state.corr_fn(coords1)
            flow = coords1 - coords0
            net, up_mask, delta_flow = update_block(net, state.inp, corr, flow, *state.update_inputs)
            coords1 = coords1 + delta_flow.float()
            if self.training:  # the sequence loss needs every iteration's full-resolution flow
                predictions.append(state.padder.unpad(self._upsample(coords1 - coords0, up_mask)))
        if self.training:
            return predictions
        return state.padder.unpad(self._upsample(coords1 - coords0, up_mask))

    def forward(
        self, image1: torch.Tensor, image2: torch.Tensor, iters: int = 12, flow_init: torch.Tensor | None = None
    ):
        if iters < 1:
            raise ValueError(f"{type(self).__name__}: iters must be >= 1, got {iters}")
        return self.decode(self.update_block, self.encode(image1, image2, flow_init), iters)

    @staticmethod
    def _upsample(flow: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """[B, 2, H/8, W/8] -> [B, 2, H, W] float32: convex with the mask head, bilinear without (small)."""
        return bilinear_upsample8(flow) if mask is None else convex_upsample(flow, mask)
