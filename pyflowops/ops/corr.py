"""4D correlation: all-pairs pyramid, window lookup and the on-the-fly lookup.

Public functions validate their arguments, pick a backend and call the
registered op. This file also registers the fake (shape) kernels and the
autograd formulas; one setup_context/backward pair per op serves both the C++
ops (``pyflowops::corr_lookup``) and their Triton twins (``..._triton``).
See ``docs/corr_kernel_contract.md`` for the exact per-element math.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from pyflowops import _backend
from pyflowops.ops._checks import check_int, check_same_device_dtype, check_shape, check_tensor
from pyflowops.ops._registry import register_family
from pyflowops.reference import corr as reference

__all__ = [
    "MAX_RADIUS",
    "OntheflyCorrelation",
    "check_radius",
    "corr_lookup",
    "corr_lookup_onthefly",
    "corr_pyramid",
    "prepare_onthefly",
]

MAX_RADIUS = 8  # the kernels keep a (2r+2)^2 patch in registers (PFO_CORR_MAX_RADIUS)


# ---------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------


def _check_fmaps(fmap1: object, fmap2: object, num_levels: object) -> None:
    check_tensor("fmap1", fmap1, 4)
    check_tensor("fmap2", fmap2, 4)
    check_shape("fmap2", fmap2, fmap1.shape, "fmap1's [B, D, H, W]")
    check_same_device_dtype([("fmap1", fmap1), ("fmap2", fmap2)])
    check_int("num_levels", num_levels, 1)
    height, width = fmap1.shape[-2:]
    deepest = (height >> (num_levels - 1), width >> (num_levels - 1))
    if min(height, width) > 0 and min(deepest) == 0:
        raise ValueError(
            f"num_levels={num_levels} is too deep for {height}x{width} feature maps: level "
            f"{num_levels - 1} would be {deepest[0]}x{deepest[1]}; use at most "
            f"{min(height, width).bit_length()} levels"
        )


_LOW_PRECISION = (torch.float16, torch.bfloat16)


def _check_coords(coords: object, batch: int, height: int, width: int, like: torch.Tensor, what: str) -> None:
    """coords: [B, 2, H, W] on the maps' device, in their dtype or float32 with float16/bfloat16 maps
    (mixed precision: positions are never rounded to half; bfloat16 steps 0.25 px at x = 32)."""
    check_tensor("coords", coords, 4)
    check_shape("coords", coords, (batch, 2, height, width), f"[B, 2, H, W] from {what}")
    if coords.device != like.device:
        raise ValueError(f"coords is on {coords.device} but {what} is on {like.device}")
    if coords.dtype != like.dtype and not (like.dtype in _LOW_PRECISION and coords.dtype == torch.float32):
        raise TypeError(f"coords has dtype {coords.dtype} but {what} has {like.dtype} (coords take the maps' "
                        "dtype, or float32 with float16/bfloat16 maps)")


def _check_pyramid(pyramid: object) -> None:
    if not isinstance(pyramid, (list, tuple)) or len(pyramid) == 0:
        raise TypeError(f"pyramid must be a non-empty list of tensors, got {type(pyramid).__name__}")
    first = check_tensor("pyramid[0]", pyramid[0], 5)
    batch, height, width, h_l, w_l = first.shape
    check_shape("pyramid[0]", first, (batch, height, width, height, width), "[B, H, W, H, W]")
    for level in range(1, len(pyramid)):
        name = f"pyramid[{level}]"
        h_l, w_l = h_l // 2, w_l // 2
        check_tensor(name, pyramid[level], 5)
        check_shape(name, pyramid[level], (batch, height, width, h_l, w_l), "[B, H, W, H_l, W_l], halved per level")
        check_same_device_dtype([("pyramid[0]", first), (name, pyramid[level])])


# ---------------------------------------------------------------------------
# fake kernels and autograd (shared by the C++ and Triton ops)
# ---------------------------------------------------------------------------


def _lookup_shape(coords: torch.Tensor, num_levels: int, radius: int) -> tuple[int, int, int, int]:
    batch, _, height, width = coords.shape
    return batch, num_levels * (2 * radius + 1) ** 2, height, width


def _corr_lookup_fake(pyramid, coords, radius):
    return pyramid[0].new_empty(_lookup_shape(coords, len(pyramid), radius))  # the maps' dtype


def _corr_lookup_backward_fake(grad_out, pyramid, coords, radius, pyramid_grad):
    return [torch.empty_like(p) for p in pyramid] if pyramid_grad else [], torch.empty_like(coords)


def _corr_lookup_onthefly_fake(fmap1, fmap2_levels, coords, radius):
    return fmap1.new_empty(_lookup_shape(coords, len(fmap2_levels), radius))  # the maps' dtype


def _corr_lookup_onthefly_backward_fake(grad_out, fmap1, fmap2_levels, coords, radius):
    return torch.empty_like(fmap1), [torch.empty_like(f) for f in fmap2_levels], torch.empty_like(coords)


def _lookup_setup_context(ctx, inputs, output):
    pyramid, coords, radius = inputs
    ctx.save_for_backward(*pyramid, coords)
    ctx.radius = radius


def _onthefly_setup_context(ctx, inputs, output):
    fmap1, fmap2_levels, coords, radius = inputs
    ctx.save_for_backward(fmap1, *fmap2_levels, coords)
    ctx.radius = radius


def _lookup_backward(backward_op: Callable) -> Callable:
    def backward(ctx, grad_out):
        *pyramid, coords = ctx.saved_tensors
        pyramid_grad = any(ctx.needs_input_grad[0])
        grad_pyramid, grad_coords = backward_op(grad_out, pyramid, coords, ctx.radius, pyramid_grad)
        return (grad_pyramid if pyramid_grad else [None] * len(pyramid)), grad_coords, None

    return backward


def _onthefly_backward(backward_op: Callable) -> Callable:
    def backward(ctx, grad_out):
        fmap1, *fmap2_levels, coords = ctx.saved_tensors
        grad_fmap1, grad_levels, grad_coords = backward_op(grad_out, fmap1, fmap2_levels, coords, ctx.radius)
        return grad_fmap1, grad_levels, grad_coords, None

    return backward


_FAKES = {
    "corr_lookup": _corr_lookup_fake,
    "corr_lookup_backward": _corr_lookup_backward_fake,
    "corr_lookup_onthefly": _corr_lookup_onthefly_fake,
    "corr_lookup_onthefly_backward": _corr_lookup_onthefly_backward_fake,
}

_triton_ops = register_family(  # loads the Triton twins on first use
    fakes=_FAKES,
    autograd={
        "corr_lookup": (_lookup_backward, _lookup_setup_context),
        "corr_lookup_onthefly": (_onthefly_backward, _onthefly_setup_context),
    },
    triton_module="pyflowops.triton.corr",
)


def _ops(backend: str):
    """The op namespace and name suffix that run ``backend`` (cpu and cuda share the C++ ops)."""
    return (_triton_ops(), "_triton") if backend == "triton" else (torch.ops.pyflowops, "")


# ---------------------------------------------------------------------------
# public API
# ---------------------------------------------------------------------------


def corr_pyramid(
    fmap1: torch.Tensor, fmap2: torch.Tensor, num_levels: int = 4, *, backend: str | None = None
) -> list[torch.Tensor]:
    """All-pairs correlation pyramid, as RAFT's ``CorrBlock`` builds it.

    Level 0 is ``C[b, i, j, k, l] = <fmap1[b, :, i, j], fmap2[b, :, k, l]> / sqrt(D)``
    (one batched matmul); level l+1 is level l average-pooled 2x2 (stride 2,
    floor) over its last two dims. Memory grows as (H*W)^2: at 1/8 of a
    1024^2 image that is 1 GiB per sample in float32 (see
    :func:`corr_lookup_onthefly` for the volume-free path).

    Args:
        fmap1: [B, D, H, W] features of image 1.
        fmap2: [B, D, H, W] features of image 2 (same device and dtype).
        num_levels: L >= 1; every level must keep at least one pixel.
        backend: ``"cpu"``, ``"cuda"``, ``"triton"``, ``"torch"`` or ``"auto"``;
            None follows :func:`pyflowops.use_backend` / ``PYFLOWOPS_BACKEND``.

    Returns:
        L tensors, level l of shape [B, H, W, H >> l, W >> l].

    Example:
        >>> import torch, pyflowops
        >>> f1, f2 = torch.randn(2, 1, 8, 32, 32).unbind(0)
        >>> [tuple(p.shape) for p in pyflowops.corr_pyramid(f1, f2, num_levels=2)]
        [(1, 32, 32, 32, 32), (1, 32, 32, 16, 16)]
    """
    _check_fmaps(fmap1, fmap2, num_levels)
    name = _backend.select_backend("corr_pyramid", [fmap1], backend)
    if name == "torch":
        return reference.corr_pyramid(fmap1, fmap2, num_levels)
    # One composite C++ op (matmul + pooling) serves cpu, cuda and triton alike.
    return list(torch.ops.pyflowops.corr_pyramid(fmap1, fmap2, num_levels))


def corr_lookup(
    pyramid: Sequence[torch.Tensor], coords: torch.Tensor, radius: int = 4, *, backend: str | None = None
) -> torch.Tensor:
    """Bilinear window lookup in a correlation pyramid: RAFT's ``CorrBlock.__call__``.

    For level l and window indices a, c in [0, 2r], output channel
    ``l*(2r+1)^2 + a*(2r+1) + c`` is level l bilinearly sampled (zero padding)
    for each query pixel at ``(x / 2^l + a - r, y / 2^l + c - r)``: the x-offset
    is the slow index, as in RAFT, so pretrained RAFT/GMA weights work.
    Gradients flow to the pyramid and to coords.

    Args:
        pyramid: L tensors [B, H, W, H_l, W_l] from :func:`corr_pyramid`.
        coords: [B, 2, H, W] absolute level-0 pixel positions, channel 0 = x
            (column), 1 = y (row); same device as the pyramid, and its dtype or float32 with a
            float16/bfloat16 pyramid (mixed precision: the positions stay exact; the remaining error
            is the maps' own rounding and the output's, about 2^-11 relative for float16 and 2^-8
            for bfloat16).
        radius: window radius r in [0, 8].
        backend: as in :func:`corr_pyramid`.

    Returns:
        [B, L*(2r+1)^2, H, W].

    Example:
        >>> import torch, pyflowops
        >>> f1, f2 = torch.randn(2, 1, 8, 16, 16).unbind(0)
        >>> pyramid = pyflowops.corr_pyramid(f1, f2, num_levels=2)
        >>> pyflowops.corr_lookup(pyramid, torch.rand(1, 2, 16, 16) * 16, radius=3).shape
        torch.Size([1, 98, 16, 16])
    """
    _check_pyramid(pyramid)
    batch, height, width = pyramid[0].shape[:3]
    _check_coords(coords, batch, height, width, pyramid[0], "pyramid[0]")
    check_radius(radius)
    name = _backend.select_backend("corr_lookup", [coords], backend)
    if name == "torch":
        return reference.corr_lookup(list(pyramid), coords, radius)
    ops, suffix = _ops(name)
    return getattr(ops, f"corr_lookup{suffix}")(list(pyramid), coords, radius)


def corr_lookup_onthefly(
    fmap1: torch.Tensor,
    fmap2: torch.Tensor,
    coords: torch.Tensor,
    radius: int = 4,
    num_levels: int = 4,
    *,
    backend: str | None = None,
) -> torch.Tensor:
    """The output of ``corr_lookup(corr_pyramid(fmap1, fmap2, L), coords, r)`` without the volume.

    fmap2 is average-pooled 2x2 per level (pooling commutes with the dot
    product) and each window sample is a bilinear sum of dot products with
    fmap1, computed on the fly: memory O(B*H*W*L*(2r+1)^2) instead of
    O(B*(H*W)^2). Any channel count D. Gradients flow to fmap1, fmap2 and
    coords. To reuse fmap2's pyramid across iterations (as RAFT does), use
    :class:`OntheflyCorrelation` or :class:`pyflowops.nn.AlternateCorrBlock`.

    Args:
        fmap1: [B, D, H, W] features of image 1.
        fmap2: [B, D, H, W] features of image 2.
        coords: [B, 2, H, W] absolute level-0 positions (x, y).
        radius: window radius r in [0, 8].
        num_levels: L >= 1.
        backend: as in :func:`corr_pyramid`.

    Returns:
        [B, L*(2r+1)^2, H, W], channels ordered as in :func:`corr_lookup`.

    Example:
        >>> import torch, pyflowops
        >>> f1, f2 = torch.randn(2, 1, 8, 16, 16).unbind(0)
        >>> pyflowops.corr_lookup_onthefly(f1, f2, torch.rand(1, 2, 16, 16) * 16, radius=1).shape
        torch.Size([1, 36, 16, 16])
    """
    return OntheflyCorrelation(fmap1, fmap2, num_levels, radius, backend=backend)(coords)


def prepare_onthefly(
    fmap1: torch.Tensor, fmap2: torch.Tensor, num_levels: int
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Kernel layout for the on-the-fly op (differentiable).

    Returns:
        fmap1 scaled by 1/sqrt(D) as [B, H, W, D], and fmap2's L pooled levels
        as [B, H >> l, W >> l, D], all channels-last and contiguous so that each
        dot product reads one contiguous row.
    """
    dim = fmap1.shape[1]
    fmap1_cl = (fmap1 * dim**-0.5).permute(0, 2, 3, 1).contiguous()
    levels = [lvl.permute(0, 2, 3, 1).contiguous() for lvl in reference.fmap_pyramid(fmap2, num_levels)]
    return fmap1_cl, levels


