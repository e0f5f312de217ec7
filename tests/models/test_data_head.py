"""The procedural Gaussian head and its expression model (models/data/head.py, expression.py)."""

import math

import pytest
import torch

import pyflowops
from pyflowops.reference.splat import quat_to_rotmat
from pyflowops_models.data.expression import (
    ACTION_UNITS, EMOTIONS, NECK_PIVOT, HeadPose, deform, expression_displacement, posed, sample_expression, shade,
)
from pyflowops_models.data.head import PARTS, REGIONS, HeadIdentity, build_head, surface_points

RES = 128


@pytest.fixture(scope="module")
def head():
    return build_head(HeadIdentity.neutral(), RES, generator=torch.Generator().manual_seed(0))


def _au(name: str, value: float = 1.0) -> torch.Tensor:
    w = torch.zeros(len(ACTION_UNITS))
    w[ACTION_UNITS.index(name)] = value
    return w


def _mask(head, part=None, region=None):
    m = torch.ones(len(head), dtype=torch.bool)
    if part is not None:
        m &= head.labels == PARTS.index(part)
    if region is not None:
        m &= head.regions == REGIONS.index(region)
    return m


def test_determinism_and_identities(head):
    a = HeadIdentity.sample(torch.Generator().manual_seed(3))
    assert a == HeadIdentity.sample(torch.Generator().manual_seed(3))
    assert a != HeadIdentity.sample(torch.Generator().manual_seed(4))
    h1 = build_head(a, 64, generator=torch.Generator().manual_seed(5))
    h2 = build_head(a, 64, generator=torch.Generator().manual_seed(5))
    for f in ("means", "quats", "scales", "opacities", "colors"):
        assert torch.equal(getattr(h1.gaussians, f), getattr(h2.gaussians, f))
    assert torch.equal(h1.labels, h2.labels)
    assert torch.allclose(h1.albedo, h1.gaussians.colors)


def test_parts_normals_and_shapes(head):
    n = len(head)
    assert head.gaussians.means.shape == (n, 3) and head.normals.shape == (n, 3) and head.labels.dtype == torch.int64
    present = set(head.labels.unique().tolist())
    assert present == set(range(1, len(PARTS)))  # every part, never background
    assert torch.allclose(head.normals.norm(dim=-1), torch.ones(n), atol=1e-4)
    # the normal is the Gaussian's thin axis
    rot = quat_to_rotmat(head.gaussians.quats)
    thin = torch.gather(rot, 2, head.gaussians.scales.argmin(1).view(-1, 1, 1).expand(-1, 3, 1))[..., 0]
    assert ((thin * head.normals).sum(-1).abs() > 0.999).all()
    skin = _mask(head, "skin", "face") | _mask(head, "hair")
    outward = (head.normals[skin] * head.gaussians.means[skin]).sum(-1) > 0
    assert outward.float().mean() > 0.98
    assert ((head.gaussians.opacities >= 0.9) & (head.gaussians.opacities <= 1)).all()
    lo, hi = head.gaussians.means.min(0).values, head.gaussians.means.max(0).values
    assert -0.9 < lo[0] < -0.7 and 0.7 < hi[0] < 0.9  # ~1.6 wide


def test_count_grows_with_resolution(head):
    small = len(build_head(HeadIdentity.neutral(), 64))
    ratio = len(head) / small
    assert 3.0 < ratio < 5.0  # ~ (128 / 64)^2


def test_surface_points_on_tangent_planes(head):
    pts, idx = surface_points(head, 500, torch.Generator().manual_seed(1))
    assert pts.shape == (500, 3) and idx.dtype == torch.int64
    g = head.gaussians
    off = pts - g.means[idx]
    assert (off * head.normals[idx]).sum(-1).abs().max() < 1e-5
    rot = quat_to_rotmat(g.quats[idx])
    local = torch.einsum("pij,pi->pj", rot, off)[:, :2] / g.scales[idx, :2]
    assert local.norm(dim=-1).max() <= 1.0 + 1e-4
    # the points move with their Gaussian's part
    w = _au("jaw_drop")
    d_pts = expression_displacement(head, pts, w, index=idx)
    d_g = expression_displacement(head, g.means, w)[idx]
    # same part rule: they differ only by the field's variation over the footprint (no lip-line jumps)
    assert ((d_pts - d_g).norm(dim=-1) <= 2.0 * g.scales[idx, :2].amax(-1)).all()


