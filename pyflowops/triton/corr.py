"""Triton kernels of the 4D-correlation family (``pyflowops::corr_*_triton`` ops).

The math is the contract in ``docs/corr_kernel_contract.md``, mirrored from
``csrc/corr/corr_math.h``. For query (b, i, j) and level l, with
``cx = x / 2^l``, ``x0 = floor(cx)``, ``fx = cx - x0`` (same for y), the patch
``P[u][v]`` (u, v in [0, S), S = 2r + 2) holds the map at corner
``(Y, X) = (y0 - r + v, x0 - r + u)`` (0 outside the map), and window sample
``(a, c)`` (a, c in [0, 2r]) is the bilinear blend of ``P[a..a+1][c..c+1]``.

Kernels, all launched once per pyramid level (levels are a Python list of
tensors with different shapes):

* ``_corr_window_fwd_kernel``, ``_corr_window_grad_coords_kernel``,
  ``_corr_window_coef_kernel`` (backward: coords grad; d loss / d corner): one thread per
  query, window rows unrolled with ``tl.static_range``. The corners come either
  from the query's own H_l x W_l correlation map (``PATCH=False``, the
  ``corr_lookup`` ops) or from a precomputed [N, S*S] patch (``PATCH=True``,
  the on-the-fly ops), so the window math is written once.
* ``_corr_patch_kernel``: on-the-fly stage 1, the S*S raw corner dot products
  ``<fmap1[b,i,j,:], fmap2_l[b,Y,X,:]>`` of each query into an [N, S*S] scratch
  patch, which the window kernels read with ``PATCH=True``.
* ``_corr_onthefly_grad_kernel``: on-the-fly backward, turns the corner
  coefficients into grad_fmap1 (gather) and grad_fmap2 (``tl.atomic_add``).

Accumulation is in float32 (float64 for float64 inputs), like ``at::opmath_type``;
results are stored in the input dtype. Shapes: B batch, H x W query grid,
N = B*H*W queries, D channels, K = (2r+1)^2 window samples, L levels.
Autograd and fake tensors are registered in ``pyflowops/ops/corr.py``.
"""

import torch
import triton
import triton.language as tl
from torch.library import triton_op, wrap_triton

__all__ = [
    "corr_lookup_backward_triton",
    "corr_lookup_onthefly_backward_triton",
    "corr_lookup_onthefly_triton",
    "corr_lookup_triton",
]

_BLOCK_Q = 128  # queries per program of the window kernels (one thread each)
_WINDOW_WARPS = 4
_TILE = 4096  # elements of a [QB, SS_PAD, BLOCK_D] tile of the on-the-fly kernels


# --------------------------------------------------------------------------- helpers
# The per-corner helpers call no other @triton.jit function: the interpreter pays
# about 1 ms per nested call (compiled code inlines them). ACC is the accumulation
# dtype, tl.float64 for float64 inputs and tl.float32 otherwise (at::opmath_type).


@triton.jit
def _queries(coords_ptr, N, HW, inv_scale, ACC: tl.constexpr, BLOCK_Q: tl.constexpr):
    """This program's BLOCK_Q queries and their level-l sample centers.

    Returns q, b, p (int64 [BLOCK_Q]: flat index b*HW + p, batch, p = i*W + j),
    qmask, hw (HW as int64: channel offsets k*HW can pass 2^31 for large images),
    x0, y0 (int64 floor of the center), fx, fy (ACC fractions) and finite.
    Non-finite coords are replaced by 0 so that every address stays defined; the
    caller turns their results into NaN (samples, coords grad) or 0 (map grads).
    The clamp to [-2^30, 2^30] keeps floor() -> int64 defined for huge finite
    coords (their window is all zero padding either way).
    """
    q = tl.program_id(0).to(tl.int64) * BLOCK_Q + tl.arange(0, BLOCK_Q)  # [BLOCK_Q]
    qmask = q < N
    hw = tl.cast(HW, tl.int64)
    b = q // hw
    p = q % hw
    cbase = coords_ptr + b * 2 * hw + p  # [BLOCK_Q] coords[b, 0, i, j]
    cx = tl.load(cbase, mask=qmask, other=0).to(ACC) * inv_scale
    cy = tl.load(cbase + hw, mask=qmask, other=0).to(ACC) * inv_scale
    finite = (tl.abs(cx) < float("inf")) & (tl.abs(cy) < float("inf"))  # False for NaN and +-inf
    cx = tl.minimum(tl.maximum(tl.where(finite, cx, 0.0), -1073741824.0), 1073741824.0)
    cy = tl.minimum(tl.maximum(tl.where(finite, cy, 0.0), -1073741824.0), 1073741824.0)
    x0f = tl.floor(cx)
    y0f = tl.floor(cy)
    return q, b, p, qmask, hw, x0f.to(tl.int64), y0f.to(tl.int64), cx - x0f, cy - y0f, finite


