"""4D correlation ops: every kernel backend against the PyTorch reference.

One class per op (as kornia does): values and gradients in float64 on awkward
sizes, lower precisions, non-contiguous inputs, edge cases, gradcheck and
opcheck. Bad-input tests live in test_corr_errors.py.
"""

from __future__ import annotations

import pytest
import torch

import pyflowops
from pyflowops.reference import corr as reference

from _utils import assert_close, noncontiguous, poison_allocator, random_coords

# (B, D, H, W, num_levels, radius): odd sizes, maps shrinking to 1x1, 1xN and Nx1.
CONFIGS = [
    (1, 3, 5, 7, 2, 2),
    (3, 4, 8, 9, 4, 1),  # deepest level is 1x1
    (2, 5, 1, 6, 1, 3),  # height-1 map
    (2, 3, 6, 1, 1, 0),  # width-1 map, radius 0
    (1, 2, 4, 16, 3, 4),  # deepest level 1x4
]
CONFIG_IDS = [f"B{b}D{d}H{h}W{w}L{l}r{r}" for b, d, h, w, l, r in CONFIGS]


def make_inputs(config, device, dtype=torch.float64):
    batch, dim, height, width, levels, radius = config
    fmap1 = torch.randn(batch, dim, height, width, dtype=dtype, device=device)
    fmap2 = torch.randn(batch, dim, height, width, dtype=dtype, device=device)
    coords = random_coords(batch, height, width, dtype=dtype, device=device)
    return fmap1, fmap2, coords, levels, radius


def grads(output, inputs, cotangent):
    """Gradients of <output, cotangent> w.r.t. inputs (None where unused)."""
    return torch.autograd.grad(output, inputs, cotangent, allow_unused=True)


def leaves(*tensors):
    return [t.detach().clone().requires_grad_(True) for t in tensors]


class TestCorrPyramid:
    @pytest.mark.parametrize("config", CONFIGS, ids=CONFIG_IDS)
    def test_matches_reference(self, kernel_case, config):
        backend, device = kernel_case
        fmap1, fmap2, _, levels, _ = make_inputs(config, device)
        f1, f2 = leaves(fmap1, fmap2)
        got = pyflowops.corr_pyramid(f1, f2, levels, backend=backend)
        r1, r2 = leaves(fmap1, fmap2)
        want = reference.corr_pyramid(r1, r2, levels)
        assert [g.shape for g in got] == [w.shape for w in want]
        for g, w in zip(got, want):
            assert_close(g, w)
        cotangents = [torch.randn_like(w) for w in want]
        for g, w in zip(grads(got, [f1, f2], cotangents), grads(want, [r1, r2], cotangents)):
            assert_close(g, w)

    def test_level_sizes_floor(self):
        f1, f2 = torch.randn(2, 1, 3, 7, 5, dtype=torch.float64).unbind(0)
        shapes = [tuple(p.shape) for p in pyflowops.corr_pyramid(f1, f2, 3)]
        assert shapes == [(1, 7, 5, 7, 5), (1, 7, 5, 3, 2), (1, 7, 5, 1, 1)]

    def test_level0_is_scaled_dot_product(self):
        f1, f2 = torch.randn(2, 2, 6, 3, 4, dtype=torch.float64).unbind(0)
        level0 = pyflowops.corr_pyramid(f1, f2, 1)[0]
        assert_close(level0[1, 2, 0, 1, 3], (f1[1, :, 2, 0] * f2[1, :, 1, 3]).sum() / 6**0.5)

    def test_opcheck(self):
        f1, f2 = torch.randn(2, 2, 5, 4, 6, dtype=torch.float64).unbind(0)
        torch.library.opcheck(torch.ops.pyflowops.corr_pyramid.default, (f1, f2, 2))

    def test_more_maps_than_a_cuda_grid_dimension(self, kernel_case):
        """B*H*W = 65,600 > 65,535 maps: the pooling avg_pool2d cannot do on CUDA (issue 9). Values and
        gradients equal an explicit 2x2 mean of the level above (odd sizes: the last row/column dropped)."""
        backend, device = kernel_case
        f1, f2 = leaves(*torch.randn(2, 1025, 3, 8, 8, dtype=torch.float64, device=device).unbind(0))
        assert f1.shape[0] * 8 * 8 > reference.MAX_POOL_MAPS
        got = pyflowops.corr_pyramid(f1, f2, 3, backend=backend)
        for upper, lower in zip(got, got[1:]):
            h2, w2 = lower.shape[-2:]
            blocks = upper[..., : 2 * h2, : 2 * w2].reshape(*upper.shape[:3], h2, 2, w2, 2)
            assert_close(lower, blocks.mean((-1, -3)))
        cotangents = [torch.randn_like(p) for p in got]
        r1, r2 = leaves(f1.detach(), f2.detach())
        # the same pyramid pooled by avg_pool2d (fine on the CPU at any count) gives the same gradients
        pooled = [torch.matmul(r1.flatten(2).transpose(1, 2), r2.flatten(2)).div(3**0.5).reshape(-1, 1, 8, 8)]
        for _ in range(2):
            pooled.append(torch.nn.functional.avg_pool2d(pooled[-1].cpu(), 2).to(device))
        want = [p.reshape(1025, 8, 8, *p.shape[-2:]) for p in pooled]
        for g, w in zip(grads(got, [f1, f2], cotangents), grads(want, [r1, r2], cotangents)):
            assert_close(g, w)


