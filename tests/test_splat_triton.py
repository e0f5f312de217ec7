"""The Triton twins of the splat family (pyflowops/triton/splat.py), called directly, against the reference.

On the CPU they run under the Triton interpreter (conftest), about 1 ms per Gaussian a tile visits:
the scenes stay tiny. Float64 everywhere (the kernels must agree with the dense reference to rounding),
one float32 case. The binning, which the public API does not return, is checked against the
contract's rules written as plain loops. Every test runs on CUDA too when a GPU is present.
"""

from __future__ import annotations

import math

import pytest
import torch
from _splat_cases import (
    F64, assert_all_close, camera, cotangents_like, grads, leaves, screen_gaussians, world_gaussians,
)  # fmt: skip

from pyflowops.reference import splat as ref

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
RASTER_NAMES = ("means2d", "conics", "opacities", "features", "depths")


@pytest.fixture(scope="module")
def ops():
    """torch.ops.pyflowops with the *_triton splat ops defined (importing triton takes seconds)."""
    import pyflowops.triton.splat  # noqa: F401

    return torch.ops.pyflowops


# --------------------------------------------------------------------------- projection


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # the NaN quaternion
@pytest.mark.parametrize("dtype", [F64, torch.float32])
def test_project_matches_reference(ops, dtype):
    width, height = 24, 20
    g = world_gaussians(30, width, height, dtype=dtype, device=DEVICE)
    g["means"][0, 2] = -50.0  # behind the camera (culled by depth)
    g["quats"][1] = 0.0  # NaN rotation: culled by det
    g["means"][2] += 1e3  # far off the image
    viewmat, K = camera(width, height, dtype=dtype, device=DEVICE)
    inputs = leaves(g["means"], g["quats"], g["scales"])
    expected = ref.project_gaussians(*inputs, viewmat, K, width, height, 0.01, 1e10)
    actual = ops.project_gaussians_triton(*[t.detach() for t in inputs], viewmat, K, width, height, 0.01, 1e10)
    assert (expected[3][:3] == 0).all() and (expected[3] > 0).sum() > 20  # the culled cases are exercised
    assert torch.equal(actual[3], expected[3])
    assert_all_close(actual[:3], expected[:3], ("means2d", "conics", "depths"), scale=10.0 if dtype != F64 else 1.0)

    cots = cotangents_like(expected[:3])
    want = grads(expected[:3], inputs, cots)
    got = ops.project_gaussians_backward_triton(*[t.detach() for t in inputs], viewmat, K, actual[3], *cots)
    assert (got[1][:3] == 0).all()  # culled: zero gradient (also for the NaN quaternion)
    assert_all_close(got, want, ("means", "quats", "scales"), scale=10.0 if dtype != F64 else 1.0)


def test_project_empty(ops):
    viewmat, K = camera(8, 8, device=DEVICE)
    empty = torch.empty(0, 3, dtype=F64, device=DEVICE)
    out = ops.project_gaussians_triton(empty, empty.new_empty(0, 4), empty, viewmat, K, 8, 8, 0.01, 1e10)
    assert [tuple(t.shape) for t in out] == [(0, 2), (0, 3), (0,), (0,)] and out[3].dtype == torch.int32
    back = ops.project_gaussians_backward_triton(
        empty, empty.new_empty(0, 4), empty, viewmat, K, out[3], out[0], out[1], out[2]
    )
    assert [tuple(t.shape) for t in back] == [(0, 3), (0, 4), (0, 3)]


# --------------------------------------------------------------------------- rasterization


def _rasterize_both(ops, g, width, height, background, tile_size, dtype=F64):
    """Triton forward + backward and the reference's autograd with the same cotangents:
    (triton outputs (6), reference outputs (3), triton grads (5), reference grads (5))."""
    names = RASTER_NAMES
    inputs = leaves(*(g[k] for k in names), dtype=dtype)
    bg = None if background is None else background.to(dtype)
    expected = ref.rasterize_gaussians(*inputs, g["radii"], width, height, bg, tile_size)
    plain = [t.detach() for t in inputs]
    actual = ops.rasterize_gaussians_triton(*plain, g["radii"], width, height, bg, tile_size)
    cots = cotangents_like(expected)
    want = grads(expected, inputs, cots)
    got = ops.rasterize_gaussians_backward_triton(
        *cots, *plain, g["radii"], bg, actual[1], *actual[3:], width, height, tile_size
    )
    return actual, expected, got, want


@pytest.mark.parametrize(
    ("channels", "tile_size", "with_bg", "width", "height"),
    [(3, 8, True, 24, 20), (5, 16, False, 17, 13), (1, 5, True, 11, 13), (20, 8, True, 9, 7), (3, 16, True, 1, 1)],
    ids=["c3-ts8-bg", "c5-ts16", "c1-ts5-bg", "c20-ts8-bg", "c3-1x1"],
)
def test_rasterize_matches_reference(ops, channels, tile_size, with_bg, width, height):
    """C = 20 > 16: two forward chunks and backward channels reloaded; ts = 5: a padded tile."""
    g = screen_gaussians(30 if width * height > 1 else 6, width, height, channels, device=DEVICE)
    # opaque, centred on pixel centres, in front: alpha clamped at 0.999 there (no opacity/geometry gradient)
    centres = torch.tensor([[0.5, 0.5], [2.5, 1.5], [5.5, 4.5]], dtype=F64, device=DEVICE)
    g["means2d"][:3] = torch.minimum(centres, torch.tensor([width - 0.5, height - 0.5], dtype=F64, device=DEVICE))
    g["opacities"][:3], g["depths"][:3] = 1.0, 0.5
    if width * height == 1:
        g["means2d"] = torch.rand(6, 2, dtype=F64, device=DEVICE) * 2 - 0.5
    bg = torch.rand(channels, dtype=F64, device=DEVICE) if with_bg else None
    actual, expected, got, want = _rasterize_both(ops, g, width, height, bg, tile_size)
    assert_all_close(actual[:3], expected, ("image", "alpha", "depth"))
    assert_all_close(got, want, RASTER_NAMES)
    assert (actual[5] > 0).any()  # something was composited


