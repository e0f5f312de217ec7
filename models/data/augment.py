"""RAFT's FlowAugmentor, extended to the two flows and the masks of facial flow data.

The official FacialFlowNet training augments (image1, image2, facial flow, head
flow) with RAFT's recipe: photometric jitter (symmetric, or per image with
probability 0.2), an eraser on image 2, a random scale and stretch, flips and a
random crop. Here every geometric step is applied to both flows and to every
mask alike, and flips negate the matching flow component, so the labels stay
exact: a flow that mapped image 1 onto image 2 before still does after.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import ColorJitter

__all__ = ["FlowAugmentor", "FFN_AUGMENTATION"]


@dataclass
class FlowAugmentor:
    """Augment one training sample (a dict as :class:`~.dataset.FacialFlowDataset` returns).

    Args:
        crop_size: (height, width) of the output crop.
        min_scale, max_scale: log2 range of the random zoom (FacialFlowNet: -0.2, 0.6).
        spatial_prob: probability of zooming at all. stretch_prob / max_stretch: an extra
            independent log2 zoom per axis of up to +-max_stretch.
        do_flip: horizontal flips (prob 0.5) and vertical flips (prob 0.1).
        asymmetric_color_prob: jitter each image with its own parameters.
        eraser_prob: paint 1-2 rectangles of image 2 with its mean colour (simulated occlusion).

    ``__call__(sample, generator)``: sample keys ``image1``, ``image2`` [3, H, W] float 0..255,
    ``flow``, ``flow_head`` [2, H, W], and any masks [H, W] (``mask``, ``valid``,
    ``valid_head``, ``labels``, ``occlusion``); returns a new dict of the same keys,
    cropped to ``crop_size``. Masks are resampled by nearest neighbour.
    """

    crop_size: tuple[int, int] = (480, 480)
    min_scale: float = -0.2
    max_scale: float = 0.6
    spatial_prob: float = 0.8
    stretch_prob: float = 0.8
    max_stretch: float = 0.2
    do_flip: bool = True
    asymmetric_color_prob: float = 0.2
    eraser_prob: float = 0.5

    def __post_init__(self) -> None:
        self.jitter = ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.5 / 3.14)

    def __call__(self, sample: dict, generator: torch.Generator | None = None) -> dict:
        g = torch.Generator().manual_seed(int(torch.randint(1 << 62, (1,)))) if generator is None else generator
        rand = lambda: float(torch.rand(1, generator=g))  # noqa: E731
        out = dict(sample)
        out["image1"], out["image2"] = self._color(out["image1"], out["image2"], rand, g)
        out["image2"] = self._erase(out["image2"], rand, g)
        out = self._spatial(out, rand, g)
        return out

    # photometric -----------------------------------------------------------------------------------
    def _color(self, image1, image2, rand, g):
        # torchvision's jitter draws from torch's global generator: seed it from ours for reproducibility
        state = torch.random.get_rng_state()
        try:
            torch.manual_seed(int(torch.randint(1 << 62, (1,), generator=g)))
            if rand() < self.asymmetric_color_prob:
                image1, image2 = self._jitter(image1), self._jitter(image2)
            else:
                both = self._jitter(torch.cat([image1, image2], dim=2))  # one set of parameters for both
                image1, image2 = both.split(image1.shape[2], dim=2)
        finally:
            torch.random.set_rng_state(state)
        return image1, image2

    def _jitter(self, image):
        return self.jitter(image.clamp(0, 255).round().to(torch.uint8)).float()

    def _erase(self, image2, rand, g):
        if rand() >= self.eraser_prob:
            return image2
        image2 = image2.clone()
        _, h, w = image2.shape
        mean = image2.mean(dim=(1, 2), keepdim=True)
        for _ in range(int(torch.randint(1, 3, (1,), generator=g))):
            x0, y0 = int(rand() * w), int(rand() * h)
            dx, dy = int(50 + rand() * 50), int(50 + rand() * 50)
            image2[:, y0:y0 + dy, x0:x0 + dx] = mean
        return image2

    # geometric -------------------------------------------------------------------------------------
    def _spatial(self, s: dict, rand, g) -> dict:
        ch, cw = self.crop_size
        _, h, w = s["image1"].shape
        # at least the crop (+8 as RAFT) must fit after zooming
        min_scale = max((ch + 8) / h, (cw + 8) / w)
        scale = 2 ** (self.min_scale + rand() * (self.max_scale - self.min_scale))
        sx = sy = scale
        if rand() < self.stretch_prob:
            sx *= 2 ** ((rand() * 2 - 1) * self.max_stretch)
            sy *= 2 ** ((rand() * 2 - 1) * self.max_stretch)
        sx, sy = max(sx, min_scale), max(sy, min_scale)
        if rand() < self.spatial_prob or min_scale > 1:
            size = (round(h * sy), round(w * sx))
            s = {k: self._resize(k, v, size) for k, v in s.items()}
        if self.do_flip:
            if rand() < 0.5:
                s = {k: self._flip(k, v, dim=-1) for k, v in s.items()}
            if rand() < 0.1:
                s = {k: self._flip(k, v, dim=-2) for k, v in s.items()}
        _, h, w = s["image1"].shape
        y0 = int(torch.randint(0, h - ch + 1, (1,), generator=g))
        x0 = int(torch.randint(0, w - cw + 1, (1,), generator=g))
        return {k: v[..., y0:y0 + ch, x0:x0 + cw].contiguous() if _is_map(v) else v for k, v in s.items()}

    @staticmethod
    def _resize(key: str, v, size: tuple[int, int]):
        if not _is_map(v):
            return v
        h, w = v.shape[-2:]
        if key.startswith("flow"):  # displacements scale with the image
            scaled = F.interpolate(v[None], size=size, mode="bilinear", align_corners=False)[0]
            return scaled * torch.tensor([size[1] / w, size[0] / h]).view(2, 1, 1)
        if key.startswith("image"):
            return F.interpolate(v[None], size=size, mode="bilinear", align_corners=False)[0]
        return F.interpolate(v[None, None].float(), size=size, mode="nearest")[0, 0].to(v.dtype)  # masks

    @staticmethod
    def _flip(key: str, v, dim: int):
        if not _is_map(v):
            return v
        v = v.flip(dim)
        if key.startswith("flow"):
            v = v.clone()
            v[0 if dim == -1 else 1] *= -1  # a mirrored motion moves the other way along that axis
        return v


def _is_map(v) -> bool:
    return isinstance(v, torch.Tensor) and v.dim() >= 2


# FacialFlowNet's training augmentation (train.py with crop 480x480).
FFN_AUGMENTATION = dict(crop_size=(480, 480), min_scale=-0.2, max_scale=0.6)
