"""rasterize_gaussians and render: every kernel backend against the dense PyTorch reference
(float64, forward and backward), awkward sizes and channel counts, closed forms that do not lean
on the reference (one Gaussian, the early stop, the 0.999 clamp), tile-size invariance, float32,
opcheck. Bad inputs are in test_splat_errors.py."""

from __future__ import annotations

import math

import pytest
import torch
from _splat_cases import (
    F64,
    INTERP_N,
    INTERP_SIZE,
    assert_all_close,
    camera,
    cotangents_like,
    grads,
    leaves,
    screen_gaussians,
    world_gaussians,
)
from _utils import assert_close

import pyflowops
from pyflowops.reference import splat as reference

SCREEN = ("means2d", "conics", "opacities", "features", "depths")
OUTPUTS = ("image", "alpha", "depth")


def fit(backend, device, n, width, height):
    """The Triton interpreter simulates every program in numpy: shrink the problem there."""
    if backend == "triton" and device == "cpu":
        return min(n, INTERP_N), min(width, INTERP_SIZE[0]), min(height, INTERP_SIZE[1])
    return n, width, height


def rasterize(backend, tensors, radii, width, height, background=None, tile_size=16):
    return pyflowops.rasterize_gaussians(*tensors, radii, width, height, background, tile_size, backend=backend)


def check_rasterize(backend, device, n, width, height, channels=3, background=True, *, dtype=F64, noncontig=False,
                    scale=1.0, tile_size=16, faint=False):  # fmt: skip
    """Forward and the VJP of one random cotangent (on image, alpha and depth), kernel vs float64 reference."""
    n, width, height = fit(backend, device, n, width, height)
    g = screen_gaussians(n, width, height, channels, faint=faint)
    names = SCREEN + (("background",) if background else ())
    values = [g[k] for k in SCREEN] + ([torch.rand(channels, dtype=F64)] if background else [])
    values = [v.to(dtype).to(F64) for v in values]  # the reference sees exactly the kernel's inputs
    inputs = leaves(*values, dtype=dtype, device=device, noncontig=noncontig)
    expected_inputs = leaves(*values)
    radii = g["radii"].to(device)
    if noncontig:
        radii = radii.repeat_interleave(2)[::2]
    out = rasterize(backend, inputs[:5], radii, width, height, inputs[5] if background else None, tile_size)
    expected = reference.rasterize_gaussians(*expected_inputs[:5], g["radii"], width, height,
                                             expected_inputs[5] if background else None)  # fmt: skip
    assert [tuple(o.shape) for o in out] == [(height, width, channels), (height, width, 1), (height, width, 1)]
    assert all(o.dtype == dtype for o in out)
    assert_all_close(out, expected, OUTPUTS, dtype, scale)
    cot = [c.to(dtype).to(F64) for c in cotangents_like(expected)]
    actual_grads = grads(out, inputs, [c.to(dtype=dtype, device=device) for c in cot])
    assert_all_close(actual_grads, grads(expected, expected_inputs, cot), names, dtype, scale)
    return expected


# (N, W, H, C, background): odd sizes, a single pixel, thin images, 1, 3 and 32 channels.
SIZES = [
    (200, 37, 23, 3, True),
    (150, 37, 23, 1, False),
    (120, 23, 37, 32, True),
    (15, 1, 1, 3, True),
    (60, 5, 64, 1, True),
    (60, 64, 5, 32, False),
]
SIZE_IDS = [f"N{n}-{w}x{h}-C{c}-{'bg' if bg else 'nobg'}" for n, w, h, c, bg in SIZES]


