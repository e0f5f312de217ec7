"""Optical flow rendered from moving 3D Gaussians, and the forward-backward occlusion check.

Built on the public splatting ops (no kernel of its own): each Gaussian's image-space
motion between frame t and t+1 is turned into per-Gaussian features, which are
alpha-composited with frame t's geometry and visibility by :func:`rasterize_gaussians`
and normalized per pixel. The pieces are public so one rasterization can render
colors and flow together::

    feats = flow_features(means, quats, scales, means_next, quats_next, scales_next, viewmat, K)
    means2d, conics, depths, radii = project_gaussians(means, quats, scales, viewmat, K, W, H)
    out, alpha, depth = rasterize_gaussians(means2d, conics, opacities, torch.cat([colors, feats], 1),
                                            depths, radii, W, H)
    image, flow = out[..., :3], composite_flow(out[..., 3:], alpha)

Exact formulas: the last section of ``docs/splat_kernel_contract.md``.
"""

from __future__ import annotations

import torch

from pyflowops.ops._checks import check_float, check_int, check_same_device_dtype, check_shape, check_tensor
from pyflowops.ops.splat import project_gaussians, rasterize_gaussians
from pyflowops.reference.splat import quat_to_rotmat

__all__ = ["composite_flow", "flow_features", "flow_occlusion", "render_flow"]

# |det G| <= DEGENERATE * |G|_F^2 (G = J'_t U, 2x2: about sigma_min / sigma_max <= DEGENERATE / 2): A = 0.
# Far above float32 rounding of det (~1e-7 relative), far below any footprint a rasterizer resolves.
DEGENERATE = 1e-4


