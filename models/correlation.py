"""Choosing the correlation block: all-pairs pyramid or on-the-fly lookups.

Both come from the public ``pyflowops.nn`` API and give the same values and the
same channel order (RAFT's), so the choice only trades memory for time.
"""

from __future__ import annotations

import torch
from pyflowops.nn import AlternateCorrBlock, CorrBlock

__all__ = ["CORR_MODES", "DEFAULT_MEMORY_BUDGET", "allpairs_bytes", "make_corr_block"]

CORR_MODES = ("allpairs", "onthefly", "auto")
DEFAULT_MEMORY_BUDGET = 2 * 1024**3  # bytes; the level-0 volume alone is 1 GiB per sample at 1024^2 input


def allpairs_bytes(batch: int, height: int, width: int, num_levels: int = 4) -> int:
    """Bytes of the float32 all-pairs pyramid for feature maps [batch, D, height, width].

    Level 0 holds batch * (HW)^2 floats; each further level pools the target
    dims 2x2, so the levels add up to at most 4/3 of level 0.
    """
    hw = height * width
    total = 0
    h2, w2 = height, width
    for _ in range(num_levels):
        total += batch * hw * h2 * w2 * 4
        h2, w2 = max(h2 // 2, 1), max(w2 // 2, 1)
    return total


def make_corr_block(
    fmap1: torch.Tensor,
    fmap2: torch.Tensor,
    mode: str = "auto",
    num_levels: int = 4,
    radius: int = 4,
    memory_budget_bytes: int | None = None,
) -> CorrBlock | AlternateCorrBlock:
    """Build the correlation block for one image pair.

    Args:
        fmap1: [B, D, H, W] float features of image 1 (1/8 resolution).
        fmap2: [B, D, H, W] float features of image 2.
        mode: ``allpairs``, ``onthefly`` or ``auto`` (on-the-fly when the
            all-pairs pyramid, see :func:`allpairs_bytes`, would exceed the budget).
        num_levels: pyramid levels L.
        radius: lookup radius r.
        memory_budget_bytes: the budget for ``auto``; None = 2 GiB.

    Returns:
        A callable block: coords [B, 2, H, W] (x, y) -> [B, L*(2r+1)^2, H, W].
    """
    if mode not in CORR_MODES:
        raise ValueError(f"make_corr_block: mode must be one of {CORR_MODES}, got {mode!r}")
    if mode == "auto":
        budget = DEFAULT_MEMORY_BUDGET if memory_budget_bytes is None else memory_budget_bytes
        if budget < 0:
            raise ValueError(f"make_corr_block: memory_budget_bytes must be >= 0, got {budget}")
        b, _, h, w = fmap1.shape
        mode = "onthefly" if allpairs_bytes(b, h, w, num_levels) > budget else "allpairs"
    block = CorrBlock if mode == "allpairs" else AlternateCorrBlock
    return block(fmap1, fmap2, num_levels=num_levels, radius=radius)
