"""Bad input to the splat ops: a clear Python error naming the argument, never a crash; and degenerate
input (no Gaussians, everything culled, NaN means, zero quaternions, negative scales) gives defined results."""

from __future__ import annotations

import pytest
import torch
from _splat_cases import F64, camera, grads, leaves, screen_gaussians, world_gaussians

import pyflowops

W, H = 9, 7
VIEW, K = camera(W, H, torch.float32)


def world(n=5, **kw):
    g = world_gaussians(n, W, H, 3, torch.float32)
    return {**g, **kw}


def screen(n=5, **kw):
    g = screen_gaussians(n, W, H, 3, torch.float32)
    return {**g, **kw}


def project(**kw):
    g = world(**{k: v for k, v in kw.items() if k in ("means", "quats", "scales")})
    args = {"viewmat": VIEW, "K": K, "width": W, "height": H}
    args.update({k: v for k, v in kw.items() if k not in ("means", "quats", "scales")})
    return pyflowops.project_gaussians(g["means"], g["quats"], g["scales"], **args)


def rasterize(**kw):
    g = screen(**{k: v for k, v in kw.items() if k in ("means2d", "conics", "opacities", "features", "depths", "radii")})
    args = {"width": W, "height": H}
    args.update({k: v for k, v in kw.items() if k not in g})
    return pyflowops.rasterize_gaussians(
        g["means2d"], g["conics"], g["opacities"], g["features"], g["depths"], g["radii"], **args
    )


def render(**kw):
    g = world(**{k: v for k, v in kw.items() if k in ("opacities", "features")})
    args = {"width": W, "height": H}
    args.update({k: v for k, v in kw.items() if k not in g})
    return pyflowops.render(g["means"], g["quats"], g["scales"], g["opacities"], g["features"], VIEW, K, **args)


