"""Procedural skin, hair and eye colours of the synthetic head, and frontal photo projection.

Everything here is a function of 3D points in the head's canonical frame (see
:mod:`.head`), so colours are continuous across the surface and move with it.
Noise lattices are drawn from the caller's ``torch.Generator``: deterministic.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

__all__ = ["ValueNoise", "wendland", "smoothstep", "skin_albedo", "hair_albedo", "eye_albedo", "project_photo"]


def smoothstep(edge0: float, edge1: float, x: torch.Tensor) -> torch.Tensor:
    """C1 ramp from 0 (x <= edge0) to 1 (x >= edge1); edge0 > edge1 gives the falling ramp. Shape of x."""
    t = ((x - edge0) / (edge1 - edge0)).clamp(0, 1)
    return t * t * (3 - 2 * t)


def wendland(r: torch.Tensor) -> torch.Tensor:
    """Wendland C2 bump (1 - r)^4 (4 r + 1) for r in [0, 1), 0 beyond: compact support, smooth. Shape of r."""
    t = (1 - r).clamp(min=0)
    return t**4 * (4 * r + 1)


class ValueNoise:
    """Tiling 3D value noise: random values on a ``size``^3 lattice, smoothly interpolated.

    Why value noise: cheap, vectorised, deterministic from a generator, and smooth (C1)
    in space, so colour varies continuously over the surface.
    """

    def __init__(self, generator: torch.Generator, size: int = 32) -> None:
        self.size = size
        self.table = torch.rand(size, size, size, generator=generator) * 2 - 1  # [S, S, S] in [-1, 1)

    def __call__(self, points: torch.Tensor, freq: float | tuple[float, float, float]) -> torch.Tensor:
        """points [P, 3] -> [P] noise in about [-1, 1] at ``freq`` lattice cells per unit (per axis if a tuple)."""
        scaled = points * torch.as_tensor(freq, dtype=points.dtype)
        base = torch.floor(scaled)
        frac = scaled - base
        fade = frac * frac * (3 - 2 * frac)
        idx = base.long() % self.size
        out = torch.zeros(points.shape[0], dtype=points.dtype)
        for corner in range(8):
            offset = torch.tensor([(corner >> 2) & 1, (corner >> 1) & 1, corner & 1])
            i = (idx + offset) % self.size
            w = torch.where(offset.bool(), fade, 1 - fade).prod(-1)
            out += w * self.table[i[:, 0], i[:, 1], i[:, 2]].to(points.dtype)
        return out

    def fbm(self, points: torch.Tensor, freq: float, octaves: int = 4) -> torch.Tensor:
        """Sum of ``octaves`` octaves (frequency x2, amplitude /2 each), normalised to about [-1, 1]. [P]."""
        total, amp, norm = torch.zeros(points.shape[0], dtype=points.dtype), 1.0, 0.0
        for k in range(octaves):
            # shift each octave so their lattices do not align (visible grid artefacts otherwise)
            total += amp * self(points + 7.31 * k, freq * 2**k)
            norm += amp
            amp /= 2
        return total / norm


def _blend(base: torch.Tensor, color, weight: torch.Tensor) -> torch.Tensor:
    color = torch.as_tensor(color, dtype=base.dtype)
    return base + (color - base) * weight.unsqueeze(-1)


def skin_albedo(
    points: torch.Tensor, identity, noise: ValueNoise, generator: torch.Generator, resolution: int, spots: torch.Tensor
) -> torch.Tensor:
    """[P, 3] skin colour at points [P, 3]: tone, low-frequency variation, blush, pores (resolution >= 1024),
    freckles/moles at ``spots`` [K, 5] (x, y, z, radius, darkness)."""
    tone = torch.tensor(identity.skin_tone, dtype=points.dtype)
    low = noise.fbm(points, 2.0, 4)  # blotchy tone variation, a few cm across
    hue = noise.fbm(points + 31.0, 3.0, 2)
    color = tone * (1 + 0.07 * low).unsqueeze(-1)
    color = color * (1 + 0.04 * hue.unsqueeze(-1) * torch.tensor([1.0, -0.3, -0.6]))  # redder / yellower patches
    x, y, z = points.unbind(-1)
    front = smoothstep(0.1, -0.4, z)
    blush = front * sum(wendland(torch.sqrt(((x - sx) / 0.2) ** 2 + ((y - 0.15) / 0.16) ** 2)) for sx in (-0.42, 0.42))
    color = color * (1 + 0.1 * blush.unsqueeze(-1) * torch.tensor([0.4, -0.6, -0.5]))
    if resolution >= 1024:  # pores: pixel-scale dark speckle, only resolvable at high resolution
        fine = noise(points + 3.3, 140.0) + 0.5 * noise(points - 5.1, 290.0)
        speck = torch.randn(points.shape[0], generator=generator, dtype=points.dtype)
        color = color * (1 - 0.05 * fine.clamp(min=0) - 0.015 * speck.abs()).unsqueeze(-1)
    if spots.numel():
        d = torch.cdist(points, spots[:, :3])  # [P, K]
        w = (wendland(d / spots[:, 3]) * spots[:, 4]).amax(1)
        color = color * (1 - 0.55 * w).unsqueeze(-1) * (1 - 0.15 * w.unsqueeze(-1) * torch.tensor([0.0, 0.3, 0.5]))
    if identity.stubble > 0:  # beard shadow on the jaw, chin and upper lip
        jaw = smoothstep(0.2, 0.45, y) * smoothstep(0.1, -0.3, z) * smoothstep(1.25, 1.0, y)
        dots = (noise(points + 11.0, 180.0) > 0.2).to(points.dtype)
        color = _blend(color, torch.tensor(identity.hair_color) * 0.6, identity.stubble * jaw * (0.25 + 0.35 * dots))
    return color.clamp(0, 1)


def hair_albedo(points: torch.Tensor, identity, noise: ValueNoise) -> torch.Tensor:
    """[P, 3] hair colour: the identity's hair colour with strand-like streaks (noise stretched along y)."""
    base = torch.tensor(identity.hair_color, dtype=points.dtype)
    strands = noise(points, (90.0, 6.0, 90.0)) * 0.6 + noise(points + 2.0, (25.0, 3.0, 25.0)) * 0.4
    return (base * (0.85 + 0.3 * strands).unsqueeze(-1)).clamp(0, 1)


