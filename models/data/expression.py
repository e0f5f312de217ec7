"""Expressions (FACS-like action units), head pose and shading of the procedural head.

Each action unit (AU) is a smooth 3D displacement field over the neutral canonical frame
(see :mod:`.head`): Wendland C2 bumps anchored at the head's landmarks times a direction
(so neighbouring Gaussians move together), plus two rigid motions: the eyelid shells
rotate about the eye centres (blink, lid raise) and the jaw rotates about a hinge behind
the cheeks (jaw drop), blended smoothly into the skin except across the lips, where the
head's ``lower`` flag (attached to the jaw) decides which side a point is on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from pyflowops.gaussians import Gaussians
from pyflowops.reference.splat import quat_to_rotmat

from .head import PARTS, REGIONS, Head, rotmat_to_quat
from .texture import smoothstep, wendland

__all__ = [
    "ACTION_UNITS",
    "EMOTIONS",
    "NECK_PIVOT",
    "pose_points",
    "sample_expression",
    "expression_displacement",
    "deform",
    "deform_with_normals",
    "HeadPose",
    "posed",
    "shade",
]

ACTION_UNITS: tuple[str, ...] = (
    "inner_brow_raise",  # AU1
    "outer_brow_raise",  # AU2
    "brow_lower",  # AU4
    "upper_lid_raise",  # AU5
    "blink",  # AU43/45
    "cheek_raise",  # AU6 (with the lower lid)
    "nose_wrinkle",  # AU9 (with a little AU10)
    "lip_corner_pull",  # AU12
    "lip_corner_depress",  # AU15
    "lip_stretch",  # AU20
    "pucker",  # AU18
    "jaw_drop",  # AU26/27
    "smirk",  # AU12+14 on the x > 0 side only (contempt is one-sided)
)

EMOTIONS: dict[str, dict[str, float]] = {  # prototypes after Ekman & Friesen's EMFACS tables
    "neutral": {},
    "happy": {"cheek_raise": 0.8, "lip_corner_pull": 1.0, "jaw_drop": 0.2},
    "sad": {"inner_brow_raise": 0.9, "brow_lower": 0.4, "lip_corner_depress": 0.8, "blink": 0.15},
    "surprise": {"inner_brow_raise": 1.0, "outer_brow_raise": 1.0, "upper_lid_raise": 0.8, "jaw_drop": 0.8},
    "fear": {
        "inner_brow_raise": 0.9,
        "outer_brow_raise": 0.6,
        "brow_lower": 0.5,
        "upper_lid_raise": 1.0,
        "lip_stretch": 0.9,
        "jaw_drop": 0.35,
    },
    "disgust": {"nose_wrinkle": 1.0, "brow_lower": 0.4, "cheek_raise": 0.3, "lip_corner_depress": 0.4},
    "anger": {"brow_lower": 1.0, "upper_lid_raise": 0.5, "pucker": 0.35, "blink": 0.15},
    "contempt": {"smirk": 0.9, "brow_lower": 0.15},
}

BLINK_DEG = 40.0  # the upper lid's rotation that closes the eye
JAW_DEG = 16.0  # full jaw drop
_FACE = (REGIONS.index("face"), REGIONS.index("neck"))


def sample_expression(emotion: str, generator: torch.Generator) -> torch.Tensor:
    """[A] AU intensities for ``emotion``: preset * U(0.5, 1) + U(-0.05, 0.05) jitter, clamped to [0, 1].

    Only the preset's AUs are jittered, so ``neutral`` stays exactly neutral (a head-motion-only
    sequence, whose facial flow equals its head flow).

    Raises:
        ValueError: unknown emotion (the message names the choices).
    """
    if emotion not in EMOTIONS:
        raise ValueError(f"unknown emotion {emotion!r}; choose one of {tuple(EMOTIONS)}")
    preset = torch.tensor([EMOTIONS[emotion].get(a, 0.0) for a in ACTION_UNITS])
    intensity = 0.5 + 0.5 * torch.rand((), generator=generator)
    jitter = (torch.rand(len(ACTION_UNITS), generator=generator) * 2 - 1) * 0.05 * (preset > 0)
    return (preset * intensity + jitter).clamp(0, 1)


def _rot_x(angle: torch.Tensor | float) -> torch.Tensor:
    """[3, 3] rotation about +x by ``angle``: positive turns the front (-z) downward (+y)."""
    c, s = math.cos(float(angle)), math.sin(float(angle))
    return torch.tensor([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def _bump(points: torch.Tensor, centre: torch.Tensor, radii: tuple[float, float, float]) -> torch.Tensor:
    """[P] Wendland C2 bump of the ellipsoidal distance to ``centre`` (compact support ``radii``)."""
    d = (points - centre) / torch.tensor(radii, dtype=points.dtype)
    return wendland(torch.sqrt((d * d).sum(-1) + 1e-12))


def _flags(head: Head, points: torch.Tensor, labels, lower_mask, regions, index):
    """(regions [P], lower [P]) of each point, from the Gaussian ``index``, explicit flags, or the head itself."""
    p = points.shape[0]
    if index is not None:
        return head.regions[index], head.lower[index]
    if regions is None and labels is None and lower_mask is None and p == len(head):
        return head.regions, head.lower
    if regions is None:  # from labels only: eyes never move, mouth interior as fixed, the rest as skin
        regions = torch.full((p,), REGIONS.index("face"), dtype=torch.long)
        if labels is not None:
            regions = torch.where(labels == PARTS.index("eye"), REGIONS.index("eyeball"), regions)
            regions = torch.where(labels == PARTS.index("mouth"), REGIONS.index("mouth"), regions)
    if lower_mask is None:
        lower_mask = points[:, 1] > head.anchors["mouth_y"]
    return regions, lower_mask


def expression_displacement(
    head: Head,
    points: torch.Tensor,
    weights: torch.Tensor,
    labels: torch.Tensor | None = None,
    lower_mask: torch.Tensor | None = None,
    regions: torch.Tensor | None = None,
    index: torch.Tensor | None = None,
) -> torch.Tensor:
    """Displacement [P, 3] of neutral canonical points [P, 3] under AU ``weights`` [A] (``ACTION_UNITS`` order).

    Which rule moves a point depends on its motion group (``REGIONS``) and ``lower`` flag, taken from
    (first that applies): ``index`` [P] (the Gaussian each point lies on, as :func:`~.head.surface_points`
    returns); the explicit ``regions`` / ``labels`` [P] / ``lower_mask`` [P] bool; the head's own flags
    when P == len(head) (points = the head's means). Rules: skin and neck follow the smooth AU fields and
    the jaw; eyeballs never move; eyelid shells rotate about their eye centre; upper teeth and the cavity
    stay; lower teeth and tongue turn rigidly with the jaw.
    """
    weights = torch.as_tensor(weights, dtype=points.dtype)
    if weights.shape != (len(ACTION_UNITS),):
        raise ValueError(f"weights must have shape [{len(ACTION_UNITS)}] (ACTION_UNITS), got {tuple(weights.shape)}")
    reg, lower = _flags(head, points, labels, lower_mask, regions, index)
    w = dict(zip(ACTION_UNITS, weights.tolist()))
    disp = torch.zeros_like(points)
    L = {k: v.to(points.dtype) for k, v in head.landmarks.items()}
    face = (reg == _FACE[0]) | (reg == _FACE[1])
    if face.any():
        disp[face] = _face_fields(head, points[face], lower[face], w, L)
    for name, sign in (("l", -1), ("r", 1)):
        centre = head.anchors[f"eyeball_center_{name}"].to(points.dtype)
        side = points[:, 0] * sign > 0
        for region, deg in (
            ("lid_upper", BLINK_DEG * w["blink"] - 14 * w["upper_lid_raise"] + 5 * w["brow_lower"]),
            ("lid_lower", -6 * w["blink"] - 9 * w["cheek_raise"]),
        ):
            sel = side & (reg == REGIONS.index(region))
            if deg != 0 and sel.any():
                rel = points[sel] - centre
                disp[sel] = rel @ _rot_x(math.radians(deg)).T.to(points.dtype) - rel
    jaw = reg == REGIONS.index("mouth_jaw")
    if w["jaw_drop"] != 0 and jaw.any():
        disp[jaw] = _jaw_motion(head, points[jaw], w["jaw_drop"])
    return disp


def _jaw_motion(head: Head, points: torch.Tensor, weight: float) -> torch.Tensor:
    """[P, 3] full rigid jaw displacement: rotation about the x-parallel hinge axis."""
    hinge = head.anchors["jaw_hinge"].to(points.dtype)
    rel = points - hinge
    return rel @ _rot_x(math.radians(JAW_DEG * weight)).T.to(points.dtype) - rel


def _face_fields(head: Head, p: torch.Tensor, lower: torch.Tensor, w: dict, L: dict) -> torch.Tensor:
    """[P, 3] the smooth AU fields on skin/neck points (C1 in p for a fixed ``lower`` flag)."""
    d = torch.zeros_like(p)

    def add(au, centre, radii, direction, mirror=True, extra=1.0):
        if w[au] == 0:
            return
        vec = torch.tensor(direction, dtype=p.dtype)
        centres = [(centre + "_l", -1), (centre + "_r", 1)] if mirror else [(centre, 1)]
        for name, sign in centres:
            v = vec * torch.tensor([sign, 1.0, 1.0], dtype=p.dtype)  # x direction mirrors (outward = sign)
            d.add_((w[au] * extra * _bump(p, L[name], radii)).unsqueeze(-1) * v)

    add("inner_brow_raise", "brow_inner", (0.2, 0.22, 0.3), (0.0, -0.08, 0.0))
    add("outer_brow_raise", "brow_outer", (0.22, 0.22, 0.3), (0.0, -0.07, 0.0))
    add("brow_lower", "brow_inner", (0.22, 0.2, 0.3), (-0.035, 0.055, 0.0))  # down and toward the midline
    add("upper_lid_raise", "eye", (0.17, 0.12, 0.25), (0.0, -0.02, 0.0), extra=1.0)
    add("blink", "eye", (0.17, 0.12, 0.25), (0.0, 0.02, 0.0))
    add("cheek_raise", "cheek", (0.25, 0.25, 0.3), (0.0, -0.06, -0.015))
    if w["nose_wrinkle"]:
        up = w["nose_wrinkle"] * (
            _bump(p, L["nose_bridge"] + torch.tensor([0.0, 0.1, 0.0]), (0.15, 0.2, 0.3)) * 0.04
            + _bump(p, L["lip_upper"], (0.22, 0.1, 0.25)) * 0.03
        )
        d[:, 1] -= up
    add("lip_corner_pull", "mouth", (0.22, 0.2, 0.3), (0.07, -0.06, 0.03))
    add("lip_corner_depress", "mouth", (0.2, 0.22, 0.3), (0.015, 0.06, 0.0))
    add("lip_stretch", "mouth", (0.22, 0.18, 0.3), (0.08, 0.01, 0.02))
    if w["smirk"]:
        d.add_(
            (w["smirk"] * _bump(p, L["mouth_r"], (0.2, 0.18, 0.3))).unsqueeze(-1)
            * torch.tensor([0.05, -0.035, 0.03], dtype=p.dtype)
        )
    if w["pucker"]:
        b = w["pucker"] * _bump(p, L["mouth"], (0.3, 0.22, 0.3))
        centre = L["mouth"]
        d[:, 0] -= b * 0.35 * (p[:, 0] - centre[0])  # toward the midline, more at the corners
        d[:, 2] -= b * 0.06  # forward
    if w["jaw_drop"]:
        ym = float(head.anchors["mouth_y"])
        mw = head.identity.mouth_width if head.identity is not None else 0.2
        hz = float(head.anchors["jaw_hinge"][2])
        chin_y = float(L["jaw"][1])
        x, y, z = p.unbind(-1)
        s = smoothstep(ym - 0.05, ym + 0.2, y) * smoothstep(hz + 0.05, hz - 0.2, z)  # jaw skin, in front of the hinge
        s = s * smoothstep(chin_y + 0.45, chin_y + 0.05, y)  # the neck stretches, its base stays
        m = wendland(torch.sqrt((x / (mw + 0.12)) ** 2 + ((y - ym) / 0.15) ** 2))  # the mouth slit: the lips part
        jw = torch.where(lower, s + (1 - s) * m, s * (1 - m))
        d.add_(jw.unsqueeze(-1) * _jaw_motion(head, p, w["jaw_drop"]))
    return d


def deform_with_normals(head: Head, weights: torch.Tensor, eps: float = 1e-3) -> tuple[Gaussians, torch.Tensor]:
    """:func:`deform` and the deformed unit normals [N, 3]."""
    g = head.gaussians
    weights = torch.as_tensor(weights, dtype=g.dtype)
    if not bool((weights != 0).any()):
        return Gaussians(
            g.means.clone(), g.quats.clone(), g.scales.clone(), g.opacities.clone(), g.colors.clone()
        ), head.normals.clone()
    p = g.means
    disp = expression_displacement(head, p, weights, regions=head.regions, lower_mask=head.lower)
    rot = quat_to_rotmat(g.quats)
    # tangent axes mapped through the displacement field's differential (finite differences along each axis)
    t = [
        rot[:, :, j]
        + (
            expression_displacement(head, p + eps * rot[:, :, j], weights, regions=head.regions, lower_mask=head.lower)
            - disp
        )
        / eps
        for j in (0, 1)
    ]
    e1 = F.normalize(t[0], dim=-1)
    n = F.normalize(torch.linalg.cross(t[0], t[1]), dim=-1)
    e2 = torch.linalg.cross(n, e1)
    scales = torch.stack(
        [g.scales[:, 0] * t[0].norm(dim=-1), g.scales[:, 1] * (t[1] * e2).sum(-1).abs(), g.scales[:, 2]], -1
    )
    quats = rotmat_to_quat(torch.stack([e1, e2, n], -1))
    return Gaussians(p + disp, quats, scales, g.opacities.clone(), g.colors.clone()), n


def deform(head: Head, weights: torch.Tensor) -> Gaussians:
    """The neutral Gaussians with expression ``weights`` [A] applied.

    Means move by :func:`expression_displacement`; each Gaussian's two tangent axes are mapped
    through the field's differential (finite differences), so quats follow the local rotation and
    the tangent scales the local stretch (shear dropped: axis 2 is re-orthogonalised); the thin
    scale is unchanged. Axis order is kept, as order-1 :func:`~pyflowops.flow_render.render_flow` needs.
    """
    return deform_with_normals(head, weights)[0]


@dataclass(frozen=True)
class HeadPose:
    """Rigid head pose: angles in radians, translation in head units (camera frame).

    Sign conventions (camera at the origin looking +z, y down): yaw > 0 turns the face toward
    image right (+x; it maps +x toward +z); pitch > 0 nods the face down (+y); roll > 0 tilts
    +x toward +y (clockwise in the image). ``rotation() = R_roll @ R_pitch @ R_yaw``.
    """

    yaw: float = 0.0
    pitch: float = 0.0
    roll: float = 0.0
    translation: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def rotation(self) -> torch.Tensor:
        """[3, 3] float32 rotation, head frame -> camera frame."""
        cy, sy = math.cos(self.yaw), math.sin(self.yaw)
        cp, sp = math.cos(self.pitch), math.sin(self.pitch)
        cr, sr = math.cos(self.roll), math.sin(self.roll)
        r_yaw = torch.tensor([[cy, 0.0, -sy], [0.0, 1.0, 0.0], [sy, 0.0, cy]])
        r_pitch = torch.tensor([[1.0, 0.0, 0.0], [0.0, cp, -sp], [0.0, sp, cp]])
        r_roll = torch.tensor([[cr, -sr, 0.0], [sr, cr, 0.0], [0.0, 0.0, 1.0]])
        return r_roll @ r_pitch @ r_yaw

    @staticmethod
    def interpolate(a: HeadPose, b: HeadPose, s: float) -> HeadPose:
        """Linear interpolation of angles and translation (s = 0 -> a, 1 -> b)."""
        lerp = lambda x, y: float(x + (y - x) * s)  # noqa: E731
        return HeadPose(
            lerp(a.yaw, b.yaw),
            lerp(a.pitch, b.pitch),
            lerp(a.roll, b.roll),
            tuple(lerp(x, y) for x, y in zip(a.translation, b.translation)),
        )

    @classmethod
    def sample(cls, generator: torch.Generator, max_angle_deg: float = 20.0, max_translation: float = 0.1) -> HeadPose:
        """Uniform yaw and pitch in +-max_angle_deg, roll in +-max_angle_deg / 2, translation in +-max_translation."""
        r = (torch.rand(6, generator=generator) * 2 - 1).tolist()
        a = math.radians(max_angle_deg)
        return cls(r[0] * a, r[1] * a, r[2] * a / 2, tuple(v * max_translation for v in r[3:]))


def _quat_mul(q: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Hamilton product q * p, q [4] or [N, 4], p [N, 4] (w, x, y, z)."""
    qw, qv = q[..., :1], q[..., 1:]
    pw, pv = p[..., :1], p[..., 1:]
    qv = qv.expand_as(pv)
    return torch.cat([qw * pw - (qv * pv).sum(-1, keepdim=True), qw * pv + pw * qv + torch.linalg.cross(qv, pv)], -1)


# Heads turn about the top of the spine (below and behind the head's centre), not about the centre:
# a nod moves the forehead more than the chin, and the neck hardly moves.
NECK_PIVOT = (0.0, 0.55, 0.1)


def pose_points(points: torch.Tensor, pose: HeadPose, distance: float) -> torch.Tensor:
    """Head-frame points [P, 3] -> camera frame: ``R (p - c) + c + translation + (0, 0, distance)``, c = NECK_PIVOT."""
    dtype = points.dtype
    rot = pose.rotation().to(dtype)
    pivot = torch.tensor(NECK_PIVOT, dtype=dtype)
    shift = pivot + torch.tensor(pose.translation, dtype=dtype) + torch.tensor([0.0, 0.0, distance], dtype=dtype)
    return (points - pivot) @ rot.T + shift


def posed(
    gaussians: Gaussians, normals: torch.Tensor, pose: HeadPose, distance: float
) -> tuple[Gaussians, torch.Tensor]:
    """Rigid motion into the camera frame (:func:`pose_points`: about ``NECK_PIVOT``).

    Quats are pre-multiplied by R's quaternion (so each covariance becomes R Sigma R^T), scales and
    opacities/colours are unchanged, normals [N, 3] are rotated. Returns (posed Gaussians, normals [N, 3]).
    """
    rot = pose.rotation().to(gaussians.dtype)
    q = rotmat_to_quat(rot.unsqueeze(0))[0]
    g = gaussians
    return (
        Gaussians(pose_points(g.means, pose, distance), _quat_mul(q, g.quats), g.scales, g.opacities, g.colors),
        normals @ rot.T,
    )


def shade(albedo: torch.Tensor, normals: torch.Tensor, light_dir: torch.Tensor, ambient: float = 0.35) -> torch.Tensor:
    """[N, 3] Lambert colours ``albedo * (ambient + (1 - ambient) max(0, n . l))``.

    Args:
        albedo: [N, 3]. normals: [N, 3] unit camera-frame normals (baked per frame, so the
        brightness changes as the head turns). light_dir: [3] unit, from the surface toward the light.
    """
    light = F.normalize(torch.as_tensor(light_dir, dtype=normals.dtype), dim=0)
    lambert = (normals @ light).clamp(min=0)
    return albedo * (ambient + (1 - ambient) * lambert).unsqueeze(-1)