class TestCorrLookup:
    @pytest.mark.parametrize("config", CONFIGS, ids=CONFIG_IDS)
    def test_matches_reference(self, kernel_case, config):
        backend, device = kernel_case
        fmap1, fmap2, coords, levels, radius = make_inputs(config, device)
        pyramid = reference.corr_pyramid(fmap1, fmap2, levels)
        *pyr, crd = leaves(*pyramid, coords)
        poison_allocator(sum(p.numel() for p in pyramid) * 8, device)
        got = pyflowops.corr_lookup(pyr, crd, radius, backend=backend)
        *ref_pyr, ref_crd = leaves(*pyramid, coords)
        want = reference.corr_lookup(ref_pyr, ref_crd, radius)
        assert got.shape == (config[0], levels * (2 * radius + 1) ** 2, config[2], config[3])
        assert_close(got, want)
        cotangent = torch.randn_like(want)
        for g, w in zip(grads(got, [*pyr, crd], cotangent), grads(want, [*ref_pyr, ref_crd], cotangent)):
            assert_close(g, w)

    def test_raft_channel_order(self, kernel_case):
        """x-offset is the slow index: channel a*(2r+1)+c samples (x + a - r, y + c - r)."""
        backend, device = kernel_case
        height, width, radius = 6, 7, 2
        # corr[..., y, x] = 100*y + x makes every sample readable.
        plane = (100 * torch.arange(height).view(-1, 1) + torch.arange(width)).to(torch.float64)
        pyramid = [plane.expand(1, height, width, height, width).contiguous().to(device)]
        coords = torch.zeros(1, 2, height, width, dtype=torch.float64, device=device)
        coords[:, 0], coords[:, 1] = 3.0, 2.0
        out = pyflowops.corr_lookup(pyramid, coords, radius, backend=backend)[0, :, 0, 0].cpu()
        a, c = 4, 1  # x offset +2, y offset -1 -> (x=5, y=1)
        assert out[a * 5 + c] == 100 * 1 + 5
        assert out[1 * 5 + 4] == 100 * 4 + 2  # x offset -1, y offset +2

    def test_float32(self, kernel_case):
        backend, device = kernel_case
        fmap1, fmap2, coords, levels, radius = make_inputs((2, 8, 9, 10, 3, 3), device, torch.float32)
        pyramid = reference.corr_pyramid(fmap1, fmap2, levels)
        got = pyflowops.corr_lookup(pyramid, coords, radius, backend=backend)
        want = reference.corr_lookup([p.double() for p in pyramid], coords.double(), radius)
        assert got.dtype == torch.float32
        assert_close(got, want, torch.float32)

    @pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
    def test_low_precision(self, kernel_case, dtype):
        backend, device = kernel_case
        fmap1, fmap2, coords, levels, radius = make_inputs((2, 4, 8, 9, 2, 2), device)
        coords = coords.clamp(-20, 20)  # half has 11 bits of mantissa
        pyramid = [p.to(dtype) for p in reference.corr_pyramid(fmap1, fmap2, levels)]
        got = pyflowops.corr_lookup(pyramid, coords.to(dtype), radius, backend=backend)
        want = reference.corr_lookup([p.double() for p in pyramid], coords.to(dtype).double(), radius)
        assert got.dtype == dtype
        assert_close(got, want, dtype)

    def test_noncontiguous(self, kernel_case):
        backend, device = kernel_case
        fmap1, fmap2, coords, levels, radius = make_inputs((2, 3, 6, 7, 2, 2), device)
        pyramid = reference.corr_pyramid(fmap1, fmap2, levels)
        got = pyflowops.corr_lookup([noncontiguous(p) for p in pyramid], noncontiguous(coords), radius, backend=backend)
        assert_close(got, reference.corr_lookup(pyramid, coords, radius))

    def test_nan_coords_stay_local(self, kernel_case):
        backend, device = kernel_case
        fmap1, fmap2, coords, levels, radius = make_inputs((1, 3, 5, 6, 2, 1), device)
        coords[0, 0, 2, 3] = float("nan")
        *pyr, crd = leaves(*reference.corr_pyramid(fmap1, fmap2, levels), coords)
        out = pyflowops.corr_lookup(pyr, crd, radius, backend=backend)
        assert out[0, :, 2, 3].isnan().all()
        out[0, :, 2, 3] = 0
        assert not out.isnan().any()
        out.backward(torch.ones_like(out))
        assert all(not p.grad.isnan().any() for p in pyr)
        assert crd.grad[0, :, 2, 3].isnan().all()
        assert crd.grad.isnan().sum() == 2

    def test_far_coords_give_zeros(self, kernel_case):
        backend, device = kernel_case
        fmap1, fmap2, coords, levels, radius = make_inputs((1, 3, 4, 5, 2, 2), device)
        coords.fill_(-1.0e6)
        *pyr, crd = leaves(*reference.corr_pyramid(fmap1, fmap2, levels), coords)
        out = pyflowops.corr_lookup(pyr, crd, radius, backend=backend)
        out.backward(torch.randn_like(out))
        assert (out == 0).all() and (crd.grad == 0).all() and all((p.grad == 0).all() for p in pyr)

    def test_coords_grad_only(self, kernel_case):
        """A detached pyramid (RAFT detaches nothing there, but users may) skips the pyramid gradient."""
        backend, device = kernel_case
        fmap1, fmap2, coords, levels, radius = make_inputs((2, 3, 5, 6, 2, 2), device)
        pyramid = reference.corr_pyramid(fmap1, fmap2, levels)
        (crd,) = leaves(coords)
        cotangent = torch.randn(2, levels * 25, 5, 6, dtype=torch.float64, device=device)
        (got,) = grads(pyflowops.corr_lookup(pyramid, crd, radius, backend=backend), [crd], cotangent)
        (ref_crd,) = leaves(coords)
        (want,) = grads(reference.corr_lookup(pyramid, ref_crd, radius), [ref_crd], cotangent)
        assert_close(got, want)

    def test_empty_batch(self, kernel_case):
        backend, device = kernel_case
        fmap1, fmap2, coords, levels, radius = make_inputs((0, 3, 4, 5, 2, 1), device)
        pyramid = reference.corr_pyramid(fmap1, fmap2, levels)
        assert pyflowops.corr_lookup(pyramid, coords, radius, backend=backend).shape == (0, 18, 4, 5)

    @pytest.mark.parametrize("backend", ["cpu", "torch"])
    def test_gradcheck(self, backend):
        fmap1, fmap2, coords, levels, radius = make_inputs((2, 2, 4, 5, 2, 1), "cpu")
        pyramid = reference.corr_pyramid(fmap1, fmap2, levels)
        inputs = leaves(*pyramid, coords)
        fn = lambda p0, p1, c: pyflowops.corr_lookup([p0, p1], c, radius, backend=backend)  # noqa: E731
        assert torch.autograd.gradcheck(fn, inputs)

    @pytest.mark.filterwarnings("ignore:.*an autograd kernel was not registered")  # opcheck probes the backward ops
    def test_opcheck(self):
        fmap1, fmap2, coords, levels, radius = make_inputs((2, 2, 4, 5, 2, 1), "cpu")
        pyramid = [p.requires_grad_() for p in reference.corr_pyramid(fmap1, fmap2, levels)]
        torch.library.opcheck(torch.ops.pyflowops.corr_lookup.default, (pyramid, coords, radius))
        grad = torch.randn(2, 18, 4, 5, dtype=torch.float64)
        for pyramid_grad in (True, False):
            torch.library.opcheck(
                torch.ops.pyflowops.corr_lookup_backward.default, (grad, pyramid, coords, radius, pyramid_grad)
            )


