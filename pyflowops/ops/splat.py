"""Gaussian splatting: project_gaussians, rasterize_gaussians and render (both chained).

Public functions validate their arguments, pick a backend and call the
registered op. This file also registers the fake (shape) kernels and the
autograd formulas; one setup_context/backward pair per op serves both the C++
ops (``pyflowops::rasterize_gaussians``) and their Triton twins
(``..._triton``). See ``docs/splat_kernel_contract.md`` for the exact math.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from pyflowops import _backend
from pyflowops.ops._checks import check_float, check_int, check_same_device_dtype, check_shape, check_tensor
from pyflowops.ops._registry import register_family
from pyflowops.reference import splat as reference

__all__ = ["project_gaussians", "rasterize_gaussians", "render"]


# ---------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------


def _check_rows(name: str, value: object, ndim: int, n: int | None, cols: int | None, layout: str) -> int:
    """``value`` is a floating tensor [N] or [N, cols] (N = ``n`` when given); returns its N."""
    check_tensor(name, value, ndim)
    expected = (value.shape[0] if n is None else n, *(() if cols is None else (cols,)))
    check_shape(name, value, expected, layout)
    return value.shape[0]


def _camera(name: str, value: object, size: int, like: torch.Tensor) -> torch.Tensor:
    """viewmat / K: a [size, size] floating constant, moved to ``like``'s device and dtype, no gradient."""
    check_tensor(name, value, 2)
    check_shape(name, value, (size, size), f"[{size}, {size}]")
    return value.detach().to(device=like.device, dtype=like.dtype).contiguous()


def _check_depth_range(near: object, far: object) -> tuple[float, float]:
    near, far = check_float("near", near), check_float("far", far)
    if near <= 0:
        raise ValueError(f"near must be > 0 (depths are divided by), got {near}")
    if far <= near:
        raise ValueError(f"far must be > near = {near}, got {far}")
    return near, far


def _check_appearance(first: tuple[str, torch.Tensor], opacities, features, background) -> None:
    """opacities [N], features [N, C >= 1], background [C] or None, all like ``first`` = (name, [N, ...])."""
    name, like = first
    n = like.shape[0]
    _check_rows("opacities", opacities, 1, n, None, f"[N] with N from {name}")
    check_tensor("features", features, 2)
    if features.shape[0] != n or features.shape[1] < 1:
        raise ValueError(
            f"features must have shape [N, C] with N = {n} from {name} and C >= 1, got {tuple(features.shape)}"
        )
    named = [first, ("opacities", opacities), ("features", features)]
    if background is not None:
        _check_rows("background", background, 1, features.shape[1], None, "[C] with C from features")
        named.append(("background", background))
    check_same_device_dtype(named)


def _check_radii(radii: object, n: int, like: torch.Tensor) -> torch.Tensor:
    """radii [N], integer (converted to int32), on ``like``'s device."""
    if not isinstance(radii, torch.Tensor):
        raise TypeError(f"radii must be a torch.Tensor, got {type(radii).__name__}")
    if radii.dtype.is_floating_point or radii.dtype.is_complex or radii.dtype == torch.bool:
        raise TypeError(f"radii must be an integer tensor (int32, as project_gaussians returns), got {radii.dtype}")
    check_shape("radii", radii, (n,), "[N] from means2d")
    if radii.device != like.device:
        raise ValueError(f"radii is on {radii.device} but means2d is on {like.device}")
    return radii.to(torch.int32)


def _check_tile_size(tile_size: object) -> int:
    check_int("tile_size", tile_size, 4, 64)
    if tile_size & (tile_size - 1):
        raise ValueError(f"tile_size must be a power of two in [4, 64], got {tile_size}")
    return tile_size


def _check_size(width: object, height: object) -> tuple[int, int]:
    return check_int("width", width, 1), check_int("height", height, 1)


# ---------------------------------------------------------------------------
# fake kernels and autograd (shared by the C++ and Triton ops)
# ---------------------------------------------------------------------------


def _project_fake(means, quats, scales, viewmat, K, width, height, near, far):
    n = means.shape[0]
    return means.new_empty(n, 2), means.new_empty(n, 3), means.new_empty(n), means.new_empty(n, dtype=torch.int32)


def _project_backward_fake(means, quats, scales, viewmat, K, radii, grad_means2d, grad_conics, grad_depths):
    return torch.empty_like(means), torch.empty_like(quats), torch.empty_like(scales)