class TestRasterizeGaussians:
    @pytest.mark.parametrize("n, width, height, channels, background", SIZES, ids=SIZE_IDS)
    def test_against_reference(self, kernel_case, n, width, height, channels, background):
        expected = check_rasterize(*kernel_case, n, width, height, channels, background)
        assert expected[1].max() > 0.3  # something was drawn

    def test_early_stop_reached(self):
        """The random scenes are opaque enough that some pixels stop early (so the tests above cover the stop)."""
        g = screen_gaussians(200, 37, 23)
        _, alpha, _ = reference.rasterize_gaussians(*(g[k] for k in SCREEN), g["radii"], 37, 23)
        assert (alpha > 1 - 1e-3).sum() > 20

    def test_noncontiguous(self, kernel_case):
        check_rasterize(*kernel_case, 80, 21, 18, 3, True, noncontig=True)

    def test_float32(self, kernel_case):
        check_rasterize(*kernel_case, 200, 37, 23, 3, True, dtype=torch.float32, scale=50)

    @pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["f16", "bf16"])
    def test_low_precision(self, kernel_case, dtype):
        """Half inputs are composited in float32 and rounded: against the float64 reference on the same
        rounded inputs, on an opaque scene (T_final near 1e-4, below float16's spacing near 1: the kernels'
        own half path, replaying from a rounded alpha, got gradients off by up to 29% there)."""
        check_rasterize(*kernel_case, 100, 23, 19, 3, True, dtype=dtype, faint=False)

    @pytest.mark.parametrize("tile_size", [4, 8, 32, 64])
    def test_tile_size_invariance(self, fast_case, tile_size):
        """The per-pixel radius test is exact, so the tiles change nothing but the rounding of the gradient sums."""
        backend, device = fast_case
        g = screen_gaussians(200, 37, 23)
        inputs = leaves(*(g[k] for k in SCREEN), device=device)
        background = torch.rand(3, dtype=F64, device=device)
        radii = g["radii"].to(device)
        base = rasterize(backend, inputs, radii, 37, 23, background, 16)
        other = rasterize(backend, inputs, radii, 37, 23, background, tile_size)
        assert_all_close(other, base, OUTPUTS)
        cot = cotangents_like(base)
        assert_all_close(grads(other, inputs, cot), grads(base, inputs, cot), SCREEN)

    def test_one_gaussian_closed_form(self, any_case):
        """One isotropic Gaussian facing the camera: alpha = o exp(-r^2 / (2 s^2)) inside its box, skipped
        below 1/255; image = f alpha + (1 - alpha) background, depth = z alpha."""
        backend, device = any_case
        s, o, z, (mx, my), width, height = 1.7, 0.9, 2.5, (7.3, 5.6), 15, 12
        radius = math.ceil(3 * s)
        f, bg = [0.2, -1.0, 3.0], [0.5, 0.25, 1.0]
        tensors = [torch.tensor(v, dtype=F64, device=device) for v in
                   ([[mx, my]], [[1 / s**2, 0.0, 1 / s**2]], [o], [f], [z])]  # fmt: skip
        radii = torch.tensor([radius], dtype=torch.int32, device=device)
        background = torch.tensor(bg, dtype=F64, device=device)
        image, alpha, depth = rasterize(backend, tensors, radii, width, height, background)
        expected = torch.zeros(height, width, dtype=F64)
        for i in range(height):
            for j in range(width):
                dx, dy = j + 0.5 - mx, i + 0.5 - my
                a = o * math.exp(-(dx * dx + dy * dy) / (2 * s * s))
                if abs(dx) <= radius and abs(dy) <= radius and a >= 1 / 255:
                    expected[i, j] = a
        assert (expected == 0).sum() > 10 and (expected > 0).sum() > 50  # the box and the 1/255 cut both show
        assert_close(alpha[..., 0].cpu(), expected)
        assert_close(depth[..., 0].cpu(), z * expected)
        for c in range(3):
            assert_close(image[..., c].cpu(), f[c] * expected + bg[c] * (1 - expected))

    def test_early_stop_closed_form(self, any_case):
        """Seven coincident Gaussians (opacity 0.85, conic I) at a pixel center, depths decreasing with the
        index: front to back is index 6, 5, ...; at the center T = 0.15^k and the fifth would leave
        0.15^5 < 1e-4, so exactly four contribute. One pixel right (alpha 0.85 e^-0.5) all seven do."""
        backend, device = any_case
        k = 7
        means2d = torch.tensor([[2.5, 1.5]], dtype=F64).repeat(k, 1)
        conics = torch.tensor([[1.0, 0.0, 1.0]], dtype=F64).repeat(k, 1)
        opacities = torch.full((k,), 0.85, dtype=F64)
        features = torch.stack([torch.arange(1.0, k + 1, dtype=F64), 10.0 ** -torch.arange(k, dtype=F64)], -1)
        depths = torch.arange(k, 0, -1, dtype=F64)
        tensors = [t.to(device) for t in (means2d, conics, opacities, features, depths)]
        radii = torch.full((k,), 3, dtype=torch.int32, device=device)
        image, alpha, depth = rasterize(backend, tensors, radii, 6, 4)
        for col, a, layers in [(2, 0.85, 4), (3, 0.85 * math.exp(-0.5), k)]:
            weights = [a * (1 - a) ** m for m in range(layers)]  # front to back: index k-1-m
            order = list(range(k - 1, k - 1 - layers, -1))
            assert_close(alpha[1, col].cpu(), torch.tensor([1 - (1 - a) ** layers], dtype=F64))
            assert_close(image[1, col].cpu(), sum(w * features[g] for w, g in zip(weights, order)))
            assert_close(depth[1, col].cpu(), torch.tensor([sum(w * depths[g].item() for w, g in zip(weights, order))]))

    def test_depth_order_and_ties(self, any_case):
        """Three coincident Gaussians of opacity 0.5: depths (2, 1, 2) composite as index 1, 0, 2 (a tie
        goes to the lower index), so the pixel under them is 0.5 f1 + 0.25 f0 + 0.125 f2."""
        backend, device = any_case
        tensors = [torch.tensor(v, dtype=F64, device=device) for v in
                   ([[1.5, 0.5]] * 3, [[0.5, 0.0, 0.5]] * 3, [0.5] * 3, [[1.0], [10.0], [100.0]], [2.0, 1.0, 2.0])]
        image, _, depth = rasterize(backend, tensors, torch.full((3,), 2, dtype=torch.int32, device=device), 3, 2)
        assert image[0, 1, 0].item() == pytest.approx(0.5 * 10 + 0.25 * 1 + 0.125 * 100, rel=1e-12)
        assert depth[0, 1, 0].item() == pytest.approx(0.5 * 1 + 0.25 * 2 + 0.125 * 2, rel=1e-12)

    def test_clamp_has_no_gradient(self, any_case):
        """Opacity 1 at a pixel center: alpha is clamped to 0.999 there and that pixel sends no gradient to
        the opacity or the position; one pixel right it is o e^-0.5, so d alpha / d o = e^-0.5."""
        backend, device = any_case
        tensors = leaves(*(torch.tensor(v, dtype=F64) for v in
                           ([[2.5, 1.5]], [[1.0, 0.0, 1.0]], [1.0], [[1.0]], [1.0])), device=device)  # fmt: skip
        radii = torch.tensor([3], dtype=torch.int32, device=device)
        _, alpha, _ = rasterize(backend, tensors, radii, 6, 4)
        assert alpha[1, 2, 0].item() == pytest.approx(0.999, abs=1e-12)
        g_center = grads(alpha[1, 2, 0], tensors, None, retain_graph=True)
        assert g_center[2].item() == 0 and (g_center[0] == 0).all() and (g_center[1] == 0).all()
        g_right = grads(alpha[1, 3, 0], tensors, None)
        assert g_right[2].item() == pytest.approx(math.exp(-0.5), rel=1e-12)
        assert g_right[0][0, 0].item() == pytest.approx(math.exp(-0.5), rel=1e-12)  # d alpha / d mx = alpha dx

    def test_gradcheck(self, fast_case):
        """Few Gaussians, few pixels: finite differences do not cross the thresholds (nor reorder depth ties)."""
        backend, device = fast_case
        g = screen_gaussians(8, 7, 5, 2)
        g["depths"] = torch.randperm(8, dtype=F64) + 1
        inputs = leaves(*(g[k] for k in SCREEN), torch.rand(2, dtype=F64), device=device)
        radii = g["radii"].to(device)
        fn = lambda *x: rasterize(backend, x[:5], radii, 7, 5, x[5])  # noqa: E731
        assert torch.autograd.gradcheck(fn, inputs)

    @pytest.mark.filterwarnings("ignore:.*an autograd kernel was not registered")  # opcheck probes the backward op
    def test_opcheck(self):
        g = screen_gaussians(40, 13, 11)
        inputs = leaves(*(g[k] for k in SCREEN))
        background = torch.rand(3, dtype=F64)
        for bg in (background, None):
            torch.library.opcheck(torch.ops.pyflowops.rasterize_gaussians.default,
                                  (*inputs, g["radii"], 13, 11, bg, 8))  # fmt: skip
        image, alpha, depth, offsets, ids, last = torch.ops.pyflowops.rasterize_gaussians(
            *(x.detach() for x in inputs), g["radii"], 13, 11, background, 8
        )
        assert offsets.shape == (2 * 2 + 1,) and offsets[-1] == ids.shape[0] and last.max() > 0
        backward_args = (*cotangents_like((image, alpha, depth)), *(x.detach() for x in inputs), g["radii"],
                         background, alpha, offsets, ids, last, 13, 11, 8)  # fmt: skip
        torch.library.opcheck(torch.ops.pyflowops.rasterize_gaussians_backward.default, backward_args)