@triton.jit
def _load_corner(src, x0, y0, u, v, H_l, W_l, mask, RADIUS: tl.constexpr, PATCH: tl.constexpr, ACC: tl.constexpr):
    """P[u][v] of a block of queries [BLOCK_Q]; src points at each query's map (or patch). Zero padding."""
    if PATCH:
        # patch layout [S*S], u slow: it already holds 0 off the map
        val = tl.load(src + (u * (2 * RADIUS + 2) + v), mask=mask, other=0)
    else:
        X = x0 + (u - RADIUS)
        Y = y0 + (v - RADIUS)
        inb = (X >= 0) & (X < W_l) & (Y >= 0) & (Y < H_l)
        val = tl.load(src + Y * W_l + X, mask=mask & inb, other=0)  # map layout [H_l, W_l]
    return val.to(ACC)


@triton.jit
def _load_grad(gout, a, c, hw, mask, RADIUS: tl.constexpr, ACC: tl.constexpr):
    """g(a, c) [BLOCK_Q]: grad_out of window sample (a, c); gout points at the level's channel 0 of each query."""
    return tl.load(gout + (a * (2 * RADIUS + 1) + c) * hw, mask=mask, other=0).to(ACC)


# --------------------------------------------------------------------------- window kernels
# One thread per query. The column loop over a (or u) is a runtime loop and the
# row loop over c (or v) is unrolled: with fully unrolled windows the compiler
# hoists every load and runs out of registers (ptxas: 255 registers and spills
# at r = 4), and compiles slowly.


@triton.jit
def _corr_window_fwd_kernel(
    src_ptr,  # PATCH=False: pyramid[l] [B, H, W, H_l, W_l]; PATCH=True: patch [N, S*S] (acc dtype)
    coords_ptr,  # [B, 2, H, W]
    out_ptr,  # [B, C_out, H, W]; this level writes channels [chan0, chan0 + K)
    N,
    HW,
    H_l,
    W_l,
    C_out,
    chan0,
    inv_scale,  # 2^-l
    RADIUS: tl.constexpr,
    PATCH: tl.constexpr,
    FP64: tl.constexpr,
    BLOCK_Q: tl.constexpr,
):
    ACC: tl.constexpr = tl.float64 if FP64 else tl.float32
    WIN: tl.constexpr = 2 * RADIUS + 1
    S: tl.constexpr = 2 * RADIUS + 2
    q, b, p, qmask, hw, x0, y0, fx, fy, finite = _queries(coords_ptr, N, HW, inv_scale, ACC, BLOCK_Q)
    src = src_ptr + q * (S * S if PATCH else H_l * W_l)  # [BLOCK_Q] each query's own map / patch
    out = out_ptr + (b * C_out + chan0) * hw + p  # [BLOCK_Q] channel chan0 of each query
    w00 = (1 - fx) * (1 - fy)
    w10 = fx * (1 - fy)
    w01 = (1 - fx) * fy
    w11 = fx * fy
    for a in range(WIN):
        # walk down the column pair (a, a+1), reusing the lower corners of the previous sample
        p00 = _load_corner(src, x0, y0, a, 0, H_l, W_l, qmask, RADIUS, PATCH, ACC)
        p10 = _load_corner(src, x0, y0, a + 1, 0, H_l, W_l, qmask, RADIUS, PATCH, ACC)
        for c in tl.static_range(WIN):
            p01 = _load_corner(src, x0, y0, a, c + 1, H_l, W_l, qmask, RADIUS, PATCH, ACC)
            p11 = _load_corner(src, x0, y0, a + 1, c + 1, H_l, W_l, qmask, RADIUS, PATCH, ACC)
            val = w00 * p00 + w10 * p10 + w01 * p01 + w11 * p11
            val = tl.where(finite, val, float("nan"))
            tl.store(out + (a * WIN + c) * hw, val.to(out_ptr.dtype.element_ty), mask=qmask)
            p00 = p01
            p10 = p11


