"""Bad input to the gradient-regularization ops: a clear Python error naming the argument, never a crash."""

from __future__ import annotations

import pytest
import torch

import pyflowops


def flow(batch=2, channels=2, height=8, width=9, **kw):
    return torch.randn(batch, channels, height, width, **kw)


def image(batch=2, channels=3, height=8, width=9, **kw):
    return torch.rand(batch, channels, height, width, **kw)


def mask(batch=2, height=8, width=9, **kw):
    return torch.rand(batch, 1, height, width, **kw) > 0.5


regularize = pyflowops.gradient_regularization

# (description, call, exception, message pattern)
BAD_CALLS = [
    # gradient_regularization: tensors
    ("flow 3 channels", lambda: regularize(flow(channels=3)), ValueError, r"flow must have shape \[B, 2, H, W\], got \(2, 3, 8, 9\)"),
    ("flow rank 3", lambda: regularize(torch.randn(2, 8, 9)), ValueError, r"flow must have 4 dimensions, got shape \(2, 8, 9\)"),
    ("flow type", lambda: regularize([[1.0]]), TypeError, r"flow must be a torch.Tensor, got list"),
    ("flow int", lambda: regularize(flow().to(torch.int32)), TypeError, r"flow must be float32, float64, float16 or bfloat16, got torch.int32"),
    ("image size", lambda: regularize(flow(), image(width=10)), ValueError, r"image must have shape \[B, C, H, W\] with B, H, W of flow \(2, 2, 8, 9\), got \(2, 3, 8, 10\)"),
    ("image batch", lambda: regularize(flow(), image(batch=1)), ValueError, r"image must have shape \[B, C, H, W\] with B, H, W of flow"),
    ("image rank", lambda: regularize(flow(), torch.rand(3, 8, 9)), ValueError, r"image must have 4 dimensions, got shape \(3, 8, 9\)"),
    ("image dtype", lambda: regularize(flow(), image(dtype=torch.float64)), TypeError, r"image has dtype torch.float64 but flow has torch.float32"),
    ("image device", lambda: regularize(flow(), image(device="meta")), ValueError, r"image is on meta but flow is on cpu"),
    ("mask batch", lambda: regularize(flow(), None, mask(batch=3)), ValueError, r"mask must have shape \[B, 1, H, W\] from flow = \(2, 1, 8, 9\), got \(3, 1, 8, 9\)"),
    ("mask channels", lambda: regularize(flow(), None, mask().expand(2, 2, 8, 9)), ValueError, r"mask must have shape \[B, 1, H, W\] from flow"),
    ("mask rank", lambda: regularize(flow(), None, mask()[:, 0]), ValueError, r"mask must have 4 dimensions, got shape \(2, 8, 9\)"),
    ("mask int", lambda: regularize(flow(), None, mask().long()), TypeError, r"mask must be bool or floating point, got torch.int64 \(use mask.bool\(\)\)"),
    ("mask type", lambda: regularize(flow(), None, [[True]]), TypeError, r"mask must be a torch.Tensor, got list"),
    ("mask device", lambda: regularize(flow(), None, mask(device="meta")), ValueError, r"mask is on meta but flow is on cpu"),
    ("target shape", lambda: regularize(flow(), target=flow(width=10)), ValueError, r"target must have shape flow's \[B, 2, H, W\] = \(2, 2, 8, 9\), got \(2, 2, 8, 10\)"),
    ("target channels", lambda: regularize(flow(), target=flow(channels=1)), ValueError, r"target must have shape flow's \[B, 2, H, W\]"),
    ("target dtype", lambda: regularize(flow(), target=flow(dtype=torch.float64)), TypeError, r"target has dtype torch.float64 but flow has torch.float32"),
    # gradient_regularization: options
    ("eps negative", lambda: regularize(flow(), eps=-0.1), ValueError, r"eps must be >= 0.0, got -0.1"),
    ("eps nan", lambda: regularize(flow(), eps=float("nan")), ValueError, r"eps must be finite, got nan"),
    ("eps string", lambda: regularize(flow(), eps="1e-3"), TypeError, r"eps must be a float, got str"),
    ("edge_weight inf", lambda: regularize(flow(), image(), edge_weight=float("inf")), ValueError, r"edge_weight must be finite, got inf"),
    ("edge_weight tensor", lambda: regularize(flow(), image(), edge_weight=torch.tensor(1.0)), TypeError, r"edge_weight must be a float, got Tensor"),
    ("unknown operator", lambda: regularize(flow(), operator="scharr"), ValueError, r"operator must be one of 'sobel', 'diff', got 'scharr'"),
    ("operator case", lambda: regularize(flow(), operator="Sobel"), ValueError, r"operator must be one of 'sobel', 'diff', got 'Sobel'"),
    ("sobel order 2", lambda: regularize(flow(), operator="sobel", order=2), ValueError, r"order=2 needs operator='diff'.*5x5"),
    ("order 3", lambda: regularize(flow(), operator="diff", order=3), ValueError, r"order must be in \[1, 2\], got 3"),
    ("order 0", lambda: regularize(flow(), operator="diff", order=0), ValueError, r"order must be in \[1, 2\], got 0"),
    ("order float", lambda: regularize(flow(), operator="diff", order=2.0), TypeError, r"order must be an int, got float"),
    ("unknown penalty", lambda: regularize(flow(), penalty="huber"), ValueError, r"penalty must be one of 'l1', 'charbonnier', 'l2', got 'huber'"),
    ("unknown reduction", lambda: regularize(flow(), reduction="max"), ValueError, r"reduction must be one of 'mean', 'sum', 'none', got 'max'"),
    ("reduction None", lambda: regularize(flow(), reduction=None), ValueError, r"reduction must be one of .*got None"),
    ("threshold string", lambda: regularize(flow(), image(), textureless_threshold="0.1"), TypeError, r"textureless_threshold must be a float, got str"),
    ("threshold nan", lambda: regularize(flow(), image(), textureless_threshold=float("nan")), ValueError, r"textureless_threshold must be finite, got nan"),
    ("unknown backend", lambda: regularize(flow(), backend="metal"), ValueError, r"backend must be one of .*'metal'"),
    ("cuda on cpu tensors", lambda: regularize(flow(), backend="cuda"), pyflowops.BackendUnavailableError, r"gradient_regularization: backend 'cuda' cannot run"),
    # spatial_gradient
    ("x rank", lambda: pyflowops.spatial_gradient(torch.randn(3, 8, 9)), ValueError, r"x must have 4 dimensions, got shape \(3, 8, 9\)"),
    ("x int", lambda: pyflowops.spatial_gradient(flow().long()), TypeError, r"x must be float32, float64, float16 or bfloat16, got torch.int64"),
    ("x type", lambda: pyflowops.spatial_gradient(1.0), TypeError, r"x must be a torch.Tensor, got float"),
    ("gradient operator", lambda: pyflowops.spatial_gradient(image(), "laplace"), ValueError, r"operator must be one of 'sobel', 'diff', got 'laplace'"),
    ("gradient sobel order 2", lambda: pyflowops.spatial_gradient(image(), "sobel", order=2), ValueError, r"order=2 needs operator='diff'"),
    ("gradient order 3", lambda: pyflowops.spatial_gradient(image(), "diff", order=3), ValueError, r"order must be in \[1, 2\], got 3"),
    ("normalized not bool", lambda: pyflowops.spatial_gradient(image(), "sobel", 1), TypeError, r"normalized must be a bool, got int"),
    ("gradient cuda on cpu", lambda: pyflowops.spatial_gradient(image(), backend="cuda"), pyflowops.BackendUnavailableError, r"spatial_gradient: backend 'cuda' cannot run"),
    # textureless_mask
    ("mask image rank", lambda: pyflowops.textureless_mask(torch.rand(3, 8, 9), 0.1), ValueError, r"image must have 4 dimensions"),
    ("threshold None", lambda: pyflowops.textureless_mask(image(), None), TypeError, r"threshold must be a float, got NoneType"),
    ("threshold inf", lambda: pyflowops.textureless_mask(image(), float("inf")), ValueError, r"threshold must be finite, got inf"),
    ("mask operator", lambda: pyflowops.textureless_mask(image(), 0.1, "prewitt"), ValueError, r"operator must be one of 'sobel', 'diff', got 'prewitt'"),
    ("mask cuda on cpu", lambda: pyflowops.textureless_mask(image(), 0.1, backend="cuda"), pyflowops.BackendUnavailableError, r"textureless_mask: backend 'cuda' cannot run"),
]


