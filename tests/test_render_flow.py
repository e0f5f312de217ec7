"""Flow rendering from moving Gaussians (flow_features, composite_flow, render_flow) and flow_occlusion.

Analytic ground truth: a Gaussian-covered plane facing the camera, translated (flow fx dx / z) or
rotated about the optical axis (flow (R - I)(p - c)); the order-1 Jacobian against autograd of
the projected motion; the forward-backward check against its formula and on a moving occluder."""

from __future__ import annotations

import math

import pytest
import torch
from _splat_cases import world_gaussians

import pyflowops
from pyflowops.flow_render import composite_flow, flow_features, flow_occlusion, render_flow
from pyflowops.reference.splat import quat_to_rotmat

BACKEND = "cpu"  # the C++ kernels; the torch reference is the cross-check in test_backends_agree
W, H, Z, F = 64, 48, 4.0, 60.0
K = torch.tensor([[F, 0.0, 31.3], [0.0, F, 23.6], [0.0, 0.0, 1.0]])
IDENTITY_Q = torch.tensor([1.0, 0.0, 0.0, 0.0])


def plane(z=Z, spacing=3.0, margin=8.0, box=None, opacity=0.95):
    """Flat Gaussians (scale ~0 along the normal) on a grid at depth z facing the camera, overlapping
    (in-plane sd = spacing) so alpha > 0.99 inside; ``box`` = (x0, x1, y0, y1) in pixels, default the
    image plus ``margin``. Returns (means, quats, scales, opacities), float32."""
    x0, x1, y0, y1 = box or (-margin, W + margin, -margin, H + margin)
    step = spacing * z / F
    xs = torch.arange((x0 - K[0, 2]) * z / F, (x1 - K[0, 2]) * z / F, step)
    ys = torch.arange((y0 - K[1, 2]) * z / F, (y1 - K[1, 2]) * z / F, step)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    n = gx.numel()
    means = torch.stack([gx.flatten(), gy.flatten(), torch.full((n,), z)], -1)
    scales = torch.tensor([step, step, step * 1e-3]).expand(n, 3).clone()
    return means, IDENTITY_Q.expand(n, 4).clone(), scales, torch.full((n,), opacity)


def rot_z(degrees):
    """(R [3,3], quaternion [4]) of a rotation about the optical axis."""
    a = math.radians(degrees)
    rot = torch.tensor([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0], [0.0, 0.0, 1.0]])
    return rot, torch.tensor([math.cos(a / 2), 0.0, 0.0, math.sin(a / 2)])


def quat_mul(a, b):
    w1, x1, y1, z1 = a.unbind(-1)
    w2, x2, y2, z2 = b.unbind(-1)
    return torch.stack(
        [
            w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2,
            w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
            w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
            w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2,
        ],
        -1,
    )


def centers():
    """[H, W, 2] pixel centers (j + 0.5, i + 0.5)."""
    ys, xs = torch.meshgrid(torch.arange(H) + 0.5, torch.arange(W) + 0.5, indexing="ij")
    return torch.stack([xs, ys], -1)


def opaque_error(flow, alpha, expected):
    """Max |flow - expected| over pixels with alpha > 0.99, which must be most of the image."""
    opaque = alpha[..., 0] > 0.99
    assert opaque.float().mean() > 0.95
    return (flow - expected)[opaque].abs().max().item()