def test_rasterize_float32(ops):
    g = screen_gaussians(24, 20, 16, 3, device=DEVICE)
    bg = torch.rand(3, device=DEVICE)
    actual, expected, got, want = _rasterize_both(ops, g, 20, 16, bg, 16, dtype=torch.float32)
    assert actual[0].dtype == torch.float32 and got[3].dtype == torch.float32
    assert_all_close(actual[:3], expected, ("image", "alpha", "depth"), scale=10.0)
    assert_all_close(got, want, RASTER_NAMES, scale=10.0)


def test_rasterize_early_stop(ops):
    """Three flat Gaussians with opacity 0.995 over one 4x4 image: after the first, T ~ 0.005 and the
    second would leave ~2.5e-5 < 1e-4, so every pixel stops there (last = 1, alpha = 0.995 at the
    pixel on the centre); the third one (behind) is never reached. Gradients too."""
    n = 3
    g = {
        "means2d": torch.full((n, 2), 2.5, dtype=F64, device=DEVICE),
        "conics": torch.tensor([[1e-4, 0.0, 1e-4]], dtype=F64, device=DEVICE).repeat(n, 1),
        "opacities": torch.full((n,), 0.995, dtype=F64, device=DEVICE),
        "features": torch.rand(n, 2, dtype=F64, device=DEVICE),
        "depths": torch.tensor([1.0, 2.0, 3.0], dtype=F64, device=DEVICE),
        "radii": torch.full((n,), 10, dtype=torch.int32, device=DEVICE),
    }
    actual, expected, got, want = _rasterize_both(ops, g, 4, 4, None, 16)
    assert (actual[5] == 1).all()
    assert actual[1][2, 2, 0] == pytest.approx(0.995, rel=1e-12)
    assert_all_close(actual[:3], expected, ("image", "alpha", "depth"))
    assert_all_close(got, want, RASTER_NAMES)
    assert (got[3][1:] == 0).all() and (got[3][0] != 0).all()


def test_rasterize_all_culled_and_empty(ops):
    """All radii 0 (M = 0) and N = 0: image = background, alpha = depth = last = 0, zero gradients."""
    g = screen_gaussians(5, 6, 5, 2, device=DEVICE)
    g["radii"].zero_()
    bg = torch.rand(2, dtype=F64, device=DEVICE)
    actual, _, got, _ = _rasterize_both(ops, g, 6, 5, bg, 4)
    assert actual[4].numel() == 0 and (actual[3] == 0).all() and actual[3].numel() == 2 * 2 + 1
    assert torch.equal(actual[0], bg.expand(5, 6, 2)) and (actual[1] == 0).all() and (actual[5] == 0).all()
    assert all((t == 0).all() for t in got)
    empty = {k: v[:0] for k, v in g.items()}
    actual, _, got, _ = _rasterize_both(ops, empty, 6, 5, bg, 4)
    assert torch.equal(actual[0], bg.expand(5, 6, 2)) and (actual[2] == 0).all() and actual[4].numel() == 0
    assert [tuple(t.shape) for t in got] == [(0, 2), (0, 3), (0,), (0, 2), (0,)]


def _binning_by_loops(means2d, depths, radii, width, height, tile_size):
    """The contract's binning, one Gaussian and tile at a time: (tile_offsets, gaussian_ids) as lists."""
    tiles_x, tiles_y = -(-width // tile_size), -(-height // tile_size)
    per_tile = [[] for _ in range(tiles_x * tiles_y)]
    for gid in range(means2d.shape[0]):
        r = float(radii[gid])
        if r <= 0:
            continue
        mx, my = means2d[gid].tolist()
        if mx != mx or my != my:  # NaN: no tile
            continue
        cols = range(max(math.floor(mx - r - 0.5), 0), min(math.ceil(mx + r - 0.5), width - 1) + 1)
        rows = range(max(math.floor(my - r - 0.5), 0), min(math.ceil(my + r - 0.5), height - 1) + 1)
        tiles = {(i // tile_size) * tiles_x + j // tile_size for i in rows for j in cols}
        for t in tiles:
            per_tile[t].append((float(depths[gid]), gid))
    offsets, ids = [0], []
    for entries in per_tile:
        ids += [gid for _, gid in sorted(entries)]  # by depth, ties by index
        offsets.append(len(ids))
    return offsets, ids


@pytest.mark.parametrize("tile_size", [4, 7, 16])
def test_binning(ops, tile_size):
    """tile_offsets and gaussian_ids: every tile whose pixels meet the superset box, sorted by (depth, index)."""
    width, height = 23, 17
    g = screen_gaussians(30, width, height, 1, device=DEVICE)
    g["means2d"][4] = torch.tensor([-40.0, 3.0], dtype=F64)  # entirely left of the image: no tile
    g["means2d"][5] = torch.tensor([float("nan"), 3.0], dtype=F64)  # NaN: no tile
    out = ops.rasterize_gaussians_triton(
        *(g[k] for k in RASTER_NAMES), g["radii"], width, height, None, tile_size
    )
    offsets, ids = _binning_by_loops(g["means2d"].cpu(), g["depths"].cpu(), g["radii"].cpu(), width, height, tile_size)
    assert out[3].dtype == torch.int32 and out[4].dtype == torch.int32
    assert out[3].tolist() == offsets
    assert out[4].tolist() == ids
    assert 4 not in ids and 5 not in ids
