"""gradient_regularization: every kernel backend against the PyTorch reference and kornia.

Every option combination (operator x penalty x image/mask/target/threshold x
reduction; the full product on the fast backends, an all-pairs subset under the
Triton interpreter), awkward sizes, lower precisions, non-contiguous inputs,
hand-checkable values that do not lean on the reference, gradcheck, opcheck and
torch.compile. Bad inputs are in test_gradreg_errors.py.
"""

from __future__ import annotations

import itertools

import kornia
import pytest
import torch
from _gradreg_cases import (
    MASKS,
    PENALTIES,
    REDUCTIONS,
    SIZE_IDS,
    SIZES,
    STENCIL_IDS,
    STENCILS,
    TARGETS,
    THRESHOLD,
    WEIGHTINGS,
    case_arguments,
    check_regularization,
    edge_ramp_factor,
    grads,
    leaves,
    make_tensors,
    pairwise,
    ramp,
    regularization_opcheck_args,
)
from _utils import assert_close, noncontiguous

import pyflowops
from pyflowops.ops import gradreg as gradreg_ops
from pyflowops.reference import gradreg as reference

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
        forward_args, backward_args = regularization_opcheck_args(operator, order)
        for args in forward_args:
            torch.library.opcheck(torch.ops.pyflowops.gradient_regularization.default, args)
        for args in backward_args:
            torch.library.opcheck(torch.ops.pyflowops.gradient_regularization_backward.default, args)

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