@pytest.mark.parametrize("order", [0, 1])
def test_plane_translation(order):
    means, quats, scales, opacities = plane()
    shift = torch.tensor([0.05, -0.03, 0.0])
    flow, alpha, depth = render_flow(
        means, quats, scales, opacities, means + shift, quats, scales, torch.eye(4), K, W, H, order=order,
        backend=BACKEND,
    )  # fmt: skip
    expected = F * shift[:2] / Z  # (0.75, -0.45) px
    assert opaque_error(flow, alpha, expected) < 1e-4
    torch.testing.assert_close(depth[alpha > 0.99] / alpha[alpha > 0.99], torch.full_like(alpha[alpha > 0.99], Z))

    # the same motion as a camera moving the other way; and the backward flow by swapping the frames
    viewmat_next = torch.eye(4)
    viewmat_next[:3, 3] = shift  # camera points move by +shift: the camera moved by -shift
    flow_cam, *_ = render_flow(
        means, quats, scales, opacities, means, quats, scales, torch.eye(4), K, W, H,
        viewmat_next=viewmat_next, order=order, backend=BACKEND,
    )  # fmt: skip
    assert opaque_error(flow_cam, alpha, expected) < 1e-4
    flow_bw, alpha_bw, _ = render_flow(
        means + shift, quats, scales, opacities, means, quats, scales, torch.eye(4), K, W, H, order=order,
        backend=BACKEND,
    )  # fmt: skip
    assert opaque_error(flow_bw, alpha_bw, -expected) < 1e-4


def rotated_plane_flows(degrees, *, backward=False):
    """Order-0 and order-1 flow of the plane rotated about the optical axis, and the exact (R - I)(p - c)."""
    means, quats, scales, opacities = plane()
    rot, q = rot_z(degrees)
    after = (means @ rot.T, quat_mul(q.expand_as(quats), quats), scales)
    before = (means, quats, scales)
    first, second = (after, before) if backward else (before, after)
    rot2 = rot[:2, :2].T if backward else rot[:2, :2]
    expected = (centers() - K[:2, 2]) @ (rot2 - torch.eye(2)).T
    out = {}
    for order in (0, 1):
        flow, alpha, _ = render_flow(
            *first[:3], opacities, *second, torch.eye(4), K, W, H, order=order, backend=BACKEND
        )
        out[order] = opaque_error(flow, alpha, expected)
    return out


def test_plane_rotation_about_optical_axis():
    errors = rotated_plane_flows(2.0)
    # measured (float32, cpu): order 1 ~3e-6 px, order 0 ~0.13 px (its flow is constant over each footprint)
    assert errors[1] < 0.01, errors
    assert 0.03 < errors[0] < 0.5, errors  # order 0's honest error: a wrong order 1 could not pass the line above
    backward = rotated_plane_flows(2.0, backward=True)  # flow t+1 -> t: (R^T - I)(p - c)
    assert backward[1] < 0.01 and backward[0] > 0.03, backward


def test_colors_and_flow_in_one_pass():
    """flow_features concatenated with colors, one rasterize call: the same image as render and flow as render_flow."""
    g = world_gaussians(60, W, H, dtype=torch.float32)
    viewmat = torch.eye(4)
    rot, q = rot_z(5.0)
    nxt = (g["means"] @ rot.T + 0.1, quat_mul(q.expand(60, 4), g["quats"]), g["scales"] * 1.1)
    args = (g["means"], g["quats"], g["scales"])
    feats = flow_features(*args, *nxt, viewmat, K)
    means2d, conics, depths, radii = pyflowops.project_gaussians(*args, viewmat, K, W, H, backend=BACKEND)
    both = torch.cat([g["features"], feats], 1)
    out, alpha, depth = pyflowops.rasterize_gaussians(
        means2d, conics, g["opacities"], both, depths, radii, W, H, backend=BACKEND
    )
    image, *_ = pyflowops.render(*args, g["opacities"], g["features"], viewmat, K, W, H, backend=BACKEND)
    flow, alpha_f, depth_f = render_flow(*args, g["opacities"], *nxt, viewmat, K, W, H, backend=BACKEND)
    torch.testing.assert_close(out[..., :3], image)
    torch.testing.assert_close(composite_flow(out[..., 3:], alpha), flow)
    torch.testing.assert_close(alpha, alpha_f)
    assert flow[alpha[..., 0] > 0.1].abs().max() > 1.0 and (flow[alpha[..., 0] == 0] == 0).all()