# The backward is two kernels (coords grad; corner coefficients) so that each stays small.


@triton.jit
def _corr_window_grad_coords_kernel(
    src_ptr,  # as in the forward: pyramid[l] [B, H, W, H_l, W_l] or patch [N, S*S]
    coords_ptr,  # [B, 2, H, W]
    gout_ptr,  # [B, C_out, H, W]; this level reads channels [chan0, chan0 + K)
    gcoords_ptr,  # [B, 2, H, W] acc dtype, accumulated over the level launches
    N,
    HW,
    H_l,
    W_l,
    C_out,
    chan0,
    inv_scale,  # 2^-l
    RADIUS: tl.constexpr,
    PATCH: tl.constexpr,
    FP64: tl.constexpr,
    BLOCK_Q: tl.constexpr,
):
    ACC: tl.constexpr = tl.float64 if FP64 else tl.float32
    WIN: tl.constexpr = 2 * RADIUS + 1
    S: tl.constexpr = 2 * RADIUS + 2
    q, b, p, qmask, hw, x0, y0, fx, fy, finite = _queries(coords_ptr, N, HW, inv_scale, ACC, BLOCK_Q)
    src = src_ptr + q * (S * S if PATCH else H_l * W_l)  # [BLOCK_Q]
    gout = gout_ptr + (b * C_out + chan0) * hw + p  # [BLOCK_Q]
    # sum_{a,c} g(a,c) * d sample(a,c) / d (cx, cy), same corner walk as the forward
    gx = tl.zeros([BLOCK_Q], dtype=ACC)
    gy = tl.zeros([BLOCK_Q], dtype=ACC)
    for a in range(WIN):
        p00 = _load_corner(src, x0, y0, a, 0, H_l, W_l, qmask, RADIUS, PATCH, ACC)
        p10 = _load_corner(src, x0, y0, a + 1, 0, H_l, W_l, qmask, RADIUS, PATCH, ACC)
        for c in tl.static_range(WIN):
            p01 = _load_corner(src, x0, y0, a, c + 1, H_l, W_l, qmask, RADIUS, PATCH, ACC)
            p11 = _load_corner(src, x0, y0, a + 1, c + 1, H_l, W_l, qmask, RADIUS, PATCH, ACC)
            g = _load_grad(gout, a, c, hw, qmask, RADIUS, ACC)
            gx += g * ((1 - fy) * (p10 - p00) + fy * (p11 - p01))
            gy += g * ((1 - fx) * (p01 - p00) + fx * (p11 - p10))
            p00 = p01
            p10 = p11
    gc = gcoords_ptr + b * 2 * hw + p  # [BLOCK_Q]; each query owned by one thread: no race
    gx = tl.where(finite, gx * inv_scale, float("nan"))  # d cx / d x = 2^-l
    gy = tl.where(finite, gy * inv_scale, float("nan"))
    tl.store(gc, tl.load(gc, mask=qmask, other=0) + gx, mask=qmask)
    tl.store(gc + hw, tl.load(gc + hw, mask=qmask, other=0) + gy, mask=qmask)