@pytest.mark.parametrize("call, error, pattern", [c[1:] for c in BAD_CALLS], ids=[c[0] for c in BAD_CALLS])
def test_bad_input_raises_clear_error(call, error, pattern):
    with pytest.raises(error, match=pattern):
        call()


def test_unsupported_device_names_backend_and_device():
    with pytest.raises(pyflowops.BackendUnavailableError, match=r"backend 'cpu' cannot run: runs on cpu tensors, got meta"):
        regularize(flow(device="meta"), backend="cpu")


@pytest.mark.parametrize("backend", ["cpu", "torch"])
def test_valid_edge_cases_are_not_errors(backend):
    """What the checks must let through: eps = 0, negative edge_weight and threshold, int options, any image C."""
    base = flow(dtype=torch.float64)
    for options in (
        {"eps": 0},
        {"edge_weight": -1, "textureless_threshold": 1},
        {"textureless_threshold": -0.5},  # nothing is texture-less: loss 0
        {"operator": "diff", "order": 2, "penalty": "l2", "reduction": "none"},
    ):
        loss = regularize(base, image(channels=1, dtype=torch.float64), mask(), backend=backend, **options)
        assert loss.isfinite().all()
    assert regularize(base, image(dtype=torch.float64), textureless_threshold=-0.5, backend=backend) == 0


