"""A procedural head of flat 3D Gaussians: the source of synthetic facial optical flow.

Canonical head frame: origin at the head centre, x right (image right), y DOWN, z AWAY
from the camera (the face looks toward -z); the head is about 1.6 wide (x in about
[-0.8, 0.8]), ~2 units with hair volume, from the crown (y ~ -1.1) to the chin (y ~ 1.0),
with a neck below. Left/right suffixes ``_l`` / ``_r`` mean x < 0 / x > 0 (image left /
right of a frontal view, i.e. the subject's right / left).

The skin is a star-shaped surface (an ellipsoid with a tapered jaw plus smooth, compactly
supported bumps and dents: nose, brow ridge, eye sockets, cheekbones, lips, chin, hair
volume) sampled on a Fibonacci sphere and pushed out radially; separate surfaces model
the eyeballs, the eyelids (spherical shells just outside the eyeballs, so a blink is a
rotation about the eye centre), the neck and the mouth interior (a dark cavity wall,
teeth and tongue behind the closed lips).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from pyflowops.gaussians import Gaussians
from pyflowops.reference.splat import quat_to_rotmat

from .head_geometry import (
    OPACITY,
    PARTS,
    REGIONS,
    SPACING_PX,
    _eyes,
    _landmarks,
    _Layout,
    _mouth,
    _neck,
    _part,
    _skin,
    rotmat_to_quat,
)
from .texture import ValueNoise, project_photo

__all__ = [
    "PARTS",
    "REGIONS",
    "HeadIdentity",
    "Head",
    "build_head",
    "surface_points",
    "rotmat_to_quat",
    "gaussian_spacing",
]

def _uniform(g: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=g))


def _mix(a, b, t: float) -> tuple[float, float, float]:
    return tuple(float(x + (y - x) * t) for x, y in zip(a, b))


@dataclass(frozen=True)
class HeadIdentity:
    """Shape parameters and colours of one person (plain floats and tuples: JSON-friendly).

    Lengths are in head units (see the module docstring); ``*_color``/``skin_tone`` are RGB in [0, 1].
    """

    head_width: float = 0.78  # half width of the skull (x)
    head_height: float = 1.0  # vertical scale (y)
    head_depth: float = 0.95  # half depth (z)
    jaw_width: float = 0.8  # lower-face half width / head_width
    chin_length: float = 1.0  # scales how far the chin comes down
    nose_length: float = 0.26  # how far the nose tip protrudes
    nose_width: float = 0.085  # x offset of the nostril wings
    brow_ridge: float = 0.035  # brow ridge protrusion
    eye_spacing: float = 0.32  # |x| of the eye centres
    eye_size: float = 1.0  # scales eyeball and eye opening
    lip_fullness: float = 1.0  # scales lip protrusion / height
    mouth_width: float = 0.2  # half width of the mouth
    skin_tone: tuple[float, float, float] = (0.82, 0.62, 0.5)
    lip_color: tuple[float, float, float] = (0.72, 0.36, 0.34)
    iris_color: tuple[float, float, float] = (0.32, 0.2, 0.1)
    hair_color: tuple[float, float, float] = (0.2, 0.13, 0.08)
    hair_line: float = -0.62  # y of the frontal hairline (more negative = higher forehead)
    hair_volume: float = 0.05  # hair thickness over the skull
    freckles: int = 0
    moles: int = 2
    stubble: float = 0.0  # 0..1 beard shadow

    @classmethod
    def neutral(cls) -> HeadIdentity:
        """A fixed average identity (tests, demos)."""
        return cls()

    @classmethod
    def sample(cls, generator: torch.Generator) -> HeadIdentity:
        """A random plausible identity; deterministic given ``generator`` (which it advances)."""
        g = generator
        u = lambda lo, hi: _uniform(g, lo, hi)  # noqa: E731
        # skin: from light to dark along a realistic tone line, with a little hue jitter
        t = u(0.0, 1.0) ** 1.2
        tone = _mix((0.95, 0.78, 0.68), (0.36, 0.23, 0.16), t)
        tone = tuple(min(1.0, max(0.0, c * u(0.95, 1.05))) for c in tone)
        lip = tuple(
            min(1.0, c * f) for c, f in zip(tone, (0.92 * u(0.9, 1.05), 0.6 * u(0.85, 1.1), 0.66 * u(0.85, 1.1)))
        )
        hairs = [
            (0.05, 0.04, 0.035),
            (0.22, 0.13, 0.07),
            (0.4, 0.26, 0.14),
            (0.72, 0.57, 0.36),
            (0.5, 0.2, 0.08),
            (0.62, 0.61, 0.6),
        ]
        hair = hairs[int(torch.multinomial(torch.tensor([4.0, 4.0, 2.0, 1.5, 0.7, 1.0]), 1, generator=g))]
        hair = tuple(min(1.0, c * u(0.85, 1.15)) for c in hair)
        irises = [(0.3, 0.17, 0.07), (0.14, 0.08, 0.04), (0.3, 0.45, 0.62), (0.3, 0.42, 0.25), (0.42, 0.33, 0.15)]
        iris = irises[int(torch.multinomial(torch.tensor([4.0, 3.0, 2.0, 1.0, 1.5]), 1, generator=g))]
        iris = tuple(min(1.0, c * u(0.85, 1.15)) for c in iris)
        return cls(
            head_width=u(0.72, 0.84),
            head_height=u(0.93, 1.07),
            head_depth=u(0.88, 1.0),
            jaw_width=u(0.7, 0.9),
            chin_length=u(0.93, 1.07),
            nose_length=u(0.2, 0.32),
            nose_width=u(0.07, 0.1),
            brow_ridge=u(0.015, 0.05),
            eye_spacing=u(0.29, 0.35),
            eye_size=u(0.9, 1.08),
            lip_fullness=u(0.7, 1.3),
            mouth_width=u(0.17, 0.23),
            skin_tone=tone,
            lip_color=lip,
            iris_color=iris,
            hair_color=hair,
            hair_line=u(-0.8, -0.5),
            hair_volume=u(0.02, 0.08),
            freckles=int(torch.randint(0, 40, (), generator=g)) * int(u(0, 1) < 0.25),
            moles=int(torch.randint(0, 5, (), generator=g)),
            stubble=u(0.0, 0.8) * float(u(0, 1) < 0.3),
        )


# ---------------------------------------------------------------------------------------------- layout


def gaussian_spacing(resolution: int, face_fraction: float = 0.6) -> float:
    """Approximate spacing (head units) between Gaussians for a render ``resolution`` (the head, ~2 units
    with hair, spans ``face_fraction`` of the image)."""
    return SPACING_PX * 2.0 / (face_fraction * resolution)


# ---------------------------------------------------------------------------------------------- the head


@dataclass
class Head:
    """A neutral head of flat Gaussians in the canonical frame (see the module docstring).

    Attributes:
        gaussians: N Gaussians (means [N, 3], quats [N, 4], scales [N, 3], opacities [N], colors [N, 3]).
        normals: [N, 3] unit outward normals (each Gaussian's thin axis).
        albedo: [N, 3] unshaded colour in [0, 1] (== gaussians.colors at build time).
        labels: [N] int64 ids into ``PARTS`` (never 0 = background).
        landmarks: name -> [3] point on the neutral surface (``_l`` = x < 0).
        regions: [N] int64 ids into ``REGIONS``: the expression model's motion group.
        lower: [N] bool, attached to the jaw (the lower lip and below: the jaw moves these, not the upper lip).
        anchors: name -> tensor, non-surface constants of the expression model (eye centres [3], lid and eye
            radii [], the jaw hinge [3], mouth line y []).
        identity: the identity it was built from.
    """

    gaussians: Gaussians
    normals: torch.Tensor
    albedo: torch.Tensor
    labels: torch.Tensor
    landmarks: dict[str, torch.Tensor]
    regions: torch.Tensor = None
    lower: torch.Tensor = None
    anchors: dict[str, torch.Tensor] = field(default_factory=dict)
    identity: HeadIdentity | None = None

    def __len__(self) -> int:
        return len(self.gaussians)


def build_head(
    identity: HeadIdentity,
    resolution: int = 512,
    texture: str | np.ndarray | None = None,
    generator: torch.Generator | None = None,
    face_fraction: float = 0.6,
) -> Head:
    """Build the neutral head of ``identity`` for rendering at ``resolution`` pixels.

    Args:
        identity: shape and colours.
        resolution: image size the head is meant for; with the head (~2 units) spanning ``face_fraction``
            of it, neighbouring Gaussians are ~1.4 px apart (N grows as resolution^2: about 12k at 128,
            48k at 256, 190k at 512, 760k at 1024).
        texture: None = procedural skin; an H x W x 3 array (uint8 or [0, 1]) or an image path = a face
            photo projected orthographically along z onto the front of the head.
        generator: the texture noise stream (None: a fixed seed); the result is deterministic given it.
        face_fraction: fraction of the image the head spans.

    Returns:
        :class:`Head` (float32, CPU).
    """
    if resolution < 16:
        raise ValueError(f"build_head: resolution must be >= 16, got {resolution}")
    g = torch.Generator().manual_seed(0) if generator is None else generator
    lay = _Layout.of(identity)
    h = gaussian_spacing(resolution, face_fraction)
    noise = ValueNoise(g)
    with torch.no_grad():
        landmarks, anchors = _landmarks(lay)
        pieces = [_skin(lay, h, noise, g, resolution), _neck(lay, h, noise, g, resolution)]
        pieces += _eyes(lay, h, noise, anchors) + _mouth(lay, h, noise, anchors)
    means = torch.cat([p.means for p in pieces])
    axes = torch.cat([p.axes for p in pieces])
    scales = torch.cat([p.scales for p in pieces])
    albedo = torch.cat([p.albedo for p in pieces]).clamp(0, 1)
    labels = torch.cat([p.labels for p in pieces]).long()
    normals = axes[:, :, 2].contiguous()
    if texture is not None:
        photo, weight = project_photo(means, normals, texture if not isinstance(texture, Path) else str(texture))
        weight = weight * (labels != _part("mouth")).float() * (labels != _part("eye")).float()
        albedo = albedo + (photo - albedo) * weight.unsqueeze(-1)
    gaussians = Gaussians(
        means.contiguous(),
        rotmat_to_quat(axes),
        scales.contiguous(),
        torch.full((means.shape[0],), OPACITY),
        albedo.clone(),
    )
    return Head(
        gaussians,
        normals,
        albedo,
        labels,
        landmarks,
        torch.cat([p.regions for p in pieces]).long(),
        torch.cat([p.lower for p in pieces]),
        anchors,
        identity,
    )


def surface_points(head: Head, count: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` points ON the neutral surface: inside Gaussian footprints (1 std dev) on their tangent planes.

    Gaussians are picked with probability proportional to their footprint area.

    Returns:
        points [count, 3] (canonical frame), index [count] int64 of the Gaussian each lies on (pass it to
        :func:`~.expression.expression_displacement` so the points move with their Gaussian's part).
    """
    g = head.gaussians
    area = g.scales[:, 0] * g.scales[:, 1]
    index = torch.multinomial(area / area.sum(), count, replacement=True, generator=generator)
    rot = quat_to_rotmat(g.quats[index])
    rad = torch.sqrt(torch.rand(count, generator=generator))
    ang = torch.rand(count, generator=generator) * 2 * math.pi
    offset = rot[:, :, 0] * (g.scales[index, 0] * rad * torch.cos(ang)).unsqueeze(-1) + rot[:, :, 1] * (
        g.scales[index, 1] * rad * torch.sin(ang)
    ).unsqueeze(-1)
    return g.means[index] + offset, index
