"""Triton kernels of the Gaussian-splatting family (``pyflowops::*_gaussians*_triton`` ops).

The math is the contract in ``docs/splat_kernel_contract.md`` (step numbers in comments
refer to it). Shapes: N Gaussians, C feature channels, H x W pixels, ts x ts tiles
(T = ceil(H/ts) * ceil(W/ts)), M binned (tile, Gaussian) instances.

Kernels:

* ``_project_fwd_kernel``: one program per BLOCK Gaussians, elementwise steps 1-8. With
  ``A = J W`` [2, 3] and ``P = A Rq diag(s)`` [2, 3], the 2D covariance is ``P P^T + 0.3 I``.
* ``_project_bwd_kernel``: its VJP, written out by hand: through the 2x2 inverse
  (``dCov = -Q G Q``, G the symmetric gradient of the conic Q), ``dP = 2 dCov P``, then to
  A (-> J -> t -> mean), Rq (-> the normalized quaternion -> quats) and s; zero when culled.
* ``_rasterize_fwd_kernel``: one program per (tile, channel chunk); the tile's pixels are
  a 1-D block (row-major in a TS_PAD x TS_PAD square, TS_PAD the power of 2 >= ts), the
  tile's instances are visited one at a time (scalar loads, every pixel at once). A pixel's
  ``break`` is a per-pixel ``done`` flag; the loop stops once every pixel is done. Each
  chunk of at most CHUNK channels recomputes the compositing (registers stay bounded for
  any C); chunk 0 also stores alpha, depth and ``last``.
* ``_rasterize_bwd_kernel``: one program per tile, back to front: k runs from
  max(last) - 1 down to 0 and pixel p takes part while k < last[p]. Only the scalar
  ``sum_c grad_image_c S_c`` is carried (all that g_alpha needs), so the per-pixel state
  does not grow with C; grad_image's first REG_C (<= 16) channels stay in registers, the
  others are reloaded per instance. Each instance's gradient is its tile's sum over pixels
  (``tl.sum``), stored in row k of an [M, 7 + C] buffer (no atomics); the launcher adds the
  rows up per Gaussian with ``index_add_`` (deterministic on the CPU; on CUDA atomics,
  unless ``torch.use_deterministic_algorithms(True)`` makes torch use its sorted path).

Binning is done in the launcher with torch ops (``_bin``). Accumulation is in float32
(float64 for float64 inputs), like ``at::opmath_type``; results are stored in the input
dtype. Autograd and fake tensors are registered in ``pyflowops/ops/splat.py``.
"""

import torch
import triton
import triton.language as tl
from torch.library import triton_op, wrap_triton

from pyflowops.triton._common import _scalar, _split

__all__ = [
    "project_gaussians_backward_triton",
    "project_gaussians_triton",
    "rasterize_gaussians_backward_triton",
    "rasterize_gaussians_triton",
]

_BLOCK_N = 128  # Gaussians per projection program (one per thread at 4 warps)
_PROJECT_WARPS = 4
_TILE_ELEMENTS = 4096  # pixels x channels of a rasterizer program's accumulators
_MAX_CHUNK = 16  # channels per rasterizer chunk
_GRAD_COLS = 7  # per-instance buffer: means2d (2), conics (3), opacity, depth, then the C features


# --------------------------------------------------------------------------- projection