# ---------------------------------------------------------------------------
# the registered C++ ops called directly: TORCH_CHECK is the last line of defence
# ---------------------------------------------------------------------------

F64 = {"dtype": torch.float64}
REG_ARGS = ("sobel", 1, "charbonnier", 1e-3, 1.0, None, "mean", False)  # operator .. save_weight


def reg_op(flow_, image_=None, mask_=None, target_=None, *args):
    return torch.ops.pyflowops.gradient_regularization(flow_, image_, mask_, target_, *(args or REG_ARGS))


def reg_args(**changes):
    names = ("operator", "order", "penalty", "eps", "edge_weight", "threshold", "reduction", "save_weight")
    values = dict(zip(names, REG_ARGS))
    values.update(changes)
    return tuple(values[n] for n in names)


def back_op(grad_loss, flow_, target_=None, weight=None, mask_=None, operator="sobel", order=1, penalty="l1", eps=0.0, reduction="mean"):
    return torch.ops.pyflowops.gradient_regularization_backward(
        grad_loss, flow_, target_, weight, mask_, operator, order, penalty, eps, reduction
    )


SCALAR = torch.tensor(1.0, **F64)

CPP_BAD_CALLS = [
    ("flow channels", lambda: reg_op(flow(channels=3, **F64)), r"flow must have size 2 in dimension 1"),
    ("flow rank", lambda: reg_op(torch.randn(2, 8, 9, **F64)), r"flow must have 4 dimensions"),
    ("flow int", lambda: reg_op(flow().long()), r"flow must be float32, float64, float16 or bfloat16"),
    ("unknown operator", lambda: reg_op(flow(**F64), None, None, None, *reg_args(operator="scharr")), r"operator must be 'sobel' or 'diff', got 'scharr'"),
    ("sobel order 2", lambda: reg_op(flow(**F64), None, None, None, *reg_args(order=2)), r"operator 'sobel' supports order 1 only"),
    ("order 3", lambda: reg_op(flow(**F64), None, None, None, *reg_args(operator="diff", order=3)), r"order must be 1 or 2, got 3"),
    ("unknown penalty", lambda: reg_op(flow(**F64), None, None, None, *reg_args(penalty="huber")), r"penalty must be 'l1', 'charbonnier' or 'l2', got 'huber'"),
    ("unknown reduction", lambda: reg_op(flow(**F64), None, None, None, *reg_args(reduction="max")), r"reduction must be 'mean', 'sum' or 'none', got 'max'"),
    ("negative eps", lambda: reg_op(flow(**F64), None, None, None, *reg_args(eps=-1.0)), r"eps must be finite and >= 0, got -1"),
    ("nan eps", lambda: reg_op(flow(**F64), None, None, None, *reg_args(eps=float("nan"))), r"eps must be finite and >= 0"),
    ("mask shape", lambda: reg_op(flow(**F64), None, mask(width=10)), r"mask must have shape \[2, 1, 8, 9\], got \[2, 1, 8, 10\]"),
    ("mask channels", lambda: reg_op(flow(**F64), None, mask().expand(2, 3, 8, 9)), r"mask must have shape \[2, 1, 8, 9\]"),
    ("mask rank", lambda: reg_op(flow(**F64), None, mask()[:, 0]), r"mask must have 4 dimensions"),
    ("mask int", lambda: reg_op(flow(**F64), None, mask().int()), r"mask must be bool or flow's dtype"),
    ("mask other float", lambda: reg_op(flow(**F64), None, mask().float()), r"mask must be bool or flow's dtype"),
    ("image size", lambda: reg_op(flow(**F64), image(height=7, **F64)), r"image must be \[B, C, H, W\] with B, H, W of flow"),
    ("image dtype", lambda: reg_op(flow(**F64), image()), r"image has dtype Float but flow has dtype Double"),
    ("target shape", lambda: reg_op(flow(**F64), None, None, flow(batch=1, **F64)), r"target must have shape \[2, 2, 8, 9\]"),
    ("target dtype", lambda: reg_op(flow(**F64), None, None, flow()), r"target has dtype Float but flow has dtype Double"),
    ("backward flow channels", lambda: back_op(SCALAR, flow(channels=1, **F64)), r"flow must have size 2 in dimension 1"),
    ("backward operator", lambda: back_op(SCALAR, flow(**F64), operator="scharr"), r"operator must be 'sobel' or 'diff'"),
    ("backward penalty", lambda: back_op(SCALAR, flow(**F64), penalty="huber"), r"penalty must be 'l1', 'charbonnier' or 'l2'"),
    ("backward reduction", lambda: back_op(SCALAR, flow(**F64), reduction="max"), r"reduction must be 'mean', 'sum' or 'none'"),
    ("backward eps", lambda: back_op(SCALAR, flow(**F64), eps=-1.0), r"eps must be finite and >= 0"),
    ("backward mask shape", lambda: back_op(SCALAR, flow(**F64), mask_=mask(batch=1)), r"mask must have shape \[2, 1, 8, 9\]"),
    ("backward grad_loss map", lambda: back_op(torch.randn(2, 8, 10, **F64), flow(**F64), reduction="none"), r"grad_loss must have shape \[2, 8, 9\]"),
    ("backward grad_loss scalar", lambda: back_op(torch.randn(2, 8, 9, **F64), flow(**F64), reduction="mean"), r"grad_loss must hold one value"),
    ("backward grad_loss dtype", lambda: back_op(SCALAR.float(), flow(**F64)), r"grad_loss has dtype Float but flow has dtype Double"),
    ("backward weight shape", lambda: back_op(SCALAR, flow(**F64), weight=torch.rand(2, 8, 8, **F64)), r"weight must have shape \[2, 8, 9\]"),
    ("backward weight dtype", lambda: back_op(SCALAR, flow(**F64), weight=torch.rand(2, 8, 9)), r"weight must have flow's opmath dtype"),
    ("gradient x rank", lambda: torch.ops.pyflowops.spatial_gradient(torch.randn(2, 8, 9, **F64), "sobel", 1, True), r"x must have 4 dimensions"),
    ("gradient operator", lambda: torch.ops.pyflowops.spatial_gradient(image(**F64), "scharr", 1, True), r"operator must be 'sobel' or 'diff'"),
    ("gradient sobel order 2", lambda: torch.ops.pyflowops.spatial_gradient(image(**F64), "sobel", 2, True), r"operator 'sobel' supports order 1 only"),
    ("gradient backward K", lambda: torch.ops.pyflowops.spatial_gradient_backward(torch.randn(2, 3, 3, 8, 9, **F64), "sobel", 1, True), r"grad_out must have size 2 in dimension 2"),
    ("gradient backward rank", lambda: torch.ops.pyflowops.spatial_gradient_backward(image(**F64), "diff", 1, True), r"grad_out must have 5 dimensions"),
    ("mask op operator", lambda: torch.ops.pyflowops.textureless_mask(image(**F64), 0.1, "scharr"), r"operator must be 'sobel' or 'diff'"),
    ("mask op rank", lambda: torch.ops.pyflowops.textureless_mask(torch.rand(3, 8, 9), 0.1, "sobel"), r"image must have 4 dimensions"),
]