class TestCorrLookupOnthefly:
    @pytest.mark.parametrize("config", CONFIGS, ids=CONFIG_IDS)
    def test_matches_reference(self, kernel_case, config):
        backend, device = kernel_case
        fmap1, fmap2, coords, levels, radius = make_inputs(config, device)
        f1, f2, crd = leaves(fmap1, fmap2, coords)
        got = pyflowops.corr_lookup_onthefly(f1, f2, crd, radius, levels, backend=backend)
        r1, r2, ref_crd = leaves(fmap1, fmap2, coords)
        want = reference.corr_lookup_onthefly(r1, r2, ref_crd, radius, levels)
        assert_close(got, want)
        cotangent = torch.randn_like(want)
        for g, w in zip(grads(got, [f1, f2, crd], cotangent), grads(want, [r1, r2, ref_crd], cotangent)):
            assert_close(g, w)

    @pytest.mark.parametrize("dim", [1, 37])
    def test_any_channel_count_equals_all_pairs(self, kernel_case, dim):
        backend, device = kernel_case
        fmap1, fmap2, coords, levels, radius = make_inputs((2, dim, 8, 9, 3, 2), device)
        got = pyflowops.corr_lookup_onthefly(fmap1, fmap2, coords, radius, levels, backend=backend)
        want = reference.corr_lookup(reference.corr_pyramid(fmap1, fmap2, levels), coords, radius)
        assert_close(got, want)

    def test_float32(self, kernel_case):
        backend, device = kernel_case
        fmap1, fmap2, coords, levels, radius = make_inputs((2, 16, 9, 10, 3, 3), device, torch.float32)
        got = pyflowops.corr_lookup_onthefly(fmap1, fmap2, coords, radius, levels, backend=backend)
        want = reference.corr_lookup_onthefly(fmap1.double(), fmap2.double(), coords.double(), radius, levels)
        assert_close(got, want, torch.float32, scale=4)

    @pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
    def test_low_precision(self, kernel_case, dtype):
        backend, device = kernel_case
        fmap1, fmap2, coords, levels, radius = make_inputs((2, 8, 8, 9, 2, 2), device)
        fmap1, fmap2, coords = fmap1.to(dtype), fmap2.to(dtype), coords.clamp(-20, 20).to(dtype)
        got = pyflowops.corr_lookup_onthefly(fmap1, fmap2, coords, radius, levels, backend=backend)
        want = reference.corr_lookup_onthefly(fmap1.double(), fmap2.double(), coords.double(), radius, levels)
        assert got.dtype == dtype
        assert_close(got, want, dtype, scale=2)

    def test_noncontiguous(self, kernel_case):
        backend, device = kernel_case
        fmap1, fmap2, coords, levels, radius = make_inputs((2, 3, 6, 7, 2, 2), device)
        got = pyflowops.corr_lookup_onthefly(
            noncontiguous(fmap1), noncontiguous(fmap2), noncontiguous(coords), radius, levels, backend=backend
        )
        assert_close(got, reference.corr_lookup_onthefly(fmap1, fmap2, coords, radius, levels))

    def test_nan_coords_stay_local(self, kernel_case):
        backend, device = kernel_case
        fmap1, fmap2, coords, levels, radius = make_inputs((1, 3, 5, 6, 2, 1), device)
        coords[0, 1, 1, 4] = float("inf")
        f1, f2, crd = leaves(fmap1, fmap2, coords)
        out = pyflowops.corr_lookup_onthefly(f1, f2, crd, radius, levels, backend=backend)
        assert out[0, :, 1, 4].isnan().all()
        out[0, :, 1, 4] = 0
        assert not out.isnan().any()
        out.backward(torch.ones_like(out))
        assert not f1.grad.isnan().any() and not f2.grad.isnan().any()
        assert crd.grad[0, :, 1, 4].isnan().all() and crd.grad.isnan().sum() == 2

    def test_empty_batch(self, kernel_case):
        backend, device = kernel_case
        fmap1, fmap2, coords, levels, radius = make_inputs((0, 3, 4, 5, 2, 1), device)
        out = pyflowops.corr_lookup_onthefly(fmap1, fmap2, coords, radius, levels, backend=backend)
        assert out.shape == (0, 18, 4, 5)

    @pytest.mark.parametrize("backend", ["cpu", "torch"])
    def test_gradcheck(self, backend):
        fmap1, fmap2, coords, levels, radius = make_inputs((2, 3, 4, 5, 2, 1), "cpu")
        fn = lambda a, b, c: pyflowops.corr_lookup_onthefly(a, b, c, radius, levels, backend=backend)  # noqa: E731
        assert torch.autograd.gradcheck(fn, leaves(fmap1, fmap2, coords))

    @pytest.mark.filterwarnings("ignore:.*an autograd kernel was not registered")  # opcheck probes the backward ops
    def test_opcheck(self):
        fmap1, fmap2, coords, levels, radius = make_inputs((2, 3, 4, 5, 2, 1), "cpu")
        fmap1_cl, fmap2_levels = pyflowops.ops.corr.prepare_onthefly(fmap1, fmap2, levels)
        fmap1_cl.requires_grad_()
        torch.library.opcheck(torch.ops.pyflowops.corr_lookup_onthefly.default, (fmap1_cl, fmap2_levels, coords, radius))
        grad = torch.randn(2, 18, 4, 5, dtype=torch.float64)
        torch.library.opcheck(
            torch.ops.pyflowops.corr_lookup_onthefly_backward.default, (grad, fmap1_cl, fmap2_levels, coords, radius)
        )


