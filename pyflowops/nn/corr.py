"""Drop-in replacements for RAFT's ``CorrBlock`` and ``AlternateCorrBlock``.

Same constructor, same ``__call__(coords)``, same output channel order, so
RAFT/GMA code switches by changing one import::

    from pyflowops.nn import CorrBlock            # was: from core.corr import CorrBlock
    corr_fn = CorrBlock(fmap1, fmap2, radius=4)    # fmaps [B, D, H, W]
    corr = corr_fn(coords1)                        # coords [B, 2, H, W] -> [B, L*(2r+1)^2, H, W]
"""

from __future__ import annotations

import torch

from pyflowops import _backend
from pyflowops.ops import corr as corr_ops
from pyflowops.reference import corr as reference

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
        corr_ops.check_int("radius", radius, 0, corr_ops.MAX_RADIUS)  # fail before the O((HW)^2) build
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
        corr_ops._check_fmaps(fmap1, fmap2, num_levels)
        corr_ops.check_int("radius", radius, 0, corr_ops.MAX_RADIUS)
        self.num_levels = num_levels
        self.radius = radius
        self.backend = backend
        self.fmap1, self.fmap2 = fmap1, fmap2
        self._prepared: tuple[torch.Tensor, list[torch.Tensor]] | None = None

    def __call__(self, coords: torch.Tensor) -> torch.Tensor:
        """coords [B, 2, H, W] (x, y) -> [B, L*(2r+1)^2, H, W]."""
        batch, _, height, width = self.fmap1.shape
        corr_ops._check_coords(coords, batch, height, width, self.fmap1, "fmap1")
        name = _backend.select_backend("corr_lookup_onthefly", [coords], self.backend)
        if name == "torch":
            return reference.corr_lookup_onthefly(self.fmap1, self.fmap2, coords, self.radius, self.num_levels)
        if self._prepared is None:  # pool fmap2 once, not once per iteration
            self._prepared = corr_ops.prepare_onthefly(self.fmap1, self.fmap2, self.num_levels)
        fmap1_cl, fmap2_levels = self._prepared
        return corr_ops.lookup_prepared(fmap1_cl, fmap2_levels, coords, self.radius, name)