def check_radius(radius: object) -> int:
    """``radius`` is an int in [0, MAX_RADIUS] (a clear ValueError/TypeError otherwise)."""
    return check_int("radius", radius, 0, MAX_RADIUS)


class OntheflyCorrelation:
    """fmap1 and fmap2 prepared once for repeated :func:`corr_lookup_onthefly` calls.

    RAFT looks up the same feature pair 12 or more times with moving coords: this
    validates the features once, pools fmap2 into its L levels (channels-last)
    on the first call and reuses them, so each call only runs the lookup kernel.
    The backend is chosen per call (it may depend on the coords' device).

    Args:
        fmap1: [B, D, H, W] features of image 1.
        fmap2: [B, D, H, W] features of image 2.
        num_levels: L >= 1.
        radius: window radius r in [0, 8].
        backend: as in :func:`corr_pyramid`.

    Call: coords [B, 2, H, W] (x, y) -> [B, L*(2r+1)^2, H, W], the output of
    ``corr_lookup_onthefly(fmap1, fmap2, coords, radius, num_levels)``.

    Example:
        >>> import torch, pyflowops
        >>> f1, f2 = torch.randn(2, 1, 8, 16, 16).unbind(0)
        >>> lookup = pyflowops.ops.corr.OntheflyCorrelation(f1, f2, num_levels=2, radius=1)
        >>> lookup(torch.rand(1, 2, 16, 16) * 16).shape
        torch.Size([1, 18, 16, 16])
    """

    def __init__(
        self, fmap1: torch.Tensor, fmap2: torch.Tensor, num_levels: int = 4, radius: int = 4, *, backend: str | None = None
    ) -> None:
        _check_fmaps(fmap1, fmap2, num_levels)
        self.radius = check_radius(radius)
        self.num_levels, self.backend = num_levels, backend
        self.fmap1, self.fmap2 = fmap1, fmap2
        self._prepared: tuple[torch.Tensor, list[torch.Tensor]] | None = None

    def __call__(self, coords: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = self.fmap1.shape
        _check_coords(coords, batch, height, width, self.fmap1, "fmap1")
        name = _backend.select_backend("corr_lookup_onthefly", [coords], self.backend)
        if name == "torch":
            return reference.corr_lookup_onthefly(self.fmap1, self.fmap2, coords, self.radius, self.num_levels)
        if self._prepared is None:  # pool fmap2 once, not once per iteration
            self._prepared = prepare_onthefly(self.fmap1, self.fmap2, self.num_levels)
        fmap1_cl, fmap2_levels = self._prepared
        ops, suffix = _ops(name)
        return getattr(ops, f"corr_lookup_onthefly{suffix}")(fmap1_cl, fmap2_levels, coords, self.radius)