def test_backends_agree():
    """The kernels and the dense reference give the same flow, alpha, depth and gradients (float64)."""
    g = world_gaussians(50, W, H, dtype=torch.float64)
    nxt = (g["means"] + torch.tensor([0.05, 0.02, -0.1], dtype=torch.float64), g["quats"] * 1.1, g["scales"] * 0.9)
    params = (g["means"], g["quats"], g["scales"], g["opacities"], *nxt)
    cotangent = torch.randn(H, W, 2, dtype=torch.float64)
    results = []
    for backend in (BACKEND, "torch"):
        leaves = [t.clone().requires_grad_() for t in params]
        out = render_flow(*leaves, torch.eye(4, dtype=torch.float64), K.double(), W, H, backend=backend)
        (out[0] * cotangent).sum().backward()
        results.append((*out, *(t.grad for t in leaves)))
    assert results[0][0].abs().max() > 1.0
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


def test_order1_jacobian_matches_autograd():
    """A is the derivative of the projected motion on each Gaussian's own plane (the two major axes), with
    a random rotation, anisotropic rescaling and camera motion; d is the projected mean's displacement."""
    dt = torch.float64
    n = 12
    g = world_gaussians(n, W, H, dtype=dt)
    means, quats = g["means"], g["quats"]
    scales = g["scales"].abs() + 0.01
    means_next = means + torch.randn(n, 3, dtype=dt) * 0.1
    quats_next = quats + torch.randn(n, 4, dtype=dt) * 0.3
    scales_next = scales * (1 + torch.rand(n, 3, dtype=dt) * 0.5)
    viewmat, K64 = torch.eye(4, dtype=dt), K.double()
    viewmat_next = torch.eye(4, dtype=dt)
    viewmat_next[:3, :3] = rot_z(4.0)[0].double()
    viewmat_next[:3, 3] = torch.tensor([0.1, -0.05, 0.2], dtype=dt)
    feats = flow_features(
        means, quats, scales, means_next, quats_next, scales_next, viewmat, K64, viewmat_next=viewmat_next
    )

    def pixel(x, view):
        cam = view[:3, :3] @ x + view[:3, 3]
        return K64[:2, :2].diagonal() * cam[:2] / cam[2] + K64[:2, 2]

    for i in range(n):
        rot, rot_next = quat_to_rotmat(quats[i : i + 1])[0], quat_to_rotmat(quats_next[i : i + 1])[0]
        motion = (rot_next * scales_next[i]) @ torch.linalg.inv(rot * scales[i])  # M, formed directly
        axes = rot[:, scales[i].argsort(descending=True)[:2]]  # U [3, 2]
        at_t = lambda c: pixel(means[i] + axes @ c, viewmat)  # noqa: E731
        at_next = lambda c: pixel(means_next[i] + motion @ axes @ c, viewmat_next)  # noqa: E731
        zero = torch.zeros(2, dtype=dt)
        jac_t, jac_next = (torch.autograd.functional.jacobian(f, zero) for f in (at_t, at_next))
        affine = jac_next @ torch.linalg.inv(jac_t) - torch.eye(2, dtype=dt)
        disp = at_next(zero) - at_t(zero)
        torch.testing.assert_close(feats[i, 2:].view(2, 2), affine)
        torch.testing.assert_close(feats[i, :2], disp - affine @ at_t(zero))
    order0 = flow_features(
        means, quats, scales, means_next, quats_next, scales_next, viewmat, K64, viewmat_next=viewmat_next, order=0
    )
    pixels = K64[:2, :2].diagonal() * means[:, :2] / means[:, 2:] + K64[:2, 2]  # identity viewmat
    torch.testing.assert_close(order0, feats[:, :2] + (feats[:, 2:].view(n, 2, 2) @ pixels.unsqueeze(-1))[..., 0])


