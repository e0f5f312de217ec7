"""Tolerances and input builders shared by the tests."""

from __future__ import annotations

import torch

# (rtol, atol) per dtype for kernel-vs-reference comparisons.
TOLERANCES = {
    torch.float64: (1e-10, 1e-10),
    torch.float32: (2e-5, 2e-5),
    torch.float16: (1e-2, 2e-2),
    torch.bfloat16: (5e-2, 1e-1),
}


def assert_close(actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype | None = None, scale: float = 1.0):
    """Compare with the dtype's tolerance; ``scale`` widens it for long sums."""
    rtol, atol = TOLERANCES[dtype or actual.dtype]
    torch.testing.assert_close(
        actual.to(expected.dtype).cpu(), expected.cpu(), rtol=rtol * scale, atol=atol * scale, equal_nan=True
    )


def random_coords(batch: int, height: int, width: int, *, spread: float = 1.5, far: bool = True, **kw) -> torch.Tensor:
    """[B, 2, H, W] positions: mostly around the image (up to ``spread`` x its size away),
    a few far outside (+-1e4) when ``far``. Never integers (bilinear kinks)."""
    size = torch.tensor([width, height], **kw).view(1, 2, 1, 1)
    coords = (torch.rand(batch, 2, height, width, **kw) * spread - (spread - 1) / 2) * size
    if far and height * width > 2:
        coords[:, :, 0, 0] = torch.tensor([1.0e4, -2.5e4], **kw).view(1, 2)
        coords[:, 0, -1, -1] = -3.3e3
    return coords


def noncontiguous(t: torch.Tensor) -> torch.Tensor:
    """The same values in a non-contiguous view (every other element of a doubled last dim)."""
    wide = torch.empty(*t.shape[:-1], 2 * t.shape[-1], dtype=t.dtype, device=t.device).fill_(float("nan"))
    wide[..., ::2] = t
    view = wide[..., ::2]
    assert not view.is_contiguous() or t.shape[-1] <= 1
    return view


def poison_allocator(nbytes: int, device: str) -> None:
    """Fill and free a block so that a kernel's fresh ``empty`` output is likely to hold NaN,
    not zeros, wherever the kernel forgets to write (reliable on CUDA's caching allocator)."""
    block = torch.full((max(nbytes // 4, 1),), float("nan"), device=device)
    del block
