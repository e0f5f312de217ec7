"""Sobel/difference-gradient regularization: spatial_gradient, gradient_regularization, textureless_mask.

Public functions validate their arguments, pick a backend and call the
registered op. This file also registers the fake (shape) kernels and the
autograd formulas; one setup_context/backward pair per op serves both the C++
ops (``pyflowops::gradient_regularization``) and their Triton twins
(``..._triton``). See ``docs/gradreg_kernel_contract.md`` for the exact math.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from pyflowops import _backend
from pyflowops.ops._checks import check_choice, check_float, check_int, check_same_device_dtype, check_shape, check_tensor
from pyflowops.ops._registry import register_family
from pyflowops.reference import gradreg as reference

__all__ = ["OPERATORS", "PENALTIES", "REDUCTIONS", "gradient_regularization", "spatial_gradient", "textureless_mask"]

OPERATORS = ("sobel", "diff")
PENALTIES = ("l1", "charbonnier", "l2")
REDUCTIONS = ("mean", "sum", "none")


# ---------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------


def _check_stencil(operator: object, order: object) -> None:
    check_choice("operator", operator, OPERATORS)
    check_int("order", order, 1, 2)
    if operator == "sobel" and order == 2:
        raise ValueError(
            "order=2 needs operator='diff': the second-order Sobel stencil is 5x5 and the fused kernels "
            "are built for 3x3 stencils"
        )


def _check_mask(mask: object, flow: torch.Tensor) -> torch.Tensor:
    """mask [B, 1, H, W], bool or floating (converted to flow's dtype); returns what the kernels take."""
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"mask must be a torch.Tensor, got {type(mask).__name__}")
    if mask.dtype != torch.bool and not mask.is_floating_point():
        raise TypeError(f"mask must be bool or floating point, got {mask.dtype} (use mask.bool())")
    if mask.dim() != 4:
        raise ValueError(f"mask must have 4 dimensions, got shape {tuple(mask.shape)}")
    batch, _, height, width = flow.shape
    check_shape("mask", mask, (batch, 1, height, width), "[B, 1, H, W] from flow")
    if mask.device != flow.device:
        raise ValueError(f"mask is on {mask.device} but flow is on {flow.device}")
    return mask if mask.dtype in (torch.bool, flow.dtype) else mask.to(flow.dtype)


def _check_image(image: object, flow: torch.Tensor) -> None:
    check_tensor("image", image, 4)
    batch, _, height, width = flow.shape
    if (image.shape[0], *image.shape[2:]) != (batch, height, width):
        raise ValueError(
            f"image must have shape [B, C, H, W] with B, H, W of flow {tuple(flow.shape)}, got {tuple(image.shape)}"
        )
    check_same_device_dtype([("flow", flow), ("image", image)])


# ---------------------------------------------------------------------------
# fake kernels and autograd (shared by the C++ and Triton ops)
# ---------------------------------------------------------------------------


def _directions(order: int) -> int:
    return 2 if order == 1 else 3