@triton.jit
def _corr_window_coef_kernel(
    coords_ptr,  # [B, 2, H, W]
    gout_ptr,  # [B, C_out, H, W]; this level reads channels [chan0, chan0 + K)
    gsrc_ptr,  # PATCH=False: grad_pyramid[l] [B, H, W, H_l, W_l] (zero-initialised); PATCH=True: coef [N, S*S]
    N,
    HW,
    H_l,
    W_l,
    C_out,
    chan0,
    inv_scale,  # 2^-l
    RADIUS: tl.constexpr,
    PATCH: tl.constexpr,
    FP64: tl.constexpr,
    BLOCK_Q: tl.constexpr,
):
    """d loss / d P[u][v] as a gather: corner (u, v) is a corner of samples a in {u-1, u},
    c in {v-1, v} (those inside [0, 2r]) with the bilinear weight of that corner."""
    ACC: tl.constexpr = tl.float64 if FP64 else tl.float32
    WIN: tl.constexpr = 2 * RADIUS + 1
    S: tl.constexpr = 2 * RADIUS + 2
    q, b, p, qmask, hw, x0, y0, fx, fy, finite = _queries(coords_ptr, N, HW, inv_scale, ACC, BLOCK_Q)
    gout = gout_ptr + (b * C_out + chan0) * hw + p  # [BLOCK_Q]
    gsrc = gsrc_ptr + q * (S * S if PATCH else H_l * W_l)  # [BLOCK_Q]
    for u in range(S):
        X = x0 + (u - RADIUS)  # [BLOCK_Q] map column of corner u
        left = qmask & (u >= 1)  # column a = u - 1 exists: the corner is its right neighbour (weight fx)
        right = qmask & (u < WIN)  # column a = u exists: the corner is its left neighbour (weight 1 - fx)
        for v in tl.static_range(S):
            coef = tl.zeros([BLOCK_Q], dtype=ACC)  # the ifs on v resolve at compile time
            if v >= 1:  # row c = v - 1 (weight fy)
                g_l = _load_grad(gout, u - 1, v - 1, hw, left, RADIUS, ACC)
                g_r = _load_grad(gout, u, v - 1, hw, right, RADIUS, ACC)
                coef += (fx * g_l + (1 - fx) * g_r) * fy
            if v < WIN:  # row c = v (weight 1 - fy)
                g_l = _load_grad(gout, u - 1, v, hw, left, RADIUS, ACC)
                g_r = _load_grad(gout, u, v, hw, right, RADIUS, ACC)
                coef += (fx * g_l + (1 - fx) * g_r) * (1 - fy)
            Y = y0 + (v - RADIUS)
            keep = (X >= 0) & (X < W_l) & (Y >= 0) & (Y < H_l) & finite  # NaN queries, off-map corners: no grad
            if PATCH:
                tl.store(gsrc + (u * S + v), tl.where(keep, coef, 0.0), mask=qmask)  # dense coef patch
            else:
                # distinct corners of a query hit distinct map pixels: plain stores, no atomics
                tl.store(gsrc + Y * W_l + X, coef.to(gsrc_ptr.dtype.element_ty), mask=qmask & keep)


# --------------------------------------------------------------------------- on-the-fly kernels
# QB queries per program, tiles [QB, SS_PAD, BLOCK_D]: SS_PAD = S*S corners padded
# to a power of 2, BLOCK_D channels (contiguous in the channels-last maps).