def test_degenerate_gaussians():
    """Edge-on flat and line-like Gaussians get A = 0; behind the camera at t+1: no flow at all; finite gradients."""
    dt = torch.float64
    edge_on = torch.tensor([math.cos(math.pi / 4), 0.0, math.sin(math.pi / 4), 0.0], dtype=dt)  # 90 deg about y
    means = torch.tensor([[0.0, 0.0, 4.0], [0.3, 0.0, 4.0], [0.0, 0.2, 3.0], [0.1, 0.1, 5.0]], dtype=dt)
    quats = torch.stack([edge_on, IDENTITY_Q.double(), IDENTITY_Q.double(), IDENTITY_Q.double()])
    scales = torch.tensor([[0.1, 0.1, 0.0], [0.1, 0.0, 0.0], [0.1, 0.1, 0.1], [0.1, 0.2, 0.1]], dtype=dt)
    means_next = means + torch.tensor([[0.1, 0.0, 0.0], [0.0, 0.1, 0.0], [0.0, 0.0, -5.0], [0.1, 0.0, 0.1]], dtype=dt)
    leaves = [t.clone().requires_grad_() for t in (means, quats, scales, means_next)]
    feats = flow_features(*leaves[:3], leaves[3], quats * 1.1, scales * 1.2, torch.eye(4, dtype=dt), K.double())
    assert torch.isfinite(feats).all()
    assert (feats[:2, 2:] == 0).all() and (feats[:2, :2].abs().sum(1) > 0.5).all()  # A = 0, d kept
    assert (feats[2] == 0).all()  # behind the camera at t+1
    assert (feats[3, 2:].abs() > 1e-3).any()  # a regular Gaussian moving in depth has A != 0
    feats.square().sum().backward()
    assert all(torch.isfinite(t.grad).all() for t in leaves)


def test_max_affine_caps_the_flow_gradient_of_grazing_gaussians():
    """A flat Gaussian at 89.8 degrees turning to 87 has a huge A (foreshortening); max_affine scales
    A down to the cap (spectral norm), keeps d, and leaves a Gaussian under the cap untouched."""
    dt = torch.float64
    tilt = lambda deg: torch.tensor([math.cos(math.radians(deg) / 2), 0.0, math.sin(math.radians(deg) / 2), 0.0],
                                    dtype=dt)  # noqa: E731
    means = torch.tensor([[0.0, 0.0, 4.0], [0.3, 0.0, 4.0]], dtype=dt)
    quats, quats_next = torch.stack([tilt(89.8), tilt(0.0)]), torch.stack([tilt(87.0), tilt(1.0)])
    scales = torch.tensor([[0.1, 0.1, 0.001]], dtype=dt).expand(2, 3)
    args = (means, quats, scales, means + 0.01, quats_next, scales, torch.eye(4, dtype=dt), K.double())
    free, capped = flow_features(*args), flow_features(*args, max_affine=2.0)
    norm = lambda f: torch.linalg.matrix_norm(f[:, 2:].view(-1, 2, 2), ord=2)  # noqa: E731
    assert norm(free)[0] > 10 and norm(capped)[0] == pytest.approx(2.0)
    torch.testing.assert_close(capped[1], free[1])  # under the cap: unchanged
    k = K.double()
    mean2d = torch.stack([k[0, 0] * means[:, 0] / means[:, 2] + k[0, 2], k[1, 1] * means[:, 1] / means[:, 2] + k[1, 2]], 1)
    d = lambda f: f[:, :2] + (f[:, 2:].view(-1, 2, 2) @ mean2d.unsqueeze(-1)).squeeze(-1)  # noqa: E731
    torch.testing.assert_close(d(capped), d(free))  # the mean displacement is kept
    with pytest.raises(ValueError, match="max_affine"):
        flow_features(*args, max_affine=0.0)