def eye_albedo(local: torch.Tensor, identity, noise: ValueNoise, radius: float) -> torch.Tensor:
    """[P, 3] eyeball colour from points [P, 3] relative to the eye centre (gaze -z): sclera, iris, pupil."""
    u = local / local.norm(dim=-1, keepdim=True)
    angle = torch.arccos((-u[:, 2]).clamp(-1, 1))  # angle from the gaze direction
    sclera = torch.tensor([0.93, 0.9, 0.86], dtype=local.dtype) * (1 - 0.15 * smoothstep(0.6, 1.4, angle)).unsqueeze(-1)
    iris = torch.tensor(identity.iris_color, dtype=local.dtype)
    streak = noise(local * 40.0 / radius, 1.0)  # radial-ish fibres
    iris_col = iris * (0.8 + 0.35 * streak + 0.3 * smoothstep(0.45, 0.2, angle)).unsqueeze(-1)
    color = sclera.clone()
    in_iris = smoothstep(0.5, 0.46, angle)
    color = color + (iris_col - color) * in_iris.unsqueeze(-1)
    limbus = smoothstep(0.38, 0.47, angle) * in_iris
    color = color * (1 - 0.5 * limbus).unsqueeze(-1)
    pupil = smoothstep(0.2, 0.17, angle)
    return _blend(color, (0.02, 0.02, 0.02), pupil).clamp(0, 1)


def project_photo(
    points: torch.Tensor,
    normals: torch.Tensor,
    image: str | Path | np.ndarray,
    box: tuple[float, float, float, float] = (-0.8, 0.8, -1.0, 1.05),
) -> tuple[torch.Tensor, torch.Tensor]:
    """A face photo projected orthographically along z onto the front of the head.

    The image is centre-cropped to the aspect of ``box`` = (x0, x1, y0, y1) (head units) and
    stretched over it. Returns (colours [P, 3] in [0, 1], weight [P] in [0, 1]: 1 on surfaces
    facing the camera, fading to 0 towards the sides, 0 outside the box).
    """
    if isinstance(image, (str, Path)):
        from PIL import Image

        image = np.asarray(Image.open(image).convert("RGB"))
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] < 3:
        raise ValueError(f"texture must be an H x W x 3 image, got shape {img.shape}")
    img = img[..., :3].astype(np.float32)
    if img.max() > 1.5:  # uint8-like
        img = img / 255.0
    h, w = img.shape[:2]
    x0, x1, y0, y1 = box
    aspect = (x1 - x0) / (y1 - y0)
    if w / h > aspect:  # crop the width
        cw = int(round(h * aspect))
        img = img[:, (w - cw) // 2 : (w - cw) // 2 + cw]
    else:
        ch = int(round(w / aspect))
        img = img[(h - ch) // 2 : (h - ch) // 2 + ch]
    tex = torch.from_numpy(np.ascontiguousarray(img)).to(points.dtype)
    h, w = tex.shape[:2]
    u = ((points[:, 0] - x0) / (x1 - x0) * w - 0.5).clamp(0, w - 1)
    v = ((points[:, 1] - y0) / (y1 - y0) * h - 0.5).clamp(0, h - 1)
    # bilinear lookup
    u0, v0 = u.floor().long().clamp(max=w - 2), v.floor().long().clamp(max=h - 2)
    fu, fv = (u - u0).unsqueeze(-1), (v - v0).unsqueeze(-1)
    color = (tex[v0, u0] * (1 - fu) + tex[v0, u0 + 1] * fu) * (1 - fv) + (
        tex[v0 + 1, u0] * (1 - fu) + tex[v0 + 1, u0 + 1] * fu
    ) * fv
    inside = ((points[:, 0] > x0) & (points[:, 0] < x1) & (points[:, 1] > y0) & (points[:, 1] < y1)).to(points.dtype)
    weight = smoothstep(0.25, 0.6, -normals[:, 2]) * inside
    return color.clamp(0, 1), weight