@pytest.mark.skipif(not torch.cuda.is_available(), reason="opcheck of triton_op needs a GPU (fails under the interpreter)")
def test_opcheck_triton_ops():
    fmap1, fmap2, coords, levels, radius = make_inputs((2, 3, 4, 5, 2, 1), "cuda")
    pyramid = reference.corr_pyramid(fmap1, fmap2, levels)
    pyflowops.ops.corr._triton_ops()
    torch.library.opcheck(torch.ops.pyflowops.corr_lookup_triton.default, (pyramid, coords, radius))
    fmap1_cl, fmap2_levels = pyflowops.ops.corr.prepare_onthefly(fmap1, fmap2, levels)
    torch.library.opcheck(torch.ops.pyflowops.corr_lookup_onthefly_triton.default, (fmap1_cl, fmap2_levels, coords, radius))


# ---- CUDA on-the-fly kernels: the tiled path and its fallback (csrc/corr/corr_onthefly_cuda.cu;
# tests/test_corr_cuda_tiling.py emulates their index logic on the CPU).


def _smooth_coords(batch, height, width, flow, device, dtype):
    """Coherent flow (a translation and a slight zoom): small boxes, the tiled path."""
    y, x = torch.meshgrid(torch.arange(height, dtype=dtype), torch.arange(width, dtype=dtype), indexing="ij")
    coords = torch.stack([x * 1.05 + flow[0], y * 0.95 + flow[1]]) + 0.31
    return (coords + 0.3 * torch.rand(batch, 2, height, width, dtype=dtype)).to(device)