# (description, call, exception, message pattern)
BAD_CALLS = [
    # project_gaussians: tensors
    ("means list", lambda: project(means=[[0.0, 0.0, 1.0]]), TypeError, r"means must be a torch.Tensor, got list"),
    ("means rank", lambda: project(means=torch.zeros(5, 3, 1)), ValueError, r"means must have 2 dimensions, got shape \(5, 3, 1\)"),
    ("means cols", lambda: project(means=torch.zeros(5, 2)), ValueError, r"means must have shape \[N, 3\] = \(5, 3\), got \(5, 2\)"),
    ("means int", lambda: project(means=torch.zeros(5, 3, dtype=torch.int32)), TypeError, r"means must be float32, float64, float16 or bfloat16, got torch.int32"),
    ("quats cols", lambda: project(quats=torch.zeros(5, 3)), ValueError, r"quats must have shape \[N, 4\] with N from means = \(5, 4\), got \(5, 3\)"),
    ("quats N", lambda: project(quats=torch.zeros(6, 4)), ValueError, r"quats must have shape \[N, 4\] with N from means = \(5, 4\), got \(6, 4\)"),
    ("quats rank", lambda: project(quats=torch.zeros(20)), ValueError, r"quats must have 2 dimensions"),
    ("quats dtype", lambda: project(quats=torch.zeros(5, 4, dtype=F64)), TypeError, r"quats has dtype torch.float64 but means has torch.float32"),
    ("quats device", lambda: project(quats=torch.zeros(5, 4, device="meta")), ValueError, r"quats is on meta but means is on cpu"),
    ("scales N", lambda: project(scales=torch.zeros(4, 3)), ValueError, r"scales must have shape \[N, 3\] with N from means = \(5, 3\), got \(4, 3\)"),
    ("scales dtype", lambda: project(scales=torch.zeros(5, 3, dtype=torch.float16)), TypeError, r"scales has dtype torch.float16 but means has torch.float32"),
    ("scales type", lambda: project(scales=None), TypeError, r"scales must be a torch.Tensor, got NoneType"),
    ("viewmat shape", lambda: project(viewmat=torch.eye(3)), ValueError, r"viewmat must have shape \[4, 4\] = \(4, 4\), got \(3, 3\)"),
    ("viewmat rank", lambda: project(viewmat=torch.eye(4)[None]), ValueError, r"viewmat must have 2 dimensions, got shape \(1, 4, 4\)"),
    ("viewmat int", lambda: project(viewmat=torch.eye(4, dtype=torch.int64)), TypeError, r"viewmat must be float32, float64, float16 or bfloat16, got torch.int64"),
    ("K shape", lambda: project(K=torch.eye(4)), ValueError, r"K must have shape \[3, 3\] = \(3, 3\), got \(4, 4\)"),
    ("K list", lambda: project(K=[[1.0]]), TypeError, r"K must be a torch.Tensor, got list"),
    # project_gaussians: options
    ("width 0", lambda: project(width=0), ValueError, r"width must be >= 1, got 0"),
    ("height 0", lambda: project(height=0), ValueError, r"height must be >= 1, got 0"),
    ("width float", lambda: project(width=9.0), TypeError, r"width must be an int, got float"),
    ("near 0", lambda: project(near=0.0), ValueError, r"near must be > 0"),
    ("near nan", lambda: project(near=float("nan")), ValueError, r"near must be finite, got nan"),
    ("far <= near", lambda: project(near=2.0, far=1.0), ValueError, r"far must be > near = 2.0, got 1.0"),
    ("far string", lambda: project(far="10"), TypeError, r"far must be a float, got str"),
    ("backend", lambda: project(backend="gpu"), ValueError, r"backend must be one of"),
    # rasterize_gaussians: tensors
    ("means2d cols", lambda: rasterize(means2d=torch.zeros(5, 3)), ValueError, r"means2d must have shape \[N, 2\] = \(5, 2\), got \(5, 3\)"),
    ("means2d rank", lambda: rasterize(means2d=torch.zeros(10)), ValueError, r"means2d must have 2 dimensions, got shape \(10,\)"),
    ("means2d int", lambda: rasterize(means2d=torch.zeros(5, 2, dtype=torch.int64)), TypeError, r"means2d must be float32"),
    ("conics N", lambda: rasterize(conics=torch.zeros(4, 3)), ValueError, r"conics must have shape \[N, 3\] with N from means2d = \(5, 3\), got \(4, 3\)"),
    ("conics dtype", lambda: rasterize(conics=torch.zeros(5, 3, dtype=F64)), TypeError, r"conics has dtype torch.float64 but means2d has torch.float32"),
    ("opacities rank", lambda: rasterize(opacities=torch.zeros(5, 1)), ValueError, r"opacities must have 1 dimensions, got shape \(5, 1\)"),
    ("opacities N", lambda: rasterize(opacities=torch.zeros(6)), ValueError, r"opacities must have shape \[N\] with N from means2d = \(5,\), got \(6,\)"),
    ("opacities device", lambda: rasterize(opacities=torch.zeros(5, device="meta")), ValueError, r"opacities is on meta but means2d is on cpu"),
    ("features rank 1", lambda: rasterize(features=torch.zeros(5)), ValueError, r"features must have 2 dimensions, got shape \(5,\)"),
    ("features N", lambda: rasterize(features=torch.zeros(4, 3)), ValueError, r"features must have shape \[N, C\] with N = 5 from means2d and C >= 1, got \(4, 3\)"),
    ("features C 0", lambda: rasterize(features=torch.zeros(5, 0)), ValueError, r"features must have shape \[N, C\] with N = 5 from means2d and C >= 1, got \(5, 0\)"),
    ("features dtype", lambda: rasterize(features=torch.zeros(5, 3, dtype=torch.bfloat16)), TypeError, r"features has dtype torch.bfloat16 but means2d has torch.float32"),
    ("depths N", lambda: rasterize(depths=torch.zeros(3)), ValueError, r"depths must have shape \[N\] with N from means2d = \(5,\), got \(3,\)"),
    ("depths type", lambda: rasterize(depths=3.0), TypeError, r"depths must be a torch.Tensor, got float"),
    ("radii float", lambda: rasterize(radii=torch.ones(5)), TypeError, r"radii must be an integer tensor \(int32, as project_gaussians returns\), got torch.float32"),
    ("radii bool", lambda: rasterize(radii=torch.ones(5, dtype=torch.bool)), TypeError, r"radii must be an integer tensor"),
    ("radii N", lambda: rasterize(radii=torch.ones(6, dtype=torch.int32)), ValueError, r"radii must have shape \[N\] from means2d = \(5,\), got \(6,\)"),
    ("radii device", lambda: rasterize(radii=torch.ones(5, dtype=torch.int32, device="meta")), ValueError, r"radii is on meta but means2d is on cpu"),
    ("radii list", lambda: rasterize(radii=[1, 2, 3, 4, 5]), TypeError, r"radii must be a torch.Tensor, got list"),
    ("background C", lambda: rasterize(background=torch.zeros(4)), ValueError, r"background must have shape \[C\] with C from features = \(3,\), got \(4,\)"),
    ("background rank", lambda: rasterize(background=torch.zeros(1, 3)), ValueError, r"background must have 1 dimensions, got shape \(1, 3\)"),
    ("background dtype", lambda: rasterize(background=torch.zeros(3, dtype=F64)), TypeError, r"background has dtype torch.float64 but means2d has torch.float32"),
    # rasterize_gaussians: options
    ("width 0 (rasterize)", lambda: rasterize(width=0), ValueError, r"width must be >= 1, got 0"),
    ("height 0 (rasterize)", lambda: rasterize(height=0), ValueError, r"height must be >= 1, got 0"),
    ("height bool", lambda: rasterize(height=True), TypeError, r"height must be an int, got bool"),
    ("tile_size 12", lambda: rasterize(tile_size=12), ValueError, r"tile_size must be a power of two in \[4, 64\], got 12"),
    ("tile_size 2", lambda: rasterize(tile_size=2), ValueError, r"tile_size must be in \[4, 64\], got 2"),
    ("tile_size 128", lambda: rasterize(tile_size=128), ValueError, r"tile_size must be in \[4, 64\], got 128"),
    ("tile_size float", lambda: rasterize(tile_size=16.0), TypeError, r"tile_size must be an int, got float"),
    # render passes both sets of checks on
    ("render width 0", lambda: render(width=0), ValueError, r"width must be >= 1, got 0"),
    ("render tile_size", lambda: render(tile_size=24), ValueError, r"tile_size must be a power of two"),
    ("render background", lambda: render(background=torch.zeros(2)), ValueError, r"background must have shape \[C\]"),
    ("render opacities N", lambda: render(opacities=torch.zeros(4)), ValueError, r"opacities must have shape \[N\] with N from means = \(5,\), got \(4,\)"),
    ("render features", lambda: render(features=torch.zeros(5, 3, dtype=F64)), TypeError, r"features has dtype torch.float64 but means has torch.float32"),
]


