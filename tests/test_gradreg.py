"""Sobel-gradient regularization ops: every kernel backend against the PyTorch reference and kornia.

One class per op (as kornia does): values and gradients in float64 on awkward
sizes (1x1, 1xN, Nx1, odd, empty), every option combination of
gradient_regularization, lower precisions, non-contiguous inputs, hand-checkable
values that do not lean on the reference, gradcheck, opcheck and torch.compile.
Bad-input tests live in test_gradreg_errors.py, the module in test_nn_gradreg.py.
The exact math is docs/gradreg_kernel_contract.md.
"""

from __future__ import annotations

import itertools

import kornia
import pytest
import torch
from _utils import assert_close, noncontiguous, poison_allocator
from conftest import KERNEL_CASES

import pyflowops
from pyflowops.ops import gradreg as gradreg_ops
from pyflowops.reference import gradreg as reference

# (operator, order) of the flow's derivatives: the three stencils of the family.
STENCILS = [("sobel", 1), ("diff", 1), ("diff", 2)]
STENCIL_IDS = ["sobel", "diff", "diff2"]
PENALTIES = ["l1", "charbonnier", "l2"]
REDUCTIONS = ["mean", "sum", "none"]

# (B, H, W): tiny, 1xN, Nx1, odd non-square, batch 1 and > 1. Small enough for the Triton interpreter.
SIZES = [(1, 1, 1), (2, 1, 7), (2, 6, 1), (1, 5, 7), (3, 9, 8), (2, 12, 13)]
SIZE_IDS = [f"B{b}H{h}W{w}" for b, h, w in SIZES]

# Edge strength below which a pixel counts as texture-less: splits random images in [0, 1] (e ~ 0.05 .. 0.3).
THRESHOLD = 0.12
# How the per-pixel weight is built: (image given, edge_weight, textureless_threshold).
# "image" alone (edge_weight 0, no threshold) must ignore the image.
WEIGHTINGS = {
    "noimage": (False, 0.0, None),
    "image": (True, 0.0, None),
    "edge": (True, 2.5, None),
    "thr": (True, 0.0, THRESHOLD),
    "edge-thr": (True, 5.0, THRESHOLD),
}
MASKS = ["nomask", "boolmask", "floatmask"]
TARGETS = ["notarget", "target"]

# The backends of the family plus the reference itself (for hand-checked values).
ALL_CASES = [pytest.param(("torch", "cpu"), id="torch"), *KERNEL_CASES]
# Kernel backends fast enough for the full option product: all but the Triton interpreter.
FAST_CASES = [p for p in KERNEL_CASES if p.id != "triton-interp"]


@pytest.fixture(params=ALL_CASES)
def any_case(request):
    """(backend, device) of the reference or of a kernel backend."""
    backend, device = request.param
    assert backend in pyflowops.available_backends(), (backend, pyflowops.build_info())
    return backend, device


@pytest.fixture(params=FAST_CASES)
def fast_case(request):
    """(backend, device) of a kernel backend other than the (slow) Triton interpreter."""
    backend, device = request.param
    assert backend in pyflowops.available_backends(), (backend, pyflowops.build_info())
    return backend, device