def _cuda_vs_reference(fmap1, fmap2, coords, radius, levels, dtype, scale):
    f1, f2, crd = leaves(fmap1.to(dtype), fmap2.to(dtype), coords.to(dtype if dtype == torch.float64 else torch.float32))
    got = pyflowops.corr_lookup_onthefly(f1, f2, crd, radius, levels, backend="cuda")
    r1, r2, ref_crd = leaves(f1.detach().double(), f2.detach().double(), crd.detach().double())
    want = reference.corr_lookup_onthefly(r1, r2, ref_crd, radius, levels)
    assert got.dtype == dtype
    assert_close(got, want, dtype, scale=scale)
    cotangent = torch.randn_like(want)
    for g, w in zip(grads(got, [f1, f2, crd], cotangent.to(dtype)), grads(want, [r1, r2, ref_crd], cotangent)):
        assert_close(g, w, dtype, scale=4 * scale)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
class TestCorrLookupOntheflyCudaTiling:
    @pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
    def test_large_incoherent_flow(self, dtype):
        """Random flow over 40^2 maps: tile boxes pass kMaxBox (512 pixels), the fallback runs."""
        batch, dim, size, levels, radius = 2, 37, 40, 3, 4
        fmap1, fmap2 = torch.randn(2, batch, dim, size, size, dtype=torch.float64, device="cuda").unbind(0)
        coords = (torch.rand(batch, 2, size, size, dtype=torch.float64, device="cuda") * 2 - 0.5) * size
        _cuda_vs_reference(fmap1, fmap2, coords, radius, levels, dtype, scale=4)

    @pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
    @pytest.mark.parametrize("radius", [1, 3, 4, 6])
    def test_tiles_straddle_the_map_edge(self, dtype, radius):
        """13 x 21 queries (tiles cut by the image edge), windows over the map's border, D = 70 (not a
        multiple of a chunk), a coherent left part and an incoherent right part, NaN and far coords."""
        batch, dim, height, width, levels = 2, 70, 13, 21, 3
        fmap1, fmap2 = torch.randn(2, batch, dim, height, width, dtype=torch.float64, device="cuda").unbind(0)
        coords = _smooth_coords(batch, height, width, (-2.5, 3.25), "cuda", torch.float64)
        coords[:, :, :, 16:] = (torch.rand(batch, 2, height, width - 16, device="cuda", dtype=torch.float64) - 0.5) * 80
        coords[0, :, 0, 0] = torch.tensor([1.0e4, -2.5e4], device="cuda", dtype=torch.float64)
        _cuda_vs_reference(fmap1, fmap2, coords, radius, levels, dtype, scale=4)

    def test_nonfinite_coords_in_a_tiled_tile(self):
        batch, dim, size, levels, radius = 1, 19, 24, 2, 4
        fmap1, fmap2 = torch.randn(2, batch, dim, size, size, dtype=torch.float64, device="cuda").unbind(0)
        coords = _smooth_coords(batch, size, size, (1.5, 0.75), "cuda", torch.float64)
        coords[0, 0, 3, 4], coords[0, 1, 17, 9] = float("nan"), float("inf")
        f1, f2, crd = leaves(fmap1, fmap2, coords)
        out = pyflowops.corr_lookup_onthefly(f1, f2, crd, radius, levels, backend="cuda")
        assert out[0, :, 3, 4].isnan().all() and out[0, :, 17, 9].isnan().all()
        assert out.isnan().sum() == 2 * out.shape[1]
        out.backward(torch.ones_like(out))
        assert not f1.grad.isnan().any() and not f2.grad.isnan().any()
        assert crd.grad.isnan().sum() == 4
        finite = coords.clone()
        finite[0, 0, 3, 4], finite[0, 1, 17, 9] = 2.5, 8.25
        _cuda_vs_reference(fmap1, fmap2, finite, radius, levels, torch.float64, scale=1)

    @pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
    def test_low_precision_tiled(self, dtype):
        """float16/bfloat16 maps with float32 coords on the tiled path (opmath float accumulation)."""
        batch, dim, size, levels, radius = 2, 48, 20, 2, 4
        fmap1, fmap2 = torch.randn(2, batch, dim, size, size, dtype=torch.float64, device="cuda").unbind(0)
        coords = _smooth_coords(batch, size, size, (0.5, -1.25), "cuda", torch.float64)
        _cuda_vs_reference(fmap1, fmap2, coords, radius, levels, dtype, scale=4)
