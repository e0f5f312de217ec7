"""Drop-in replacements for RAFT's ``CorrBlock`` and ``AlternateCorrBlock``.

Same constructor, same ``__call__(coords)``, same output channel order, so
RAFT/GMA code switches by changing one import::

    from pyflowops.nn import CorrBlock            # was: from core.corr import CorrBlock
    corr_fn = CorrBlock(fmap1, fmap2, radius=4)    # fmaps [B, D, H, W]
    corr = corr_fn(coords1)                        # coords [B, 2, H, W] -> [B, L*(2r+1)^2, H, W]
"""

from __future__ import annotations

import torch

from pyflowops.ops import corr as corr_ops

__all__ = ["CorrBlock", "AlternateCorrBlock"]


class CorrBlock:
    """All-pairs correlation pyramid built once, looked up once per refinement iteration.

    Args:
        fmap1: [B, D, H, W] features of image 1.
        fmap2: [B, D, H, W] features of image 2.
        num_levels: pyramid levels L.
        radius: lookup window radius r.
        backend: backend for both the pyramid and the lookups (None = the current default).

    Example:
        >>> import torch
        >>> from pyflowops.nn import CorrBlock
        >>> f1, f2 = torch.randn(2, 1, 16, 12, 12).unbind(0)
        >>> CorrBlock(f1, f2, num_levels=2, radius=2)(torch.rand(1, 2, 12, 12) * 12).shape
        torch.Size([1, 50, 12, 12])
    """

    def __init__(
        self,
        fmap1: torch.Tensor,
        fmap2: torch.Tensor,
        num_levels: int = 4,
        radius: int = 4,
        *,
        backend: str | None = None,
    ) -> None:
        self.num_levels = num_levels
        self.radius = radius
        self.backend = backend
        corr_ops.check_radius(radius)  # fail before the O((HW)^2) build
        self.corr_pyramid = corr_ops.corr_pyramid(fmap1, fmap2, num_levels, backend=backend)

    def __call__(self, coords: torch.Tensor) -> torch.Tensor:
        """coords [B, 2, H, W] (x, y) -> [B, L*(2r+1)^2, H, W]."""
        return corr_ops.corr_lookup(self.corr_pyramid, coords, self.radius, backend=self.backend)


class AlternateCorrBlock:
    """Memory-efficient correlation: no all-pairs volume, dot products computed per lookup.

    fmap2's average-pooled pyramid is built once here and reused by every
    call. Unlike RAFT's ``alt_cuda_corr`` this runs on CPU and GPU, in every
    float dtype, for any channel count, and returns a true coords gradient.

    Args:
        fmap1: [B, D, H, W] features of image 1.
        fmap2: [B, D, H, W] features of image 2.
        num_levels: pyramid levels L.
        radius: lookup window radius r.
        backend: backend for the lookups (None = the current default).

    Example:
        >>> import torch
        >>> from pyflowops.nn import AlternateCorrBlock
        >>> f1, f2 = torch.randn(2, 1, 16, 12, 12).unbind(0)
        >>> AlternateCorrBlock(f1, f2, num_levels=2, radius=2)(torch.rand(1, 2, 12, 12) * 12).shape
        torch.Size([1, 50, 12, 12])
    """

    def __init__(
        self,
        fmap1: torch.Tensor,
        fmap2: torch.Tensor,
        num_levels: int = 4,
        radius: int = 4,
        *,
        backend: str | None = None,
    ) -> None:
        self.num_levels = num_levels
        self.radius = radius
        self.backend = backend
        self._lookup = corr_ops.OntheflyCorrelation(fmap1, fmap2, num_levels, radius, backend=backend)

    def __call__(self, coords: torch.Tensor) -> torch.Tensor:
        """coords [B, 2, H, W] (x, y) -> [B, L*(2r+1)^2, H, W]."""
        return self._lookup(coords)