@triton.jit
def _geometry(means_ptr, quats_ptr, scales_ptr, viewmat_ptr, k_ptr, n, mask, ACC: tl.constexpr):
    """Steps 1-5 for the Gaussians n [BLOCK] (int64). Returns the camera (Wv: viewmat[:3, :3] row-major,
    fx, fy, cx, cy as scalars), t (camera point), qn (normalized quaternion), |q|, Rq (row-major),
    s, A = J Wv (row-major [2, 3]), P = A Rq diag(s) (row-major [2, 3]), all tuples of [BLOCK]."""
    wv = ()
    for i in tl.static_range(9):
        wv = wv + (tl.load(viewmat_ptr + 4 * (i // 3) + i % 3).to(ACC),)
    fx = tl.load(k_ptr).to(ACC)
    fy = tl.load(k_ptr + 4).to(ACC)
    cam = (wv, fx, fy, tl.load(k_ptr + 2).to(ACC), tl.load(k_ptr + 5).to(ACC))
    m = ()
    s = ()
    q = ()
    for i in tl.static_range(3):
        m = m + (tl.load(means_ptr + 3 * n + i, mask=mask, other=0.0).to(ACC),)
        s = s + (tl.load(scales_ptr + 3 * n + i, mask=mask, other=1.0).to(ACC),)
    for i in tl.static_range(4):
        q = q + (tl.load(quats_ptr + 4 * n + i, mask=mask, other=1.0).to(ACC),)
    t = ()
    for r in tl.static_range(3):  # step 3: t = Wv mean + T
        tr = tl.load(viewmat_ptr + 4 * r + 3).to(ACC)
        t = t + (wv[3 * r] * m[0] + wv[3 * r + 1] * m[1] + wv[3 * r + 2] * m[2] + tr,)
    qnorm = tl.sqrt(q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3])
    w, x, y, z = q[0] / qnorm, q[1] / qnorm, q[2] / qnorm, q[3] / qnorm  # step 1
    rq = (
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    )  # fmt: skip
    iz = 1.0 / t[2]  # step 4: J = [[fx/z, 0, -fx tx/z^2], [0, fy/z, -fy ty/z^2]]
    j0 = (fx * iz, -fx * t[0] * iz * iz)  # J00, J02
    j1 = (fy * iz, -fy * t[1] * iz * iz)  # J11, J12
    a = ()
    for k in tl.static_range(3):
        a = a + (j0[0] * wv[k] + j0[1] * wv[6 + k],)
    for k in tl.static_range(3):
        a = a + (j1[0] * wv[3 + k] + j1[1] * wv[6 + k],)
    p = ()
    for i in tl.static_range(2):
        for j in tl.static_range(3):
            p = p + ((a[3 * i] * rq[j] + a[3 * i + 1] * rq[3 + j] + a[3 * i + 2] * rq[6 + j]) * s[j],)
    return cam, t, (w, x, y, z), qnorm, rq, s, a, p


@triton.jit
def _cov2d(p):
    """Step 5: (c00, c01, c11, det) of P P^T + 0.3 I."""
    c00 = p[0] * p[0] + p[1] * p[1] + p[2] * p[2] + 0.3
    c01 = p[0] * p[3] + p[1] * p[4] + p[2] * p[5]
    c11 = p[3] * p[3] + p[4] * p[4] + p[5] * p[5] + 0.3
    return c00, c01, c11, c00 * c11 - c01 * c01


@triton.jit
def _project_fwd_kernel(
    means_ptr, quats_ptr, scales_ptr, viewmat_ptr, k_ptr,
    means2d_ptr, conics_ptr, depths_ptr, radii_ptr,
    N, width, height, near_hi, near_lo, far_hi, far_lo,
    FP64: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    """means, scales [N, 3], quats [N, 4], viewmat [4, 4], K [3, 3] -> means2d [N, 2], conics [N, 3],
    depths [N], radii [N] int32; near, far as float hi/lo pairs (_common._scalar)."""
    ACC: tl.constexpr = tl.float64 if FP64 else tl.float32
    n = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = n < N
    cam, t, _, _, _, _, _, p = _geometry(means_ptr, quats_ptr, scales_ptr, viewmat_ptr, k_ptr, n, mask, ACC)
    c00, c01, c11, det = _cov2d(p)
    z = t[2]
    mx = cam[1] * t[0] / z + cam[3]  # step 6
    my = cam[2] * t[1] / z + cam[4]
    mid = 0.5 * (c00 + c11)  # step 7
    lam = mid + tl.sqrt(tl.maximum(mid * mid - det, 0.0))
    r = tl.minimum(tl.ceil(3.0 * tl.sqrt(lam)), 1073741824.0)
    keep = (z >= _scalar(near_hi, near_lo, FP64)) & (z <= _scalar(far_hi, far_lo, FP64)) & (det > 0)  # step 8
    off = (mx + r < 0.5) | (mx - r > width - 0.5) | (my + r < 0.5) | (my - r > height - 0.5)
    keep = keep & ~off
    ty: tl.constexpr = means2d_ptr.dtype.element_ty
    tl.store(means2d_ptr + 2 * n, tl.where(keep, mx, 0.0).to(ty), mask=mask)
    tl.store(means2d_ptr + 2 * n + 1, tl.where(keep, my, 0.0).to(ty), mask=mask)
    tl.store(conics_ptr + 3 * n, tl.where(keep, c11 / det, 0.0).to(ty), mask=mask)
    tl.store(conics_ptr + 3 * n + 1, tl.where(keep, -c01 / det, 0.0).to(ty), mask=mask)
    tl.store(conics_ptr + 3 * n + 2, tl.where(keep, c00 / det, 0.0).to(ty), mask=mask)
    tl.store(depths_ptr + n, z.to(ty), mask=mask)
    tl.store(radii_ptr + n, tl.where(keep, r, 0.0).to(tl.int32), mask=mask)


@triton.jit
def _project_bwd_kernel(
    means_ptr, quats_ptr, scales_ptr, viewmat_ptr, k_ptr, radii_ptr,
    gm2d_ptr, gconics_ptr, gdepths_ptr, gmeans_ptr, gquats_ptr, gscales_ptr,
    N, FP64: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    """grad_means2d [N, 2], grad_conics [N, 3], grad_depths [N] -> grad_means [N, 3], grad_quats [N, 4],
    grad_scales [N, 3]; zero where radii == 0."""
    ACC: tl.constexpr = tl.float64 if FP64 else tl.float32
    n = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = n < N
    keep = tl.load(radii_ptr + n, mask=mask, other=0) > 0
    cam, t, qn, qnorm, rq, s, a, p = _geometry(means_ptr, quats_ptr, scales_ptr, viewmat_ptr, k_ptr, n, mask, ACC)
    wv, fx, fy = cam[0], cam[1], cam[2]
    c00, c01, c11, det = _cov2d(p)
    qa, qb, qc = c11 / det, -c01 / det, c00 / det  # the conic Q = [[qa, qb], [qb, qc]]
    ga = tl.load(gconics_ptr + 3 * n, mask=keep, other=0.0).to(ACC)
    gb = 0.5 * tl.load(gconics_ptr + 3 * n + 1, mask=keep, other=0.0).to(ACC)  # G symmetric: b is Q01 and Q10
    gc = tl.load(gconics_ptr + 3 * n + 2, mask=keep, other=0.0).to(ACC)
    # dCov = -Q G Q (symmetric); dP = (dCov + dCov^T) P
    h00, h01, h10, h11 = qa * ga + qb * gb, qa * gb + qb * gc, qb * ga + qc * gb, qb * gb + qc * gc
    d00 = -2.0 * (h00 * qa + h01 * qb)
    d01 = -(h00 * qb + h01 * qc) - (h10 * qa + h11 * qb)
    d11 = -2.0 * (h10 * qb + h11 * qc)
    dp = ()
    for j in tl.static_range(3):
        dp = dp + (d00 * p[j] + d01 * p[3 + j],)
    for j in tl.static_range(3):
        dp = dp + (d01 * p[j] + d11 * p[3 + j],)
    # P = A M, M = Rq diag(s): dA = dP M^T, dM = A^T dP
    da = ()
    for i in tl.static_range(2):
        for k in tl.static_range(3):
            da = da + ((dp[3 * i] * rq[3 * k] * s[0] + dp[3 * i + 1] * rq[3 * k + 1] * s[1])
                       + dp[3 * i + 2] * rq[3 * k + 2] * s[2],)  # fmt: skip
    dm = ()
    for k in tl.static_range(3):
        for j in tl.static_range(3):
            dm = dm + (a[k] * dp[j] + a[3 + k] * dp[3 + j],)
    dr = ()
    for i in tl.static_range(9):  # dRq = dM diag(s)
        dr = dr + (dm[i] * s[i % 3],)
    gs = ()
    for j in tl.static_range(3):  # ds_j = sum_k dM_kj Rq_kj
        gs = gs + (dm[j] * rq[j] + dm[3 + j] * rq[3 + j] + dm[6 + j] * rq[6 + j],)
    # Rq(qn) -> qn -> q (through the normalization)
    w, x, y, z = qn
    dw = 2.0 * (-z * dr[1] + y * dr[2] + z * dr[3] - x * dr[5] - y * dr[6] + x * dr[7])
    dx = 2.0 * (y * dr[1] + z * dr[2] + y * dr[3] - w * dr[5] + z * dr[6] + w * dr[7] - 2.0 * x * (dr[4] + dr[8]))
    dy = 2.0 * (x * dr[1] + w * dr[2] + x * dr[3] + z * dr[5] - w * dr[6] + z * dr[7] - 2.0 * y * (dr[0] + dr[8]))
    dz = 2.0 * (-w * dr[1] + x * dr[2] + w * dr[3] + y * dr[5] + x * dr[6] + y * dr[7] - 2.0 * z * (dr[0] + dr[4]))
    dot = w * dw + x * dx + y * dy + z * dz
    gq = ((dw - w * dot) / qnorm, (dx - x * dot) / qnorm, (dy - y * dot) / qnorm, (dz - z * dot) / qnorm)
    # A = J Wv: dJ = dA Wv^T (J00, J02, J11, J12), then J and mean2d (step 6) and depth -> t
    dj00 = da[0] * wv[0] + da[1] * wv[1] + da[2] * wv[2]
    dj02 = da[0] * wv[6] + da[1] * wv[7] + da[2] * wv[8]
    dj11 = da[3] * wv[3] + da[4] * wv[4] + da[5] * wv[5]
    dj12 = da[3] * wv[6] + da[4] * wv[7] + da[5] * wv[8]
    gmx = tl.load(gm2d_ptr + 2 * n, mask=keep, other=0.0).to(ACC)
    gmy = tl.load(gm2d_ptr + 2 * n + 1, mask=keep, other=0.0).to(ACC)
    iz = 1.0 / t[2]
    gtx = fx * iz * (gmx - dj02 * iz)
    gty = fy * iz * (gmy - dj12 * iz)
    gtz = -(fx * dj00 + fy * dj11) * iz * iz + 2.0 * (fx * t[0] * dj02 + fy * t[1] * dj12) * iz * iz * iz
    gtz = gtz - (gmx * fx * t[0] + gmy * fy * t[1]) * iz * iz + tl.load(gdepths_ptr + n, mask=keep, other=0.0).to(ACC)
    ty: tl.constexpr = gmeans_ptr.dtype.element_ty
    for k in tl.static_range(3):  # mean = Wv^T dt
        gm = wv[k] * gtx + wv[3 + k] * gty + wv[6 + k] * gtz
        tl.store(gmeans_ptr + 3 * n + k, tl.where(keep, gm, 0.0).to(ty), mask=mask)
        tl.store(gscales_ptr + 3 * n + k, tl.where(keep, gs[k], 0.0).to(ty), mask=mask)
    for k in tl.static_range(4):
        tl.store(gquats_ptr + 4 * n + k, tl.where(keep, gq[k], 0.0).to(ty), mask=mask)


# --------------------------------------------------------------------------- rasterization


@triton.jit
def _tile_pixels(tiles_x, H, W, TILE: tl.constexpr, TS_PAD: tl.constexpr, ACC: tl.constexpr):
    """This program's tile: in-image mask, flat pixel index i * W + j (int64) and centers (px, py),
    [TS_PAD * TS_PAD] each (the TILE x TILE tile, row-major in a TS_PAD x TS_PAD square)."""
    tile = tl.program_id(0)
    li = tl.arange(0, TS_PAD * TS_PAD) // TS_PAD
    lj = tl.arange(0, TS_PAD * TS_PAD) % TS_PAD
    i = (tile // tiles_x) * TILE + li
    j = (tile % tiles_x) * TILE + lj
    inb = (li < TILE) & (lj < TILE) & (i < H) & (j < W)
    return inb, i.to(tl.int64) * W + j, j.to(ACC) + 0.5, i.to(ACC) + 0.5


@triton.jit
def _pixel_alpha(means2d_ptr, conics_ptr, opac_ptr, radii_ptr, g, px, py, ACC: tl.constexpr):
    """Gaussian g (a scalar) at the pixel centers (pixel_alpha, before the early stop): dx, dy, its conic
    (a, b, c), exp(-sigma), o exp(-sigma), alpha and whether it is kept (radius, sigma and alpha tests)."""
    dx = px - tl.load(means2d_ptr + 2 * g).to(ACC)
    dy = py - tl.load(means2d_ptr + 2 * g + 1).to(ACC)
    r = tl.load(radii_ptr + g).to(ACC)
    a = tl.load(conics_ptr + 3 * g).to(ACC)
    b = tl.load(conics_ptr + 3 * g + 1).to(ACC)
    c = tl.load(conics_ptr + 3 * g + 2).to(ACC)
    sigma = 0.5 * (a * dx * dx + c * dy * dy) + b * dx * dy
    e = tl.exp(-sigma)
    raw = tl.load(opac_ptr + g).to(ACC) * e
    alpha = tl.where(raw < 0.999, raw, 0.999)  # min(0.999, raw); NaN -> 0.999 as the reference
    kept = (tl.abs(dx) <= r) & (tl.abs(dy) <= r) & ~(sigma < 0.0) & ~(alpha < 1.0 / 255.0)
    return dx, dy, (a, b, c), e, raw, alpha, kept


@triton.jit
def _rasterize_fwd_kernel(
    means2d_ptr, conics_ptr, opac_ptr, feat_ptr, depths_ptr, radii_ptr, bg_ptr, offsets_ptr, ids_ptr,
    image_ptr, alpha_ptr, depth_ptr, last_ptr, H, W, C, tiles_x,
    HAS_BG: tl.constexpr, FP64: tl.constexpr, TILE: tl.constexpr, TS_PAD: tl.constexpr, CHUNK: tl.constexpr,
):  # fmt: skip
    """Program (tile, chunk): image [H, W, C] channels chunk * CHUNK + [0, CHUNK); chunk 0 also alpha,
    depth [H, W, 1] and last [H, W] int32. features [N, C], background [C] (HAS_BG); the binning:
    tile_offsets [T + 1], gaussian_ids [M] int32."""
    ACC: tl.constexpr = tl.float64 if FP64 else tl.float32
    inb, pix, px, py = _tile_pixels(tiles_x, H, W, TILE, TS_PAD, ACC)
    chunk = tl.program_id(1)
    c0 = chunk * CHUNK  # this program's channels: c0 + [0, CHUNK), each a [PIX] accumulator
    start = tl.load(offsets_ptr + tl.program_id(0))
    end = tl.load(offsets_ptr + tl.program_id(0) + 1)
    trans = tl.full(px.shape, 1.0, ACC)  # T
    done = ~inb  # the pixel broke out of its loop (or is off the image)
    img = ()
    for c in tl.static_range(CHUNK):
        img = img + (tl.zeros(px.shape, ACC),)
    dep = tl.zeros(px.shape, ACC)
    last = tl.zeros(px.shape, tl.int32)
    k = start
    live = tl.sum((~done).to(tl.int32), axis=0)
    while (k < end) & (live > 0):
        g = tl.load(ids_ptr + k).to(tl.int64)
        _, _, _, _, _, alpha, kept = _pixel_alpha(means2d_ptr, conics_ptr, opac_ptr, radii_ptr, g, px, py, ACC)
        t_next = trans * (1.0 - alpha)
        kept = kept & ~done
        stop = kept & (t_next < 1e-4)  # break: g does not contribute
        use = kept & ~stop
        done = done | stop
        w = alpha * trans
        acc = ()  # only contributions are added: a pixel g skips never sees its (maybe non-finite) features
        for c in tl.static_range(CHUNK):
            f = tl.load(feat_ptr + g * C + c0 + c, mask=c0 + c < C, other=0.0).to(ACC)
            acc = acc + (tl.where(use, img[c] + w * f, img[c]),)
        img = acc
        dep = tl.where(use, dep + w * tl.load(depths_ptr + g).to(ACC), dep)
        trans = tl.where(use, t_next, trans)
        last = tl.where(use, k - start + 1, last)
        k += 1
        live = tl.sum((~done).to(tl.int32), axis=0)
    for c in tl.static_range(CHUNK):
        out = img[c]
        if HAS_BG:
            out += trans * tl.load(bg_ptr + c0 + c, mask=c0 + c < C, other=0.0).to(ACC)
        tl.store(image_ptr + pix * C + c0 + c, out.to(image_ptr.dtype.element_ty), mask=inb & (c0 + c < C))
    first = inb & (chunk == 0)
    tl.store(alpha_ptr + pix, (1.0 - trans).to(alpha_ptr.dtype.element_ty), mask=first)
    tl.store(depth_ptr + pix, dep.to(depth_ptr.dtype.element_ty), mask=first)
    tl.store(last_ptr + pix, last, mask=first)


@triton.jit
def _rasterize_bwd_kernel(
    gimg_ptr, galpha_ptr, gdepth_ptr, means2d_ptr, conics_ptr, opac_ptr, feat_ptr, depths_ptr, radii_ptr,
    bg_ptr, alpha_ptr, offsets_ptr, ids_ptr, last_ptr, buf_ptr, H, W, C, tiles_x,
    HAS_BG: tl.constexpr, FP64: tl.constexpr, TILE: tl.constexpr, TS_PAD: tl.constexpr, REG_C: tl.constexpr,
):  # fmt: skip
    """Program tile: grad_image [H, W, C], grad_alpha, grad_depth, alpha [H, W, 1], last [H, W] ->
    row (tile_offsets[tile] + k) of buf [M, 7 + C] (acc dtype): (means2d x 2, conics x 3, opacity,
    depth, features x C) of instance k, summed over the tile's pixels. Rows past max(last) are untouched."""
    ACC: tl.constexpr = tl.float64 if FP64 else tl.float32
    inb, pix, px, py = _tile_pixels(tiles_x, H, W, TILE, TS_PAD, ACC)
    start = tl.load(offsets_ptr + tl.program_id(0))
    last = tl.load(last_ptr + pix, mask=inb, other=0)
    trans = 1.0 - tl.load(alpha_ptr + pix, mask=inb, other=0.0).to(ACC)  # final T
    t_final = trans
    g_alpha_px = tl.load(galpha_ptr + pix, mask=inb, other=0.0).to(ACC)
    g_depth_px = tl.load(gdepth_ptr + pix, mask=inb, other=0.0).to(ACC)
    gi0 = ()  # grad_image of channels [0, REG_C), kept in registers
    for c in tl.static_range(REG_C):
        gi0 = gi0 + (tl.load(gimg_ptr + pix * C + c, mask=inb, other=0.0).to(ACC),)
    s_img = tl.zeros(px.shape, ACC)  # sum_c grad_image_c S_c
    if HAS_BG:
        for ch in range(0, C):
            s_img += tl.load(gimg_ptr + pix * C + ch, mask=inb, other=0.0).to(ACC) * tl.load(bg_ptr + ch).to(ACC)
        s_img = trans * s_img
    s_dep = tl.zeros(px.shape, ACC)
    n_k = tl.max(last, axis=0)
    for kk in range(0, n_k):
        k = n_k - 1 - kk
        g = tl.load(ids_ptr + start + k).to(tl.int64)
        dx, dy, conic, e, raw, alpha, kept = _pixel_alpha(means2d_ptr, conics_ptr, opac_ptr, radii_ptr, g, px, py, ACC)
        use = kept & (k < last)
        one_m = 1.0 - alpha
        trans = tl.where(use, trans / one_m, trans)  # transmittance in front of g
        w = tl.where(use, alpha * trans, 0.0)
        row = buf_ptr + (start + k).to(tl.int64) * (7 + C)
        gf = tl.zeros(px.shape, ACC)  # grad_image . f_g
        for c in tl.static_range(REG_C):
            gf += gi0[c] * tl.load(feat_ptr + g * C + c).to(ACC)
            tl.store(row + 7 + c, tl.sum(tl.where(use, w * gi0[c], 0.0), axis=0))
        for ch in range(REG_C, C):  # channels past REG_C: grad_image reloaded each time
            gi = tl.load(gimg_ptr + pix * C + ch, mask=inb, other=0.0).to(ACC)
            gf += gi * tl.load(feat_ptr + g * C + ch).to(ACC)
            tl.store(row + 7 + ch, tl.sum(tl.where(use, w * gi, 0.0), axis=0))
        z = tl.load(depths_ptr + g).to(ACC)
        g_alpha = gf * trans - s_img / one_m + g_depth_px * (z * trans - s_dep / one_m) + g_alpha_px * t_final / one_m
        s_img = tl.where(use, s_img + w * gf, s_img)
        s_dep = tl.where(use, s_dep + w * z, s_dep)
        grad = use & (raw < 0.999)  # not clamped
        g_sigma = tl.where(grad, -g_alpha * alpha, 0.0)
        tl.store(row, tl.sum(-g_sigma * (conic[0] * dx + conic[1] * dy), axis=0))
        tl.store(row + 1, tl.sum(-g_sigma * (conic[1] * dx + conic[2] * dy), axis=0))
        tl.store(row + 2, tl.sum(0.5 * g_sigma * dx * dx, axis=0))
        tl.store(row + 3, tl.sum(g_sigma * dx * dy, axis=0))
        tl.store(row + 4, tl.sum(0.5 * g_sigma * dy * dy, axis=0))
        tl.store(row + 5, tl.sum(tl.where(grad, g_alpha * e, 0.0), axis=0))
        tl.store(row + 6, tl.sum(tl.where(use, w * g_depth_px, 0.0), axis=0))


# --------------------------------------------------------------------------- launchers
# Schemas are spelled out (as in csrc/pyflowops.cpp): inferred ones would say SymInt order.


def _acc_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _raster_meta(tile_size: int, channels: int, backward: bool = False) -> dict:
    """Constexprs and num_warps of a rasterizer kernel: the tile padded to a power-of-2 square (one
    pixel per thread up to 8 warps) and the forward's channel chunk CHUNK (PIX * CHUNK <= _TILE_ELEMENTS),
    or the backward's REG_C = min(C, that chunk) channels of grad_image held in registers."""
    if tile_size < 1:
        raise ValueError(f"tile_size must be >= 1, got {tile_size}")
    ts_pad = triton.next_power_of_2(tile_size)
    pix = ts_pad * ts_pad
    chunk = min(triton.next_power_of_2(max(channels, 1)), _MAX_CHUNK, max(1, _TILE_ELEMENTS // pix))
    meta = {"TILE": tile_size, "TS_PAD": ts_pad, "num_warps": min(8, max(1, pix // 32))}
    return meta | ({"REG_C": min(channels, chunk)} if backward else {"CHUNK": chunk})


def _bin(
    means2d: torch.Tensor, depths: torch.Tensor, radii: torch.Tensor, width: int, height: int, tile_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The contract's binning, with torch ops: (tile_offsets [T + 1] int32, gaussian_ids [M] int32).

    Each Gaussian's superset pixel box (tile_bounds; in the opmath dtype, NaN boxes are empty) gives
    its tile rectangle; instances are laid out Gaussian by Gaussian in stable depth order, then
    stably sorted by tile: (tile, depth, index) order."""
    tiles_x, tiles_y = triton.cdiv(width, tile_size), triton.cdiv(height, tile_size)
    n_tiles = tiles_x * tiles_y
    acc = _acc_dtype(means2d.dtype)
    r = radii.to(acc)
    mx, my = means2d.to(acc).unbind(-1)
    x0, x1 = torch.floor(mx - r - 0.5), torch.ceil(mx + r - 0.5)
    y0, y1 = torch.floor(my - r - 0.5), torch.ceil(my + r - 0.5)
    ok = (radii > 0) & (x0 <= width - 1) & (x1 >= 0) & (y0 <= height - 1) & (y1 >= 0) & (n_tiles > 0)

    def tile_range(lo, hi, size):  # first tile, number of tiles
        lo = torch.where(ok, lo, 0.0).clamp(0, max(size - 1, 0)).long() // tile_size
        hi = torch.where(ok, hi, 0.0).clamp(0, max(size - 1, 0)).long() // tile_size
        return lo, hi - lo + 1

    tx0, nx = tile_range(x0, x1, width)
    ty0, ny = tile_range(y0, y1, height)
    order = torch.sort(depths, stable=True).indices  # full precision; ties by index
    counts = torch.where(ok, nx * ny, 0)[order]
    gid = torch.repeat_interleave(order, counts)
    local = torch.arange(gid.numel(), device=gid.device) - torch.repeat_interleave(counts.cumsum(0) - counts, counts)
    nxg = nx[gid]
    tile = (ty0[gid] + local // nxg) * tiles_x + tx0[gid] + local % nxg
    if tile.numel() >= 2**31:
        raise ValueError(f"the Triton rasterizer takes fewer than 2^31 (tile, Gaussian) instances, got {tile.numel()}")
    tile, perm = torch.sort(tile, stable=True)
    offsets = torch.zeros(n_tiles + 1, dtype=torch.int32, device=means2d.device)
    offsets[1:] = torch.bincount(tile, minlength=n_tiles).cumsum(0)
    return offsets, gid[perm].to(torch.int32)


@triton_op(
    "pyflowops::project_gaussians_triton",
    mutates_args=(),
    schema=(
        "(Tensor means, Tensor quats, Tensor scales, Tensor viewmat, Tensor K, int width, int height, "
        "float near, float far) -> (Tensor, Tensor, Tensor, Tensor)"
    ),
)
def project_gaussians_triton(
    means: torch.Tensor, quats: torch.Tensor, scales: torch.Tensor, viewmat: torch.Tensor, K: torch.Tensor,
    width: int, height: int, near: float, far: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
    """means [N, 3], quats [N, 4], scales [N, 3], viewmat [4, 4], K [3, 3] ->
    (means2d [N, 2], conics [N, 3], depths [N], radii [N] int32)."""
    n = means.shape[0]
    kw = {"dtype": means.dtype, "device": means.device}
    means2d, conics, depths = torch.empty(n, 2, **kw), torch.empty(n, 3, **kw), torch.empty(n, **kw)
    radii = torch.empty(n, dtype=torch.int32, device=means.device)
    if n > 0:
        wrap_triton(_project_fwd_kernel)[(triton.cdiv(n, _BLOCK_N),)](
            means.contiguous(), quats.contiguous(), scales.contiguous(), viewmat.contiguous(), K.contiguous(),
            means2d, conics, depths, radii, n, width, height, *_split(near), *_split(far),
            FP64=means.dtype == torch.float64, BLOCK=_BLOCK_N, num_warps=_PROJECT_WARPS,
        )  # fmt: skip
    return means2d, conics, depths, radii


@triton_op(
    "pyflowops::project_gaussians_backward_triton",
    mutates_args=(),
    schema=(
        "(Tensor means, Tensor quats, Tensor scales, Tensor viewmat, Tensor K, Tensor radii, "
        "Tensor grad_means2d, Tensor grad_conics, Tensor grad_depths) -> (Tensor, Tensor, Tensor)"
    ),
)
def project_gaussians_backward_triton(
    means: torch.Tensor, quats: torch.Tensor, scales: torch.Tensor, viewmat: torch.Tensor, K: torch.Tensor,
    radii: torch.Tensor, grad_means2d: torch.Tensor, grad_conics: torch.Tensor, grad_depths: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
    """-> (grad_means [N, 3], grad_quats [N, 4], grad_scales [N, 3]); zero where radii == 0."""
    n = means.shape[0]
    grads = (torch.empty_like(means, memory_format=torch.contiguous_format), torch.empty(n, 4, dtype=means.dtype,
             device=means.device), torch.empty(n, 3, dtype=means.dtype, device=means.device))  # fmt: skip
    if n > 0:
        wrap_triton(_project_bwd_kernel)[(triton.cdiv(n, _BLOCK_N),)](
            means.contiguous(), quats.contiguous(), scales.contiguous(), viewmat.contiguous(), K.contiguous(),
            radii.contiguous(), grad_means2d.contiguous(), grad_conics.contiguous(), grad_depths.contiguous(),
            *grads, n, FP64=means.dtype == torch.float64, BLOCK=_BLOCK_N, num_warps=_PROJECT_WARPS,
        )  # fmt: skip
    return grads


@triton_op(
    "pyflowops::rasterize_gaussians_triton",
    mutates_args=(),
    schema=(
        "(Tensor means2d, Tensor conics, Tensor opacities, Tensor features, Tensor depths, Tensor radii, "
        "int width, int height, Tensor? background, int tile_size) "
        "-> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)"
    ),
)
def rasterize_gaussians_triton(
    means2d: torch.Tensor, conics: torch.Tensor, opacities: torch.Tensor, features: torch.Tensor,
    depths: torch.Tensor, radii: torch.Tensor, width: int, height: int, background: torch.Tensor | None,
    tile_size: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
    # (every element spelled out: torch 2.11-2.13's triton_op infers the schema from these annotations)
    """-> (image [H, W, C], alpha [H, W, 1], depth [H, W, 1], tile_offsets [T + 1] int32,
    gaussian_ids [M] int32, last [H, W] int32)."""
    n, channels = features.shape
    meta = _raster_meta(tile_size, channels)
    offsets, ids = _bin(means2d, depths, radii, width, height, tile_size)
    dev = means2d.device
    image = torch.empty(height, width, channels, dtype=features.dtype, device=dev)
    alpha = torch.empty(height, width, 1, dtype=means2d.dtype, device=dev)
    depth = torch.empty(height, width, 1, dtype=means2d.dtype, device=dev)
    last = torch.empty(height, width, dtype=torch.int32, device=dev)
    if n == 0:  # nothing to composite (and no buffers to hand the kernel)
        image.copy_(torch.zeros_like(image) if background is None else background.expand_as(image))
        alpha.zero_(), depth.zero_(), last.zero_()
    elif height * width > 0:
        grid = (offsets.numel() - 1, max(1, triton.cdiv(channels, meta["CHUNK"])))
        features = features.contiguous()
        wrap_triton(_rasterize_fwd_kernel)[grid](
            means2d.contiguous(), conics.contiguous(), opacities.contiguous(), features, depths.contiguous(),
            radii.contiguous(), features if background is None else background.contiguous(), offsets, ids,
            image, alpha, depth, last, height, width, channels, triton.cdiv(width, tile_size),
            HAS_BG=background is not None, FP64=means2d.dtype == torch.float64, **meta,
        )  # fmt: skip
    return image, alpha, depth, offsets, ids, last


@triton_op(
    "pyflowops::rasterize_gaussians_backward_triton",
    mutates_args=(),
    schema=(
        "(Tensor grad_image, Tensor grad_alpha, Tensor grad_depth, Tensor means2d, Tensor conics, "
        "Tensor opacities, Tensor features, Tensor depths, Tensor radii, Tensor? background, Tensor alpha, "
        "Tensor tile_offsets, Tensor gaussian_ids, Tensor last, int width, int height, int tile_size) "
        "-> (Tensor, Tensor, Tensor, Tensor, Tensor)"
    ),
)
def rasterize_gaussians_backward_triton(
    grad_image: torch.Tensor, grad_alpha: torch.Tensor, grad_depth: torch.Tensor, means2d: torch.Tensor,
    conics: torch.Tensor, opacities: torch.Tensor, features: torch.Tensor, depths: torch.Tensor,
    radii: torch.Tensor, background: torch.Tensor | None, alpha: torch.Tensor, tile_offsets: torch.Tensor,
    gaussian_ids: torch.Tensor, last: torch.Tensor, width: int, height: int, tile_size: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
    """-> (grad_means2d [N, 2], grad_conics [N, 3], grad_opacities [N], grad_features [N, C],
    grad_depths [N]). Per-instance sums [M, 7 + C] from the kernel, added up per Gaussian here."""
    n, channels = features.shape
    meta = _raster_meta(tile_size, channels, backward=True)
    acc = _acc_dtype(means2d.dtype)
    buf = torch.zeros(gaussian_ids.numel(), _GRAD_COLS + channels, dtype=acc, device=means2d.device)
    if n > 0 and height * width > 0:
        features = features.contiguous()
        wrap_triton(_rasterize_bwd_kernel)[(tile_offsets.numel() - 1,)](
            grad_image.contiguous(), grad_alpha.contiguous(), grad_depth.contiguous(), means2d.contiguous(),
            conics.contiguous(), opacities.contiguous(), features, depths.contiguous(), radii.contiguous(),
            features if background is None else background.contiguous(), alpha.contiguous(),
            tile_offsets.contiguous(), gaussian_ids.contiguous(), last.contiguous(), buf,
            height, width, channels, triton.cdiv(width, tile_size),
            HAS_BG=background is not None, FP64=means2d.dtype == torch.float64, **meta,
        )  # fmt: skip
    # index_add_: a fixed order on the CPU; CUDA atomics unless deterministic algorithms are on
    total = torch.zeros(n, _GRAD_COLS + channels, dtype=acc, device=means2d.device)
    total.index_add_(0, gaussian_ids.long(), buf)
    parts = ((0, 2, means2d), (2, 5, conics), (5, 6, opacities), (_GRAD_COLS, None, features), (6, 7, depths))
    # fresh contiguous copies: outputs of a custom op may not alias each other
    return tuple(
        total[:, lo:hi].reshape(ref.shape).to(ref.dtype, memory_format=torch.contiguous_format, copy=True)
        for lo, hi, ref in parts
    )
