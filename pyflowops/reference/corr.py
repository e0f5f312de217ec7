"""Pure PyTorch twins of the 4D correlation ops (the ``torch`` backend).

Written for clarity, differentiable by autograd and float64-capable. The
lookups follow RAFT's ``CorrBlock``: ``grid_sample`` over the materialized
all-pairs volume. This module is also the baseline the benchmarks compare
against.

One deliberate difference from RAFT: coordinates are normalized for
``align_corners=False`` (``(2x + 1) / W - 1``). For maps wider than one pixel
this samples exactly the same values as RAFT's ``align_corners=True``
normalization, and it stays defined for maps of width or height 1, where
RAFT's ``2x / (W - 1) - 1`` divides by zero.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = [
    "corr_pyramid",
    "corr_lookup",
    "corr_lookup_onthefly",
    "fmap_pyramid",
    "window_offsets",
]


MAX_POOL_MAPS = 65535  # avg_pool2d's CUDA grid limit on the number of maps (csrc/corr/corr_pyramid.cpp)


def pool2x2(level: torch.Tensor) -> torch.Tensor:
    """[N, 1, h, w] -> [N, 1, h // 2, w // 2]: 2x2 means; unfold + mean past ``MAX_POOL_MAPS`` maps,
    where CUDA's avg_pool2d fails (the same rule as the C++ composite)."""
    if level.shape[0] <= MAX_POOL_MAPS:
        return F.avg_pool2d(level, 2, stride=2)
    return level.unfold(2, 2, 2).unfold(3, 2, 2).mean((-1, -2))


def corr_pyramid(fmap1: torch.Tensor, fmap2: torch.Tensor, num_levels: int = 4) -> list[torch.Tensor]:
    """All-pairs correlation pyramid.

    Args:
        fmap1: [B, D, H, W] features of image 1.
        fmap2: [B, D, H, W] features of image 2.
        num_levels: number of pyramid levels L.

    Returns:
        L tensors, level l of shape [B, H, W, H_l, W_l] with H_0 = H and
        H_{l+1} = floor(H_l / 2): level 0 is ``<fmap1[:, :, i, j], fmap2[:, :, k, l]> / sqrt(D)``.
    """
    batch, dim, height, width = fmap1.shape
    f1 = fmap1.reshape(batch, dim, height * width)
    f2 = fmap2.reshape(batch, dim, height * width)
    corr = torch.matmul(f1.transpose(1, 2), f2) / dim**0.5  # [B, HW, HW]
    level = corr.reshape(batch * height * width, 1, height, width)
    pyramid = [level]
    for _ in range(num_levels - 1):
        level = pool2x2(level)
        pyramid.append(level)
    return [lvl.reshape(batch, height, width, *lvl.shape[-2:]) for lvl in pyramid]


def window_offsets(radius: int, like: torch.Tensor) -> torch.Tensor:
    """Window offsets in RAFT's channel order: x-offset slow, y-offset fast.

    Returns:
        [(2r+1)^2, 2] offsets (dx, dy) with ``k = a * (2r+1) + c`` holding
        ``(a - r, c - r)``.
    """
    d = torch.arange(-radius, radius + 1, dtype=like.dtype, device=like.device)
    dx, dy = torch.meshgrid(d, d, indexing="ij")
    return torch.stack([dx, dy], dim=-1).reshape(-1, 2)


def _normalize(xy: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """Pixel coordinates [..., 2] -> grid_sample's [-1, 1] with align_corners=False."""
    x = (2 * xy[..., 0] + 1) / width - 1
    y = (2 * xy[..., 1] + 1) / height - 1
    return torch.stack([x, y], dim=-1)


def _window_positions(coords: torch.Tensor, radius: int, level: int) -> torch.Tensor:
    """[B, 2, H, W] level-0 coordinates -> [B, H*W, (2r+1)^2, 2] sample positions at a level."""
    batch, _, height, width = coords.shape
    centers = coords.permute(0, 2, 3, 1).reshape(batch, height * width, 1, 2) / 2**level
    return centers + window_offsets(radius, coords)


def corr_lookup(pyramid: list[torch.Tensor], coords: torch.Tensor, radius: int = 4) -> torch.Tensor:
    """Bilinear window lookup in a correlation pyramid, RAFT's ``CorrBlock.__call__``.

    Args:
        pyramid: L tensors [B, H, W, H_l, W_l] from :func:`corr_pyramid`.
        coords: [B, 2, H, W] absolute level-0 positions (channel 0 = x, 1 = y).
        radius: window radius r.

    Returns:
        [B, L*(2r+1)^2, H, W]; channel ``l*(2r+1)^2 + a*(2r+1) + c`` samples level l
        at ``(x/2^l + a - r, y/2^l + c - r)`` with zero padding.
    """
    batch, _, height, width = coords.shape
    window = (2 * radius + 1) ** 2
    out_dtype = pyramid[0].dtype
    if coords.dtype != out_dtype:  # float32 coords with half maps: sample in float32, output in the maps' dtype
        pyramid = [p.to(coords.dtype) for p in pyramid]
    out = []
    for level, corr in enumerate(pyramid):
        h_l, w_l = corr.shape[-2:]
        maps = corr.reshape(batch * height * width, 1, h_l, w_l)
        grid = _normalize(_window_positions(coords, radius, level), w_l, h_l)
        grid = grid.reshape(batch * height * width, window, 1, 2)
        sampled = F.grid_sample(maps, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        out.append(sampled.reshape(batch, height, width, window))
    return torch.cat(out, dim=-1).permute(0, 3, 1, 2).contiguous().to(out_dtype)


def fmap_pyramid(fmap: torch.Tensor, num_levels: int) -> list[torch.Tensor]:
    """[B, D, H, W] -> L feature maps, each average-pooled 2x2 from the previous one."""
    levels = [fmap]
    for _ in range(num_levels - 1):
        levels.append(F.avg_pool2d(levels[-1], 2, stride=2))
    return levels


def corr_lookup_onthefly(
    fmap1: torch.Tensor,
    fmap2: torch.Tensor,
    coords: torch.Tensor,
    radius: int = 4,
    num_levels: int = 4,
) -> torch.Tensor:
    """Window lookup without the all-pairs volume: sample fmap2's pyramid, then dot with fmap1.

    Independent of :func:`corr_pyramid` (pooling commutes with the dot product),
    so the tests can hold the two against each other. Memory O(B*D*H*W*L*(2r+1)^2):
    a reference, not a way to save memory.

    Args:
        fmap1: [B, D, H, W].
        fmap2: [B, D, H, W].
        coords: [B, 2, H, W] absolute level-0 positions (x, y).
        radius: window radius r.
        num_levels: pyramid levels L.

    Returns:
        [B, L*(2r+1)^2, H, W], equal to ``corr_lookup(corr_pyramid(fmap1, fmap2, L), coords, r)``.
    """
    batch, dim, height, width = fmap1.shape
    out_dtype = fmap1.dtype
    if coords.dtype != out_dtype:  # float32 coords with half maps: compute in float32, output in the maps' dtype
        fmap1, fmap2 = fmap1.to(coords.dtype), fmap2.to(coords.dtype)
    f1 = fmap1.reshape(batch, dim, height * width, 1) / dim**0.5
    out = []
    for level, f2 in enumerate(fmap_pyramid(fmap2, num_levels)):
        h_l, w_l = f2.shape[-2:]
        grid = _normalize(_window_positions(coords, radius, level), w_l, h_l)  # [B, HW, K, 2]
        sampled = F.grid_sample(f2, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        out.append((sampled * f1).sum(dim=1))  # [B, HW, K]
    return torch.cat(out, dim=-1).permute(0, 2, 1).reshape(batch, -1, height, width).to(out_dtype)