def _opmath(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _pixels_and_jacobians(means, viewmat, K, near):
    """World points [N,3] -> (pixels [N,2], d pixel / d world point [N,2,3], in front [N] bool).

    Points with depth < near (or not finite) get the values of a point at depth 1 on the
    optical axis, so nothing downstream divides by zero (and no NaN reaches a gradient).
    """
    rot, trans = viewmat[:3, :3], viewmat[:3, 3]
    cam = means @ rot.T + trans
    valid = (cam[:, 2] >= near) & torch.isfinite(cam).all(-1)
    cam = torch.where(valid.unsqueeze(-1), cam, cam.new_tensor([0.0, 0.0, 1.0]))
    x, y, z = cam.unbind(-1)
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    pixels = torch.stack([fx * x / z + cx, fy * y / z + cy], -1)
    zero = torch.zeros_like(z)
    jac = torch.stack(
        [torch.stack([fx / z, zero, -fx * x / z**2], -1), torch.stack([zero, fy / z, -fy * y / z**2], -1)], -2
    )
    return pixels, jac @ rot, valid


def _major_axes(quats, scales, index):
    """Columns ``index`` [N,2] of Rq diag(s): [N,3,2] (the world axes scaled by their signed scales)."""
    axes = quat_to_rotmat(quats) * scales.unsqueeze(-2)
    return torch.gather(axes, 2, index.unsqueeze(1).expand(-1, 3, -1))


def _solve_affine(g, h):
    """A = h g^-1 - I per Gaussian (g, h: [N,2,2]); A = 0 where g is (nearly) singular or anything is not finite."""
    det = g[:, 0, 0] * g[:, 1, 1] - g[:, 0, 1] * g[:, 1, 0]
    ok = (det.abs() > DEGENERATE * g.square().sum((1, 2))) & torch.isfinite(det) & torch.isfinite(h).all((1, 2))
    det = torch.where(ok, det, torch.ones_like(det))  # safe denominator: no inf/NaN in the unused branch
    adj = torch.stack([g[:, 1, 1], -g[:, 0, 1], -g[:, 1, 0], g[:, 0, 0]], -1).view(-1, 2, 2)
    h = torch.where(ok.view(-1, 1, 1), h, torch.zeros_like(h))
    eye = torch.eye(2, dtype=g.dtype, device=g.device)
    affine = h @ adj / det.view(-1, 1, 1) - eye
    return torch.where(ok.view(-1, 1, 1), affine, torch.zeros_like(affine))


def _check_frames(tensors: dict, viewmat, viewmat_next, K):
    """The t and t+1 parameters share N, device and dtype; the cameras are [4,4] / [3,3]."""
    check_tensor("means", tensors["means"], 2)
    n = tensors["means"].shape[0]
    layouts = {"means": 3, "quats": 4, "scales": 3, "means_next": 3, "quats_next": 4, "scales_next": 3}
    for name, cols in layouts.items():
        check_tensor(name, tensors[name], 2)
        check_shape(name, tensors[name], (n, cols), f"[N, {cols}] with N from means")
    check_same_device_dtype(list(tensors.items()))
    for name, value, size in (("viewmat", viewmat, 4), ("viewmat_next", viewmat_next, 4), ("K", K, 3)):
        check_tensor(name, value, 2)
        check_shape(name, value, (size, size), f"[{size}, {size}]")


def flow_features(
    means: torch.Tensor,
    quats: torch.Tensor,
    scales: torch.Tensor,
    means_next: torch.Tensor,
    quats_next: torch.Tensor,
    scales_next: torch.Tensor,
    viewmat: torch.Tensor,
    K: torch.Tensor,
    *,
    viewmat_next: torch.Tensor | None = None,
    order: int = 1,
    near: float = 0.01,
    max_affine: float | None = None,
) -> torch.Tensor:
    """Per-Gaussian flow features to rasterize with frame t's geometry (then :func:`composite_flow`).

    Per Gaussian, ``d = mean2d_{t+1} - mean2d_t`` (the projected means). Order 1 also
    ``A = J'_{t+1} M U (J'_t U)^-1 - I``: ``J'`` the 2x3 derivative of the pixel position
    with respect to the world point at the mean (projection Jacobian times
    ``viewmat[:3, :3]``), ``U`` the world axes of the two largest ``|scales|`` at t,
    ``M = Rq_{t+1} S_{t+1} (Rq_t S_t)^-1`` the linear part of the motion; so
    ``d + A (p - mean2d_t)`` is the Gaussian's flow at pixel p, exact to first order.
    (``M U`` is formed as the same columns of ``Rq_{t+1} S_{t+1}`` over ``scales_t``: the
    smallest scale, ~0 for flat Gaussians, is never inverted.)

    Degenerate cases: ``A = 0`` where ``J'_t U`` is (nearly) singular, e.g. a flat Gaussian
    seen edge-on or a second scale of 0; features are all 0 for a Gaussian whose mean is
    behind the near plane (or not finite) at t or t+1 (its flow is undefined). A mean that
    leaves the image at t+1 is fine. Differentiable (pure torch); no backend involved.

    Args:
        means, quats, scales: [N,3], [N,4] (w, x, y, z, any norm), [N,3] at frame t.
        means_next, quats_next, scales_next: the same Gaussians at frame t+1.
        viewmat: [4,4] world-to-camera at t. K: [3,3] intrinsics (fx, fy, cx, cy used).
        viewmat_next: [4,4] camera at t+1; None = ``viewmat``.
        order: 0 (mean displacement only) or 1 (plus the affine term A).
        near: depths below it count as behind the camera.
        max_affine: None, or a cap on A's spectral norm (A scaled down to it). A is exact across
            the Gaussian's own footprint, but a flat Gaussian seen nearly edge-on has a huge A
            (foreshortening changes fast there) and the rasterizer evaluates it over a footprint
            widened to at least a pixel: tens of pixels of spurious flow at silhouettes. A cap of
            a few (e.g. 4) removes them without changing the flow inside surfaces.

    Returns:
        [N, 6] ``(d - A mean2d_t, A row-major)`` for order 1, [N, 2] ``d`` for order 0;
        means' dtype and device.

    Example:
        >>> import torch
        >>> from pyflowops.flow_render import flow_features
        >>> means, quats = torch.tensor([[0.0, 0.0, 4.0]]), torch.tensor([[1.0, 0.0, 0.0, 0.0]])
        >>> scales = torch.tensor([[0.1, 0.1, 0.001]])
        >>> K = torch.tensor([[40.0, 0.0, 16.0], [0.0, 40.0, 12.0], [0.0, 0.0, 1.0]])
        >>> f = flow_features(means, quats, scales, means + torch.tensor([0.1, 0.0, 0.0]), quats, scales,
        ...                   torch.eye(4), K)
        >>> [round(v, 4) for v in f[0].tolist()]
        [1.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    """
    viewmat_next = viewmat if viewmat_next is None else viewmat_next
    frames = {"means": means, "quats": quats, "scales": scales}
    frames.update(means_next=means_next, quats_next=quats_next, scales_next=scales_next)
    _check_frames(frames, viewmat, viewmat_next, K)
    check_int("order", order, 0, 1)
    near = check_float("near", near)
    if near <= 0:
        raise ValueError(f"near must be > 0 (depths are divided by), got {near}")
    in_dtype, dtype = means.dtype, _opmath(means.dtype)
    means, quats, scales, means_next, quats_next, scales_next = (
        t.to(dtype) for t in (means, quats, scales, means_next, quats_next, scales_next)
    )
    viewmat, viewmat_next, K = (c.detach().to(device=means.device, dtype=dtype) for c in (viewmat, viewmat_next, K))

    pix, jac, valid = _pixels_and_jacobians(means, viewmat, K, near)
    pix_next, jac_next, valid_next = _pixels_and_jacobians(means_next, viewmat_next, K, near)
    valid = valid & valid_next
    disp = torch.where(valid.unsqueeze(-1), pix_next - pix, 0.0)
    if order == 0:
        return disp.to(in_dtype)
    major = torch.topk(scales.detach().abs(), 2, dim=1).indices  # which axes span the footprint at t
    g = jac @ _major_axes(quats, scales, major)  # J'_t U (U scaled by s_t)
    h = jac_next @ _major_axes(quats_next, scales_next, major)  # J'_{t+1} M U (same scaling)
    affine = _solve_affine(g, h)
    affine = torch.where(valid.view(-1, 1, 1), affine, 0.0)
    if max_affine is not None:
        if not max_affine > 0:
            raise ValueError(f"max_affine must be > 0 or None, got {max_affine}")
        norm = torch.linalg.matrix_norm(affine.detach(), ord=2)
        affine = affine * (max_affine / norm.clamp_min(1e-30)).clamp(max=1.0).view(-1, 1, 1)
    offset = disp - (affine @ pix.unsqueeze(-1)).squeeze(-1)
    return torch.cat([offset, affine.flatten(1)], 1).to(in_dtype)


def composite_flow(features: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Per-pixel flow from rasterized :func:`flow_features`: ``(F_0 + F_A p) / alpha`` where alpha > 0, else 0.

    ``p = (j + 0.5, i + 0.5)`` is the center of pixel (row i, col j); ``F_0`` the first two
    channels and ``F_A`` (order 1 only) the 2x2 matrix of the last four.

    Args:
        features: [..., H, W, 6] (order 1) or [..., H, W, 2] (order 0), rasterized without background.
        alpha: [..., H, W, 1] the rasterizer's alpha.

    Returns:
        flow [..., H, W, 2] in pixels (x = column), features' dtype; differentiable.

    Example:
        >>> import torch
        >>> from pyflowops.flow_render import composite_flow
        >>> feats = torch.tensor([1.0, 0.0, 0.0, 0.0, 0.0, 0.0]).expand(2, 3, 6) * 0.5
        >>> composite_flow(feats, torch.full((2, 3, 1), 0.5))[0, 0].tolist()
        [1.0, 0.0]
    """
    if not isinstance(features, torch.Tensor) or features.dim() < 3 or features.shape[-1] not in (2, 6):
        shape = tuple(features.shape) if isinstance(features, torch.Tensor) else type(features).__name__
        raise ValueError(f"features must have shape [..., H, W, 6] or [..., H, W, 2], got {shape}")
    check_tensor("features", features, features.dim())
    check_tensor("alpha", alpha, features.dim())
    check_shape("alpha", alpha, (*features.shape[:-1], 1), "[..., H, W, 1] from features")
    flow = features[..., :2]
    if features.shape[-1] == 6:
        height, width = features.shape[-3:-1]
        ys = torch.arange(height, dtype=features.dtype, device=features.device) + 0.5
        xs = torch.arange(width, dtype=features.dtype, device=features.device) + 0.5
        a00, a01, a10, a11 = features[..., 2:].unbind(-1)
        x, y = xs.view(1, width), ys.view(height, 1)
        flow = flow + torch.stack([a00 * x + a01 * y, a10 * x + a11 * y], -1)
    hit = alpha > 0
    return torch.where(hit, flow / torch.where(hit, alpha, torch.ones_like(alpha)), 0.0)


def render_flow(
    means: torch.Tensor,
    quats: torch.Tensor,
    scales: torch.Tensor,
    opacities: torch.Tensor,
    means_next: torch.Tensor,
    quats_next: torch.Tensor,
    scales_next: torch.Tensor,
    viewmat: torch.Tensor,
    K: torch.Tensor,
    width: int,
    height: int,
    *,
    viewmat_next: torch.Tensor | None = None,
    order: int = 1,
    near: float = 0.01,
    far: float = 1e10,
    tile_size: int = 16,
    backend: str | None = None,
    max_affine: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Forward optical flow t -> t+1 of moving 3D Gaussians, seen with frame t's visibility.

    :func:`flow_features` rasterized with frame t's projection and opacities, then
    :func:`composite_flow`: ``flow(p) = sum_g w_g (d_g + A_g (p - mean2d_g)) / alpha(p)``
    (0 where nothing is hit). Order 0 composites the mean displacements ``d_g`` only; order 1
    is exact to first order across each footprint (a rigidly moving plane gets its exact
    flow up to the second-order terms of the perspective). Backward flow (t+1 -> t): swap the
    t and t+1 arguments (and the cameras). Differentiable with respect to every Gaussian
    parameter of both frames (through :func:`project_gaussians` / :func:`rasterize_gaussians`).

    Args:
        means, quats, scales: [N,3], [N,4] (w, x, y, z), [N,3] at frame t.
        opacities: [N] in [0, 1] (frame t's visibility).
        means_next, quats_next, scales_next: the same Gaussians at frame t+1.
        viewmat: [4,4] world-to-camera at t. K: [3,3] intrinsics.
        width, height: image size in pixels.
        viewmat_next: [4,4] camera at t+1; None = ``viewmat`` (a static camera).
        order: 0 or 1, as in :func:`flow_features`.
        near, far: depth range kept (as in :func:`project_gaussians`).
        tile_size: the rasterizer's tile size.
        backend: passed on to the splatting ops (None: the current default).
        max_affine: as in :func:`flow_features` (None: no cap).

    Returns:
        flow [H, W, 2] (pixels, x = column), alpha [H, W, 1], depth [H, W, 1] at frame t.

    Example:
        >>> import torch
        >>> from pyflowops.flow_render import render_flow
        >>> means, quats = torch.tensor([[0.0, 0.0, 4.0]]), torch.tensor([[1.0, 0.0, 0.0, 0.0]])
        >>> scales, opacities = torch.tensor([[0.2, 0.2, 0.001]]), torch.tensor([0.9])  # a disc facing the camera
        >>> K = torch.tensor([[40.0, 0.0, 16.0], [0.0, 40.0, 12.0], [0.0, 0.0, 1.0]])
        >>> shift = torch.tensor([0.1, 0.0, 0.0])  # fx * 0.1 / 4 = 1 px to the right
        >>> flow, alpha, depth = render_flow(means, quats, scales, opacities, means + shift, quats, scales,
        ...                                  torch.eye(4), K, 32, 24)
        >>> flow.shape, [round(v, 4) for v in flow[12, 16].tolist()], round(alpha[12, 16, 0].item(), 2)
        (torch.Size([24, 32, 2]), [1.0, 0.0], 0.85)
    """
    features = flow_features(
        means, quats, scales, means_next, quats_next, scales_next, viewmat, K,
        viewmat_next=viewmat_next, order=order, near=near, max_affine=max_affine,
    )  # fmt: skip
    means2d, conics, depths, radii = project_gaussians(
        means, quats, scales, viewmat, K, width, height, near, far, backend=backend
    )
    rendered, alpha, depth = rasterize_gaussians(
        means2d, conics, opacities, features, depths, radii, width, height, None, tile_size, backend=backend
    )
    return composite_flow(rendered, alpha), alpha, depth


def flow_occlusion(
    flow_fw: torch.Tensor, flow_bw: torch.Tensor, alpha1: float = 0.01, alpha2: float = 0.5
) -> torch.Tensor:
    """Occlusion mask from the forward-backward consistency check of UnFlow.

    Meister, Hur and Roth, "UnFlow: Unsupervised Learning of Optical Flow with a
    Bidirectional Census Loss", AAAI 2018 (eq. 3). With ``bw' = flow_bw`` sampled
    bilinearly at ``p + flow_fw(p)``, pixel p is occluded where
    ``|fw + bw'|^2 > alpha1 (|fw|^2 + |bw'|^2) + alpha2``, and also where ``p + fw`` leaves
    the image (outside the hull of the pixel centers, or not finite).

    Args:
        flow_fw: [..., H, W, 2] forward flow t -> t+1 in pixels (x = column), as :func:`render_flow` returns.
        flow_bw: [..., H, W, 2] backward flow t+1 -> t, same shape, dtype and device.
        alpha1: relative tolerance, >= 0. alpha2: absolute tolerance in squared pixels, >= 0.

    Returns:
        [..., H, W] bool, True where occluded (not differentiable).

    Example:
        >>> import torch
        >>> from pyflowops.flow_render import flow_occlusion
        >>> fw = torch.zeros(4, 5, 2); fw[..., 0] = 1.0
        >>> bw = -fw
        >>> flow_occlusion(fw, bw)[0].tolist()  # the last column maps out of the image
        [False, False, False, False, True]
    """
    if not isinstance(flow_fw, torch.Tensor) or flow_fw.dim() < 3 or flow_fw.shape[-1] != 2:
        shape = tuple(flow_fw.shape) if isinstance(flow_fw, torch.Tensor) else type(flow_fw).__name__
        raise ValueError(f"flow_fw must have shape [..., H, W, 2], got {shape}")
    check_tensor("flow_fw", flow_fw, flow_fw.dim())
    check_tensor("flow_bw", flow_bw, flow_fw.dim())
    check_shape("flow_bw", flow_bw, flow_fw.shape, "[..., H, W, 2] from flow_fw")
    check_same_device_dtype([("flow_fw", flow_fw), ("flow_bw", flow_bw)])
    alpha1, alpha2 = check_float("alpha1", alpha1, 0.0), check_float("alpha2", alpha2, 0.0)
    *batch, height, width, _ = flow_fw.shape
    fw = flow_fw.detach().reshape(-1, height, width, 2).to(_opmath(flow_fw.dtype))
    bw = flow_bw.detach().reshape(-1, height, width, 2).to(fw.dtype)
    ys, xs = torch.meshgrid(
        torch.arange(height, dtype=fw.dtype, device=fw.device),
        torch.arange(width, dtype=fw.dtype, device=fw.device),
        indexing="ij",
    )
    x, y = xs + fw[..., 0], ys + fw[..., 1]  # target positions in pixel-index units
    inside = (x >= 0) & (x <= width - 1) & (y >= 0) & (y <= height - 1)
    # align_corners=False: index u maps to (2u + 1) / size - 1 (pixel centers)
    grid = torch.stack([(2 * x + 1) / width - 1, (2 * y + 1) / height - 1], -1)
    grid = torch.nan_to_num(grid, nan=0.0, posinf=0.0, neginf=0.0)  # those pixels are "outside" anyway
    warped = torch.nn.functional.grid_sample(
        bw.permute(0, 3, 1, 2), grid, mode="bilinear", padding_mode="border", align_corners=False
    ).permute(0, 2, 3, 1)
    mismatch = (fw + warped).square().sum(-1)
    bound = alpha1 * (fw.square().sum(-1) + warped.square().sum(-1)) + alpha2
    return ((mismatch > bound) | ~inside).reshape(*batch, height, width)