@pytest.fixture
def one_thread():
    """Run on one intra-op thread: the many tiny calls of the option product and of gradcheck gain nothing from
    the pool, and on a loaded 2-core machine each wake-up of it costs ~10 ms (test_large_cpu and test_sizes keep
    the default threads, so the kernels' parallel split is still tested)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def case_params(combos, ids, interpreter_keeps, cases=KERNEL_CASES):
    """pytest params (case, *combo) for every case and combo; under the Triton interpreter
    (a numpy simulation, ~0.1 s a launch) only the combos k with ``interpreter_keeps(k)``."""
    return [
        pytest.param(case.values[0], *combo, marks=case.marks, id=f"{case.id}-{combo_id}")
        for case in cases
        for k, (combo, combo_id) in enumerate(zip(combos, ids))
        if case.id != "triton-interp" or interpreter_keeps(k)
    ]


def available(case):
    backend, device = case
    assert backend in pyflowops.available_backends(), (backend, pyflowops.build_info())
    return backend, device


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def grads(output, inputs, cotangent):
    """Gradients of <output, cotangent> w.r.t. inputs (None where unused)."""
    return torch.autograd.grad(output, inputs, cotangent, allow_unused=True)


def leaves(*tensors):
    return [None if t is None else t.detach().clone().requires_grad_(True) for t in tensors]


def pairwise(factors: dict[str, list]) -> list[dict]:
    """A small deterministic set of rows covering every pair of values of two factors (greedy all-pairs)."""
    names = list(factors)
    order = {name: k for k, name in enumerate(names)}

    def key(a, i, b, j):
        return (a, i, b, j) if order[a] < order[b] else (b, j, a, i)

    uncovered = {
        key(a, i, b, j)
        for a, b in itertools.combinations(names, 2)
        for i in range(len(factors[a]))
        for j in range(len(factors[b]))
    }
    rows = []
    while uncovered:
        a, i, b, j = min(uncovered)
        row = {a: i, b: j}
        for name in names:
            if name not in row:
                row[name] = max(
                    range(len(factors[name])),
                    key=lambda v: (sum(key(m, row[m], name, v) in uncovered for m in row), -v),
                )
        uncovered -= {key(m, row[m], n, row[n]) for m, n in itertools.combinations(names, 2)}
        rows.append({name: factors[name][row[name]] for name in names})
    return rows


def make_tensors(size, *, channels=3, dtype=torch.float64, device="cpu"):
    """Fresh random flow, target, image in [0, 1], bool and float masks of one size (never zeros)."""
    batch, height, width = size
    kw = {"dtype": dtype, "device": device}
    return {
        "flow": torch.randn(batch, 2, height, width, **kw) * 2,
        "target": torch.randn(batch, 2, height, width, **kw),
        "image": torch.rand(batch, channels, height, width, **kw),
        "boolmask": torch.rand(batch, 1, height, width, device=device) > 0.3,
        "floatmask": torch.rand(batch, 1, height, width, **kw) + 0.1,
    }


def case_arguments(tensors, weighting, mask, target):
    """(image, mask, target, options) of one option combination."""
    has_image, edge_weight, threshold = WEIGHTINGS[weighting]
    image = tensors["image"] if has_image else None
    mask = None if mask == "nomask" else tensors[mask]
    target = tensors["target"] if target == "target" else None
    return image, mask, target, {"edge_weight": edge_weight, "textureless_threshold": threshold}


def check_regularization(backend, device, size, stencil, penalty, weighting, mask, target, reduction, *, eps=1e-3):
    """Forward and backward (flow and target, one random cotangent) of a backend against the reference, float64."""
    operator, order = stencil
    tensors = make_tensors(size, device=device)
    image, mask, target, options = case_arguments(tensors, weighting, mask, target)
    options.update(operator=operator, order=order, penalty=penalty, eps=eps, reduction=reduction)
    flow, tgt = leaves(tensors["flow"], target)
    poison_allocator(8 * tensors["flow"].numel() * 4, device)
    got = pyflowops.gradient_regularization(flow, image, mask, tgt, backend=backend, **options)
    ref_flow, ref_tgt = leaves(tensors["flow"], target)
    want = reference.gradient_regularization(ref_flow, image, mask, ref_tgt, **options)
    assert got.shape == want.shape and got.dtype == torch.float64 and got.device.type == device
    assert_close(got, want)
    cotangent = torch.randn_like(want)
    inputs, ref_inputs = [flow], [ref_flow]
    if target is not None:
        inputs.append(tgt)
        ref_inputs.append(ref_tgt)
    poison_allocator(8 * tensors["flow"].numel() * 4, device)
    got_grads = grads(got, inputs, cotangent)
    want_grads = grads(want, ref_inputs, cotangent)
    for g, w in zip(got_grads, want_grads):
        assert g.shape == w.shape
        assert_close(g, w)
    if target is not None:
        assert torch.equal(got_grads[1], -got_grads[0])


def ramp(height, width, slope_x=0.0, slope_y=0.0, batch=1, channels=1, dtype=torch.float64, device="cpu"):
    """[B, C, H, W] field slope_x * column + slope_y * row."""
    rows = torch.arange(height, dtype=dtype, device=device).view(-1, 1)
    cols = torch.arange(width, dtype=dtype, device=device).view(1, -1)
    return (slope_x * cols + slope_y * rows).expand(batch, channels, height, width).contiguous()


def edge_ramp_factor(n, device="cpu"):
    """[n]: 1 in the interior, 1/2 on the first and last index (a normalized ramp's derivative / slope)."""
    factor = torch.ones(n, dtype=torch.float64, device=device)
    if n >= 2:
        factor[0] = factor[-1] = 0.5
    else:
        factor[:] = 0.0  # one pixel: both neighbours are the pixel itself
    return factor


# ---------------------------------------------------------------------------
# spatial_gradient
# ---------------------------------------------------------------------------


# Every (size, stencil); the interpreter sees each size once and each stencil twice.
SIZE_STENCILS = list(itertools.product(SIZES, STENCILS))
SIZE_STENCIL_IDS = [f"{a}-{b}" for a, b in itertools.product(SIZE_IDS, STENCIL_IDS)]


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


# ---------------------------------------------------------------------------
# gradient_regularization
# ---------------------------------------------------------------------------

OPTION_PRODUCT = list(itertools.product(STENCILS, PENALTIES, WEIGHTINGS, MASKS, TARGETS, REDUCTIONS))
# Each combination runs on one of the small sizes, cycling, so every size meets many options.
PRODUCT_PARAMS = [
    pytest.param(
        SIZES[k % 5], *combo, id="-".join([SIZE_IDS[k % 5], STENCIL_IDS[STENCILS.index(combo[0])], *combo[1:]])
    )
    for k, combo in enumerate(OPTION_PRODUCT)
]
# The Triton interpreter simulates every program in numpy: every pair of option values once.
PAIR_FACTORS = {
    "size": [(1, 1, 1), (2, 1, 7), (2, 6, 1), (3, 9, 11)],
    "stencil": STENCILS,
    "penalty": PENALTIES,
    "weighting": list(WEIGHTINGS),
    "mask": MASKS,
    "target": TARGETS,
    "reduction": REDUCTIONS,
}
PAIRS = pairwise(PAIR_FACTORS)
PAIR_PARAMS = [
    pytest.param(
        *row.values(),
        id="-".join(
            [f"B{row['size'][0]}H{row['size'][1]}W{row['size'][2]}", STENCIL_IDS[STENCILS.index(row["stencil"])]]
            + [row[k] for k in ("penalty", "weighting", "mask", "target", "reduction")]
        ),
    )
    for row in PAIRS
]
ARGNAMES = "size, stencil, penalty, weighting, mask, target, reduction"


class TestGradientRegularization:
    @pytest.mark.parametrize(ARGNAMES, PRODUCT_PARAMS)
    @pytest.mark.usefixtures("one_thread")
    def test_every_option_combination(self, fast_case, size, stencil, penalty, weighting, mask, target, reduction):
        backend, device = fast_case
        check_regularization(backend, device, size, stencil, penalty, weighting, mask, target, reduction)

    @pytest.mark.parametrize(ARGNAMES, PAIR_PARAMS)
    def test_option_pairs(self, kernel_case, size, stencil, penalty, weighting, mask, target, reduction):
        backend, device = kernel_case
        check_regularization(backend, device, size, stencil, penalty, weighting, mask, target, reduction)

    def test_pairwise_subset_covers_every_pair(self):
        assert len(PAIRS) <= 30  # 20 is the least possible (5 weightings x 4 sizes)
        for a, b in itertools.combinations(PAIR_FACTORS, 2):
            seen = {(repr(row[a]), repr(row[b])) for row in PAIRS}
            assert len(seen) == len(PAIR_FACTORS[a]) * len(PAIR_FACTORS[b]), (a, b)

    @pytest.mark.parametrize("size", SIZES, ids=SIZE_IDS)
    def test_sizes(self, fast_case, size):
        """Every size with all options on (the Triton interpreter meets the sizes in test_option_pairs)."""
        backend, device = fast_case
        check_regularization(
            backend, device, size, ("sobel", 1), "charbonnier", "edge-thr", "floatmask", "target", "none"
        )

    def test_large_cpu(self):
        for stencil, weighting in [(("sobel", 1), "edge-thr"), (("diff", 2), "edge")]:
            check_regularization(
                "cpu", "cpu", (2, 203, 301), stencil, "charbonnier", weighting, "boolmask", "target", "none"
            )
            check_regularization("cpu", "cpu", (1, 200, 300), stencil, "l1", weighting, "floatmask", "notarget", "mean")

    @pytest.mark.parametrize("size", [(0, 4, 5), (2, 0, 5), (2, 4, 0)], ids=["B0", "H0", "W0"])
    def test_empty(self, any_case, size):
        """No pixels: 'none' gives an empty map, 'sum' 0 and 'mean' NaN (as torch.mean)."""
        backend, device = any_case
        tensors = make_tensors(size, device=device)
        for reduction in REDUCTIONS:
            loss = pyflowops.gradient_regularization(
                tensors["flow"], tensors["image"], tensors["floatmask"], tensors["target"], edge_weight=1.0,
                reduction=reduction, backend=backend,
            )  # fmt: skip
            if reduction == "none":
                assert loss.shape == size
            else:
                assert loss.shape == ()
                assert loss.isnan().item() if reduction == "mean" else loss.item() == 0.0

    @pytest.mark.parametrize("size", [(0, 4, 5), (2, 0, 5)], ids=["B0", "H0"])
    def test_empty_backward(self, kernel_case, size):
        """A training step on an empty batch still differentiates: empty gradients for flow and target."""
        backend, device = kernel_case
        tensors = make_tensors(size, device=device)
        for reduction in REDUCTIONS:
            flow, target = leaves(tensors["flow"], tensors["target"])
            loss = pyflowops.gradient_regularization(
                flow, tensors["image"], tensors["boolmask"], target, edge_weight=1.0, reduction=reduction,
                backend=backend,
            )  # fmt: skip
            grad_flow, grad_target = torch.autograd.grad(loss, [flow, target], torch.ones_like(loss))
            assert grad_flow.shape == grad_target.shape == flow.shape

    def test_float32(self, kernel_case):
        backend, device = kernel_case
        tensors = make_tensors((2, 9, 11), dtype=torch.float32, device=device)
        for reduction in ("none", "mean"):
            flow, target = leaves(tensors["flow"], tensors["target"])
            options = {"edge_weight": 2.0, "textureless_threshold": THRESHOLD, "reduction": reduction}
            got = pyflowops.gradient_regularization(
                flow, tensors["image"], tensors["floatmask"], target, backend=backend, **options
            )
            assert got.dtype == torch.float32
            ref_flow, ref_target = leaves(tensors["flow"].double(), tensors["target"].double())
            want = reference.gradient_regularization(
                ref_flow, tensors["image"].double(), tensors["floatmask"].double(), ref_target, **options
            )
            assert_close(got, want, torch.float32, scale=4)
            cotangent = torch.randn_like(want)
            got_grads = grads(got, [flow, target], cotangent.float())
            for g, w in zip(got_grads, grads(want, [ref_flow, ref_target], cotangent)):
                assert g.dtype == torch.float32
                assert_close(g, w, torch.float32, scale=4)

    @pytest.mark.parametrize("reduction", ["sum", "none"])
    @pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
    def test_low_precision(self, kernel_case, dtype, reduction):
        """Half inputs, opmath arithmetic, loss and gradients in the input dtype: close to float64 on the inputs."""
        backend, device = kernel_case
        tensors = {
            k: v.to(dtype) if v.is_floating_point() else v for k, v in make_tensors((2, 7, 9), device=device).items()
        }
        for mask in ("boolmask",) if dtype == torch.bfloat16 else ("floatmask",):
            options = {
                "edge_weight": 2.0,
                "textureless_threshold": THRESHOLD,
                "penalty": "charbonnier",
                "eps": 0.1,
                "reduction": reduction,
            }
            flow, target = leaves(tensors["flow"], tensors["target"])
            got = pyflowops.gradient_regularization(
                flow, tensors["image"], tensors[mask], target, backend=backend, **options
            )
            assert got.dtype == dtype
            ref_flow, ref_target = leaves(tensors["flow"].double(), tensors["target"].double())
            ref_mask = tensors[mask] if mask == "boolmask" else tensors[mask].double()
            want = reference.gradient_regularization(
                ref_flow, tensors["image"].double(), ref_mask, ref_target, **options
            )
            assert_close(got, want, dtype)
            cotangent = torch.randn_like(want).to(dtype)
            got_grads = grads(got, [flow, target], cotangent)
            for g, w in zip(got_grads, grads(want, [ref_flow, ref_target], cotangent.double())):
                assert g.dtype == dtype
                assert_close(g, w, dtype, scale=2)

    @pytest.mark.parametrize("layout", ["strided", "channels_last"])
    def test_noncontiguous(self, kernel_case, layout):
        backend, device = kernel_case
        tensors = make_tensors((2, 6, 7), device=device)

        def relayout(t):
            return noncontiguous(t) if layout == "strided" else t.contiguous(memory_format=torch.channels_last)

        for reduction, mask in (("none", "floatmask"), ("mean", "boolmask")):
            flow, target = (relayout(t).detach().requires_grad_() for t in (tensors["flow"], tensors["target"]))
            assert not flow.is_contiguous() and not target.is_contiguous()
            image, mask_t = relayout(tensors["image"]), relayout(tensors[mask])
            options = {
                "operator": "diff",
                "edge_weight": 1.5,
                "textureless_threshold": THRESHOLD,
                "reduction": reduction,
            }
            got = pyflowops.gradient_regularization(flow, image, mask_t, target, backend=backend, **options)
            ref_flow, ref_target = leaves(tensors["flow"], tensors["target"])
            want = reference.gradient_regularization(ref_flow, tensors["image"], tensors[mask], ref_target, **options)
            assert_close(got, want)
            cotangent = torch.randn_like(want)
            if reduction == "none":
                cotangent_view = noncontiguous(cotangent)
            else:
                cotangent_view = cotangent
            for g, w in zip(grads(got, [flow, target], cotangent_view), grads(want, [ref_flow, ref_target], cotangent)):
                assert_close(g, w)

    def test_float_mask_of_another_dtype_is_converted(self, any_case):
        backend, device = any_case
        tensors = make_tensors((2, 5, 6), device=device)
        args = (tensors["flow"], tensors["image"])
        got = pyflowops.gradient_regularization(*args, tensors["floatmask"].float(), edge_weight=1.0, backend=backend)
        want = pyflowops.gradient_regularization(
            *args, tensors["floatmask"].float().double(), edge_weight=1.0, backend=backend
        )
        assert_close(got, want)

    def test_only_target_requires_grad(self, kernel_case):
        backend, device = kernel_case
        tensors = make_tensors((2, 5, 6), device=device)
        (target,) = leaves(tensors["target"])
        got = pyflowops.gradient_regularization(
            tensors["flow"], tensors["image"], None, target, edge_weight=1.0, backend=backend
        )
        (ref_target,) = leaves(tensors["target"])
        want = reference.gradient_regularization(tensors["flow"], tensors["image"], None, ref_target, edge_weight=1.0)
        assert_close(got, want)
        assert_close(torch.autograd.grad(got, target)[0], torch.autograd.grad(want, ref_target)[0])

    def test_no_grad_and_detached_inputs(self, kernel_case):
        """Without autograd the op skips the saved weight; the loss is the same."""
        backend, device = kernel_case
        tensors = make_tensors((2, 5, 6), device=device)
        args = (tensors["flow"], tensors["image"], tensors["boolmask"], tensors["target"])
        options = {"edge_weight": 2.0, "textureless_threshold": THRESHOLD, "reduction": "none"}
        with torch.no_grad():
            no_grad = pyflowops.gradient_regularization(*args, backend=backend, **options)
        want = reference.gradient_regularization(*args, **options)
        assert_close(no_grad, want)
        assert_close(pyflowops.gradient_regularization(*args, backend=backend, **options), want)

    # -- values that do not lean on the reference ------------------------------

    @pytest.mark.parametrize("operator", ["sobel", "diff"])
    def test_linear_flow_l2_map(self, any_case, operator):
        """u = 3 * column, v = -2 * row: G = (3, 0; 0, -2) inside, half of it on the border rows/columns."""
        backend, device = any_case
        height, width = 5, 6
        flow = torch.cat([ramp(height, width, 3.0, 0.0), ramp(height, width, 0.0, -2.0)], dim=1).to(device)
        loss = pyflowops.gradient_regularization(
            flow, operator=operator, penalty="l2", reduction="none", backend=backend
        )
        fx, fy = edge_ramp_factor(width), edge_ramp_factor(height)
        want = 9.0 * fx.square().view(1, -1) + 4.0 * fy.square().view(-1, 1)
        assert_close(loss, want.unsqueeze(0))

    @pytest.mark.parametrize("penalty", PENALTIES)
    @pytest.mark.parametrize("stencil", STENCILS, ids=STENCIL_IDS)
    def test_constant_field(self, any_case, stencil, penalty):
        """G = 0: the loss is w * 2K * rho(0) and the gradient is exactly 0 (also l1's, as torch.abs)."""
        backend, device = any_case
        operator, order = stencil
        flow = torch.empty(2, 2, 4, 5, dtype=torch.float64, device=device)
        flow[:, 0], flow[:, 1] = 0.75, -1.25  # dyadic: every stencil sum is exactly 0
        flow.requires_grad_()
        mask = torch.rand(2, 1, 4, 5, dtype=torch.float64, device=device)
        loss = pyflowops.gradient_regularization(
            flow, mask=mask, operator=operator, order=order, penalty=penalty, eps=0.01, reduction="none",
            backend=backend,
        )  # fmt: skip
        directions = 2 if order == 1 else 3
        rho0 = 0.01 if penalty == "charbonnier" else 0.0
        assert_close(loss, mask[:, 0] * 2 * directions * rho0)
        (grad,) = torch.autograd.grad(loss, flow, torch.randn_like(loss))
        assert (grad == 0).all()

    @pytest.mark.parametrize("reduction", REDUCTIONS)
    @pytest.mark.parametrize("operator", ["sobel", "diff"])
    def test_l1_gradient_of_an_integer_ramp(self, any_case, operator, reduction):
        """u = 3 * column, v = 4: only G_ux != 0 (all > 0), so d/du sum |G| = d/du sum G_ux is -1 on the first
        column and +1 on the last; the zero G's contribute sign(0) = 0 (v's gradient is exactly 0)."""
        backend, device = any_case
        batch, height, width = 2, 4, 6
        flow = torch.cat([ramp(height, width, 3.0, 0.0, batch=batch), torch.full((batch, 1, height, width), 4.0)], 1)
        flow = flow.to(device).requires_grad_()
        loss = pyflowops.gradient_regularization(
            flow, operator=operator, penalty="l1", reduction=reduction, backend=backend
        )
        total = {"none": loss.sum(), "sum": loss, "mean": loss * batch * height * width}[reduction]
        assert_close(total, torch.tensor(batch * height * 3.0 * (width - 1), dtype=torch.float64))
        (grad,) = torch.autograd.grad(loss, flow, torch.ones_like(loss))
        want = torch.zeros(batch, 2, height, width, dtype=torch.float64)
        want[:, 0, :, 0], want[:, 0, :, -1] = -1.0, 1.0
        if reduction == "mean":
            want /= batch * height * width
        assert_close(grad, want)

    # The Triton interpreter evaluates g / sqrt(g^2) in masked-off lanes too (numpy warns, the lanes are dropped).
    @pytest.mark.filterwarnings("ignore:invalid value encountered in divide:RuntimeWarning")
    def test_charbonnier_with_eps_0_is_l1(self, any_case):
        backend, device = any_case
        tensors = make_tensors((2, 5, 7), device=device)
        losses, gradients = [], []
        for penalty, eps in (("charbonnier", 0.0), ("l1", 0.0)):
            (flow,) = leaves(tensors["flow"])
            loss = pyflowops.gradient_regularization(
                flow, tensors["image"], tensors["floatmask"], penalty=penalty, eps=eps, edge_weight=1.0,
                reduction="none",
                backend=backend,
            )  # fmt: skip
            losses.append(loss)
            gradients.append(torch.autograd.grad(loss, flow, torch.ones_like(loss))[0])
        assert_close(losses[0], losses[1])
        assert_close(gradients[0], gradients[1])

    def test_reductions_agree(self, kernel_case):
        backend, device = kernel_case
        tensors = make_tensors((3, 5, 7), device=device)
        args = (tensors["flow"], tensors["image"], tensors["boolmask"], tensors["target"])
        options = {"operator": "diff", "order": 2, "penalty": "l2", "edge_weight": 1.0, "backend": backend}
        loss_map = pyflowops.gradient_regularization(*args, reduction="none", **options)
        assert_close(pyflowops.gradient_regularization(*args, reduction="sum", **options), loss_map.sum())
        assert_close(
            pyflowops.gradient_regularization(*args, reduction="mean", **options), loss_map.sum() / (3 * 5 * 7)
        )
        assert (loss_map[~tensors["boolmask"][:, 0]] == 0).all() and (loss_map[tensors["boolmask"][:, 0]] > 0).all()

    def test_edge_weight_zero_ignores_the_image_even_where_it_is_inf(self, any_case):
        backend, device = any_case
        tensors = make_tensors((2, 6, 7), device=device)
        image = tensors["image"].clone()
        image[0, 1, 2, 3], image[1, 0, 0, 0], image[1, 2, 5, 6] = float("inf"), float("-inf"), float("nan")
        (flow,) = leaves(tensors["flow"])
        got = pyflowops.gradient_regularization(flow, image, tensors["floatmask"], reduction="none", backend=backend)
        (ref_flow,) = leaves(tensors["flow"])
        want = pyflowops.gradient_regularization(
            ref_flow, None, tensors["floatmask"], reduction="none", backend=backend
        )
        assert got.isfinite().all()
        assert_close(got, want)
        assert_close(torch.autograd.grad(got.sum(), flow)[0], torch.autograd.grad(want.sum(), ref_flow)[0])

    def test_kernel_weight_with_edge_weight_zero_is_the_mask(self, kernel_case):
        """The registered op itself (the Python layer drops the image in this case): with an image of inf and
        NaN, edge_weight 0 and no threshold, the saved weight is exactly the mask and the loss is finite."""
        backend, device = kernel_case
        tensors = make_tensors((2, 6, 7), device=device)
        image = tensors["image"].clone()
        image[0, 1, 2, 3], image[1, 2, 5, 6] = float("inf"), float("nan")
        op = gradreg_ops._op(backend, "gradient_regularization")
        args = ("sobel", 1, "charbonnier", 1e-3, 0.0, None, "none")
        loss, weight = op(tensors["flow"], image, tensors["floatmask"], None, *args, True)
        assert weight.shape == (2, 6, 7) and weight.dtype == torch.float64
        assert torch.equal(weight, tensors["floatmask"][:, 0])
        no_image, _ = op(tensors["flow"], None, tensors["floatmask"], None, *args, True)
        assert loss.isfinite().all()
        assert_close(loss, no_image)

    @pytest.mark.parametrize("operator", ["sobel", "diff"])
    def test_non_finite_image_stays_local(self, any_case, operator):
        """A NaN / inf image pixel only touches the weight of pixels within its 3x3 neighbourhood: NaN fails
        e < threshold (w = 0) where a nonzero tap reads it, and elsewhere the weight is untouched."""
        backend, device = any_case
        tensors = make_tensors((1, 7, 8), device=device)
        image = tensors["image"].clone()
        image[0, 0, 3, 2], image[0, 1, 1, 6] = float("nan"), float("inf")
        for edge_weight in (0.0, 3.0):
            options = {
                "operator": operator,
                "edge_weight": edge_weight,
                "textureless_threshold": 10.0,
                "reduction": "none",
            }
            got = pyflowops.gradient_regularization(tensors["flow"], image, backend=backend, **options)
            clean = pyflowops.gradient_regularization(tensors["flow"], tensors["image"], backend=backend, **options)
            assert not got.isnan().any()  # NaN and inf edge strengths fail the threshold: w = 0, not NaN
            near = torch.zeros(7, 8, dtype=torch.bool)
            near[2:5, 1:4] = near[0:3, 5:8] = True
            assert_close(got[0][~near], clean[0][~near])
            # left and right neighbours read the pixel with a nonzero dx tap, upper and lower with dy
            for i, j in ((3, 1), (3, 3), (2, 2), (4, 2), (1, 5), (1, 7), (0, 6), (2, 6)):
                assert got[0, i, j] == 0, (i, j)

    def test_edge_aware_weight_by_hand(self, any_case):
        """A vertical step of height 1 in a 1-channel image: e = 1/4 (Sobel, normalized) on the two columns
        at the step, 0 elsewhere; w = exp(-edge_weight * e) there; l2 on u = column gives G_ux = 1 inside."""
        backend, device = any_case
        image = torch.zeros(1, 1, 5, 8, dtype=torch.float64)
        image[..., 4:] = 1.0
        flow = torch.cat([ramp(5, 8, 1.0, 0.0), torch.zeros(1, 1, 5, 8, dtype=torch.float64)], 1)
        loss = pyflowops.gradient_regularization(
            flow.to(device), image.to(device), penalty="l2", edge_weight=4.0, reduction="none", backend=backend
        ).cpu()
        want = edge_ramp_factor(8).square().expand(1, 5, 8).clone()
        want[..., 3:5] *= torch.exp(torch.tensor(-1.0, dtype=torch.float64))
        assert_close(loss, want)
        with_threshold = pyflowops.gradient_regularization(
            flow.to(device),
            image.to(device),
            penalty="l2",
            textureless_threshold=0.2,
            reduction="none",
            backend=backend,
        ).cpu()
        want = edge_ramp_factor(8).square().expand(1, 5, 8).clone()
        want[..., 3:5] = 0.0
        assert_close(with_threshold, want)

    # -- against kornia ----------------------------------------------------------

    @pytest.mark.parametrize(
        "stencil, penalty, weighting, mask, target, reduction",
        [
            (("sobel", 1), "charbonnier", "edge-thr", "floatmask", "target", "none"),
            (("diff", 1), "l1", "edge", "boolmask", "notarget", "mean"),
            (("diff", 2), "l2", "thr", "nomask", "target", "sum"),
            (("sobel", 1), "l2", "noimage", "boolmask", "notarget", "none"),
        ],
        ids=["sobel-charbonnier", "diff-l1", "diff2-l2", "sobel-l2-noimage"],
    )
    def test_matches_loss_composed_from_kornia(self, any_case, stencil, penalty, weighting, mask, target, reduction):
        backend, device = any_case
        operator, order = stencil
        tensors = make_tensors((2, 8, 9), device=device)
        image, mask, target, options = case_arguments(tensors, weighting, mask, target)
        eps = 0.05
        got = pyflowops.gradient_regularization(
            tensors["flow"], image, mask, target, operator=operator, order=order, penalty=penalty, eps=eps,
            reduction=reduction, backend=backend, **options,
        )  # fmt: skip
        # The same loss, spelled with kornia's spatial_gradient.
        diff = tensors["flow"] - target if target is not None else tensors["flow"]
        g = kornia.filters.spatial_gradient(diff, mode=operator, order=order, normalized=True)
        rho = {"l1": g.abs(), "charbonnier": torch.sqrt(g**2 + eps**2), "l2": g**2}[penalty]
        weight = torch.ones(2, 8, 9, dtype=torch.float64, device=device)
        if mask is not None:
            weight = weight * mask[:, 0]
        if image is not None:
            strength = kornia.filters.spatial_gradient(image, mode=operator, order=1).abs().mean(dim=(1, 2))
            weight = weight * torch.exp(-options["edge_weight"] * strength)
            if options["textureless_threshold"] is not None:
                weight = weight * (strength < options["textureless_threshold"])
        loss_map = weight * rho.sum(dim=(1, 2))
        want = {"none": loss_map, "sum": loss_map.sum(), "mean": loss_map.mean()}[reduction]
        assert_close(got, want)

    # -- the registered ops ------------------------------------------------------

    def test_saved_weight(self, kernel_case):
        """The op's second output: w in the opmath dtype when save_weight and an image, else empty."""
        backend, device = kernel_case
        op = gradreg_ops._op(backend, "gradient_regularization")
        for dtype in (torch.float64, torch.float32):
            tensors = make_tensors((2, 5, 6), dtype=dtype, device=device)
            args = ("diff", 1, "l2", 0.0, 2.0, THRESHOLD, "mean")
            _, weight = op(tensors["flow"], tensors["image"], tensors["boolmask"], tensors["target"], *args, True)
            want = reference.regularization_weight(
                tensors["flow"].double(), tensors["image"].double(), tensors["boolmask"], "diff", 2.0, THRESHOLD
            )
            assert weight.shape == (2, 5, 6) and weight.dtype == dtype
            assert_close(weight, want, dtype)
            _, weight = op(tensors["flow"], tensors["image"], tensors["boolmask"], tensors["target"], *args, False)
            assert weight.shape == (0,)
            _, weight = op(tensors["flow"], None, tensors["boolmask"], tensors["target"], *args, True)
            assert weight.shape == (0,)
        half = make_tensors((1, 4, 5), dtype=torch.float16, device=device)
        _, weight = op(half["flow"], half["image"], None, None, "sobel", 1, "l1", 0.0, 1.0, None, "none", True)
        assert weight.dtype == torch.float32  # opmath of half

    @pytest.mark.usefixtures("one_thread")
    @pytest.mark.parametrize("backend", ["cpu", "torch"])
    @pytest.mark.parametrize(
        "stencil, penalty, reduction",
        [(("sobel", 1), "charbonnier", "none"), (("diff", 1), "l2", "mean"), (("diff", 2), "l1", "sum")],
        ids=["sobel-charbonnier-none", "diff-l2-mean", "diff2-l1-sum"],
    )
    def test_gradcheck(self, backend, stencil, penalty, reduction):
        operator, order = stencil
        tensors = make_tensors((2, 3, 4))
        flow, target = leaves(tensors["flow"], tensors["target"])
        options = {
            "operator": operator,
            "order": order,
            "penalty": penalty,
            "eps": 0.1,
            "reduction": reduction,
            "backend": backend,
        }
        for image, mask, extra in (
            (tensors["image"], tensors["floatmask"], {"edge_weight": 2.0, "textureless_threshold": THRESHOLD}),
            (None, tensors["boolmask"], {}),
        ):
            fn = lambda f, t, i=image, m=mask, e=extra: pyflowops.gradient_regularization(f, i, m, t, **options, **e)
            assert torch.autograd.gradcheck(fn, [flow, target])

    @pytest.mark.filterwarnings("ignore:.*an autograd kernel was not registered")  # opcheck probes the backward ops
    @pytest.mark.parametrize("stencil", STENCILS, ids=STENCIL_IDS)
    def test_opcheck(self, stencil):
        operator, order = stencil
        tensors = make_tensors((2, 4, 5))
        flow, target = leaves(tensors["flow"], tensors["target"])
        forward = torch.ops.pyflowops.gradient_regularization.default
        backward = torch.ops.pyflowops.gradient_regularization_backward.default
        torch.library.opcheck(
            forward,
            (
                flow,
                tensors["image"],
                tensors["floatmask"],
                target,
                operator,
                order,
                "charbonnier",
                1e-3,
                2.0,
                THRESHOLD,
                "none",
                True,
            ),
        )
        torch.library.opcheck(
            forward, (flow, None, tensors["boolmask"], None, operator, order, "l1", 0.0, 0.0, None, "mean", False)
        )
        torch.library.opcheck(
            forward, (flow, tensors["image"], None, None, operator, order, "l2", 0.0, 1.0, None, "sum", True)
        )
        weight = reference.regularization_weight(flow, tensors["image"], tensors["floatmask"], operator, 2.0, THRESHOLD)
        grad_map = torch.randn(2, 4, 5, dtype=torch.float64)
        torch.library.opcheck(
            backward,
            (grad_map, tensors["flow"], tensors["target"], weight, None, operator, order, "charbonnier", 1e-3, "none"),
        )
        grad_scalar = torch.randn((), dtype=torch.float64)
        torch.library.opcheck(
            backward,
            (grad_scalar, tensors["flow"], None, None, tensors["boolmask"], operator, order, "l1", 0.0, "mean"),
        )
        torch.library.opcheck(
            backward, (grad_scalar, tensors["flow"], None, None, None, operator, order, "l2", 0.0, "sum")
        )

    def test_backward_op_by_hand(self, kernel_case):
        """The registered backward alone: sum reduction, l2, u = 3 * column, no weight -> 2 * G_ux * d G_ux/du."""
        backend, device = kernel_case
        flow = torch.cat([ramp(4, 6, 3.0, 0.0), torch.zeros(1, 1, 4, 6, dtype=torch.float64)], 1).to(device)
        op = gradreg_ops._op(backend, "gradient_regularization_backward")
        grad = op(
            torch.tensor(1.0, dtype=torch.float64, device=device), flow, None, None, None, "diff", 1, "l2", 0.0, "sum"
        )
        # G_ux = 3 * (1/2, 1, 1, 1, 1, 1/2); L = sum G^2; dL/du_j = sum_q 2 G(q) dG(q)/du_j with the telescoped taps
        g = 3 * edge_ramp_factor(6)
        want_row = torch.zeros(6, dtype=torch.float64)
        for q in range(6):
            left, right = max(q - 1, 0), min(q + 1, 5)
            want_row[right] += 2 * g[q] * 0.5
            want_row[left] -= 2 * g[q] * 0.5
        want = torch.zeros(1, 2, 4, 6, dtype=torch.float64)
        want[0, 0] = want_row
        assert_close(grad, want)

    def test_dynamo_training_loss(self):
        """torch.compile(fullgraph=True) of a small training loss on the cpu backend: value and gradients as eager."""
        torch.manual_seed(1)
        head = torch.nn.Conv2d(3, 2, 3, padding=1, dtype=torch.float64)
        image = torch.rand(2, 3, 8, 9, dtype=torch.float64)
        gt_flow = torch.randn(2, 2, 8, 9, dtype=torch.float64)
        valid = torch.rand(2, 1, 8, 9) > 0.2

        def training_loss(model, image, gt_flow, valid):
            flow = model(image)
            smooth = pyflowops.gradient_regularization(
                flow, image, edge_weight=10.0, textureless_threshold=THRESHOLD, backend="cpu"
            )
            match = pyflowops.gradient_regularization(
                flow, None, valid, gt_flow, operator="diff", order=2, penalty="l1", reduction="sum", backend="cpu"
            )
            return (flow - gt_flow).abs().mean() + 0.5 * smooth + 0.01 * match

        eager = training_loss(head, image, gt_flow, valid)
        eager_grads = torch.autograd.grad(eager, list(head.parameters()))
        compiled = torch.compile(training_loss, fullgraph=True)(head, image, gt_flow, valid)
        compiled_grads = torch.autograd.grad(compiled, list(head.parameters()))
        assert_close(compiled, eager)
        for c, e in zip(compiled_grads, eager_grads):
            assert_close(c, e)


# ---------------------------------------------------------------------------
# textureless_mask
# ---------------------------------------------------------------------------


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
    flow, target = leaves(tensors["flow"], tensors["target"])
    x = torch.randn(2, 3, 5, 6, dtype=torch.float64, device="cuda", requires_grad=True)
    for operator, order in STENCILS:
        torch.library.opcheck(ops.spatial_gradient_triton.default, (x, operator, order, True))
        grad_out = torch.randn(2, 3, 2 if order == 1 else 3, 5, 6, dtype=torch.float64, device="cuda")
        torch.library.opcheck(ops.spatial_gradient_backward_triton.default, (grad_out, operator, order, True))
        torch.library.opcheck(
            ops.gradient_regularization_triton.default,
            (
                flow,
                tensors["image"],
                tensors["floatmask"],
                target,
                operator,
                order,
                "charbonnier",
                1e-3,
                2.0,
                THRESHOLD,
                "none",
                True,
            ),
        )
        torch.library.opcheck(
            ops.gradient_regularization_triton.default,
            (flow, None, tensors["boolmask"], None, operator, order, "l1", 0.0, 0.0, None, "mean", False),
        )
        weight = reference.regularization_weight(flow, tensors["image"], tensors["floatmask"], operator, 2.0, THRESHOLD)
        torch.library.opcheck(
            ops.gradient_regularization_backward_triton.default,
            (torch.randn(2, 4, 5, dtype=torch.float64, device="cuda"), tensors["flow"], tensors["target"], weight, None,
             operator, order, "charbonnier", 1e-3, "none"),
        )  # fmt: skip
        torch.library.opcheck(
            ops.gradient_regularization_backward_triton.default,
            (torch.randn((), dtype=torch.float64, device="cuda"), tensors["flow"], None, None, tensors["boolmask"],
             operator, order, "l2", 0.0, "sum"),
        )  # fmt: skip
    torch.library.opcheck(ops.textureless_mask_triton.default, (tensors["image"], THRESHOLD, "sobel"))
