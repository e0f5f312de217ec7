"""Padding to multiples of 8 and RAFT's convex 8x upsampling of flow."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["InputPadder", "convex_upsample", "bilinear_upsample8", "coords_grid"]


def coords_grid(batch: int, height: int, width: int, device=None) -> torch.Tensor:
    """Pixel coordinates [batch, 2, height, width] (x, y), float32."""
    ys, xs = torch.meshgrid(
        torch.arange(height, device=device, dtype=torch.float32),
        torch.arange(width, device=device, dtype=torch.float32),
        indexing="ij",
    )
    return torch.stack((xs, ys)).unsqueeze(0).expand(batch, -1, -1, -1).contiguous()


def convex_upsample(flow: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Upsample flow 8x as a convex combination of each pixel's 3x3 coarse neighbours.

    Args:
        flow: [B, 2, H, W] flow at 1/8 resolution (pixels of that resolution).
        mask: [B, 64*9, H, W] logits; softmax over the 9 neighbours per fine pixel.

    Returns:
        [B, 2, 8H, 8W] flow in full-resolution pixels, float32.
    """
    b, _, h, w = flow.shape
    if mask.shape != (b, 64 * 9, h, w):
        raise ValueError(f"convex_upsample: mask must be [{b}, 576, {h}, {w}], got {list(mask.shape)}")
    # float32: the mask may come out of an autocast region in bfloat16/float16.
    mask = torch.softmax(mask.float().view(b, 1, 9, 8, 8, h, w), dim=2)
    up = F.unfold(8 * flow.float(), kernel_size=3, padding=1).view(b, 2, 9, 1, 1, h, w)
    up = (mask * up).sum(dim=2)  # [B, 2, 8, 8, H, W]
    return up.permute(0, 1, 4, 2, 5, 3).reshape(b, 2, 8 * h, 8 * w)


def bilinear_upsample8(flow: torch.Tensor) -> torch.Tensor:
    """[B, 2, H, W] -> [B, 2, 8H, 8W]: bilinear (align_corners) and scaled by 8, as RAFT-small does."""
    h, w = flow.shape[-2:]
    return 8 * F.interpolate(flow.float(), size=(8 * h, 8 * w), mode="bilinear", align_corners=True)


class InputPadder:
    """Pads images [..., H, W] to multiples of 8 (replicate) and crops results back.

    Args:
        shape: the input's shape (only the last two dims are used).
        mode: ``sintel`` pads height and width evenly on both sides; anything
            else pads the width evenly and the height at the bottom (RAFT's KITTI mode).
        min_size: pad each side length to at least this (a multiple of 8): a
            correlation pyramid of L levels needs 1/8-resolution maps of at
            least 2^(L-1) pixels, i.e. images of at least 8 * 2^(L-1).
    """

    def __init__(self, shape, mode: str = "sintel", min_size: int = 0) -> None:
        self.ht, self.wd = int(shape[-2]), int(shape[-1])
        if min_size % 8:
            raise ValueError(f"InputPadder: min_size must be a multiple of 8, got {min_size}")
        pad_ht = max(min_size - self.ht, (-self.ht) % 8)
        pad_wd = max(min_size - self.wd, (-self.wd) % 8)
        if mode == "sintel":
            self._pad = [pad_wd // 2, pad_wd - pad_wd // 2, pad_ht // 2, pad_ht - pad_ht // 2]
        else:
            self._pad = [pad_wd // 2, pad_wd - pad_wd // 2, 0, pad_ht]

    def pad(self, *inputs: torch.Tensor) -> list[torch.Tensor]:
        """Each [B, C, H, W] -> [B, C, H', W'] with H', W' multiples of 8."""
        if not any(self._pad):
            return list(inputs)
        return [F.pad(x, self._pad, mode="replicate") for x in inputs]

    def unpad(self, x: torch.Tensor) -> torch.Tensor:
        """[..., H', W'] -> [..., H, W] (the original size)."""
        left, _, top, _ = self._pad
        return x[..., top : top + self.ht, left : left + self.wd]
