"""spatial_gradient and textureless_mask: every kernel backend against the PyTorch reference and kornia.

Values and gradients in float64 on awkward sizes (1x1, 1xN, Nx1, odd, empty),
hand-checkable values (ramps, quadratics), lower precisions, non-contiguous
inputs, gradcheck, opcheck and torch.compile. The loss is in
test_gradient_regularization.py, bad inputs in test_gradreg_errors.py.
"""

from __future__ import annotations

import itertools

import kornia
import pytest
import torch
from _gradreg_cases import (
    SIZE_IDS,
    SIZE_STENCIL_IDS,
    SIZE_STENCILS,
    SIZES,
    STENCIL_IDS,
    STENCILS,
    THRESHOLD,
    case_params,
    edge_ramp_factor,
    grads,
    leaves,
    make_tensors,
    ramp,
    regularization_opcheck_args,
)
from _utils import assert_close, noncontiguous, poison_allocator
from conftest import ALL_CASES, available

import pyflowops
from pyflowops.ops import gradreg as gradreg_ops
from pyflowops.reference import gradreg as reference


class TestSpatialGradient:
    @pytest.mark.parametrize(
        "case, size, stencil", case_params(SIZE_STENCILS, SIZE_STENCIL_IDS, lambda k: k // 3 % 3 == k % 3)
    )
    def test_matches_reference(self, case, size, stencil):
        self.check_reference(*available(case), size, stencil, True)

    @pytest.mark.parametrize("stencil", STENCILS, ids=STENCIL_IDS)
    def test_raw_matches_reference(self, kernel_case, stencil):
        self.check_reference(*kernel_case, (2, 5, 7), stencil, False)

    @staticmethod
    def check_reference(backend, device, size, stencil, normalized):
        """Forward and backward (one random cotangent) against the reference in float64, outputs poisoned."""
        operator, order = stencil
        batch, height, width = size
        x = torch.randn(batch, 3, height, width, dtype=torch.float64, device=device)
        (leaf,) = leaves(x)
        poison_allocator(x.numel() * 8 * 3, device)
        got = pyflowops.spatial_gradient(leaf, operator, normalized, order=order, backend=backend)
        (ref_leaf,) = leaves(x)
        want = reference.spatial_gradient(ref_leaf, operator, normalized, order)
        assert got.shape == (batch, 3, 2 if order == 1 else 3, height, width)
        assert_close(got, want)
        cotangent = torch.randn_like(want)
        poison_allocator(x.numel() * 8 * 3, device)
        (got_grad,) = grads(got, [leaf], cotangent)
        (want_grad,) = grads(want, [ref_leaf], cotangent)
        assert_close(got_grad, want_grad)

    @pytest.mark.parametrize("normalized", [True, False], ids=["normalized", "raw"])
    @pytest.mark.parametrize("stencil", STENCILS, ids=STENCIL_IDS)
    def test_matches_kornia(self, any_case, stencil, normalized):
        backend, device = any_case
        operator, order = stencil
        x = torch.randn(2, 3, 7, 9, dtype=torch.float64, device=device)
        got = pyflowops.spatial_gradient(x, operator, normalized, order=order, backend=backend)
        want = kornia.filters.spatial_gradient(x, mode=operator, order=order, normalized=normalized)
        assert_close(got, want)

    @pytest.mark.parametrize("operator", ["sobel", "diff"])
    def test_linear_ramp_gives_its_slope_and_half_at_the_border(self, any_case, operator):
        """kornia's convention: normalized response = slope inside, slope / 2 on the first and last pixel."""
        backend, device = any_case
        height, width, sx, sy = 6, 7, 3.0, -0.5
        x = ramp(height, width, sx, sy, batch=2, channels=2, device=device)
        grad = pyflowops.spatial_gradient(x, operator, backend=backend).cpu()
        want_dx = sx * edge_ramp_factor(width).expand(height, width)
        want_dy = sy * edge_ramp_factor(height).view(-1, 1).expand(height, width)
        assert_close(grad[:, :, 0], want_dx.expand(2, 2, height, width))
        assert_close(grad[:, :, 1], want_dy.expand(2, 2, height, width))
        raw = pyflowops.spatial_gradient(x, operator, False, backend=backend).cpu()
        assert_close(raw, grad * (8 if operator == "sobel" else 2))

    def test_quadratics_give_their_second_derivatives(self, any_case):
        """diff order 2, normalized: x^2/2 -> dxx = 1, x*y -> dxy = 1, y^2/2 -> dyy = 1 inside."""
        backend, device = any_case
        rows = torch.arange(6, dtype=torch.float64).view(-1, 1)
        cols = torch.arange(7, dtype=torch.float64).view(1, -1)
        fields = torch.stack([cols**2 / 2 + 0 * rows, cols * rows, rows**2 / 2 + 0 * cols]).unsqueeze(0)
        grad = pyflowops.spatial_gradient(fields.to(device), "diff", order=2, backend=backend).cpu()
        inner = (slice(1, -1), slice(1, -1))
        for field in range(3):
            for direction in range(3):
                want = 1.0 if field == direction else 0.0
                assert (grad[0, field, direction][inner] == want).all(), (field, direction)
        # replicate border: at column 0 of x^2/2, dxx = x[1] - x[0] = 1/2
        assert (grad[0, 0, 0, :, 0] == 0.5).all()

    @pytest.mark.parametrize(
        "case, size, stencil",
        case_params(
            list(itertools.product([(1, 1, 1), (2, 1, 5), (1, 6, 1), (2, 2, 2), (2, 5, 7)], STENCILS)),
            [f"{a}-{b}" for a, b in itertools.product(["1x1", "1x5", "6x1", "2x2", "5x7"], STENCIL_IDS)],
            lambda k: k < 3 or (k // 3 + k % 3) % 2 == 0,  # 1x1 with every stencil, then every other one
            cases=ALL_CASES,
        ),
    )
    def test_backward_of_a_summed_direction(self, case, size, stencil):
        """Replicate padding telescopes: the gradient of sum(G_k) over the image only lives on the border.
        [-1, 0, 1] / 2 sums to e = (-1 on the first index, +1 on the last; 0 for one index) per row, the Sobel
        smoothing [1, 2, 1] / 4 to 1 per pixel and [1, -2, 1] to 0, so d sum(G)/dx is 1 x e (dx), e x 1 (dy),
        0 (dxx, dyy) and e x e (dxy, separable)."""
        backend, device = available(case)
        operator, order = stencil
        batch, height, width = size

        def ends(n):
            e = torch.zeros(n, dtype=torch.float64)
            if n > 1:
                e[0], e[-1] = -1.0, 1.0
            return e

        ones_h, ones_w = torch.ones(height, dtype=torch.float64), torch.ones(width, dtype=torch.float64)
        if order == 1:
            expected = [torch.outer(ones_h, ends(width)), torch.outer(ends(height), ones_w)]
        else:
            zeros = torch.zeros(height, width, dtype=torch.float64)
            expected = [zeros, torch.outer(ends(height), ends(width)), zeros]
        x = torch.randn(batch, 2, height, width, dtype=torch.float64, device=device, requires_grad=True)
        grad = pyflowops.spatial_gradient(x, operator, order=order, backend=backend)
        for direction, want in enumerate(expected):
            (got,) = torch.autograd.grad(grad[:, :, direction].sum(), x, retain_graph=True)
            assert_close(got, want.expand(batch, 2, height, width))

    def test_float32(self, kernel_case):
        backend, device = kernel_case
        x = torch.randn(2, 3, 9, 11, device=device)
        for operator, order in STENCILS:
            leaf = x.clone().requires_grad_()
            got = pyflowops.spatial_gradient(leaf, operator, order=order, backend=backend)
            assert got.dtype == torch.float32
            assert_close(got, reference.spatial_gradient(x.double(), operator, True, order), torch.float32)
            cotangent = torch.randn_like(got)
            (got_grad,) = grads(got, [leaf], cotangent)
            ref_leaf = x.double().requires_grad_()
            (want_grad,) = grads(
                reference.spatial_gradient(ref_leaf, operator, True, order), [ref_leaf], cotangent.double()
            )
            assert got_grad.dtype == torch.float32
            assert_close(got_grad, want_grad, torch.float32)

    @pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
    def test_low_precision(self, kernel_case, dtype):
        backend, device = kernel_case
        x = torch.randn(2, 3, 8, 9, device=device).to(dtype)
        for operator, order in STENCILS:
            leaf = x.clone().requires_grad_()
            got = pyflowops.spatial_gradient(leaf, operator, order=order, backend=backend)
            assert got.dtype == dtype
            assert_close(got, reference.spatial_gradient(x.double(), operator, True, order), dtype)
            cotangent = torch.randn(got.shape, device=device).to(dtype)
            (got_grad,) = grads(got, [leaf], cotangent)
            ref_leaf = x.double().requires_grad_()
            (want_grad,) = grads(
                reference.spatial_gradient(ref_leaf, operator, True, order), [ref_leaf], cotangent.double()
            )
            assert got_grad.dtype == dtype
            assert_close(got_grad, want_grad, dtype)

    @pytest.mark.parametrize("layout", ["strided", "channels_last"])
    def test_noncontiguous(self, kernel_case, layout):
        backend, device = kernel_case
        x = torch.randn(2, 3, 6, 7, dtype=torch.float64, device=device)
        for operator, order in STENCILS:
            view = noncontiguous(x) if layout == "strided" else x.contiguous(memory_format=torch.channels_last)
            assert not view.is_contiguous()
            leaf = view.detach().requires_grad_()
            got = pyflowops.spatial_gradient(leaf, operator, order=order, backend=backend)
            want = reference.spatial_gradient(x, operator, True, order)
            assert_close(got, want)
            cotangent = torch.randn_like(want)
            (got_grad,) = grads(got, [leaf], noncontiguous(cotangent))  # a strided cotangent too
            ref_leaf = x.clone().requires_grad_()
            (want_grad,) = grads(reference.spatial_gradient(ref_leaf, operator, True, order), [ref_leaf], cotangent)
            assert_close(got_grad, want_grad)

    @pytest.mark.parametrize("size", [(0, 4, 5), (2, 0, 5), (2, 4, 0)], ids=["B0", "H0", "W0"])
    def test_empty(self, kernel_case, size):
        backend, device = kernel_case
        x = torch.randn(size[0], 3, *size[1:], dtype=torch.float64, device=device, requires_grad=True)
        for operator, order in STENCILS:
            out = pyflowops.spatial_gradient(x, operator, order=order, backend=backend)
            assert out.shape == (size[0], 3, 2 if order == 1 else 3, *size[1:])
            (grad,) = torch.autograd.grad(out, x, torch.ones_like(out))
            assert grad.shape == x.shape

    def test_large_cpu(self):
        x = torch.randn(2, 3, 201, 299, dtype=torch.float64)
        for operator, order in STENCILS:
            (leaf,) = leaves(x)
            got = pyflowops.spatial_gradient(leaf, operator, order=order, backend="cpu")
            (ref_leaf,) = leaves(x)
            want = reference.spatial_gradient(ref_leaf, operator, True, order)
            assert_close(got, want)
            cotangent = torch.randn_like(want)
            assert_close(grads(got, [leaf], cotangent)[0], grads(want, [ref_leaf], cotangent)[0])

    @pytest.mark.usefixtures("one_thread")
    @pytest.mark.parametrize("backend", ["cpu", "torch"])
    @pytest.mark.parametrize("stencil", STENCILS, ids=STENCIL_IDS)
    def test_gradcheck(self, backend, stencil):
        operator, order = stencil
        x = torch.randn(2, 1, 3, 4, dtype=torch.float64, requires_grad=True)
        for normalized in (True, False):
            fn = lambda t, n=normalized: pyflowops.spatial_gradient(t, operator, n, order=order, backend=backend)
            assert torch.autograd.gradcheck(fn, [x])

    @pytest.mark.filterwarnings("ignore:.*an autograd kernel was not registered")  # opcheck probes the backward ops
    @pytest.mark.parametrize("stencil", STENCILS, ids=STENCIL_IDS)
    def test_opcheck(self, stencil):
        operator, order = stencil
        x = torch.randn(2, 3, 5, 6, dtype=torch.float64, requires_grad=True)
        torch.library.opcheck(torch.ops.pyflowops.spatial_gradient.default, (x, operator, order, True))
        grad_out = torch.randn(2, 3, 2 if order == 1 else 3, 5, 6, dtype=torch.float64)
        torch.library.opcheck(torch.ops.pyflowops.spatial_gradient_backward.default, (grad_out, operator, order, False))

    def test_dynamo(self):
        x = torch.randn(2, 3, 8, 9, dtype=torch.float64)

        def fn(t):
            first = pyflowops.spatial_gradient(t, "sobel", backend="cpu")
            second = pyflowops.spatial_gradient(t, "diff", order=2, backend="cpu")
            return first.square().sum() + second.abs().sum()

        (leaf,) = leaves(x)
        eager = fn(leaf)
        (eager_grad,) = torch.autograd.grad(eager, leaf)
        (leaf,) = leaves(x)
        compiled = torch.compile(fn, fullgraph=True, backend="aot_eager")(leaf)  # graph + fake kernels; inductor below
        (compiled_grad,) = torch.autograd.grad(compiled, leaf)
        assert_close(compiled, eager)
        assert_close(compiled_grad, eager_grad)


class TestTexturelessMask:
    @pytest.mark.parametrize("operator", ["sobel", "diff"])
    @pytest.mark.parametrize("size", SIZES, ids=SIZE_IDS)
    def test_matches_reference(self, kernel_case, size, operator):
        backend, device = kernel_case
        batch, height, width = size
        image = torch.rand(batch, 3, height, width, dtype=torch.float64, device=device)
        poison_allocator(image.numel() * 8, device)
        got = pyflowops.textureless_mask(image, THRESHOLD, operator, backend=backend)
        want = reference.textureless_mask(image, THRESHOLD, operator)
        assert got.dtype == torch.bool and got.shape == (batch, 1, height, width)
        assert torch.equal(got.cpu(), want.cpu())

    def test_step_example(self, any_case):
        backend, device = any_case
        image = torch.zeros(1, 3, 8, 8, device=device)
        image[..., 4:] = 1.0  # a vertical edge between columns 3 and 4
        for operator in ("sobel", "diff"):
            row = pyflowops.textureless_mask(image, 0.1, operator, backend=backend)[0, 0].cpu()
            assert row[0].tolist() == [True, True, True, False, False, True, True, True]
            assert (row == row[0]).all()

    def test_ramp_is_half_as_strong_on_the_border(self, any_case):
        """slope 0.05 along x: e = (0.05 + 0) / 2 = 0.025 inside and 0.0125 on the first and last columns."""
        backend, device = any_case
        image = ramp(5, 7, 0.05, 0.0, channels=2, device=device)
        mask = pyflowops.textureless_mask(image, 0.02, backend=backend)[0, 0].cpu()
        want = torch.zeros(5, 7, dtype=torch.bool)
        want[:, 0] = want[:, -1] = True
        assert torch.equal(mask, want)
        assert pyflowops.textureless_mask(image, 0.03, backend=backend).all()
        assert not pyflowops.textureless_mask(image, 0.0125, backend=backend).any()  # strict <

    def test_threshold_option_equals_mask(self, kernel_case):
        """regularization with textureless_threshold=t == regularization with mask=textureless_mask(image, t)."""
        backend, device = kernel_case
        tensors = make_tensors((2, 6, 7), device=device)
        for operator in ("sobel", "diff"):
            mask = pyflowops.textureless_mask(tensors["image"], THRESHOLD, operator, backend=backend)
            assert 0 < mask.sum() < mask.numel()
            options = {"operator": operator, "reduction": "none", "backend": backend}
            got = pyflowops.gradient_regularization(
                tensors["flow"], tensors["image"], textureless_threshold=THRESHOLD, **options
            )
            assert_close(got, pyflowops.gradient_regularization(tensors["flow"], mask=mask, **options))

    @pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
    def test_lower_precision(self, kernel_case, dtype):
        backend, device = kernel_case
        image = torch.rand(2, 3, 7, 9, device=device).to(dtype)
        got = pyflowops.textureless_mask(image, THRESHOLD, backend=backend)
        strength = reference.edge_strength(image.double())
        want = (strength < THRESHOLD).unsqueeze(1)
        undecided = ((strength - THRESHOLD).abs() < 1e-3).unsqueeze(1)  # opmath rounding may decide either way
        assert torch.equal(got.cpu()[~undecided.cpu()], want.cpu()[~undecided.cpu()])

    @pytest.mark.parametrize("layout", ["strided", "channels_last"])
    def test_noncontiguous(self, kernel_case, layout):
        backend, device = kernel_case
        image = torch.rand(2, 3, 6, 7, dtype=torch.float64, device=device)
        view = noncontiguous(image) if layout == "strided" else image.contiguous(memory_format=torch.channels_last)
        got = pyflowops.textureless_mask(view, THRESHOLD, backend=backend)
        assert torch.equal(got, reference.textureless_mask(image, THRESHOLD))

    @pytest.mark.parametrize("size", [(0, 4, 5), (2, 0, 5)], ids=["B0", "H0"])
    def test_empty(self, kernel_case, size):
        backend, device = kernel_case
        image = torch.rand(size[0], 3, *size[1:], device=device)
        assert pyflowops.textureless_mask(image, 0.1, backend=backend).shape == (size[0], 1, *size[1:])

    def test_opcheck(self):
        image = torch.rand(2, 3, 5, 6, dtype=torch.float64)
        for operator in ("sobel", "diff"):
            torch.library.opcheck(torch.ops.pyflowops.textureless_mask.default, (image, THRESHOLD, operator))

    def test_dynamo(self):
        image = torch.rand(2, 3, 8, 9)

        def fn(img):
            return pyflowops.textureless_mask(img, THRESHOLD, backend="cpu").float().mean(dim=(1, 2, 3))

        assert_close(torch.compile(fn, fullgraph=True, backend="aot_eager")(image), fn(image))


@pytest.mark.skipif(
    not torch.cuda.is_available(), reason="opcheck of triton_op needs a GPU (fails under the interpreter)"
)
@pytest.mark.filterwarnings("ignore:.*an autograd kernel was not registered")
def test_opcheck_triton_ops():
    ops = gradreg_ops._triton_ops()
    tensors = make_tensors((2, 4, 5), device="cuda")
    x = torch.randn(2, 3, 5, 6, dtype=torch.float64, device="cuda", requires_grad=True)
    for operator, order in STENCILS:
        torch.library.opcheck(ops.spatial_gradient_triton.default, (x, operator, order, True))
        grad_out = torch.randn(2, 3, 2 if order == 1 else 3, 5, 6, dtype=torch.float64, device="cuda")
        torch.library.opcheck(ops.spatial_gradient_backward_triton.default, (grad_out, operator, order, True))
        forward_args, backward_args = regularization_opcheck_args(operator, order, "cuda")
        for args in forward_args:
            torch.library.opcheck(ops.gradient_regularization_triton.default, args)
        for args in backward_args:
            torch.library.opcheck(ops.gradient_regularization_backward_triton.default, args)
    torch.library.opcheck(ops.textureless_mask_triton.default, (tensors["image"], THRESHOLD, "sobel"))