def test_gradients():
    dt = torch.float64
    g = world_gaussians(6, 12, 10, dtype=dt)
    K_ = torch.tensor([[13.0, 0.0, 6.1], [0.0, 11.0, 4.9], [0.0, 0.0, 1.0]], dtype=dt)
    inputs = [g["means"], g["quats"], g["scales"].abs(), g["means"] + 0.05, g["quats"] * 1.05, g["scales"].abs() * 1.1]
    inputs = [t.clone().requires_grad_() for t in inputs]
    fn = lambda *x: flow_features(*x, torch.eye(4, dtype=dt), K_)  # noqa: E731
    assert torch.autograd.gradcheck(fn, inputs)
    feats = torch.randn(2, 5, 7, 6, dtype=dt, requires_grad=True)
    alpha = (torch.rand(2, 5, 7, 1, dtype=dt) + 0.1).requires_grad_()
    assert torch.autograd.gradcheck(composite_flow, (feats, alpha))

    # end to end through the kernels: every parameter of both frames gets a finite, nonzero gradient
    g = world_gaussians(40, W, H, dtype=torch.float32)
    leaves = [g[k].clone().requires_grad_() for k in ("means", "quats", "scales", "opacities")]
    nxt = [(g["means"] + 0.05), g["quats"] * 1.1, g["scales"] * 1.2]
    nxt = [t.requires_grad_() for t in nxt]
    flow, alpha, depth = render_flow(*leaves, *nxt, torch.eye(4), K, W, H, backend=BACKEND)
    (flow * torch.randn_like(flow)).sum().backward()
    for t in (*leaves, *nxt):
        assert torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0


def test_composite_flow_values_and_errors():
    feats = torch.zeros(2, 3, 6)
    feats[..., 2] = 0.5  # A = [[1, 0], [0, 0]] times alpha 0.5: flow_x = p_x
    feats[..., 1] = 0.25
    alpha = torch.full((2, 3, 1), 0.5)
    alpha[1, 2] = 0.0
    flow = composite_flow(feats, alpha)
    expected = torch.stack([torch.tensor([0.5, 1.5, 2.5]).expand(2, 3), torch.full((2, 3), 0.5)], -1).clone()
    expected[1, 2] = 0.0
    torch.testing.assert_close(flow, expected)
    torch.testing.assert_close(composite_flow(feats[..., :2], alpha)[0, 0], torch.tensor([0.0, 0.5]))
    with pytest.raises(ValueError, match=r"features must have shape \[..., H, W, 6\]"):
        composite_flow(torch.zeros(2, 3, 4), alpha)
    with pytest.raises(ValueError, match="alpha must have shape"):
        composite_flow(feats, alpha[:1])


def test_render_flow_argument_errors():
    means, quats, scales, opacities = plane(box=(10, 20, 10, 20))
    args = [means, quats, scales, opacities, means, quats, scales, torch.eye(4), K, W, H]
    with pytest.raises(ValueError, match="order must be in"):
        render_flow(*args, order=2)
    bad = list(args)
    bad[5] = quats[:-1]
    with pytest.raises(ValueError, match=r"quats_next must have shape \[N, 4\] with N from means"):
        render_flow(*bad)
    with pytest.raises(TypeError, match="scales_next has dtype"):
        render_flow(*args[:6], scales.double(), *args[7:])
    with pytest.raises(ValueError, match="viewmat_next must have shape"):
        render_flow(*args, viewmat_next=torch.eye(3))
    with pytest.raises(ValueError, match="near must be > 0"):
        flow_features(*args[:3], *args[4:9], near=0.0)
    with pytest.raises(ValueError, match=r"flow_bw must have shape \[..., H, W, 2\] from flow_fw"):
        flow_occlusion(torch.zeros(4, 5, 2), torch.zeros(4, 6, 2))
    with pytest.raises(ValueError, match="flow_fw must have shape"):
        flow_occlusion(torch.zeros(4, 5, 3), torch.zeros(4, 5, 3))


# ---------------------------------------------------------------------------
# flow_occlusion
# ---------------------------------------------------------------------------


def brute_force_occlusion(fw, bw, alpha1, alpha2):
    """The check written pixel by pixel, for flows whose targets are exact pixel positions."""
    height, width, _ = fw.shape
    out = torch.zeros(height, width, dtype=torch.bool)
    for i in range(height):
        for j in range(width):
            x, y = j + fw[i, j, 0].item(), i + fw[i, j, 1].item()
            if not (0 <= x <= width - 1 and 0 <= y <= height - 1):
                out[i, j] = True
                continue
            b = bw[round(y), round(x)]
            mismatch = (fw[i, j] + b).square().sum()
            out[i, j] = mismatch > alpha1 * (fw[i, j].square().sum() + b.square().sum()) + alpha2
    return out


