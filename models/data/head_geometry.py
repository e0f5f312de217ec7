"""The surfaces of the procedural Gaussian head (what :func:`~.head.build_head` assembles).

Each builder returns ``_Piece``s: positions, tangent frames, flat scales, part labels,
motion regions, jaw flags and albedo. The skin is a star-shaped surface (an ellipsoid
with a tapered jaw plus smooth, compactly supported bumps and dents) sampled on a
Fibonacci sphere; eyeballs, eyelid shells, the neck and the mouth interior are separate
surfaces. Frame and units as in :mod:`.head`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from .texture import ValueNoise, eye_albedo, hair_albedo, skin_albedo, smoothstep, wendland

if TYPE_CHECKING:
    from .head import HeadIdentity


PARTS = ("background", "skin", "brow", "eye", "nose", "lips", "mouth", "hair", "neck")  # label id = index
# Motion groups used by the expression model (finer than PARTS): which displacement rule applies.
REGIONS = ("face", "eyeball", "lid_upper", "lid_lower", "mouth", "mouth_jaw", "neck")
SPACING_PX = 1.4  # distance between neighbouring Gaussians, in pixels at the target resolution
SIGMA = 0.7  # tangent std dev / spacing: opaque coverage at opacity ~0.98 without blurring detail
THIN = 0.05  # normal std dev / tangent std dev: flat, surfel-like Gaussians
OPACITY = 0.98


def _part(name: str) -> int:
    return PARTS.index(name)


def _region(name: str) -> int:
    return REGIONS.index(name)


# ---------------------------------------------------------------------------------------------- identity


@dataclass(frozen=True)
class _Layout:
    """Feature positions derived from an identity (canonical frame, head units)."""

    ident: HeadIdentity
    eye_y: float
    brow_y: float
    mouth_y: float
    chin_y: float

    @classmethod
    def of(cls, ident: HeadIdentity) -> _Layout:
        hh = ident.head_height
        return cls(ident, -0.07 * hh, -0.25 * hh, 0.55 * hh * ident.chin_length**0.5, 0.97 * hh * ident.chin_length)

    # eye opening sizes: the lid window (visible eyeball) and the larger hole in the skin (visible lids)
    @property
    def eye_radius(self) -> float:
        return 0.14 * self.ident.eye_size

    @property
    def lid_radius(self) -> float:
        return 0.155 * self.ident.eye_size

    def lens(self, dx: torch.Tensor, dy: torch.Tensor, skin: bool) -> torch.Tensor:
        """Bool: (dx, dy) from the eye centre inside the almond opening (skin hole or lid window)."""
        s = self.ident.eye_size
        aw, up, lo = (0.14, 0.09, 0.065) if skin else (0.125, 0.055, 0.045)
        edge = (1 - (dx / (aw * s)) ** 2).clamp(min=0)
        return (dy > -up * s * edge) & (dy < lo * s * edge)


def _bump(dx: torch.Tensor, dy: torch.Tensor, rx: float, ry: float) -> torch.Tensor:
    return wendland(torch.sqrt((dx / rx) ** 2 + (dy / ry) ** 2 + 1e-12))


def _radius(u: torch.Tensor, lay: _Layout) -> tuple[torch.Tensor, torch.Tensor]:
    """Skin radius along unit directions u [P, 3] -> (r [P], hair weight [P]); smooth in u (autograd-able)."""
    ident = lay.ident
    ux, uy, uz = u.unbind(-1)
    a = ident.head_width * (1 - (1 - ident.jaw_width) * smoothstep(0.0, 0.8, uy))  # the jaw narrows the lower face
    b = torch.where(uy < 0, 1.06 * ident.head_height, 0.97 * ident.head_height * ident.chin_length)
    c = torch.where(uz < 0, 0.92 * ident.head_depth, ident.head_depth)
    # superquadric exponent > 2 in the front-lower quadrant: a fuller jaw and a chin under the lips
    e = 2 + 1.2 * smoothstep(0.0, 0.45, uy) * smoothstep(0.0, 0.45, -uz)
    r0 = ((ux / a).abs() ** e + (uy / b).abs() ** e + (uz / c).abs() ** e + 1e-12) ** (-1 / e)
    x, y = ux * r0, uy * r0
    front = smoothstep(0.25, 0.6, -uz)  # facial features only on the front
    es, s = ident.eye_spacing, ident.eye_size
    f = ident.brow_ridge * wendland(x.abs() / 0.55) * wendland((y - lay.brow_y).abs() / 0.1)
    f = f - sum(0.075 * s * _bump(x - sx, y - lay.eye_y, 0.2 * s, 0.13 * s) for sx in (-es, es))  # eye sockets
    f = f + sum(0.04 * _bump(x - sx, y - 0.12, 0.2, 0.16) for sx in (-0.42, 0.42))  # cheekbones
    nl = ident.nose_length
    f = f + 0.5 * nl * wendland((y - 0.08).abs() / 0.28) * wendland(x.abs() / 0.075)  # nose ridge
    f = f + 0.62 * nl * _bump(x, y - 0.24, 0.085, 0.13)  # nose tip
    f = f + sum(0.22 * nl * _bump(x - sx, y - 0.28, 0.06, 0.06) for sx in (-ident.nose_width, ident.nose_width))
    f = f - sum(0.015 * _bump(x - sx, y - 0.33, 0.03, 0.025) for sx in (-0.045, 0.045))  # nostrils
    ym, mw, lf = lay.mouth_y, ident.mouth_width, ident.lip_fullness
    f = f + 0.05 * _bump(x, y - ym, 0.38, 0.3)  # the muzzle over the teeth
    f = f + 0.03 * lf * _bump(x, y - (ym - 0.03), mw * 1.05, 0.04 * lf**0.5)  # upper lip
    f = f + 0.035 * lf * _bump(x, y - (ym + 0.04), mw * 0.95, 0.05 * lf**0.5)  # lower lip
    f = f + 0.05 * _bump(x, y - (lay.chin_y - 0.13), 0.22, 0.15)  # chin
    hair = smoothstep(0.0, 0.08, _hairline(u, lay) - y)
    return r0 + front * f + ident.hair_volume * hair, hair


def _hairline(u: torch.Tensor, lay: _Layout) -> torch.Tensor:
    """y of the hairline along directions u [P, 3]: high on the forehead, low over the ears, the nape at the back."""
    f = -u[:, 2]
    hl = lay.ident.hair_line
    return hl + (0.0 - hl) * smoothstep(0.8, 0.3, f) + 0.55 * smoothstep(-0.05, -0.6, f)


def _surface_z(x: torch.Tensor, y: torch.Tensor, lay: _Layout) -> torch.Tensor:
    """Depth z (< 0) of the front skin surface at frontal positions (x, y) [P] (fixed-point iteration)."""
    z = -torch.sqrt((0.8 - x**2 - y**2).clamp(min=0.05))
    for _ in range(40):
        p = torch.stack([x, y, z], -1)
        r, _ = _radius(F.normalize(p, dim=-1), lay)
        z = -torch.sqrt((r**2 - x**2 - y**2).clamp(min=1e-6))
    return z


# ---------------------------------------------------------------------------------------------- Gaussians


def rotmat_to_quat(m: torch.Tensor) -> torch.Tensor:
    """Rotation matrices [N, 3, 3] -> unit quaternions [N, 4] (w, x, y, z) (Shepperd's method, stable)."""
    m00, m01, m02 = m[:, 0, 0], m[:, 0, 1], m[:, 0, 2]
    m10, m11, m12 = m[:, 1, 0], m[:, 1, 1], m[:, 1, 2]
    m20, m21, m22 = m[:, 2, 0], m[:, 2, 1], m[:, 2, 2]
    cands = torch.stack(
        [
            torch.stack([1 + m00 + m11 + m22, m21 - m12, m02 - m20, m10 - m01], -1),
            torch.stack([m21 - m12, 1 + m00 - m11 - m22, m01 + m10, m02 + m20], -1),
            torch.stack([m02 - m20, m01 + m10, 1 - m00 + m11 - m22, m12 + m21], -1),
            torch.stack([m10 - m01, m02 + m20, m12 + m21, 1 - m00 - m11 + m22], -1),
        ],
        1,
    )  # [N, 4 candidates, 4]: candidate k has component k = 4 q_k^2 / (4 q_k)...
    diag = torch.stack([cands[:, k, k] for k in range(4)], -1)
    best = diag.argmax(-1)  # the largest component: no division by a small number
    q = cands[torch.arange(m.shape[0]), best]
    return F.normalize(q, dim=-1)


@dataclass
class _Piece:
    """One surface's Gaussians before concatenation."""

    means: torch.Tensor
    axes: torch.Tensor  # [P, 3, 3] columns: tangent 1, tangent 2, outward normal
    scales: torch.Tensor  # [P, 3]
    labels: torch.Tensor
    regions: torch.Tensor
    albedo: torch.Tensor
    lower: torch.Tensor | None = None

    def select(self, keep: torch.Tensor) -> _Piece:
        return _Piece(
            *(
                None if v is None else v[keep]
                for v in (self.means, self.axes, self.scales, self.labels, self.regions, self.albedo, self.lower)
            )
        )


def _frame(normal: torch.Tensor, hint: torch.Tensor) -> torch.Tensor:
    """[P, 3, 3] right-handed frames (t1, t2, n): t1 = hint projected on the tangent plane."""
    n = F.normalize(normal, dim=-1)
    t1 = hint - (hint * n).sum(-1, keepdim=True) * n
    t1 = torch.where(
        t1.norm(dim=-1, keepdim=True) < 1e-6, torch.linalg.cross(n, torch.tensor([0.3, 1.0, 0.2]).expand_as(n)), t1
    )
    t1 = F.normalize(t1, dim=-1)
    return torch.stack([t1, torch.linalg.cross(n, t1), n], -1)


def _flat_scales(s1: torch.Tensor, s2: torch.Tensor) -> torch.Tensor:
    return torch.stack([s1, s2, THIN * 0.5 * (s1 + s2)], -1)


def _fibonacci(n: int) -> torch.Tensor:
    """[n, 3] near-uniform unit vectors; the spiral's poles on the y axis (crown / inside the neck)."""
    i = torch.arange(n, dtype=torch.float64) + 0.5
    v = 1 - 2 * i / n
    rho = torch.sqrt(1 - v**2)
    phi = i * math.pi * (3 - math.sqrt(5))
    return torch.stack([rho * torch.cos(phi), -v, rho * torch.sin(phi)], -1).float()


def _grid(w: float, h: float, step: float) -> tuple[torch.Tensor, torch.Tensor]:
    """A staggered (hexagonal) grid of (s, t) in [0, w] x [0, h] with spacing ``step``: [P], [P]."""
    rows = max(2, math.ceil(h / (step * 0.866)) + 1)
    cols = max(2, math.ceil(w / step) + 1)
    t = torch.linspace(0, h, rows).repeat_interleave(cols)
    s = (torch.arange(cols).repeat(rows) + 0.5 * (torch.arange(rows).repeat_interleave(cols) % 2)) * (w / (cols - 0.5))
    return s, t


def _skin(lay: _Layout, h: float, noise: ValueNoise, g: torch.Generator, resolution: int) -> _Piece:
    """The star-shaped skin + hair surface (eye holes cut, the part inside the neck dropped)."""
    coarse = _fibonacci(20000)
    with torch.enable_grad():
        u = coarse.clone().requires_grad_(True)
        r, _ = _radius(F.normalize(u, dim=-1), lay)
        grad = torch.autograd.grad(r.sum(), u)[0]
    normal = F.normalize(u.detach() - grad / r.detach().unsqueeze(-1), dim=-1)
    area = float((r.detach() ** 2 / (normal * coarse).sum(-1)).mean()) * 4 * math.pi
    n = max(2000, int(area / h**2))
    u = _fibonacci(n)
    with torch.enable_grad():
        uu = u.clone().requires_grad_(True)
        r, hair = _radius(F.normalize(uu, dim=-1), lay)
        grad = torch.autograd.grad(r.sum(), uu)[0]  # tangential: r is evaluated at uu / |uu|
    r, hair = r.detach(), hair.detach()
    p = u * r.unsqueeze(-1)
    # Gaussian axes from the exact differential of p(u) = r(u) u: the gradient direction stretches by |r t1 + g u|.
    gnorm = grad.norm(dim=-1, keepdim=True)
    t1 = torch.where(
        gnorm > 1e-9,
        grad / gnorm.clamp(min=1e-12),
        F.normalize(torch.linalg.cross(u, torch.tensor([0.3, 1.0, 0.2]).expand_as(u)), dim=-1),
    )
    a1 = r.unsqueeze(-1) * t1 + gnorm * u
    h_sph = math.sqrt(4 * math.pi / n)
    normal = F.normalize(u - grad / r.unsqueeze(-1), dim=-1)
    axes = _frame(normal, a1)
    jitter = 0.92 + 0.16 * torch.rand(n, generator=g)  # break up the spiral's regularity a little
    scales = _flat_scales(SIGMA * h_sph * a1.norm(dim=-1) * jitter, SIGMA * h_sph * r * jitter)
    x, y, z = p.unbind(-1)
    labels = torch.full((n,), _part("skin"))
    # painted brows: an arc above each eye, thick at the inner end
    es = lay.ident.eye_spacing
    brow = torch.zeros(n)
    for side in (-1, 1):
        t = (x * side - (es - 0.17)) / 0.38  # 0 at the inner end, 1 at the outer end
        centre = lay.brow_y + 0.03 - 0.045 * torch.sin(math.pi * t.clamp(0, 1)) + 0.03 * t
        thick = 0.045 - 0.025 * t
        inside = (
            smoothstep(1.0, 0.7, (y - centre).abs() / thick.clamp(min=0.01))
            * smoothstep(-0.05, 0.05, t)
            * smoothstep(1.05, 0.95, t)
        )
        brow = torch.maximum(brow, inside * (z < 0).float())
    strokes = 0.55 + 0.45 * (noise(p, (120.0, 25.0, 120.0)) > -0.2).float()
    nose = ((x.abs() < 0.16) & (y > -0.15) & (y < 0.37) & (z < -0.6) & (lay.ident.nose_length > 0)).float()
    nose = nose * (_nose_height(x, y, lay) > 0.02).float()
    ym, mw = lay.mouth_y, lay.ident.mouth_width
    lip_lo = (y - ym).clamp(min=0) / (0.075 * lay.ident.lip_fullness**0.5)
    lip_up = (ym - y).clamp(min=0) / (0.06 * lay.ident.lip_fullness**0.5)
    lip_shape = (x / (mw * 0.98)) ** 2 + torch.where(y > ym, lip_lo, lip_up) ** 2
    lips = smoothstep(1.0, 0.85, lip_shape) * (z < 0).float()
    labels[nose > 0] = _part("nose")
    labels[brow > 0.5] = _part("brow")
    labels[lips > 0.5] = _part("lips")
    is_hair = hair > 0.5
    labels[is_hair] = _part("hair")
    spots = _spots(p[(z < -0.4) & (labels == _part("skin"))], lay.ident, g)
    albedo = skin_albedo(p, lay.ident, noise, g, resolution, spots)
    albedo = albedo + (
        torch.tensor(lay.ident.lip_color) * (1 + 0.06 * noise(p, 60.0)).unsqueeze(-1) - albedo
    ) * lips.unsqueeze(-1)
    nostril = sum(_bump(x - sx, y - 0.345, 0.025, 0.018) for sx in (-0.045, 0.045)) * (z < 0).float()
    albedo = albedo * (1 - 0.6 * nostril.clamp(max=1)).unsqueeze(-1)
    brow_col = torch.tensor(lay.ident.hair_color) * 0.8
    albedo = albedo + (brow_col - albedo) * (brow * strokes * 0.9).unsqueeze(-1)
    hair_w = smoothstep(0.3, 0.7, hair).unsqueeze(-1)
    albedo = albedo + (hair_albedo(p, lay.ident, noise) - albedo) * hair_w
    piece = _Piece(p, axes, scales, labels, torch.full((n,), _region("face")), albedo, y > ym)
    # drop the skin over the eye openings and inside the neck (hidden, wasted)
    keep = torch.ones(n, dtype=torch.bool)
    for side in (-1, 1):
        keep &= ~(lay.lens(x - side * es, y - lay.eye_y, skin=True) & (z < -0.3))
    keep &= ~(_in_neck(p) & (y > 0.35))
    return piece.select(keep)


def _nose_height(x: torch.Tensor, y: torch.Tensor, lay: _Layout) -> torch.Tensor:
    nl = lay.ident.nose_length
    return 0.5 * nl * wendland((y - 0.08).abs() / 0.28) * wendland(x.abs() / 0.075) + 0.62 * nl * _bump(
        x, y - 0.24, 0.085, 0.13
    )


NECK = (0.4, 0.42, 0.18, 2.1)  # x radius, z radius, z centre, bottom y


def _in_neck(p: torch.Tensor) -> torch.Tensor:
    rx, rz, zc, _ = NECK
    return (p[:, 0] / rx) ** 2 + ((p[:, 2] - zc) / rz) ** 2 < 0.97


def _spots(candidates: torch.Tensor, ident: HeadIdentity, g: torch.Generator) -> torch.Tensor:
    """[K, 5] freckles and moles (x, y, z, radius, darkness) on random front skin positions."""
    k = ident.freckles + ident.moles
    if k == 0 or candidates.shape[0] == 0:
        return torch.zeros(0, 5)
    idx = torch.randint(candidates.shape[0], (k,), generator=g)
    radius = torch.cat(
        [0.006 + 0.008 * torch.rand(ident.freckles, generator=g), 0.008 + 0.012 * torch.rand(ident.moles, generator=g)]
    )
    dark = torch.cat(
        [0.2 + 0.2 * torch.rand(ident.freckles, generator=g), 0.6 + 0.3 * torch.rand(ident.moles, generator=g)]
    )
    return torch.cat([candidates[idx], radius[:, None], dark[:, None]], 1)


def _neck(lay: _Layout, h: float, noise: ValueNoise, g: torch.Generator, resolution: int) -> _Piece:
    rx, rz, zc, bottom = NECK
    perim = math.pi * (3 * (rx + rz) - math.sqrt((3 * rx + rz) * (rx + 3 * rz)))  # Ramanujan
    top = 0.3
    s, t = _grid(perim, bottom - top, h)
    phi = s / perim * 2 * math.pi
    p = torch.stack([rx * torch.sin(phi), top + t, zc - rz * torch.cos(phi)], -1)
    normal = torch.stack([torch.sin(phi) / rx, torch.zeros_like(phi), -torch.cos(phi) / rz], -1)
    r, _ = _radius(F.normalize(p, dim=-1), lay)
    keep = p.norm(dim=-1) > r + 1e-3  # the part inside the head is hidden
    p, normal = p[keep], normal[keep]
    m = p.shape[0]
    axes = _frame(normal, torch.tensor([0.0, 1.0, 0.0]).expand(m, 3))
    scales = _flat_scales(torch.full((m,), SIGMA * h), torch.full((m,), SIGMA * h))
    albedo = skin_albedo(p, lay.ident, noise, g, resolution, torch.zeros(0, 5)) * 0.95
    return _Piece(
        p,
        axes,
        scales,
        torch.full((m,), _part("neck")),
        torch.full((m,), _region("neck")),
        albedo,
        torch.ones(m, dtype=torch.bool),
    )


def _sphere_cap(
    centre: torch.Tensor, radius: float, h: float, max_angle_deg: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Points [P, 3] and outward unit normals of a sphere's front cap (within max_angle of -z)."""
    n = max(200, int(4 * math.pi * radius**2 / h**2))
    u = _fibonacci(n)
    keep = -u[:, 2] > math.cos(math.radians(max_angle_deg))
    u = u[keep]
    return centre + radius * u, u


def _eyes(lay: _Layout, h: float, noise: ValueNoise, anchors: dict) -> list[_Piece]:
    pieces = []
    ident = lay.ident
    for side, name in ((-1, "l"), (1, "r")):
        c = anchors[f"eyeball_center_{name}"]
        p, n = _sphere_cap(c, lay.eye_radius, h * 0.8, 80)  # a bit denser: iris detail
        m = p.shape[0]
        axes = _frame(n, torch.tensor([0.0, 1.0, 0.0]).expand(m, 3))
        sc = SIGMA * h * 0.8
        pieces.append(
            _Piece(
                p,
                axes,
                _flat_scales(torch.full((m,), sc), torch.full((m,), sc)),
                torch.full((m,), _part("eye")),
                torch.full((m,), _region("eyeball")),
                eye_albedo(p - c, ident, noise, lay.eye_radius),
                torch.zeros(m, dtype=torch.bool),
            )
        )
        for upper in (True, False):
            radius = lay.lid_radius + (0.006 if upper else 0.0)  # the upper lid slides over the lower one
            p, n = _sphere_cap(c, radius, h, 85)
            dx, dy = p[:, 0] - c[0], p[:, 1] - c[1]
            window = lay.lens(dx, dy, skin=False)
            part = (dy < 0.02 * ident.eye_size) if upper else (dy >= 0)
            p, n, dx, dy = p[part & ~window], n[part & ~window], dx[part & ~window], dy[part & ~window]
            m = p.shape[0]
            axes = _frame(n, torch.tensor([1.0, 0.0, 0.0]).expand(m, 3))
            base = skin_albedo(p, ident, noise, torch.Generator(), 0, torch.zeros(0, 5)) * torch.tensor(
                [0.97, 0.9, 0.9]
            )
            # lash line along the lid margin (dark on the upper lid, pink on the lower)
            s = ident.eye_size
            aw = 0.125 * s
            edge = (1 - (dx / aw) ** 2).clamp(min=0)
            margin_y = -0.055 * s * edge if upper else 0.045 * s * edge
            dist = (dy - margin_y).abs()
            lash = smoothstep(0.02, 0.008, dist) * (dx.abs() < aw).float()
            col = torch.tensor([0.06, 0.05, 0.05]) if upper else torch.tensor([0.7, 0.45, 0.42])
            base = base + (col - base) * (lash * (0.9 if upper else 0.5)).unsqueeze(-1)
            region = _region("lid_upper" if upper else "lid_lower")
            pieces.append(
                _Piece(
                    p,
                    axes,
                    _flat_scales(torch.full((m,), SIGMA * h), torch.full((m,), SIGMA * h)),
                    torch.full((m,), _part("skin")),
                    torch.full((m,), region),
                    base.clamp(0, 1),
                    torch.zeros(m, dtype=torch.bool),
                )
            )
    return pieces


def _arc_patch(
    centre_z: float, radius: float, half_width: float, y0: float, y1: float, h: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A vertical cylinder band around the axis (0, *, centre_z): points [P, 3], normals toward -z, arc coord [P]."""
    phim = math.asin(min(0.98, half_width / radius))
    s, t = _grid(2 * radius * phim, y1 - y0, h)
    phi = s / radius - phim
    p = torch.stack([radius * torch.sin(phi), y0 + t, centre_z - radius * torch.cos(phi)], -1)
    n = torch.stack([torch.sin(phi), torch.zeros_like(phi), -torch.cos(phi)], -1)
    return p, n, s  # n faces the camera at the front of the band (shading only)


def _mouth(lay: _Layout, h: float, noise: ValueNoise, anchors: dict) -> list[_Piece]:
    """Cavity wall (dark red), upper teeth (fixed), lower teeth and tongue (on the jaw), behind the lips."""
    ym, mw = lay.mouth_y, lay.ident.mouth_width
    zl = float(anchors["lip_z"])
    pieces = []

    def piece(p, n, label, region, albedo, lower, hint=(0.0, 1.0, 0.0)):
        m = p.shape[0]
        axes = _frame(n, torch.tensor(hint).expand(m, 3))
        return _Piece(
            p,
            axes,
            _flat_scales(torch.full((m,), SIGMA * h), torch.full((m,), SIGMA * h)),
            torch.full((m,), _part(label)),
            torch.full((m,), _region(region)),
            albedo.clamp(0, 1),
            torch.full((m,), lower, dtype=torch.bool),
        )

    rw = 0.45
    # the cavity wall: a fixed upper part and a slightly deeper lower part that turns with the jaw
    # (overlapping far up inside the head, so no gap opens between them when the jaw drops)
    for jaw, y0, y1, dz in ((False, ym - 0.12, ym + 0.08, 0.2), (True, ym - 0.35, ym + 0.25, 0.215)):
        p, n, _ = _arc_patch(zl + dz + rw, rw, mw + 0.15, y0, y1, h)
        depth = smoothstep(0.0, 0.3, p[:, 2] - zl)
        wall = torch.tensor([0.42, 0.1, 0.1]) * (1 - 0.5 * depth + 0.1 * noise(p, 30.0)).unsqueeze(-1)
        pieces.append(piece(p, n, "mouth", "mouth_jaw" if jaw else "mouth", wall, jaw))
    rt = 0.3
    for upper in (True, False):
        radius = rt if upper else rt - 0.015
        y0, y1 = (ym - 0.08, ym + 0.004) if upper else (ym - 0.004, ym + 0.05)
        p, n, s = _arc_patch(zl + 0.07 + rt, radius, mw * 0.9, y0, y1, h)
        gap = smoothstep(0.25, 0.0, torch.cos(math.pi * s / 0.04).abs())  # dark lines between teeth
        shade = 1 - 0.35 * gap - 0.25 * smoothstep(0.5 * mw, 0.9 * mw, p[:, 0].abs())
        teeth = torch.tensor([0.93, 0.9, 0.8]) * shade.unsqueeze(-1)
        pieces.append(piece(p, n, "mouth", "mouth" if upper else "mouth_jaw", teeth, not upper))
    # tongue: a slope behind the lower teeth, facing up and forward
    s, t = _grid(0.28, 0.2, h)
    x, d = s - 0.14, t
    keep = (x / 0.14) ** 2 + ((d - 0.1) / 0.1) ** 2 < 1.0
    x, d = x[keep], d[keep]
    p = torch.stack([x, ym + 0.075 - 0.3 * d - 0.03 * wendland(x.abs() / 0.14), zl + 0.12 + d], -1)
    n = F.normalize(torch.tensor([0.0, -1.0, -0.3]).expand(p.shape[0], 3), dim=-1)
    tongue = torch.tensor([0.72, 0.32, 0.32]) * (0.9 + 0.1 * noise(p, 40.0)).unsqueeze(-1)
    pieces.append(piece(p, n, "mouth", "mouth_jaw", tongue, True, hint=(1.0, 0.0, 0.0)))
    return pieces


def _landmarks(lay: _Layout) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    ident = lay.ident
    es, ym, mw = ident.eye_spacing, lay.mouth_y, ident.mouth_width
    pts = {
        "brow_inner_l": (-(es - 0.15), lay.brow_y + 0.01),
        "brow_inner_r": (es - 0.15, lay.brow_y + 0.01),
        "brow_l": (-es, lay.brow_y - 0.02),
        "brow_r": (es, lay.brow_y - 0.02),
        "brow_outer_l": (-(es + 0.18), lay.brow_y + 0.02),
        "brow_outer_r": (es + 0.18, lay.brow_y + 0.02),
        "nose_bridge": (0.0, lay.eye_y),
        "nose_tip": (0.0, 0.24),
        "mouth_l": (-mw, ym),
        "mouth_r": (mw, ym),
        "lip_upper": (0.0, ym - 0.03),
        "lip_lower": (0.0, ym + 0.04),
        "mouth": (0.0, ym),
        "chin": (0.0, lay.chin_y - 0.13),
        "cheek_l": (-0.42, 0.12),
        "cheek_r": (0.42, 0.12),
        "jaw": (0.0, lay.chin_y - 0.04),
        "jaw_l": (-0.55, 0.6),
        "jaw_r": (0.55, 0.6),
        "forehead": (0.0, -0.55),
        "eye_socket_l": (-es, lay.eye_y),
        "eye_socket_r": (es, lay.eye_y),
    }
    x = torch.tensor([v[0] for v in pts.values()])
    y = torch.tensor([v[1] for v in pts.values()])
    z = _surface_z(x, y, lay)
    landmarks = {k: torch.stack([x[i], y[i], z[i]]) for i, k in enumerate(pts)}
    anchors = {}
    for name in ("l", "r"):
        sock = landmarks.pop(f"eye_socket_{name}")
        centre = sock + torch.tensor([0.0, 0.0, lay.lid_radius - 0.012])  # lids just in front of the skin level
        anchors[f"eyeball_center_{name}"] = centre
        landmarks[f"eye_{name}"] = centre - torch.tensor([0.0, 0.0, lay.eye_radius])  # the cornea's front point
    anchors["lid_radius"] = torch.tensor(lay.lid_radius)
    anchors["eye_radius"] = torch.tensor(lay.eye_radius)
    anchors["mouth_y"] = torch.tensor(ym)
    anchors["lip_z"] = landmarks["mouth"][2].clone()
    anchors["jaw_hinge"] = torch.tensor([0.0, 0.12, 0.3])  # in front of the ears, behind the cheeks
    return landmarks, anchors