@pytest.mark.parametrize("call, exception, pattern", [c[1:] for c in BAD_CALLS], ids=[c[0] for c in BAD_CALLS])
def test_bad_call(call, exception, pattern):
    with pytest.raises(exception, match=pattern):
        call()


def test_backend_unavailable():
    with pytest.raises(pyflowops.BackendUnavailableError, match="project_gaussians: backend 'cuda' cannot run"):
        project(backend="cuda")


class TestDegenerate:
    def test_no_gaussians(self, any_case):
        """N = 0: projection gives empty outputs, rasterization the background (or 0) and alpha = depth = 0."""
        backend, device = any_case
        means, quats, scales, opacities, features = leaves(
            *(torch.zeros(shape, dtype=F64) for shape in [(0, 3), (0, 4), (0, 3), (0,), (0, 2)]), device=device
        )
        background = torch.tensor([0.25, -1.5], dtype=F64, device=device, requires_grad=True)
        for bg in (background, None):
            image, alpha, depth = pyflowops.render(means, quats, scales, opacities, features, VIEW, K, W, H, bg,
                                                   backend=backend)  # fmt: skip
            expected = torch.zeros(H, W, 2, dtype=F64) + (0 if bg is None else background.detach().cpu())
            torch.testing.assert_close(image.cpu(), expected, rtol=0, atol=0)
            assert (alpha == 0).all() and (depth == 0).all() and alpha.shape == (H, W, 1) and depth.shape == (H, W, 1)
        image = pyflowops.render(means, quats, scales, opacities, features, VIEW, K, W, H, background, backend=backend)[0]
        cot = torch.randn(H, W, 2, dtype=F64, device=device)
        (g_bg,) = grads(image, [background], cot)
        torch.testing.assert_close(g_bg, cot.sum((0, 1)))  # T = 1 everywhere

    def test_everything_culled(self, any_case):
        """All Gaussians behind the camera: radius 0 everywhere, the background everywhere, zero gradients."""
        backend, device = any_case
        g = world_gaussians(12, W, H, 3, device=device)
        means = g["means"].clone()
        means[:, 2] = -means[:, 2]
        inputs = leaves(means, g["quats"], g["scales"], g["opacities"], g["features"])
        background = torch.tensor([0.1, 0.2, 0.3], dtype=F64, device=device)
        view = torch.eye(4, dtype=F64)
        radii = pyflowops.project_gaussians(*inputs[:3], view, K, W, H, backend=backend)[3]
        assert (radii == 0).all()
        image, alpha, depth = pyflowops.render(*inputs, view, K, W, H, background, backend=backend)
        torch.testing.assert_close(image, background.expand(H, W, 3), rtol=0, atol=0)
        assert (alpha == 0).all() and (depth == 0).all()
        for g_input in grads((image, alpha, depth), inputs, [torch.randn_like(image), torch.ones_like(alpha), torch.ones_like(depth)]):
            assert (g_input == 0).all()

    def test_nan_means_zero_quats_negative_scales(self, any_case):
        """Poisoned rows are culled (NaN mean, zero quaternion) or equivalent (negative scales): the image,
        alpha, depth and every gradient are finite; the poisoned rows get zero gradient."""
        backend, device = any_case
        g = world_gaussians(30, W, H, 3)
        means, quats, scales = g["means"].clone(), g["quats"].clone(), g["scales"].clone()
        means[0, 0] = float("nan")
        means[1] = float("nan")
        quats[2] = 0.0
        scales[3:6] = -scales[3:6].abs()
        inputs = leaves(means, quats, scales, g["opacities"], g["features"], device=device)
        radii = pyflowops.project_gaussians(*inputs[:3], VIEW, K, W, H, backend=backend)[3]
        assert (radii[:3] == 0).all() and (radii > 0).sum() > 10
        out = pyflowops.render(*inputs, VIEW, K, W, H, backend=backend)
        assert all(torch.isfinite(o).all() for o in out) and out[1].max() > 0.5
        for g_input in grads(out, inputs, [torch.randn_like(o) for o in out]):
            assert torch.isfinite(g_input).all()
            assert (g_input[:3] == 0).all() or g_input is None