def test_occlusion_matches_formula():
    fw = torch.randint(-2, 3, (9, 11, 2)).double()  # integer targets: bilinear sampling is a lookup
    bw = -fw + torch.randn(9, 11, 2, dtype=torch.float64) * torch.rand(9, 11, 1) * 2
    for alpha1, alpha2 in ((0.01, 0.5), (0.0, 0.2), (0.3, 1.0)):
        expected = brute_force_occlusion(fw, bw, alpha1, alpha2)
        assert expected.any() and not expected.all()
        assert torch.equal(flow_occlusion(fw, bw, alpha1, alpha2), expected)
    batched = flow_occlusion(torch.stack([fw, fw]).unsqueeze(0), torch.stack([bw, -fw]).unsqueeze(0))
    assert batched.shape == (1, 2, 9, 11) and torch.equal(batched[0, 0], flow_occlusion(fw, bw))


def test_occlusion_bilinear_and_borders():
    """Sub-pixel targets sample bw bilinearly (exact for a linear field); targets off the image are occluded."""
    fw = torch.full((6, 8, 2), 0.25)
    fw[..., 1] = -0.5
    ys, xs = torch.meshgrid(torch.arange(6.0), torch.arange(8.0), indexing="ij")
    bw = torch.stack([-0.25 + 0.9 * (xs - 3.0), 0.5 + 0.0 * ys], -1)  # bw(p + fw) = -fw + (0.9 (x + 0.25 - 3), 0)
    mask = flow_occlusion(fw, bw, alpha1=0.0, alpha2=0.5)
    # mismatch = (0.9 (j + 0.25 - 3))^2 > 0.5 for |j - 2.75| > 0.786: occluded for j <= 1 and j >= 4; row 0 leaves
    expected = torch.zeros(6, 8, dtype=torch.bool)
    expected[:, [0, 1, 4, 5, 6]] = True
    expected[:, 7] = True  # x = 7.25 > W - 1
    expected[0] = True  # y = -0.5 < 0
    assert torch.equal(mask, expected)
    nan_fw = fw.clone()
    nan_fw[2, 3] = float("nan")
    assert flow_occlusion(nan_fw, bw, alpha1=0.0, alpha2=0.5)[2, 3]


def test_occlusion_of_a_moving_square():
    """A square sliding 3 px right over a static background: the background just right of it is occluded at t+1."""
    background = plane(z=6.0)
    square = plane(z=3.0, box=(16, 36, 12, 36), spacing=2.0, opacity=0.99)
    shift = torch.tensor([3.0 * 3.0 / F, 0.0, 0.0])  # 3 px at depth 3
    t0 = [torch.cat([a, b]) for a, b in zip(background, square)]
    moved = t0[0].clone()
    moved[len(background[0]) :] += shift
    fw, alpha, _ = render_flow(t0[0], *t0[1:3], t0[3], moved, *t0[1:3], torch.eye(4), K, W, H, backend=BACKEND)
    bw, _, _ = render_flow(moved, *t0[1:3], t0[3], t0[0], *t0[1:3], torch.eye(4), K, W, H, backend=BACKEND)
    occluded = flow_occlusion(fw, bw)
    rows = occluded[14:32]  # away from the square's top and bottom edges
    # the background band the square's soft right edge (alpha falls over x ~ 36-41) slides over: occluded;
    # inside the square (fw = 3, bw = -3) and the static background: not. (The left edge's mixed pixels,
    # x ~ 12-13, blend both motions and may fail the check.)
    assert rows[:, 39:43].all()
    assert not rows[:, 14:39].any() and not rows[:, 44:].any() and not rows[:, :11].any()
    assert occluded.float().mean() < 0.1
