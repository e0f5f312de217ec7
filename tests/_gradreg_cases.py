"""Option tables, input builders and checks shared by the gradreg tests (test_spatial_gradient.py,
test_gradient_regularization.py). The exact math is docs/gradreg_kernel_contract.md."""

from __future__ import annotations

import itertools

import pytest
import torch
from _utils import assert_close, poison_allocator
from conftest import KERNEL_CASES

import pyflowops
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


def case_params(combos, ids, interpreter_keeps, cases=KERNEL_CASES):
    """pytest params (case, *combo) for every case and combo; under the Triton interpreter
    (a numpy simulation, ~0.1 s a launch) only the combos k with ``interpreter_keeps(k)``."""
    return [
        pytest.param(case.values[0], *combo, marks=case.marks, id=f"{case.id}-{combo_id}")
        for case in cases
        for k, (combo, combo_id) in enumerate(zip(combos, ids))
        if case.id != "triton-interp" or interpreter_keeps(k)
    ]


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


def regularization_opcheck_args(operator: str, order: int, device: str = "cpu") -> tuple[list[tuple], list[tuple]]:
    """Arguments for opcheck of gradient_regularization (forward) and its backward op, C++ or Triton:
    image + float mask + target + threshold per pixel; bool mask only; image only; and the backward's
    three ways to get w (saved weight, mask, none) with map and scalar grad_loss."""
    tensors = make_tensors((2, 4, 5), device=device)
    flow, target = leaves(tensors["flow"], tensors["target"])
    image, floatmask, boolmask = tensors["image"], tensors["floatmask"], tensors["boolmask"]
    forward = [
        (flow, image, floatmask, target, operator, order, "charbonnier", 1e-3, 2.0, THRESHOLD, "none", True),
        (flow, None, boolmask, None, operator, order, "l1", 0.0, 0.0, None, "mean", False),
        (flow, image, None, None, operator, order, "l2", 0.0, 1.0, None, "sum", True),
    ]
    weight = reference.regularization_weight(flow, image, floatmask, operator, 2.0, THRESHOLD)
    grad_map = torch.randn(2, 4, 5, dtype=torch.float64, device=device)
    grad_scalar = torch.randn((), dtype=torch.float64, device=device)
    flow, target = tensors["flow"], tensors["target"]
    backward = [
        (grad_map, flow, target, weight, None, operator, order, "charbonnier", 1e-3, "none"),
        (grad_scalar, flow, None, None, boolmask, operator, order, "l1", 0.0, "mean"),
        (grad_scalar, flow, None, None, None, operator, order, "l2", 0.0, "sum"),
    ]
    return forward, backward