def _tiles(width: int, height: int, tile_size: int) -> int:
    return -(-width // tile_size) * -(-height // tile_size)


def _rasterize_fake(means2d, conics, opacities, features, depths, radii, width, height, background, tile_size):
    channels = features.shape[1]
    instances = torch.library.get_ctx().new_dynamic_size()  # M (tile, Gaussian) pairs: data-dependent
    return (
        means2d.new_empty(height, width, channels),
        means2d.new_empty(height, width, 1),
        means2d.new_empty(height, width, 1),
        means2d.new_empty(_tiles(width, height, tile_size) + 1, dtype=torch.int32),
        means2d.new_empty(instances, dtype=torch.int32),
        means2d.new_empty(height, width, dtype=torch.int32),
    )


def _rasterize_backward_fake(
    grad_image, grad_alpha, grad_depth, means2d, conics, opacities, features, depths, radii, background, alpha,
    tile_offsets, gaussian_ids, last, width, height, tile_size,
):  # fmt: skip
    return tuple(torch.empty_like(t) for t in (means2d, conics, opacities, features, depths))


def _project_setup_context(ctx, inputs, output):
    means, quats, scales, viewmat, K, *_ = inputs
    radii = output[3]
    ctx.mark_non_differentiable(radii)
    ctx.save_for_backward(means, quats, scales, viewmat, K, radii)


def _project_backward(backward_op: Callable) -> Callable:
    def backward(ctx, grad_means2d, grad_conics, grad_depths, _grad_radii):
        grads = backward_op(
            *ctx.saved_tensors, grad_means2d.contiguous(), grad_conics.contiguous(), grad_depths.contiguous()
        )
        return *(g if needed else None for g, needed in zip(grads, ctx.needs_input_grad)), *([None] * 6)

    return backward


def _rasterize_setup_context(ctx, inputs, output):
    means2d, conics, opacities, features, depths, radii, width, height, background, tile_size = inputs
    _, alpha, _, tile_offsets, gaussian_ids, last = output
    ctx.mark_non_differentiable(tile_offsets, gaussian_ids, last)
    ctx.save_for_backward(
        means2d, conics, opacities, features, depths, radii, background, alpha, tile_offsets, gaussian_ids, last
    )
    ctx.size = (width, height, tile_size)


def _rasterize_backward(backward_op: Callable) -> Callable:
    def backward(ctx, grad_image, grad_alpha, grad_depth, *_binning):
        saved = ctx.saved_tensors
        background, alpha = saved[6], saved[7]
        cotangents = (grad_image.contiguous(), grad_alpha.contiguous(), grad_depth.contiguous())
        grads = backward_op(*cotangents, *saved, *ctx.size)
        grad_background = None
        if background is not None and ctx.needs_input_grad[8]:  # the pixels' final transmittance times grad_image
            opmath = torch.float64 if alpha.dtype == torch.float64 else torch.float32  # a long sum: not in half
            grad_background = ((1 - alpha.to(opmath)) * grad_image).sum((0, 1), dtype=opmath).to(alpha.dtype)
        grads = tuple(g if needed else None for g, needed in zip(grads, ctx.needs_input_grad))
        return *grads, None, None, None, grad_background, None

    return backward


_FAKES = {
    "project_gaussians": _project_fake,
    "project_gaussians_backward": _project_backward_fake,
    "rasterize_gaussians": _rasterize_fake,
    "rasterize_gaussians_backward": _rasterize_backward_fake,
}

_triton_ops = register_family(  # loads the Triton twins on first use
    fakes=_FAKES,
    autograd={
        "project_gaussians": (_project_backward, _project_setup_context),
        "rasterize_gaussians": (_rasterize_backward, _rasterize_setup_context),
    },
    triton_module="pyflowops.triton.splat",
)


def _op(backend: str, name: str):
    """The registered op that runs ``backend`` (cpu and cuda share the C++ ops)."""
    if backend == "triton":
        return getattr(_triton_ops(), f"{name}_triton")
    return getattr(torch.ops.pyflowops, name)


# ---------------------------------------------------------------------------
# public API
# ---------------------------------------------------------------------------


def project_gaussians(
    means: torch.Tensor,
    quats: torch.Tensor,
    scales: torch.Tensor,
    viewmat: torch.Tensor,
    K: torch.Tensor,
    width: int,
    height: int,
    near: float = 0.01,
    far: float = 1e10,
    *,
    backend: str | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Project 3D Gaussians into a pinhole camera (EWA splatting, as in 3D Gaussian Splatting).

    Camera point ``t = R mean + T`` (``viewmat = [[R, T], [0, 1]]``), depth
    ``z = t_z``; covariance ``Sigma = Rq S S^T Rq^T``; the 2D covariance
    ``J R Sigma R^T J^T + 0.3 I`` with the perspective Jacobian ``J`` at ``t``;
    ``radius = ceil(3 sqrt(largest eigenvalue))``. Gaussians with ``z`` outside
    ``[near, far]``, a degenerate covariance (e.g. a zero quaternion, NaN) or
    entirely off-image are culled: radius 0, means2d and conics 0, depths z,
    and no gradient. Gradients flow to means, quats and scales (not to the
    camera). Exact math: ``docs/splat_kernel_contract.md``.

    Args:
        means: [N, 3] world positions, floating point.
        quats: [N, 4] rotations (w, x, y, z); need not be normalized.
        scales: [N, 3] standard deviations along the rotated axes (the sign is ignored).
        viewmat: [4, 4] world-to-camera matrix (moved to means' device and dtype).
        K: [3, 3] intrinsics; only fx = K[0,0], fy = K[1,1], cx = K[0,2], cy = K[1,2] are used.
        width: image width in pixels, >= 1.
        height: image height in pixels, >= 1.
        near: smallest depth kept, > 0.
        far: largest depth kept, > near.
        backend: ``"cpu"``, ``"cuda"``, ``"triton"``, ``"torch"`` or ``"auto"``;
            None follows :func:`pyflowops.use_backend` / ``PYFLOWOPS_BACKEND``.

    Returns:
        means2d [N, 2] pixel positions (x = column), conics [N, 3] (a, b, c of
        the inverse 2D covariance [[a, b], [b, c]]), depths [N], radii [N] int32.

    Example:
        >>> import torch, pyflowops
        >>> means = torch.tensor([[0.0, 0.0, 4.0]])
        >>> quats, scales = torch.tensor([[1.0, 0.0, 0.0, 0.0]]), torch.full((1, 3), 0.1)
        >>> K = torch.tensor([[40.0, 0.0, 16.0], [0.0, 40.0, 12.0], [0.0, 0.0, 1.0]])
        >>> means2d, conics, depths, radii = pyflowops.project_gaussians(means, quats, scales, torch.eye(4), K, 32, 24)
        >>> means2d.tolist(), depths.tolist(), radii.tolist()
        ([[16.0, 12.0]], [4.0], [4])
    """
    n = _check_rows("means", means, 2, None, 3, "[N, 3]")
    _check_rows("quats", quats, 2, n, 4, "[N, 4] with N from means")
    _check_rows("scales", scales, 2, n, 3, "[N, 3] with N from means")
    check_same_device_dtype([("means", means), ("quats", quats), ("scales", scales)])
    viewmat, K = _camera("viewmat", viewmat, 4, means), _camera("K", K, 3, means)
    width, height = _check_size(width, height)
    near, far = _check_depth_range(near, far)
    name = _backend.select_backend("project_gaussians", [means], backend)
    if name == "torch" or n == 0:  # nothing to launch for N = 0: the reference returns the empty outputs
        return reference.project_gaussians(means, quats, scales, viewmat, K, width, height, near, far)
    means, quats, scales = means.contiguous(), quats.contiguous(), scales.contiguous()
    return tuple(_op(name, "project_gaussians")(means, quats, scales, viewmat, K, width, height, near, far))


def rasterize_gaussians(
    means2d: torch.Tensor,
    conics: torch.Tensor,
    opacities: torch.Tensor,
    features: torch.Tensor,
    depths: torch.Tensor,
    radii: torch.Tensor,
    width: int,
    height: int,
    background: torch.Tensor | None = None,
    tile_size: int = 16,
    *,
    backend: str | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Alpha-composite screen-space Gaussians front to back into an image.

    Pixel (row i, col j) has center ``p = (j + 0.5, i + 0.5)``. Gaussian g
    touches it when ``|p - mean2d_g| <= radius_g`` per axis; with
    ``sigma = 0.5 (a dx² + c dy²) + b dx dy`` its ``alpha = min(0.999, o exp(-sigma))``
    (skipped when ``sigma < 0`` or ``alpha < 1/255``). Gaussians are visited by
    depth (ties by index) and a pixel stops before one that would leave a
    transmittance below 1e-4. ``image = sum f alpha T + T_final background``,
    ``alpha = 1 - T_final``, ``depth = sum z alpha T``. Gradients flow to
    means2d, conics, opacities, features, depths and background. The result
    does not depend on ``tile_size`` (the kernels' work unit only).

    Args:
        means2d: [N, 2] pixel positions (x = column), floating point.
        conics: [N, 3] (a, b, c) of the inverse 2D covariances.
        opacities: [N] in [0, 1].
        features: [N, C] per-Gaussian colors or any features, C >= 1.
        depths: [N] sort keys (and the values composited into ``depth``).
        radii: [N] integer pixel radii; 0 skips the Gaussian.
        width: image width, >= 1.
        height: image height, >= 1.
        background: [C] seen through the remaining transmittance, or None (zero).
        tile_size: square tiles of the kernels' binning, a power of two in [4, 64].
        backend: as in :func:`project_gaussians`.

    Returns:
        image [H, W, C], alpha [H, W, 1], depth [H, W, 1] in means2d's dtype
        (float16/bfloat16 inputs are composited in float32: the backward replays
        from the final transmittance, which half precision cannot hold).

    Example:
        >>> import torch, pyflowops
        >>> image, alpha, depth = pyflowops.rasterize_gaussians(
        ...     torch.tensor([[2.5, 1.5]]), torch.tensor([[1.0, 0.0, 1.0]]), torch.tensor([0.5]),
        ...     torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([2.0]), torch.tensor([2], dtype=torch.int32), 5, 3)
        >>> image.shape, alpha[1, 2, 0].item(), depth[1, 2, 0].item()
        (torch.Size([3, 5, 3]), 0.5, 1.0)
    """
    n = _check_rows("means2d", means2d, 2, None, 2, "[N, 2]")
    _check_rows("conics", conics, 2, n, 3, "[N, 3] with N from means2d")
    _check_rows("depths", depths, 1, n, None, "[N] with N from means2d")
    _check_appearance(("means2d", means2d), opacities, features, background)
    check_same_device_dtype([("means2d", means2d), ("conics", conics), ("depths", depths)])
    radii = _check_radii(radii, n, means2d)
    width, height = _check_size(width, height)
    tile_size = _check_tile_size(tile_size)
    name = _backend.select_backend("rasterize_gaussians", [means2d], backend)
    if name == "torch" or n == 0:  # N = 0: the background (or zeros) everywhere, without a launch
        return reference.rasterize_gaussians(
            means2d, conics, opacities, features, depths, radii, width, height, background, tile_size
        )
    dtype = means2d.dtype
    # Half precision cannot hold the final transmittance 1 - alpha (down to 1e-4) that the backward
    # replays from: composite in float32 (what the kernels compute in anyway) and round the outputs.
    compute = torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype
    inputs = [t.to(compute).contiguous() for t in (means2d, conics, opacities, features, depths)]
    background = None if background is None else background.to(compute).contiguous()
    outputs = _op(name, "rasterize_gaussians")(*inputs, radii.contiguous(), width, height, background, tile_size)
    return tuple(t.to(dtype) for t in outputs[:3])


def render(
    means: torch.Tensor,
    quats: torch.Tensor,
    scales: torch.Tensor,
    opacities: torch.Tensor,
    features: torch.Tensor,
    viewmat: torch.Tensor,
    K: torch.Tensor,
    width: int,
    height: int,
    background: torch.Tensor | None = None,
    *,
    near: float = 0.01,
    far: float = 1e10,
    tile_size: int = 16,
    backend: str | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Render 3D Gaussians: :func:`project_gaussians` then :func:`rasterize_gaussians`, one backend.

    Args:
        means: [N, 3] world positions.
        quats: [N, 4] rotations (w, x, y, z), any norm.
        scales: [N, 3].
        opacities: [N].
        features: [N, C], C >= 1.
        viewmat: [4, 4] world-to-camera. K: [3, 3] intrinsics.
        width: image width, >= 1. height: image height, >= 1.
        background: [C] or None.
        near, far: depth range kept. tile_size: as in :func:`rasterize_gaussians`.
        backend: as in :func:`project_gaussians`.

    Returns:
        image [H, W, C], alpha [H, W, 1], depth [H, W, 1]; differentiable with
        respect to means, quats, scales, opacities, features and background.

    Example:
        >>> import torch, pyflowops
        >>> means = torch.randn(100, 3) * 0.5 + torch.tensor([0.0, 0.0, 4.0])
        >>> quats, scales = torch.randn(100, 4), torch.rand(100, 3) * 0.1
        >>> opacities, colors = torch.rand(100), torch.rand(100, 3)
        >>> K = torch.tensor([[40.0, 0.0, 16.0], [0.0, 40.0, 12.0], [0.0, 0.0, 1.0]])
        >>> image, alpha, depth = pyflowops.render(means, quats, scales, opacities, colors, torch.eye(4), K, 32, 24)
        >>> image.shape, alpha.shape
        (torch.Size([24, 32, 3]), torch.Size([24, 32, 1]))
    """
    _check_rows("means", means, 2, None, 3, "[N, 3]")
    _check_appearance(("means", means), opacities, features, background)  # before any work is done
    _check_tile_size(tile_size)
    means2d, conics, depths, radii = project_gaussians(
        means, quats, scales, viewmat, K, width, height, near, far, backend=backend
    )
    return rasterize_gaussians(
        means2d, conics, opacities, features, depths, radii, width, height, background, tile_size, backend=backend
    )