class TestRender:
    @pytest.mark.parametrize("background", [True, False], ids=["bg", "nobg"])
    def test_gradients_against_reference(self, kernel_case, background):
        """Projection + rasterization through the kernels vs autograd through the dense reference, float64."""
        backend, device = kernel_case
        n, width, height = fit(backend, device, 200, 37, 23)
        g = world_gaussians(n, width, height, 4)
        viewmat, K = camera(width, height)
        names = ("means", "quats", "scales", "opacities", "features") + (("background",) if background else ())
        values = [g[k] for k in names[:5]] + ([torch.rand(4, dtype=F64)] if background else [])
        inputs, expected_inputs = leaves(*values, device=device), leaves(*values)

        def run(fn, x, **kw):
            return fn(*x[:5], viewmat, K, width, height, x[5] if background else None, **kw)

        out = run(pyflowops.render, inputs, backend=backend)
        expected = run(reference.render, expected_inputs)
        assert expected[1].max() > 0.5
        assert_all_close(out, expected, OUTPUTS)
        cot = cotangents_like(expected)
        assert_all_close(grads(out, inputs, [c.to(device) for c in cot]), grads(expected, expected_inputs, cot), names)

    def test_matches_chained_calls(self, any_case):
        backend, device = any_case
        g = world_gaussians(30, 20, 16, 3, device=device)
        viewmat, K = camera(20, 16)
        image, alpha, depth = pyflowops.render(
            g["means"], g["quats"], g["scales"], g["opacities"], g["features"], viewmat, K, 20, 16,
            near=0.5, far=7.0, tile_size=8, backend=backend,
        )  # fmt: skip
        m2d, con, dep, rad = pyflowops.project_gaussians(
            g["means"], g["quats"], g["scales"], viewmat, K, 20, 16, 0.5, 7.0, backend=backend
        )
        assert (rad == 0).any()  # far = 7 culls some
        chained = pyflowops.rasterize_gaussians(
            m2d, con, g["opacities"], g["features"], dep, rad, 20, 16, tile_size=8, backend=backend
        )
        for x, y in zip((image, alpha, depth), chained):
            torch.testing.assert_close(x, y, rtol=0, atol=0)