@triton.jit
def _patch_rows(
    coords_ptr,
    N,
    HW,
    H_l,
    W_l,
    D,
    inv_scale,
    RADIUS: tl.constexpr,
    ACC: tl.constexpr,
    QB: tl.constexpr,
    SS_PAD: tl.constexpr,
):
    """This program's QB queries and their patch corners in fmap2_l.

    Returns q [QB] (int64), qmask [QB], t [SS_PAD] (corner index u * S + v),
    rows [QB, SS_PAD] (int64 offset of fmap2_l[b, Y, X, 0]) and live [QB, SS_PAD]
    (real query with finite coords, real corner, on the map).
    """
    S: tl.constexpr = 2 * RADIUS + 2
    q, b, _, qmask, _, x0, y0, _, _, finite = _queries(coords_ptr, N, HW, inv_scale, ACC, QB)
    t = tl.arange(0, SS_PAD)  # [SS_PAD]
    X = x0[:, None] + (t // S - RADIUS)[None, :]  # [QB, SS_PAD]
    Y = y0[:, None] + (t % S - RADIUS)[None, :]
    live = (X >= 0) & (X < W_l) & (Y >= 0) & (Y < H_l) & (t < S * S)[None, :] & (qmask & finite)[:, None]
    rows = ((b[:, None] * H_l + Y) * W_l + X) * D  # [QB, SS_PAD]
    return q, qmask, t, rows, live


@triton.jit
def _corr_patch_kernel(
    f1_ptr,  # fmap1 [B, H, W, D] (already scaled by 1/sqrt(D))
    f2_ptr,  # fmap2_levels[l] [B, H_l, W_l, D]
    coords_ptr,  # [B, 2, H, W]
    patch_ptr,  # [N, S*S] acc dtype: raw corner dot products, 0 off the map
    N,
    HW,
    H_l,
    W_l,
    D,
    inv_scale,
    RADIUS: tl.constexpr,
    FP64: tl.constexpr,
    QB: tl.constexpr,
    SS_PAD: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    ACC: tl.constexpr = tl.float64 if FP64 else tl.float32
    S: tl.constexpr = 2 * RADIUS + 2
    q, qmask, t, rows, live = _patch_rows(coords_ptr, N, HW, H_l, W_l, D, inv_scale, RADIUS, ACC, QB, SS_PAD)
    acc = tl.zeros([QB, SS_PAD], dtype=ACC)
    for d0 in range(0, D, BLOCK_D):
        d = d0 + tl.arange(0, BLOCK_D)  # [BLOCK_D]
        dmask = d < D
        f1 = tl.load(f1_ptr + q[:, None] * D + d[None, :], mask=qmask[:, None] & dmask[None, :], other=0)
        m2 = live[:, :, None] & dmask[None, None, :]  # [QB, SS_PAD, BLOCK_D]
        f2 = tl.load(f2_ptr + rows[:, :, None] + d[None, None, :], mask=m2, other=0)
        acc += tl.sum(f2.to(ACC) * f1.to(ACC)[:, None, :], axis=2)
    out = patch_ptr + q[:, None] * (S * S) + t[None, :]  # [QB, SS_PAD]
    tl.store(out, acc, mask=qmask[:, None] & (t < S * S)[None, :])


@triton.jit
def _corr_onthefly_grad_kernel(
    f1_ptr,  # fmap1 [B, H, W, D]
    f2_ptr,  # fmap2_levels[l] [B, H_l, W_l, D]
    coords_ptr,  # [B, 2, H, W]
    coef_ptr,  # [N, S*S] acc dtype: d loss / d P[u][v], 0 off the map and for non-finite queries
    gf1_ptr,  # [B, H, W, D] acc dtype, accumulated over the level launches (queries owned by this program)
    gf2_ptr,  # [B, H_l, W_l, D] acc dtype, zero-initialised, scattered into with atomics
    N,
    HW,
    H_l,
    W_l,
    D,
    inv_scale,
    RADIUS: tl.constexpr,
    FP64: tl.constexpr,
    QB: tl.constexpr,
    SS_PAD: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    ACC: tl.constexpr = tl.float64 if FP64 else tl.float32
    S: tl.constexpr = 2 * RADIUS + 2
    q, qmask, t, rows, live = _patch_rows(coords_ptr, N, HW, H_l, W_l, D, inv_scale, RADIUS, ACC, QB, SS_PAD)
    coef = tl.load(coef_ptr + q[:, None] * (S * S) + t[None, :], mask=live, other=0)  # [QB, SS_PAD]
    for d0 in range(0, D, BLOCK_D):
        d = d0 + tl.arange(0, BLOCK_D)  # [BLOCK_D]
        dmask = d < D
        m1 = qmask[:, None] & dmask[None, :]  # [QB, BLOCK_D]
        m2 = live[:, :, None] & dmask[None, None, :]  # [QB, SS_PAD, BLOCK_D]
        f2 = tl.load(f2_ptr + rows[:, :, None] + d[None, None, :], mask=m2, other=0).to(ACC)
        g1 = gf1_ptr + q[:, None] * D + d[None, :]  # [QB, BLOCK_D]
        tl.store(g1, tl.load(g1, mask=m1, other=0) + tl.sum(coef[:, :, None] * f2, axis=1), mask=m1)
        f1 = tl.load(f1_ptr + q[:, None] * D + d[None, :], mask=m1, other=0).to(ACC)  # [QB, BLOCK_D]
        # neighbouring queries share corners: scatter with atomics
        tl.atomic_add(gf2_ptr + rows[:, :, None] + d[None, None, :], coef[:, :, None] * f1[:, None, :], mask=m2)


# --------------------------------------------------------------------------- launchers
# Schemas are spelled out (as in csrc/pyflowops.cpp): inferred ones would say SymInt radius.


def _acc_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _window_grid(n: int) -> tuple[int]:
    return (triton.cdiv(n, _BLOCK_Q),)


def _patch_blocks(radius: int, dim: int) -> dict[str, int]:
    """Tile of the on-the-fly kernels: QB queries x SS_PAD corners (S*S padded to a power of 2) x BLOCK_D channels."""
    ss_pad = triton.next_power_of_2((2 * radius + 2) ** 2)
    block_d = min(triton.next_power_of_2(max(dim, 1)), max(16, _TILE // ss_pad))
    qb = max(1, _TILE // (ss_pad * block_d))  # small radii: several queries per program
    warps = min(8, max(1, qb * ss_pad * block_d // 512))  # about 16 tile elements per thread
    return {"QB": qb, "SS_PAD": ss_pad, "BLOCK_D": block_d, "num_warps": warps}


@triton_op(
    "pyflowops::corr_lookup_triton",
    mutates_args=(),
    schema="(Tensor[] pyramid, Tensor coords, int radius) -> Tensor",
)
def corr_lookup_triton(pyramid: list[torch.Tensor], coords: torch.Tensor, radius: int) -> torch.Tensor:
    """pyramid[l] [B, H, W, H_l, W_l], coords [B, 2, H, W] -> [B, L*(2r+1)^2, H, W]."""
    batch, _, height, width = coords.shape
    window = (2 * radius + 1) ** 2
    channels = len(pyramid) * window
    out = torch.empty(batch, channels, height, width, dtype=pyramid[0].dtype, device=coords.device)
    n = batch * height * width
    if n == 0:
        return out
    coords = coords.contiguous()
    fp64 = out.dtype == torch.float64
    for level, corr in enumerate(pyramid):
        corr = corr.contiguous()
        h_l, w_l = corr.shape[-2:]
        wrap_triton(_corr_window_fwd_kernel)[_window_grid(n)](
            corr,
            coords,
            out,
            n,
            height * width,
            h_l,
            w_l,
            channels,
            level * window,
            2.0**-level,
            RADIUS=radius,
            PATCH=False,
            FP64=fp64,
            BLOCK_Q=_BLOCK_Q,
            num_warps=_WINDOW_WARPS,
        )
    return out


@triton_op(
    "pyflowops::corr_lookup_backward_triton",
    mutates_args=(),
    schema="(Tensor grad_out, Tensor[] pyramid, Tensor coords, int radius, bool pyramid_grad) -> (Tensor[], Tensor)",
)
def corr_lookup_backward_triton(
    grad_out: torch.Tensor,
    pyramid: list[torch.Tensor],
    coords: torch.Tensor,
    radius: int,
    pyramid_grad: bool,
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """grad_out [B, L*(2r+1)^2, H, W] -> (grad_pyramid (L tensors, or [] if not pyramid_grad), grad_coords [B, 2, H, W])."""
    batch, _, height, width = coords.shape
    window = (2 * radius + 1) ** 2
    channels = len(pyramid) * window
    # zero-initialised: only the window corners of each query's map get a gradient
    grad_pyramid = [torch.zeros(c.shape, dtype=c.dtype, device=c.device) for c in pyramid] if pyramid_grad else []
    n = batch * height * width
    if n == 0:
        return grad_pyramid, torch.zeros_like(coords, memory_format=torch.contiguous_format)
    coords = coords.contiguous()
    grad_out = grad_out.contiguous()
    fp64 = coords.dtype == torch.float64
    grad_coords = torch.zeros(coords.shape, dtype=_acc_dtype(coords.dtype), device=coords.device)
    for level, corr in enumerate(pyramid):
        corr = corr.contiguous()
        h_l, w_l = corr.shape[-2:]
        args = (n, height * width, h_l, w_l, channels, level * window, 2.0**-level)
        meta = {"RADIUS": radius, "PATCH": False, "FP64": fp64, "BLOCK_Q": _BLOCK_Q, "num_warps": _WINDOW_WARPS}
        wrap_triton(_corr_window_grad_coords_kernel)[_window_grid(n)](
            corr, coords, grad_out, grad_coords, *args, **meta
        )
        if pyramid_grad:
            wrap_triton(_corr_window_coef_kernel)[_window_grid(n)](coords, grad_out, grad_pyramid[level], *args, **meta)
    return grad_pyramid, grad_coords.to(coords.dtype)


@triton_op(
    "pyflowops::corr_lookup_onthefly_triton",
    mutates_args=(),
    schema="(Tensor fmap1, Tensor[] fmap2_levels, Tensor coords, int radius) -> Tensor",
)
def corr_lookup_onthefly_triton(
    fmap1: torch.Tensor, fmap2_levels: list[torch.Tensor], coords: torch.Tensor, radius: int
) -> torch.Tensor:
    """fmap1 [B, H, W, D] (pre-scaled), fmap2_levels[l] [B, H_l, W_l, D], coords [B, 2, H, W] -> [B, L*(2r+1)^2, H, W]."""
    batch, height, width, dim = fmap1.shape
    window = (2 * radius + 1) ** 2
    channels = len(fmap2_levels) * window
    out = torch.empty(batch, channels, height, width, dtype=fmap1.dtype, device=fmap1.device)
    n = batch * height * width
    if n == 0:
        return out
    fmap1 = fmap1.contiguous()
    coords = coords.contiguous()
    fp64 = fmap1.dtype == torch.float64
    blocks = _patch_blocks(radius, dim)
    patch_grid = (triton.cdiv(n, blocks["QB"]),)
    # scratch reused by every level (launches are stream-ordered): [N, S*S] corner dot products
    patch = torch.empty(n, (2 * radius + 2) ** 2, dtype=_acc_dtype(fmap1.dtype), device=fmap1.device)
    for level, fmap2 in enumerate(fmap2_levels):
        fmap2 = fmap2.contiguous()
        h_l, w_l = fmap2.shape[1:3]
        wrap_triton(_corr_patch_kernel)[patch_grid](
            fmap1,
            fmap2,
            coords,
            patch,
            n,
            height * width,
            h_l,
            w_l,
            dim,
            2.0**-level,
            RADIUS=radius,
            FP64=fp64,
            **blocks,
        )
        wrap_triton(_corr_window_fwd_kernel)[_window_grid(n)](
            patch,
            coords,
            out,
            n,
            height * width,
            h_l,
            w_l,
            channels,
            level * window,
            2.0**-level,
            RADIUS=radius,
            PATCH=True,
            FP64=fp64,
            BLOCK_Q=_BLOCK_Q,
            num_warps=_WINDOW_WARPS,
        )
    return out


@triton_op(
    "pyflowops::corr_lookup_onthefly_backward_triton",
    mutates_args=(),
    schema="(Tensor grad_out, Tensor fmap1, Tensor[] fmap2_levels, Tensor coords, int radius) -> (Tensor, Tensor[], Tensor)",
)
def corr_lookup_onthefly_backward_triton(
    grad_out: torch.Tensor,
    fmap1: torch.Tensor,
    fmap2_levels: list[torch.Tensor],
    coords: torch.Tensor,
    radius: int,
) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]:
    """grad_out [B, L*(2r+1)^2, H, W] -> (grad_fmap1 [B, H, W, D], grad_fmap2_levels, grad_coords [B, 2, H, W])."""
    batch, height, width, dim = fmap1.shape
    window = (2 * radius + 1) ** 2
    channels = len(fmap2_levels) * window
    acc_dtype = _acc_dtype(fmap1.dtype)
    n = batch * height * width
    # acc-dtype buffers: grad_fmap1/grad_coords sum over level launches, grad_fmap2 takes atomics
    grad_f1 = torch.zeros(fmap1.shape, dtype=acc_dtype, device=fmap1.device)
    grad_f2 = [torch.zeros(f.shape, dtype=acc_dtype, device=f.device) for f in fmap2_levels]
    grad_coords = torch.zeros(coords.shape, dtype=acc_dtype, device=coords.device)
    if n > 0:
        fmap1 = fmap1.contiguous()
        coords = coords.contiguous()
        grad_out = grad_out.contiguous()
        fp64 = fmap1.dtype == torch.float64
        blocks = _patch_blocks(radius, dim)
        patch_grid = (triton.cdiv(n, blocks["QB"]),)
        patch = torch.empty(n, (2 * radius + 2) ** 2, dtype=acc_dtype, device=fmap1.device)  # [N, S*S]
        coef = torch.empty_like(patch)  # [N, S*S] d loss / d patch, fully written by the window kernel
        for level, fmap2 in enumerate(fmap2_levels):
            fmap2 = fmap2.contiguous()
            h_l, w_l = fmap2.shape[1:3]
            scale = 2.0**-level
            wrap_triton(_corr_patch_kernel)[patch_grid](
                fmap1,
                fmap2,
                coords,
                patch,
                n,
                height * width,
                h_l,
                w_l,
                dim,
                scale,
                RADIUS=radius,
                FP64=fp64,
                **blocks,
            )
            args = (n, height * width, h_l, w_l, channels, level * window, scale)
            meta = {"RADIUS": radius, "PATCH": True, "FP64": fp64, "BLOCK_Q": _BLOCK_Q, "num_warps": _WINDOW_WARPS}
            wrap_triton(_corr_window_grad_coords_kernel)[_window_grid(n)](
                patch, coords, grad_out, grad_coords, *args, **meta
            )
            wrap_triton(_corr_window_coef_kernel)[_window_grid(n)](coords, grad_out, coef, *args, **meta)
            wrap_triton(_corr_onthefly_grad_kernel)[patch_grid](
                fmap1,
                fmap2,
                coords,
                coef,
                grad_f1,
                grad_f2[level],
                n,
                height * width,
                h_l,
                w_l,
                dim,
                scale,
                RADIUS=radius,
                FP64=fp64,
                **blocks,
            )
    return (
        grad_f1.to(fmap1.dtype),
        [g.to(f.dtype) for g, f in zip(grad_f2, fmap2_levels)],
        grad_coords.to(coords.dtype),
    )