def test_zero_weights_no_motion(head):
    d = expression_displacement(head, head.gaussians.means, torch.zeros(len(ACTION_UNITS)))
    assert torch.equal(d, torch.zeros_like(d))
    g = deform(head, torch.zeros(len(ACTION_UNITS)))
    assert torch.equal(g.means, head.gaussians.means)


@pytest.mark.parametrize("au", ACTION_UNITS)
def test_au_locality(head, au):
    means = head.gaussians.means
    d = expression_displacement(head, means, _au(au)).norm(dim=-1)
    assert d.max() > 0.01 and d.max() < 0.5
    eyeball = _mask(head, "eye")
    assert d[eyeball].max() == 0  # eyeballs never move
    y = means[:, 1]
    front = means[:, 2] < -0.3
    if au.startswith(("inner_brow", "outer_brow", "brow_", "upper_lid", "blink")):
        assert d[front & (y > 0.4)].max() == 0  # brows and lids leave the mouth
    if au in ("lip_corner_pull", "lip_corner_depress", "lip_stretch", "pucker", "jaw_drop", "smirk"):
        assert d[y < 0.0].max() == 0  # mouth AUs leave the eyes and forehead
    if au == "blink":
        lids = _mask(head, region="lid_upper")
        assert d[lids].max() > 0.05
        assert d[_mask(head, "mouth")].max() == 0
    if au == "jaw_drop":
        lower_lip = _mask(head, "lips") & head.lower
        upper_lip = _mask(head, "lips") & ~head.lower
        assert d[lower_lip].median() > 0.1 and d[upper_lip].median() < 0.03
        assert d[torch.isin(head.regions, torch.tensor([REGIONS.index("mouth_jaw")]))].min() > 0.05
        chin = (means - head.landmarks["chin"]).norm(dim=-1) < 0.05
        assert d[chin].min() > 0.1


def test_blink_closes_over_iris(head):
    lids = _mask(head, region="lid_upper")
    g = deform(head, _au("blink"))
    moved = g.means[lids] - head.gaussians.means[lids]
    assert (moved[:, 1] > 0).float().mean() > 0.5  # down, over the eye
    pupil = head.landmarks["eye_r"]
    # after the blink some upper-lid Gaussian sits in front of the cornea's front point
    near = (g.means[lids][:, :2] - pupil[:2]).norm(dim=-1) < 0.02
    assert near.any() and (g.means[lids][near][:, 2] < pupil[2]).all()


def test_displacement_smooth(head):
    gen = torch.Generator().manual_seed(2)
    skin = _mask(head, region="face") & (head.gaussians.means[:, 2] < -0.2)
    pts = head.gaussians.means[skin][torch.randint(int(skin.sum()), (400,), generator=gen)]
    w = torch.ones(len(ACTION_UNITS))
    eps = 1e-3
    for lower in (False, True):
        flags = dict(regions=torch.full((400,), REGIONS.index("face")), lower_mask=torch.full((400,), lower))
        d0 = expression_displacement(head, pts, w, **flags)
        for axis in range(3):
            step = torch.zeros(3)
            step[axis] = eps
            grad = (expression_displacement(head, pts + step, w, **flags) - d0).norm(dim=-1) / eps
            assert grad.max() < 5.0


