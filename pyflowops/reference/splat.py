"""Pure PyTorch twins of the Gaussian-splatting ops (the ``torch`` backend and the tests' ground truth).

Written for clarity, not speed: the projection is batched 3x3 algebra and the
rasterization is DENSE over (pixel, Gaussian) pairs, in chunks of pixels, with
the front-to-back compositing written as a cumulative product; autograd gives
every backward. The exact math every backend implements is
``docs/splat_kernel_contract.md``; this file follows it step by step.
"""

from __future__ import annotations

import torch

__all__ = ["project_gaussians", "quat_to_rotmat", "rasterize_gaussians", "render"]

COV2D_BLUR = 0.3  # added to the 2D covariance's diagonal (anti-aliasing, as in 3DGS)
ALPHA_MAX = 0.999  # alpha is clamped here (so 1 - alpha > 0)
ALPHA_MIN = 1.0 / 255.0  # fainter contributions are skipped
T_MIN = 1e-4  # a pixel stops before a Gaussian that would leave less transmittance
RADIUS_MAX = 2.0**30  # saturation of the radius (fits int32)
CHUNK_ELEMENTS = 1 << 22  # (pixel, Gaussian) pairs per chunk of the dense rasterizer


def _opmath(dtype: torch.dtype) -> torch.dtype:
    """The dtype the math runs in: double for double, float for everything else."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def quat_to_rotmat(quats: torch.Tensor) -> torch.Tensor:
    """quats [N, 4] (w, x, y, z), any norm -> rotation matrices [N, 3, 3] of the normalized quaternions."""
    w, x, y, z = (quats / quats.norm(dim=-1, keepdim=True)).unbind(-1)
    rows = [
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ]
    return torch.stack([torch.stack(row, -1) for row in rows], -2)


def _project(t, quats, scales, rot, K):
    """Steps 1-6 of the contract from camera points t [N,3]: (means2d [N,2], (c00, c01, c11), det, z)."""
    tx, ty, z = t.unbind(-1)
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    m = quat_to_rotmat(quats) * scales.unsqueeze(-2)  # Rq diag(s): Sigma = M M^T (the sign of s cancels)
    cov_cam = rot @ (m @ m.transpose(-1, -2)) @ rot.T
    zero = torch.zeros_like(z)
    jac = torch.stack(
        [torch.stack([fx / z, zero, -fx * tx / z**2], -1), torch.stack([zero, fy / z, -fy * ty / z**2], -1)], -2
    )
    cov2d = jac @ cov_cam @ jac.transpose(-1, -2)
    c00, c01, c11 = cov2d[:, 0, 0] + COV2D_BLUR, cov2d[:, 0, 1], cov2d[:, 1, 1] + COV2D_BLUR
    det = c00 * c11 - c01 * c01
    means2d = torch.stack([fx * tx / z + cx, fy * ty / z + cy], -1)
    return means2d, (c00, c01, c11), det, z


def _radius(c00: torch.Tensor, c11: torch.Tensor, det: torch.Tensor) -> torch.Tensor:
    """Step 7: ceil(3 sqrt(lambda_max)) of the 2D covariance, saturated at 2^30 (float)."""
    mid = 0.5 * (c00 + c11)
    lambda_max = mid + torch.sqrt(torch.clamp(mid * mid - det, min=0.0))
    return torch.ceil(3.0 * torch.sqrt(lambda_max)).clamp(max=RADIUS_MAX)


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
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """3D Gaussians -> screen-space Gaussians (the contract's ``project_gaussians``).

    Args:
        means: [N, 3] world positions. quats: [N, 4] (w, x, y, z), any norm.
        scales: [N, 3]. viewmat: [4, 4] world-to-camera. K: [3, 3] intrinsics.
        width, height: image size in pixels. near, far: depth range kept.

    Returns:
        means2d [N, 2], conics [N, 3] (a, b, c of the inverse 2D covariance),
        depths [N], radii [N] int32 (0 = culled: then means2d and conics are 0,
        depths is z as computed, and no gradient flows).
    """
    in_dtype, dtype = means.dtype, _opmath(means.dtype)
    means, quats, scales = means.to(dtype), quats.to(dtype), scales.to(dtype)
    rot, trans = viewmat[:3, :3].to(dtype), viewmat[:3, 3].to(dtype)
    K = K.to(dtype)
    t = means @ rot.T + trans  # camera points (linear in means: safe to differentiate even when culled)

    # Pass 1, without gradient: which Gaussians survive (step 8). NaN fails every test.
    with torch.no_grad():
        m2d, (c00, _, c11), det, z_all = _project(t, quats, scales, rot, K)
        r = _radius(c00, c11, det)
        mx, my = m2d.unbind(-1)
        off_image = (mx + r < 0.5) | (mx - r > width - 0.5) | (my + r < 0.5) | (my - r > height - 0.5)
        keep = (z_all >= near) & (z_all <= far) & (det > 0) & ~off_image

    # Pass 2, differentiable, on sanitized inputs: culled rows get a harmless Gaussian in front of the
    # camera, so no NaN or inf reaches the backward (where NaN * 0 would leak into the gradients).
    col = keep.unsqueeze(-1)
    t_s = torch.where(col, t, t.new_tensor([0.0, 0.0, 1.0]))
    quats_s = torch.where(col, quats, quats.new_tensor([1.0, 0.0, 0.0, 0.0]))
    scales_s = torch.where(col, scales, torch.ones_like(scales))
    m2d, (c00, c01, c11), det, _ = _project(t_s, quats_s, scales_s, rot, K)
    conics = torch.stack([c11 / det, -c01 / det, c00 / det], -1)

    means2d = torch.where(col, m2d, 0.0).to(in_dtype)
    conics = torch.where(col, conics, 0.0).to(in_dtype)
    depths = torch.where(keep, t[:, 2], z_all).to(in_dtype)  # culled: z as computed, no gradient
    radii = torch.where(keep, r, 0.0).to(torch.int32)
    return means2d, conics, depths, radii


def _sorted_visible(depths: torch.Tensor, radii: torch.Tensor) -> torch.Tensor:
    """Indices of the Gaussians with radius > 0, front to back (stable sort on depth: ties by index)."""
    visible = torch.nonzero(radii > 0).squeeze(-1)
    order = torch.sort(depths[visible], stable=True).indices
    return visible[order]


def _composite(pixels, means2d, conics, opacities, features, depths, radii, background):
    """Dense compositing of P pixels [P, 2] over the sorted Gaussians: (image [P,C], alpha [P], depth [P])."""
    delta = pixels.unsqueeze(1) - means2d.unsqueeze(0)  # [P, N, 2]
    dx, dy = delta.unbind(-1)
    r = radii.to(dx.dtype)
    inside = (dx.abs() <= r) & (dy.abs() <= r)
    a, b, c = conics.unbind(-1)
    sigma = 0.5 * (a * dx * dx + c * dy * dy) + b * dx * dy
    raw = opacities * torch.exp(-sigma)
    # min(0.999, raw) with no gradient where clamped, also at exactly 0.999 (the contract's "< 0.999")
    alpha = torch.where(raw < ALPHA_MAX, raw, torch.full_like(raw, ALPHA_MAX))
    kept = inside & ~(sigma < 0) & ~(alpha < ALPHA_MIN)
    alpha = torch.where(kept, alpha, 0.0)
    # The sequential early stop in dense form: the transmittance after Gaussian i, P_i, is monotone,
    # so "break before the first i with P_i < 1e-4" means "i contributes iff kept and P_i >= 1e-4".
    after = torch.cumprod(1.0 - alpha, dim=1)
    contributes = kept & (after >= T_MIN)
    before = torch.cat([torch.ones_like(after[:, :1]), after[:, :-1]], dim=1)  # exclusive transmittance
    weight = torch.where(contributes, alpha * before, 0.0)
    final_t = torch.where(contributes, 1.0 - alpha, 1.0).prod(dim=1)
    image = weight @ features
    if background is not None:
        image = image + final_t.unsqueeze(-1) * background
    return image, 1.0 - final_t, weight @ depths


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
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Front-to-back alpha compositing of screen-space Gaussians (the contract's ``rasterize_gaussians``).

    Args:
        means2d: [N, 2]. conics: [N, 3]. opacities: [N]. features: [N, C].
        depths: [N]. radii: [N] integer (0 = skipped). width, height: pixels.
        background: [C] or None. tile_size: ignored (the dense form has no tiles;
            the kernels' results do not depend on it either).

    Returns:
        image [H, W, C], alpha [H, W, 1], depth [H, W, 1].
    """
    del tile_size
    in_dtype, dtype = means2d.dtype, _opmath(means2d.dtype)
    order = _sorted_visible(depths, radii)
    gathered = [t.to(dtype)[order] for t in (means2d, conics, opacities, features, depths)]
    radii = radii[order]
    if background is not None:
        background = background.to(dtype)
    ys, xs = torch.meshgrid(
        torch.arange(height, dtype=dtype, device=means2d.device),
        torch.arange(width, dtype=dtype, device=means2d.device),
        indexing="ij",
    )
    pixels = torch.stack([xs, ys], -1).reshape(-1, 2) + 0.5  # centers (j + 0.5, i + 0.5)
    chunk = max(1, CHUNK_ELEMENTS // max(1, order.numel()))
    parts = [_composite(p, *gathered, radii, background) for p in pixels.split(chunk)]
    image, alpha, depth = (torch.cat(list(t)) for t in zip(*parts))
    channels = features.shape[1]
    return (
        image.reshape(height, width, channels).to(in_dtype),
        alpha.reshape(height, width, 1).to(in_dtype),
        depth.reshape(height, width, 1).to(in_dtype),
    )


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
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`project_gaussians` then :func:`rasterize_gaussians`: (image [H,W,C], alpha [H,W,1], depth [H,W,1])."""
    means2d, conics, depths, radii = project_gaussians(means, quats, scales, viewmat, K, width, height, near, far)
    return rasterize_gaussians(
        means2d, conics, opacities, features, depths, radii, width, height, background, tile_size
    )
