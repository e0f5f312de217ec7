"""Static background planes behind the synthetic heads (their flow is 0).

Default set: textures and photos bundled with scikit-image (no download):
brick, grass, gravel, moon, coins, coffee, rocket, hubble_deep_field and
immunohistochemistry. ``astronaut`` (and ``camera``, another person) are never
used: ``astronaut`` is reserved for evaluation, so no default training image
may contain it. A folder of the user's images can replace the set.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

__all__ = ["Backgrounds", "DEFAULT_TEXTURES", "RESERVED_FOR_EVALUATION"]

DEFAULT_TEXTURES = ("brick", "grass", "gravel", "moon", "coins", "coffee", "rocket", "hubble_deep_field",
                    "immunohistochemistry")
RESERVED_FOR_EVALUATION = ("astronaut",)
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def _as_rgb(image: np.ndarray) -> np.ndarray:
    """[H, W] / [H, W, 3|4] any dtype -> [H, W, 3] uint8."""
    image = np.asarray(image)
    if image.dtype == bool:
        image = image.astype(np.uint8) * 255
    if image.dtype != np.uint8:
        image = np.clip(image.astype(np.float64) * (255.0 if image.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    return np.ascontiguousarray(image[..., :3])


class Backgrounds:
    """A set of background images; :meth:`pick` turns a key into a deterministic crop.

    Args:
        folder: a folder of the user's images (png, jpg, ...); None = scikit-image's textures.
    """

    def __init__(self, folder: str | Path | None = None) -> None:
        if folder is None:
            import skimage.data

            self.names = DEFAULT_TEXTURES
            self._load = lambda name: _as_rgb(getattr(skimage.data, name)())
        else:
            folder = Path(folder)
            if not folder.is_dir():
                raise ValueError(f"Backgrounds: {folder} is not a folder")
            files = sorted(p for p in folder.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)
            if not files:
                raise ValueError(f"Backgrounds: no images ({', '.join(_IMAGE_SUFFIXES)}) in {folder}")
            self.names = tuple(str(p) for p in files)
            self._load = lambda name: _as_rgb(np.asarray(Image.open(name).convert("RGB")))
        self._cache: dict[str, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.names)

    def image(self, i: int) -> np.ndarray:
        """Image ``i`` of the set, [H, W, 3] uint8 (loaded once)."""
        name = self.names[i % len(self.names)]
        if name not in self._cache:
            self._cache[name] = self._load(name)
        return self._cache[name]

    def pick(self, key: int, size: int) -> np.ndarray:
        """Background ``key``: one image of the set, randomly cropped, zoomed, flipped, tinted and
        dimmed (so a texture does not look the same in every sequence), [size, size, 3] uint8."""
        g = torch.Generator().manual_seed(int(key))
        image = torch.from_numpy(self.image(int(torch.randint(len(self), (1,), generator=g)))).float()
        h, w = image.shape[:2]
        side = min(h, w) * (0.5 + 0.5 * float(torch.rand(1, generator=g)))  # crop 50-100% of the short side
        top = int(float(torch.rand(1, generator=g)) * (h - side))
        left = int(float(torch.rand(1, generator=g)) * (w - side))
        crop = image[top:top + int(side), left:left + int(side)].permute(2, 0, 1)[None]
        crop = F.interpolate(crop, size=(size, size), mode="bilinear", align_corners=False, antialias=True)[0]
        if float(torch.rand(1, generator=g)) < 0.5:
            crop = crop.flip(-1)
        tint = 0.6 + 0.4 * torch.rand(3, 1, 1, generator=g)
        crop = crop * tint * (0.5 + 0.5 * float(torch.rand(1, generator=g)))  # darker than the lit face, mostly
        return crop.clamp(0, 255).round().to(torch.uint8).permute(1, 2, 0).contiguous().numpy()