def test_emotions_and_sampling():
    assert 12 <= len(ACTION_UNITS) <= 14
    assert set(EMOTIONS) == {"neutral", "happy", "sad", "surprise", "fear", "disgust", "anger", "contempt"}
    for weights in EMOTIONS.values():
        assert set(weights) <= set(ACTION_UNITS) and all(0 <= v <= 1 for v in weights.values())
    a = sample_expression("happy", torch.Generator().manual_seed(1))
    assert torch.equal(a, sample_expression("happy", torch.Generator().manual_seed(1)))
    assert a.shape == (len(ACTION_UNITS),) and (a >= 0).all() and (a <= 1).all()
    assert a[ACTION_UNITS.index("lip_corner_pull")] >= 0.45
    with pytest.raises(ValueError, match="surprise"):
        sample_expression("bored", torch.Generator())


def test_pose_rotation_and_posed(head):
    pose = HeadPose(yaw=0.3, pitch=-0.2, roll=0.1, translation=(0.05, 0.0, -0.02))
    r = pose.rotation()
    assert torch.allclose(r @ r.T, torch.eye(3), atol=1e-6) and abs(float(torch.det(r)) - 1) < 1e-6
    # yaw > 0 turns the face (-z) toward image right (+x); pitch > 0 nods it down (+y)
    assert (HeadPose(yaw=0.3).rotation() @ torch.tensor([0.0, 0.0, -1.0]))[0] > 0.2
    assert (HeadPose(pitch=0.3).rotation() @ torch.tensor([0.0, 0.0, -1.0]))[1] > 0.2
    mid = HeadPose.interpolate(HeadPose(), pose, 0.5)
    assert math.isclose(mid.yaw, 0.15) and math.isclose(mid.translation[0], 0.025)
    s = HeadPose.sample(torch.Generator().manual_seed(0), max_angle_deg=10.0)
    assert abs(s.yaw) <= math.radians(10) and s == HeadPose.sample(torch.Generator().manual_seed(0), max_angle_deg=10.0)
    g = head.gaussians[:200]
    pg, pn = posed(g, head.normals[:200], pose, 4.5)
    pivot = torch.tensor(NECK_PIVOT)  # heads turn about the top of the spine
    assert torch.allclose(pg.means, (g.means - pivot) @ r.T + pivot + torch.tensor([0.05, 0.0, 4.48]), atol=1e-5)
    assert torch.allclose(pn, head.normals[:200] @ r.T, atol=1e-5)

    def cov(q, s):
        m = quat_to_rotmat(q) * s.unsqueeze(-2)
        return m @ m.transpose(1, 2)

    assert torch.allclose(cov(pg.quats, pg.scales), r @ cov(g.quats, g.scales) @ r.T, atol=1e-7)


def test_shade():
    albedo = torch.full((2, 3), 0.8)
    normals = torch.tensor([[0.0, 0.0, -1.0], [1.0, 0.0, 0.0]])
    c = shade(albedo, normals, torch.tensor([0.0, 0.0, -1.0]))
    assert (c[0] > c[1]).all() and torch.allclose(c[1], albedo[1] * 0.35)


def test_render_shows_face(head):
    size = 96
    g, n = posed(head.gaussians, head.normals, HeadPose(), 4.5)
    colors = shade(head.albedo, n, torch.tensor([0.0, 0.0, -1.0]))
    f = 2.2 * size
    K = torch.tensor([[f, 0.0, size / 2], [0.0, f, size / 2], [0.0, 0.0, 1.0]])
    img, alpha, _ = pyflowops.render(g.means, g.quats, g.scales, g.opacities, colors, torch.eye(4), K, size, size)
    assert alpha[30:66, 30:66].min() > 0.5
    lum = img.mean(-1)

    def at(point, r=1):
        p = K @ (point + torch.tensor([0.0, 0.0, 4.5]))
        u, v = int(p[0] / p[2]), int(p[1] / p[2])
        return float(lum[v - r:v + r + 1, u - r:u + r + 1].mean())

    eyes = (at(head.landmarks["eye_l"]) + at(head.landmarks["eye_r"])) / 2
    cheeks = (at(head.landmarks["cheek_l"]) + at(head.landmarks["cheek_r"])) / 2
    assert eyes < cheeks
