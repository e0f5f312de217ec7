"""Generic-motion pairs for pretraining: photos moving under random affine motions, exact flow.

FacialFlowNet's stage 1 starts from GMA weights, trained on FlyingChairs and FlyingThings: a
network that already matches. Those sets cannot be downloaded here, so this module makes a
small FlyingChairs-like stand-in from the photos and textures bundled with scikit-image
(the same set as the heads' backgrounds; ``astronaut`` stays reserved for evaluation): a
background and 1-3 elliptical foreground layers, each moved by its own random similarity
transform (shift, rotation, zoom). Measured here: DecFlow small trained from scratch on facial
pairs alone settles on near-constant flow (its flow heads' ReLUs die), while on such pairs it
learns to match within a few hundred steps.

Flow is exact: pixel p of image 1 lies on layer k (the topmost layer covering p), which moves it
to ``M_k p``; flow(p) = M_k p - p (channel 0 = x). Image 2 composites every layer warped by its
motion (bilinear, zero outside the source), so foreground layers occlude what they move over,
as in FlyingChairs. Samples have the keys of :class:`~.dataset.FacialFlowDataset`
(``flow_head`` = ``flow``: no expression; ``mask`` = all ones: everything moves).
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from .backgrounds import Backgrounds

__all__ = ["GenericMotionDataset", "similarity"]


def similarity(shift: tuple[float, float], angle: float, zoom: float, center: tuple[float, float]) -> torch.Tensor:
    """The 2x3 matrix M (float64) of ``p -> zoom * R(angle) (p - center) + center + shift`` on pixel (x, y)."""
    c, s = math.cos(angle) * zoom, math.sin(angle) * zoom
    cx, cy = center
    return torch.tensor([[c, -s, cx - c * cx + s * cy + shift[0]],
                         [s, c, cy - s * cx - c * cy + shift[1]]], dtype=torch.float64)


def _apply(m: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """M [2, 3] applied to pixel positions grid [2, H, W] -> [2, H, W]."""
    m = m.to(grid.dtype)
    return torch.einsum("ij,jhw->ihw", m[:, :2], grid) + m[:, 2, None, None]


def _warp(layer: torch.Tensor, m: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """The layer [C, H, W] moved by M: out(q) = layer(M^-1 q), bilinear, zero outside."""
    inverse = torch.linalg.inv(torch.cat([m, torch.tensor([[0.0, 0.0, 1.0]], dtype=m.dtype)]))[:2]
    source = _apply(inverse, grid)  # [2, H, W] pixel positions in the layer
    h, w = layer.shape[-2:]
    normalized = torch.stack([2 * source[0] / max(w - 1, 1) - 1, 2 * source[1] / max(h - 1, 1) - 1], dim=-1)
    return F.grid_sample(layer[None], normalized[None].to(layer.dtype), mode="bilinear", padding_mode="zeros",
                         align_corners=True)[0]


class GenericMotionDataset(Dataset):
    """FlyingChairs-like pairs rendered on demand (deterministic per (seed, first_index + index)).

    Args:
        length: number of pairs. size: image side in pixels. seed: the data set. split: written into
            ``sequence``. first_index: offset of the pair keys (disjoint sets: disjoint ranges).
        max_shift: largest shift per axis, px (the background's and each layer's).
        max_angle: largest rotation, degrees. max_zoom: largest relative scale change (0.05 = +-5%).
        layers: the (min, max) number of foreground ellipses.
        backgrounds: a folder of the user's images (None: scikit-image's bundled set).

    Item i: ``image1``, ``image2`` [3, size, size] float 0..255; ``flow``, ``flow_head`` [2, size, size];
    ``mask``, ``valid``, ``valid_head`` [size, size] ones; ``sequence`` (str), ``step`` 0.

    Example:
        >>> pairs = GenericMotionDataset(4, size=64)
        >>> sorted(k for k in pairs[0] if k.startswith("image"))
        ['image1', 'image2']
    """

    def __init__(self, length: int, size: int = 256, seed: int = 0, split: str = "train", first_index: int = 0,
                 max_shift: float = 10.0, max_angle: float = 2.0, max_zoom: float = 0.02,
                 layers: tuple[int, int] = (1, 3), backgrounds: str | Path | None = None) -> None:
        if length < 1 or size < 16:
            raise ValueError(f"GenericMotionDataset: need length >= 1 and size >= 16, got {length}, {size}")
        if not 0 <= layers[0] <= layers[1]:
            raise ValueError(f"GenericMotionDataset: layers must be (min, max) with 0 <= min <= max, got {layers}")
        self.length, self.size, self.seed, self.split, self.first_index = length, size, seed, split, first_index
        self.max_shift, self.max_angle, self.max_zoom, self.layers = max_shift, max_angle, max_zoom, tuple(layers)
        self._backgrounds_folder = backgrounds
        self._backgrounds: Backgrounds | None = None  # loaded in the worker that first needs it

    def __len__(self) -> int:
        return self.length

    def _generator(self, index: int) -> torch.Generator:
        key = hashlib.sha256(f"generic:{self.seed}:{self.first_index + index}".encode()).digest()
        return torch.Generator().manual_seed(int.from_bytes(key[:8], "little"))

    def _motion(self, g: torch.Generator, center: tuple[float, float]) -> torch.Tensor:
        u = (torch.rand(4, generator=g, dtype=torch.float64) * 2 - 1).tolist()  # uniform in [-1, 1]
        return similarity((u[0] * self.max_shift, u[1] * self.max_shift), math.radians(u[2] * self.max_angle),
                          1.0 + u[3] * self.max_zoom, center)

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.length:
            raise IndexError(f"GenericMotionDataset: index {index} out of range [0, {self.length})")
        if self._backgrounds is None:
            self._backgrounds = Backgrounds(self._backgrounds_folder)
        g, n = self._generator(index), self.size
        ys, xs = torch.meshgrid(torch.arange(n, dtype=torch.float32), torch.arange(n, dtype=torch.float32),
                                indexing="ij")  # float32: exact integers, flow good to ~1e-5 px
        grid = torch.stack([xs, ys])  # [2, n, n] pixel (x, y)

        def texture() -> torch.Tensor:  # [3, n, n] float32 0..255
            key = int(torch.randint(2**62, (1,), generator=g))
            return torch.from_numpy(self._backgrounds.pick(key, n)).permute(2, 0, 1).float()

        center = ((n - 1) / 2, (n - 1) / 2)
        m = self._motion(g, center)
        background = texture()
        image1, image2 = background.clone(), _warp(background, m, grid)
        flow = _apply(m, grid) - grid  # [2, n, n]
        count = int(torch.randint(self.layers[0], self.layers[1] + 1, (1,), generator=g))
        for _ in range(count):
            cx, cy, ax, ay, tilt = torch.rand(5, generator=g, dtype=torch.float64).tolist()  # the ellipse
            cx, cy = (0.15 + 0.7 * cx) * n, (0.15 + 0.7 * cy) * n
            ax, ay, tilt = (0.08 + 0.17 * ax) * n, (0.08 + 0.17 * ay) * n, tilt * math.pi
            dx, dy = xs - cx, ys - cy
            u = (dx * math.cos(tilt) + dy * math.sin(tilt)) / ax
            v = (-dx * math.sin(tilt) + dy * math.cos(tilt)) / ay
            radius = torch.sqrt(u * u + v * v)  # 1 on the ellipse
            alpha = ((1.0 - radius) * min(ax, ay)).clamp(0.0, 1.0)[None]  # 1 px anti-aliased edge
            layer, motion = texture(), self._motion(g, (cx, cy))
            moved = _warp(torch.cat([layer * alpha, alpha]), motion, grid)  # premultiplied colour + alpha
            image1 = image1 * (1 - alpha) + layer * alpha
            image2 = image2 * (1 - moved[3:]) + moved[:3]
            flow = torch.where(alpha > 0.5, _apply(motion, grid) - grid, flow)
        ones = torch.ones(n, n)
        return {"image1": image1.clamp(0, 255).float(), "image2": image2.clamp(0, 255).float(),
                "flow": flow, "flow_head": flow.clone(), "mask": ones, "valid": ones.clone(),
                "valid_head": ones.clone(), "sequence": f"{self.split}/generic/{self.first_index + index:07d}",
                "step": 0}