@pytest.mark.parametrize("call, pattern", [c[1:] for c in CPP_BAD_CALLS], ids=[c[0] for c in CPP_BAD_CALLS])
def test_cpp_checks_are_the_last_line_of_defence(call, pattern):
    """Calling the registered op directly bypasses Python validation: TORCH_CHECK must still catch it."""
    with pytest.raises(RuntimeError, match=pattern):
        call()


def test_cpp_ops_accept_the_valid_calls():
    """The direct calls above differ from valid ones in one argument only: these must run."""
    loss, weight = reg_op(flow(**F64), image(**F64), mask(), flow(**F64), *reg_args(save_weight=True))
    assert loss.shape == () and weight.shape == (2, 8, 9)
    loss, _ = reg_op(flow(**F64), None, mask().double(), None, *reg_args(operator="diff", order=2, reduction="none"))
    assert loss.shape == (2, 8, 9)
    assert back_op(SCALAR, flow(**F64), mask_=mask()).shape == (2, 2, 8, 9)
    assert back_op(torch.randn(2, 8, 9, **F64), flow(**F64), weight=torch.rand(2, 8, 9, **F64), reduction="none").shape == (2, 2, 8, 9)
    assert torch.ops.pyflowops.spatial_gradient_backward(torch.randn(2, 3, 3, 8, 9, **F64), "diff", 2, True).shape == (2, 3, 8, 9)
    assert torch.ops.pyflowops.textureless_mask(image(**F64), 0.1, "diff").dtype == torch.bool