def _opmath(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _spatial_gradient_fake(x, operator, order, normalized):
    batch, channels, height, width = x.shape
    return x.new_empty(batch, channels, _directions(order), height, width)


def _spatial_gradient_backward_fake(grad_out, operator, order, normalized):
    batch, channels, _, height, width = grad_out.shape
    return grad_out.new_empty(batch, channels, height, width)


def _regularization_fake(flow, image, mask, target, operator, order, penalty, eps, edge_weight, threshold, reduction, save_weight):
    batch, _, height, width = flow.shape
    loss = flow.new_empty(batch, height, width) if reduction == "none" else flow.new_empty(())
    weight_shape = (batch, height, width) if save_weight and image is not None else (0,)
    return loss, flow.new_empty(weight_shape, dtype=_opmath(flow.dtype))


def _regularization_backward_fake(grad_loss, flow, target, weight, mask, operator, order, penalty, eps, reduction):
    return torch.empty_like(flow)


def _textureless_mask_fake(image, threshold, operator):
    batch, _, height, width = image.shape
    return image.new_empty(batch, 1, height, width, dtype=torch.bool)


def _spatial_gradient_setup_context(ctx, inputs, output):
    _, ctx.operator, ctx.order, ctx.normalized = inputs


def _spatial_gradient_backward(backward_op: Callable) -> Callable:
    def backward(ctx, grad_out):
        return backward_op(grad_out, ctx.operator, ctx.order, ctx.normalized), None, None, None

    return backward


def _regularization_setup_context(ctx, inputs, output):
    flow, image, mask, target, operator, order, penalty, eps, _, _, reduction, save_weight = inputs
    _, weight = output
    ctx.mark_non_differentiable(weight)
    ctx.has_image, ctx.has_target = image is not None, target is not None
    if image is not None and not save_weight:
        weight = None  # the backward explains; it only runs if autograd was asked after all
    # The image's weight already holds the mask; without an image the mask is the weight.
    ctx.save_for_backward(flow, target, weight if image is not None else None, mask if image is None else None)
    ctx.args = (operator, order, penalty, eps, reduction)


def _regularization_backward(backward_op: Callable) -> Callable:
    def backward(ctx, grad_loss, _grad_weight):
        flow, target, weight, mask = ctx.saved_tensors
        if ctx.has_image and weight is None:
            raise RuntimeError(
                "gradient_regularization: the forward ran with save_weight=False, so there is no weight to "
                "differentiate through; call pyflowops.gradient_regularization, which sets it"
            )
        grad_flow = backward_op(grad_loss.contiguous(), flow, target, weight, mask, *ctx.args)
        grad_target = -grad_flow if ctx.has_target and ctx.needs_input_grad[3] else None
        return (grad_flow if ctx.needs_input_grad[0] else None), None, None, grad_target, *([None] * 8)

    return backward


_FAKES = {
    "spatial_gradient": _spatial_gradient_fake,
    "spatial_gradient_backward": _spatial_gradient_backward_fake,
    "gradient_regularization": _regularization_fake,
    "gradient_regularization_backward": _regularization_backward_fake,
    "textureless_mask": _textureless_mask_fake,
}

_triton_ops = register_family(  # loads the Triton twins on first use
    fakes=_FAKES,
    autograd={
        "spatial_gradient": (_spatial_gradient_backward, _spatial_gradient_setup_context),
        "gradient_regularization": (_regularization_backward, _regularization_setup_context),
    },
    triton_module="pyflowops.triton.gradreg",
)


def _op(backend: str, name: str):
    """The registered op that runs ``backend`` (cpu and cuda share the C++ ops)."""
    if backend == "triton":
        return getattr(_triton_ops(), f"{name}_triton")
    return getattr(torch.ops.pyflowops, name)


# ---------------------------------------------------------------------------
# public API
# ---------------------------------------------------------------------------


def spatial_gradient(
    x: torch.Tensor, operator: str = "sobel", normalized: bool = True, *, order: int = 1, backend: str | None = None
) -> torch.Tensor:
    """First or second spatial derivatives with a 3x3 Sobel or difference stencil, replicate padding.

    The same numbers as ``kornia.filters.spatial_gradient(x, mode=operator,
    order=order, normalized=normalized)``: a correlation (not a flipped
    convolution), x = column is direction 0. ``normalized`` divides Sobel by 8
    and the central difference by 2 (order 2: dxx and dyy by 1, dxy by 4), so a
    unit slope gives 1. Gradients flow to ``x``.

    Args:
        x: [B, C, H, W] floating point.
        operator: ``"sobel"`` or ``"diff"`` (central difference).
        normalized: scale the stencils to derivative units.
        order: 1 -> (dx, dy); 2 -> (dxx, dxy, dyy), ``"diff"`` only (kornia's
            second-order Sobel is a 5x5 stencil).
        backend: ``"cpu"``, ``"cuda"``, ``"triton"``, ``"torch"`` or ``"auto"``;
            None follows :func:`pyflowops.use_backend` / ``PYFLOWOPS_BACKEND``.

    Returns:
        [B, C, K, H, W] with K = 2 (order 1) or 3 (order 2).

    Example:
        >>> import torch, pyflowops
        >>> ramp = torch.arange(5.0).expand(1, 1, 4, 5)  # slope 1 along x
        >>> pyflowops.spatial_gradient(ramp)[0, 0, :, 1, 2].tolist()
        [1.0, 0.0]
    """
    check_tensor("x", x, 4)
    _check_stencil(operator, order)
    if not isinstance(normalized, bool):
        raise TypeError(f"normalized must be a bool, got {type(normalized).__name__}")
    name = _backend.select_backend("spatial_gradient", [x], backend)
    if name == "torch":
        return reference.spatial_gradient(x, operator, normalized, order)
    return _op(name, "spatial_gradient")(x, operator, order, normalized)


def gradient_regularization(
    flow: torch.Tensor,
    image: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    target: torch.Tensor | None = None,
    *,
    operator: str = "sobel",
    order: int = 1,
    penalty: str = "charbonnier",
    eps: float = 1e-3,
    edge_weight: float = 0.0,
    textureless_threshold: float | None = None,
    reduction: str = "mean",
    backend: str | None = None,
) -> torch.Tensor:
    """Edge-aware penalty on the spatial gradient of a flow field, in one fused pass.

    ``G = spatial_gradient(flow - target)`` (or of ``flow``), ``e`` = the mean
    over image channels and (dx, dy) of ``|spatial_gradient(image)|``, and per
    pixel ``L = w * sum over flow channels and directions of rho(G)`` with
    ``w = mask * exp(-edge_weight * e) * [e < textureless_threshold]`` (each
    factor only when its argument is given; the exp factor is 1 when
    ``edge_weight == 0``). rho is ``|g|`` (l1), ``sqrt(g^2 + eps^2)``
    (charbonnier) or ``g^2`` (l2). Smoothness in texture-less regions (SRFlowNet,
    UFlow-style edge-aware smoothness) is ``target=None``; matching the ground
    truth's gradients is ``target=gt_flow``. Gradients flow to ``flow`` and
    ``target``; ``image`` and ``mask`` are constants.

    Args:
        flow: [B, 2, H, W] predicted flow.
        image: [B, C, H, W] image of the flow's first frame (any C), same dtype.
        mask: [B, 1, H, W] bool or float weights (a float mask of another dtype
            is converted to flow's).
        target: [B, 2, H, W] flow whose gradients ``flow`` should match.
        operator: ``"sobel"`` or ``"diff"``.
        order: 1 (dx, dy) or 2 (dxx, dxy, dyy; ``"diff"`` only) for the flow's
            derivatives; the edge strength ``e`` is always first order.
        penalty: ``"l1"``, ``"charbonnier"`` or ``"l2"``.
        eps: Charbonnier's epsilon, >= 0.
        edge_weight: decay of the weight with the edge strength.
        textureless_threshold: regularize only where ``e`` is below it.
        reduction: ``"mean"`` (sum / (B*H*W)), ``"sum"`` or ``"none"``.
        backend: as in :func:`spatial_gradient`.

    Returns:
        0-dim tensor, or [B, H, W] for ``reduction="none"``.

    Example:
        >>> import torch, pyflowops
        >>> flow = torch.randn(2, 2, 16, 20, requires_grad=True)
        >>> image = torch.rand(2, 3, 16, 20)
        >>> loss = pyflowops.gradient_regularization(flow, image, edge_weight=10.0)
        >>> loss.backward()
        >>> flow.grad.shape
        torch.Size([2, 2, 16, 20])
    """
    check_tensor("flow", flow, 4)
    if flow.shape[1] != 2:
        raise ValueError(f"flow must have shape [B, 2, H, W], got {tuple(flow.shape)}")
    if image is not None:
        _check_image(image, flow)
    if mask is not None:
        mask = _check_mask(mask, flow)
    if target is not None:
        check_tensor("target", target, 4)
        check_shape("target", target, flow.shape, "flow's [B, 2, H, W]")
        check_same_device_dtype([("flow", flow), ("target", target)])
    _check_stencil(operator, order)
    check_choice("penalty", penalty, PENALTIES)
    eps = check_float("eps", eps, low=0.0)
    edge_weight = check_float("edge_weight", edge_weight)
    if textureless_threshold is not None:
        textureless_threshold = check_float("textureless_threshold", textureless_threshold)
    check_choice("reduction", reduction, REDUCTIONS)
    name = _backend.select_backend("gradient_regularization", [flow], backend)
    if name == "torch":
        return reference.gradient_regularization(
            flow, image, mask, target, operator=operator, order=order, penalty=penalty, eps=eps,
            edge_weight=edge_weight, textureless_threshold=textureless_threshold, reduction=reduction,
        )  # fmt: skip
    if edge_weight == 0.0 and textureless_threshold is None:
        image = None  # w does not depend on it: the kernels need not read it
    needs_grad = flow.requires_grad or (target is not None and target.requires_grad)
    save_weight = torch.is_grad_enabled() and needs_grad
    loss, _ = _op(name, "gradient_regularization")(
        flow, image, mask, target, operator, order, penalty, eps, edge_weight, textureless_threshold, reduction,
        save_weight,
    )  # fmt: skip
    return loss


def textureless_mask(
    image: torch.Tensor, threshold: float, operator: str = "sobel", *, backend: str | None = None
) -> torch.Tensor:
    """Where the image has no texture: edge strength ``e < threshold``.

    ``e`` is the mean over channels and (dx, dy) of the image's normalized
    first-order ``|spatial_gradient|``: the mask :func:`gradient_regularization`
    applies for ``textureless_threshold``, for pictures and for models.

    Args:
        image: [B, C, H, W] floating point.
        threshold: edge strength below which a pixel counts as texture-less
            (in the image's units per pixel, e.g. 0.02 for images in [0, 1]).
        operator: ``"sobel"`` or ``"diff"``.
        backend: as in :func:`spatial_gradient`.

    Returns:
        [B, 1, H, W] bool.

    Example:
        >>> import torch, pyflowops
        >>> image = torch.zeros(1, 3, 8, 8)
        >>> image[..., 4:] = 1.0  # a vertical edge between columns 3 and 4
        >>> pyflowops.textureless_mask(image, 0.1)[0, 0, 0].tolist()
        [True, True, True, False, False, True, True, True]
    """
    check_tensor("image", image, 4)
    threshold = check_float("threshold", threshold)
    check_choice("operator", operator, OPERATORS)
    name = _backend.select_backend("textureless_mask", [image], backend)
    if name == "torch":
        return reference.textureless_mask(image, threshold, operator)
    return _op(name, "textureless_mask")(image, threshold, operator)
