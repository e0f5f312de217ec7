"""Triton kernels of the gradient-regularization family (``pyflowops::*_triton`` gradreg ops).

The math is the contract in ``docs/gradreg_kernel_contract.md``, mirrored from
``csrc/gradreg/gradreg_math.h`` (names in comments refer to it). Every derivative is a
3x3 correlation with replicate padding. Tensors are contiguous NCHW; each program works
on one BLOCK_H x BLOCK_W pixel tile of one [H, W] plane (1D grid: plane-major, then tile
rows, then tile columns, so that neighbouring programs share their halo rows in L2).
Replicate padding is a clamp of the row and column indices, so every load is in bounds
and unmasked; tile pixels beyond the image clamp to the last row/column and are masked
out of stores and sums. Shapes: B batch, C channels, K directions (2, or 3 for order 2).

Kernels:

* ``_spatial_gradient_kernel``: x [B, C, H, W] -> [B, C, K, H, W].
* ``_spatial_gradient_backward_kernel``: grad_out [B, C, K, H, W] -> grad_x [B, C, H, W],
  a gather (``gather_3x3``): pixel p sums, over the neighbours q of its clipped 3x3
  neighbourhood, the taps of q's stencil that land on p after clamping.
* ``_gradreg_forward_kernel``: the fused loss. Each program reads its tile of flow
  [B, 2, H, W] (target, image [B, C, H, W], mask [B, 1, H, W]) once, computes w
  (``pixel_weight``) and ``L = w * sum_{c,k} rho(G_{c,k})``, and writes the loss map
  [B, H, W] (reduction "none") or its tile's sum into a [programs] buffer that the
  launcher adds up with torch (a fixed order: deterministic, no float atomics); and w
  [B, H, W] when the backward needs it.
* ``_gradreg_backward_kernel``: grad_flow [B, 2, H, W], one flow channel per program, as a
  gather: for its pixel p it loads the 5x5 window of d = flow - target (rolling over
  rows), recomputes G at the 9 neighbours q and adds ``gl(q) * w(q) * rho'(G_k(q))``
  times the tap weight of q on p. Tiles off the border take a path with the interior
  tap weights as compile-time constants (zero taps cost nothing, ~220 instructions a
  pixel and channel); border tiles weigh with the clamp-aware ``tap_weight``.
* ``_textureless_mask_kernel``: image [B, C, H, W] -> [B, 1, H, W] bool (as uint8).

All stencils are separable, tap_k(a, b) = ry_k[a] * rx_k[b] (``_TAPS``), so the clamp-aware
tap weight of q on p is a row factor times a column factor (``_axis_weights``). In the
kernels a tile is a 1-D tensor of its pixels, row-major. Accumulation is in float32
(float64 for float64 inputs), like ``at::opmath_type``; results are stored in the input
dtype, w in the accumulation dtype. Autograd and fake tensors are registered in
``pyflowops/ops/gradreg.py``.
"""

import torch
import triton
import triton.language as tl
from torch.library import triton_op, wrap_triton

from pyflowops.triton._common import _scalar, _split

__all__ = [
    "gradient_regularization_backward_triton",
    "gradient_regularization_triton",
    "spatial_gradient_backward_triton",
    "spatial_gradient_triton",
    "textureless_mask_triton",
]

_OPERATORS = {"sobel": 0, "diff": 1}
_PENALTIES = {"l1": 0, "charbonnier": 1, "l2": 2}
# 8 x 64 tiles, 8 warps: 2 pixels per thread, 512 per program (float64: 1 and 256). A warp's
# load reads 32 consecutive pixels of a row; more pixels per thread run the gathers out of
# registers (float64 at 2: ptxas spills).
_BLOCKS = {"BLOCK_H": 8, "BLOCK_W": 64, "num_warps": 8}
_BLOCKS_FP64 = {"BLOCK_H": 4, "BLOCK_W": 64, "num_warps": 8}

# The stencils, flat (Triton indexes a global constexpr tuple with constants only): entry
# 21 * (OP + ORDER - 1) + 7 * k of (sobel | diff order 1 | diff order 2) starts direction k's
# row taps ry_k (3), column taps rx_k (3) and normalizer, tap_k(a, b) = ry_k[a] * rx_k[b].
_TAPS = tl.constexpr((
    1, 2, 1, -1, 0, 1, 8, -1, 0, 1, 1, 2, 1, 8, 0, 0, 0, 0, 0, 0, 1,  # sobel dx, dy, (none)
    0, 1, 0, -1, 0, 1, 2, -1, 0, 1, 0, 1, 0, 2, 0, 0, 0, 0, 0, 0, 1,  # diff dx, dy, (none)
    0, 1, 0, 1, -2, 1, 1, 1, 0, -1, 1, 0, -1, 4, 1, -2, 1, 0, 1, 0, 1,  # diff dxx, dxy, dyy
))  # fmt: skip


# --------------------------------------------------------------------------- helpers
# The interpreter pays about 1 ms per nested @triton.jit call (compiled code inlines
# them), so each helper does a whole row or stencil. Neighbourhoods are tuples of
# pixel tensors indexed with compile-time constants. ACC is the accumulation
# dtype; OP 0 = sobel, 1 = diff; PENALTY 0 = l1, 1 = charbonnier, 2 = l2.


@triton.jit
def _tile(H, W, BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr):
    """This program's plane (int64), tile origin (row, column), in-image mask and its pixels' row
    and column clamped into the image, which all loads and stores use: [BLOCK_H * BLOCK_W], the
    tile flattened row-major (Triton's coalescing pass slows down quadratically on 2-D tensors,
    and these kernels have many loads). Clamped, the stores are not vectorised along the row:
    then each thread holds one column, and a warp's load reads 32 consecutive pixels."""
    pid = tl.program_id(0)
    n_tw = tl.cdiv(W, BLOCK_W)
    n_th = tl.cdiv(H, BLOCK_H)
    t = pid // n_tw
    i0 = (t % n_th) * BLOCK_H
    j0 = (pid % n_tw) * BLOCK_W
    i = i0 + tl.arange(0, BLOCK_H * BLOCK_W) // BLOCK_W
    j = j0 + tl.arange(0, BLOCK_H * BLOCK_W) % BLOCK_W
    return (t // n_th).to(tl.int64), i0, j0, (i < H) & (j < W), tl.minimum(i, H - 1), tl.minimum(j, W - 1)


@triton.jit
def _offsets(ic, jc, H, W, R: tl.constexpr):
    """In-plane offsets of the clamped rows (row * W) and columns of the pixels' offsets -R..R.
    int32 (the launchers check H * W < 2^31): a hoisted offset then costs one register."""
    rows = (tl.maximum(ic - 1, 0) * W, ic * W, tl.minimum(ic + 1, H - 1) * W)
    cols = (tl.maximum(jc - 1, 0), jc, tl.minimum(jc + 1, W - 1))
    if R == 2:
        rows = (tl.maximum(ic - 2, 0) * W,) + rows + (tl.minimum(ic + 2, H - 1) * W,)
        cols = (tl.maximum(jc - 2, 0),) + cols + (tl.minimum(jc + 2, W - 1),)
    return rows, cols


@triton.jit
def _row(base, tbase, r, cols, HAS_TARGET: tl.constexpr, ACC: tl.constexpr):
    """x[r, cols[t]] for each of the 3 or 5 columns, in ACC, minus the target's when HAS_TARGET."""
    out = ()
    for t in tl.static_range(len(cols)):
        x = tl.load(base + r + cols[t]).to(ACC)
        if HAS_TARGET:
            x -= tl.load(tbase + r + cols[t]).to(ACC)
        out = out + (x,)
    return out


@triton.jit
def _stencil(top, mid, bot, v: tl.constexpr, OP: tl.constexpr, ORDER: tl.constexpr):
    """Unscaled G_k (apply_stencil without scale_k) of n[a][b] = (top, mid, bot)[a][v + b], for
    each direction k. Only non-zero taps are read, so a non-finite value reaches only the
    outputs whose stencil weighs it; the row sums are shared by the callers' neighbours."""
    T: tl.constexpr = 21 * (OP + ORDER - 1)
    n = (top, mid, bot)
    out = ()
    for k in tl.static_range(3 if ORDER == 2 else 2):
        g = tl.full(mid[0].shape, -0.0, mid[0].dtype)  # -0.0 + x folds to x
        for a in tl.static_range(3):
            if _TAPS[T + 7 * k + a] != 0:
                r = tl.full(mid[0].shape, -0.0, mid[0].dtype)
                for b in tl.static_range(3):
                    if _TAPS[T + 7 * k + 3 + b] != 0:
                        r += _TAPS[T + 7 * k + 3 + b] * n[a][v + b]
                g += _TAPS[T + 7 * k + a] * r
        out = out + (g,)
    return out


@triton.jit
def _axis_weights(lo, hi, T: tl.constexpr, scale: tl.constexpr, ACC: tl.constexpr):
    """Along one axis, the summed taps of the neighbours at offsets -1, 0, +1 that land on the
    pixel after clamping (clamp_hits), times scale; lo/hi: the pixel is on the first/last
    row (column). A neighbour off the image weighs 0; at the border the pixel's own stencil
    also gets the taps that fall off the image. The taps are _TAPS[T .. T + 2]."""
    t0: tl.constexpr = _TAPS[T] * scale
    t1: tl.constexpr = _TAPS[T + 1] * scale
    t2: tl.constexpr = _TAPS[T + 2] * scale
    w_prev = tl.where(lo, 0.0, t2).to(ACC)
    w_self = (t1 + tl.where(lo, t0, 0.0) + tl.where(hi, t2, 0.0)).to(ACC)
    w_next = tl.where(hi, 0.0, t0).to(ACC)
    return w_prev, w_self, w_next


@triton.jit
def _tap_weights(ic, jc, H, W, OP: tl.constexpr, ORDER: tl.constexpr, L2: tl.constexpr, ACC: tl.constexpr):
    """Per direction k: (ry x 3, rx x 3) with ry[u] * rx[v] = scale_k * tap_weight_k(q -> p)
    for q = p + (u - 1, v - 1), normalized (gradient_regularization's G); L2: 2 * scale_k^2, the
    factor of the l2 penalty's gradient in terms of the unscaled G."""
    T: tl.constexpr = 21 * (OP + ORDER - 1)
    out = ()
    for k in tl.static_range(3 if ORDER == 2 else 2):
        norm = _TAPS[T + 7 * k + 6]
        ry = _axis_weights(ic == 0, ic == H - 1, T + 7 * k, 2.0 / (norm * norm) if L2 else 1.0 / norm, ACC)
        out = out + ((ry, _axis_weights(jc == 0, jc == W - 1, T + 7 * k + 3, 1.0, ACC)),)
    return out


@triton.jit
def _rho_grad(g, eps2, PENALTY: tl.constexpr, FP64: tl.constexpr):
    """rho'(G) / scale_k (penalty_grad) from the unscaled g = G / scale_k, eps2 = (eps / scale_k)^2;
    l2 leaves its 2 * scale_k in the tap weights."""
    if PENALTY == 0:  # sign, 0 at 0 (and NaN), as torch.abs's gradient
        d = tl.where(g > 0, 1.0, tl.where(g < 0, -1.0, 0.0))
    elif PENALTY == 2:
        d = g
    elif FP64:
        d = g / tl.sqrt(g * g + eps2)
    else:  # MUFU rsqrt: the gather evaluates this up to 27 times a pixel
        d = g * tl.math.rsqrt(g * g + eps2)
    return d


@triton.jit
def _edge_strength(image, plane_off, hw, C, rows, cols, OP: tl.constexpr, ACC: tl.constexpr):
    """e = 1/(2C) * sum_c (|Gx| + |Gy|), normalized first order (edge_strength), of the
    image planes at plane_off + c * hw."""
    e = tl.zeros((rows[0] + cols[0]).shape, dtype=ACC)
    for c in range(C):
        base = image + plane_off + c * hw
        n = (_row(base, base, rows[0], cols, False, ACC), _row(base, base, rows[1], cols, False, ACC))
        g = _stencil(n[0], n[1], _row(base, base, rows[2], cols, False, ACC), 0, OP, 1)
        e += tl.abs(g[0]) + tl.abs(g[1])
    e = e * (1.0 / _TAPS[21 * OP + 6])  # dx and dy share the normalizer; a power of 2: exact
    if ACC == tl.float64:
        e = e / (2.0 * C)
    else:
        e = tl.div_rn(e, 2.0 * C)  # correctly rounded, as the C++ (e meets a threshold)
    return e


# --------------------------------------------------------------------------- spatial_gradient


@triton.jit
def _spatial_gradient_kernel(
    x_ptr, out_ptr, H, W,  # x [B, C, H, W] -> out [B, C, K, H, W]
    OP: tl.constexpr, ORDER: tl.constexpr, NORMALIZED: tl.constexpr, FP64: tl.constexpr,
    BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr,
):  # fmt: skip
    ACC: tl.constexpr = tl.float64 if FP64 else tl.float32
    T: tl.constexpr = 21 * (OP + ORDER - 1)  # this stencil's _TAPS
    K: tl.constexpr = 3 if ORDER == 2 else 2
    plane, _, _, inb, ic, jc = _tile(H, W, BLOCK_H, BLOCK_W)
    rows, cols = _offsets(ic, jc, H, W, 1)
    hw = tl.cast(H, tl.int64) * W
    base = x_ptr + plane * hw
    n = (_row(base, base, rows[0], cols, False, ACC), _row(base, base, rows[1], cols, False, ACC))
    g = _stencil(n[0], n[1], _row(base, base, rows[2], cols, False, ACC), 0, OP, ORDER)
    out = out_ptr + plane * K * hw + rows[1] + cols[1]
    for k in tl.static_range(K):
        gk = g[k] * (1.0 / _TAPS[T + 7 * k + 6]) if NORMALIZED else g[k]
        tl.store(out + k * hw, gk.to(out_ptr.dtype.element_ty), mask=inb)


@triton.jit
def _spatial_gradient_backward_kernel(
    gout_ptr, gx_ptr, H, W,  # grad_out [B, C, K, H, W] -> grad_x [B, C, H, W]
    OP: tl.constexpr, ORDER: tl.constexpr, NORMALIZED: tl.constexpr, FP64: tl.constexpr,
    BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr,
):  # fmt: skip
    ACC: tl.constexpr = tl.float64 if FP64 else tl.float32
    T: tl.constexpr = 21 * (OP + ORDER - 1)  # this stencil's _TAPS
    K: tl.constexpr = 3 if ORDER == 2 else 2
    plane, _, _, inb, ic, jc = _tile(H, W, BLOCK_H, BLOCK_W)
    rows, cols = _offsets(ic, jc, H, W, 1)
    hw = tl.cast(H, tl.int64) * W
    acc = tl.zeros(ic.shape, dtype=ACC)
    for k in tl.static_range(K):
        gout = gout_ptr + (plane * K + k) * hw
        s = 1.0 / _TAPS[T + 7 * k + 6] if NORMALIZED else 1.0
        ry = _axis_weights(ic == 0, ic == H - 1, T + 7 * k, s, ACC)
        rx = _axis_weights(jc == 0, jc == W - 1, T + 7 * k + 3, 1.0, ACC)
        for u in tl.static_range(3):
            g = _row(gout, gout, rows[u], cols, False, ACC)  # grad_out_k at q = p + (u - 1, v - 1)
            h = tl.where(rx[0] != 0, rx[0] * g[0], 0.0)  # a tap that does not land adds nothing, even a NaN
            h += tl.where(rx[1] != 0, rx[1] * g[1], 0.0)
            h += tl.where(rx[2] != 0, rx[2] * g[2], 0.0)
            acc += tl.where(ry[u] != 0, ry[u] * h, 0.0)
    tl.store(gx_ptr + plane * hw + rows[1] + cols[1], acc.to(gx_ptr.dtype.element_ty), mask=inb)


# --------------------------------------------------------------------------- gradient_regularization


@triton.jit
def _gradreg_forward_kernel(
    flow_ptr, target_ptr, image_ptr, mask_ptr, out_ptr, weight_ptr,
    H, W, C, eps_hi, eps_lo, edge_hi, edge_lo, thr_hi, thr_lo,
    OP: tl.constexpr, ORDER: tl.constexpr, PENALTY: tl.constexpr, HAS_TARGET: tl.constexpr, HAS_MASK: tl.constexpr,
    EDGE: tl.constexpr, THRESH: tl.constexpr, LOSS_MAP: tl.constexpr, SAVE_W: tl.constexpr, FP64: tl.constexpr,
    BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr,
):  # fmt: skip
    """flow, target (HAS_TARGET) [B, 2, H, W]; image [B, C, H, W]; mask [B, 1, H, W] uint8 (bool) or
    flow's dtype (HAS_MASK); out: the loss [B, H, W] in flow's dtype (LOSS_MAP), else [programs] tile
    sums; weight [B, H, W] (SAVE_W); both in the acc dtype. (eps, edge_weight, threshold) as float
    hi/lo pairs (_scalar). EDGE: edge_weight != 0 with an image (the exp factor); THRESH: a
    threshold with an image (the [e < threshold] factor)."""
    ACC: tl.constexpr = tl.float64 if FP64 else tl.float32
    T: tl.constexpr = 21 * (OP + ORDER - 1)  # this stencil's _TAPS
    K: tl.constexpr = 3 if ORDER == 2 else 2
    b, _, _, inb, ic, jc = _tile(H, W, BLOCK_H, BLOCK_W)
    rows, cols = _offsets(ic, jc, H, W, 1)
    hw = tl.cast(H, tl.int64) * W
    eps = _scalar(eps_hi, eps_lo, FP64)
    total = tl.zeros(ic.shape, dtype=ACC)  # sum_{c,k} rho(G_{c,k})
    for c in range(2):
        fb = flow_ptr + (2 * b + c) * hw
        tb = target_ptr + (2 * b + c) * hw
        n = (_row(fb, tb, rows[0], cols, HAS_TARGET, ACC), _row(fb, tb, rows[1], cols, HAS_TARGET, ACC))
        g = _stencil(n[0], n[1], _row(fb, tb, rows[2], cols, HAS_TARGET, ACC), 0, OP, ORDER)
        for k in tl.static_range(K):  # penalty_value of G = g / norm_k
            gk = g[k] * (1.0 / _TAPS[T + 7 * k + 6])
            if PENALTY == 0:
                total += tl.abs(gk)
            elif PENALTY == 1:
                total += tl.sqrt(gk * gk + eps * eps) if FP64 else tl.sqrt_rn(gk * gk + eps * eps)
            else:
                total += gk * gk
    pix = b * hw + rows[1] + cols[1]  # [B, H, W] / [B, 1, H, W] offset of (ic, jc)
    if HAS_MASK:  # pixel_weight
        w = tl.load(mask_ptr + pix).to(ACC)
    else:
        w = tl.full(ic.shape, 1.0, ACC)
    if EDGE or THRESH:
        e = _edge_strength(image_ptr, b * C * hw, hw, C, rows, cols, OP, ACC)
        if EDGE:  # exactly 1 otherwise, even where e is inf
            w = w * tl.exp(-_scalar(edge_hi, edge_lo, FP64) * e)
        if THRESH:  # a NaN e fails e < threshold: w = 0
            w = tl.where(e < _scalar(thr_hi, thr_lo, FP64), w, 0.0)
    if SAVE_W:
        tl.store(weight_ptr + pix, w, mask=inb)
    loss = w * total
    if LOSS_MAP:
        tl.store(out_ptr + pix, loss.to(out_ptr.dtype.element_ty), mask=inb)
    else:  # this tile's sum; the launcher adds the tiles up in a fixed order
        tl.store(out_ptr + tl.program_id(0), tl.sum(tl.where(inb, loss, 0.0)))


@triton.jit
def _gather_flow(
    fb, tb, gl_ptr, w_ptr, q_base, rows, cols, ic, jc, H, W, eps,
    OP: tl.constexpr, ORDER: tl.constexpr, PENALTY: tl.constexpr, HAS_TARGET: tl.constexpr,
    LOSS_MAP: tl.constexpr, HAS_W: tl.constexpr, BORDER: tl.constexpr, FP64: tl.constexpr,
):  # fmt: skip
    """sum over the neighbours q and directions k of (gl(q) w(q)) rho'(G_k(q)) scale_k tap_weight_k(q -> p),
    without the scalar gl of reductions mean/sum. BORDER: clamp-aware tap weights (with the
    interior's zero taps, and no weight for q off the image); else the interior ones,
    compile-time constants. The 9 G(q) come from a rolling 3 x 5 window of rows of d."""
    ACC: tl.constexpr = tl.float64 if FP64 else tl.float32
    T: tl.constexpr = 21 * (OP + ORDER - 1)  # this stencil's _TAPS
    K: tl.constexpr = 3 if ORDER == 2 else 2
    L2: tl.constexpr = PENALTY == 2
    if BORDER:
        tw = _tap_weights(ic, jc, H, W, OP, ORDER, L2, ACC)
    eps2 = ()  # eps of the unscaled g: (eps * norm_k)^2
    for k in tl.static_range(K):
        eps2 = eps2 + ((eps * _TAPS[T + 7 * k + 6]) * (eps * _TAPS[T + 7 * k + 6]),)
    d0 = _row(fb, tb, rows[0], cols, HAS_TARGET, ACC)
    d1 = _row(fb, tb, rows[1], cols, HAS_TARGET, ACC)
    acc = tl.zeros((rows[0] + cols[0]).shape, dtype=ACC)
    for u in tl.static_range(3):  # neighbour row q_i = p_i + u - 1
        d2 = _row(fb, tb, rows[u + 2], cols, HAS_TARGET, ACC)
        for v in tl.static_range(3):  # neighbour column q_j = p_j + v - 1
            q = q_base + rows[u + 1] + cols[v + 1]  # unused loads are dropped by the compiler
            if LOSS_MAP:
                gw = tl.load(gl_ptr + q).to(ACC)
                if HAS_W:
                    gw = gw * tl.load(w_ptr + q).to(ACC)
            elif HAS_W:
                gw = tl.load(w_ptr + q).to(ACC)
            g = _stencil(d0, d1, d2, v, OP, ORDER)
            for k in tl.static_range(K):
                if BORDER:  # a tap that does not land adds nothing, even a NaN (gather_3x3)
                    f = tw[k][0][u] * tw[k][1][v]
                    c = _rho_grad(g[k], eps2[k], PENALTY, FP64)
                    if LOSS_MAP or HAS_W:
                        c = gw * c
                    acc += tl.where(f != 0, f * c, 0.0)
                else:  # the interior tap of q on p, tap_k(2 - u, 2 - v), times scale_k (l2: 2 scale_k^2)
                    norm = _TAPS[T + 7 * k + 6]
                    s = 2.0 / (norm * norm) if L2 else 1.0 / norm
                    f = _TAPS[T + 7 * k + 2 - u] * _TAPS[T + 7 * k + 5 - v] * s
                    if f != 0:
                        c = _rho_grad(g[k], eps2[k], PENALTY, FP64)
                        if LOSS_MAP or HAS_W:
                            c = gw * c
                        acc += f * c
        d0 = d1
        d1 = d2
    return acc


@triton.jit
def _gradreg_backward_kernel(
    gl_ptr, flow_ptr, target_ptr, w_ptr, gflow_ptr, H, W, n_mean, eps_hi, eps_lo,
    OP: tl.constexpr, ORDER: tl.constexpr, PENALTY: tl.constexpr, HAS_TARGET: tl.constexpr, HAS_W: tl.constexpr,
    LOSS_MAP: tl.constexpr, FP64: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr,
):  # fmt: skip
    """grad_loss: [B, H, W] (LOSS_MAP) or 0-dim; flow, target (HAS_TARGET), grad_flow [B, 2, H, W];
    w: the forward's weight [B, H, W] (acc dtype) or the mask [B, 1, H, W] (HAS_W); n_mean: B*H*W
    for reduction "mean", else 1."""
    ACC: tl.constexpr = tl.float64 if FP64 else tl.float32
    plane, i0, j0, inb, ic, jc = _tile(H, W, BLOCK_H, BLOCK_W)  # one flow channel: plane = 2 * b + c
    rows, cols = _offsets(ic, jc, H, W, 2)  # offsets -2..2: the 5x5 window that the 9 stencils read
    hw = tl.cast(H, tl.int64) * W
    fb = flow_ptr + plane * hw
    tb = target_ptr + plane * hw
    q_base = (plane // 2) * hw  # the batch element's [B, H, W] / [B, 1, H, W] offset
    eps = _scalar(eps_hi, eps_lo, FP64)
    if (i0 > 0) & (i0 + BLOCK_H < H) & (j0 > 0) & (j0 + BLOCK_W < W):  # no tile pixel on the image border
        acc = _gather_flow(
            fb, tb, gl_ptr, w_ptr, q_base, rows, cols, ic, jc, H, W, eps,
            OP, ORDER, PENALTY, HAS_TARGET, LOSS_MAP, HAS_W, False, FP64,
        )  # fmt: skip
    else:
        acc = _gather_flow(
            fb, tb, gl_ptr, w_ptr, q_base, rows, cols, ic, jc, H, W, eps,
            OP, ORDER, PENALTY, HAS_TARGET, LOSS_MAP, HAS_W, True, FP64,
        )  # fmt: skip
    if not LOSS_MAP:  # reductions: gl is a scalar (divided by B*H*W for the mean)
        gl = tl.load(gl_ptr).to(ACC)
        acc = acc * (gl / tl.cast(n_mean, tl.float64) if FP64 else tl.div_rn(gl, tl.cast(n_mean, tl.float32)))
    tl.store(gflow_ptr + plane * hw + rows[2] + cols[2], acc.to(gflow_ptr.dtype.element_ty), mask=inb)


@triton.jit
def _textureless_mask_kernel(
    image_ptr, out_ptr, H, W, C, thr_hi, thr_lo,  # image [B, C, H, W] -> out [B, 1, H, W] uint8 (bool's bytes)
    OP: tl.constexpr, FP64: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr,
):  # fmt: skip
    ACC: tl.constexpr = tl.float64 if FP64 else tl.float32
    b, _, _, inb, ic, jc = _tile(H, W, BLOCK_H, BLOCK_W)
    rows, cols = _offsets(ic, jc, H, W, 1)
    hw = tl.cast(H, tl.int64) * W
    e = _edge_strength(image_ptr, b * C * hw, hw, C, rows, cols, OP, ACC)
    tl.store(out_ptr + b * hw + rows[1] + cols[1], (e < _scalar(thr_hi, thr_lo, FP64)).to(tl.uint8), mask=inb)


# --------------------------------------------------------------------------- launchers
# Schemas are spelled out (as in csrc/pyflowops.cpp): inferred ones would say SymInt order.


def _meta(dtype: torch.dtype, operator: str | None = None, order: int = 1, penalty=None, reduction=None) -> dict:
    """The constexprs of a launch on dtype: tile, num_warps, FP64; the stencil, penalty and reduction given."""
    meta = {**(_BLOCKS_FP64 if dtype == torch.float64 else _BLOCKS), "FP64": dtype == torch.float64}
    if operator is not None:
        if operator not in _OPERATORS or order not in (1, 2) or (operator == "sobel" and order == 2):
            raise ValueError(f"unsupported stencil: operator={operator!r}, order={order} (order 2 needs 'diff')")
        meta |= {"OP": _OPERATORS[operator], "ORDER": order}
    if penalty is not None:  # gradient_regularization: penalty and reduction
        if penalty not in _PENALTIES or reduction not in ("mean", "sum", "none"):
            raise ValueError(f"unsupported penalty {penalty!r} or reduction {reduction!r}")
        meta |= {"PENALTY": _PENALTIES[penalty], "LOSS_MAP": reduction == "none"}
    return meta


def _grid(planes: int, height: int, width: int, meta: dict) -> tuple[int]:
    if height * width >= 2**31:
        raise ValueError(f"the Triton gradreg kernels take images of fewer than 2^31 pixels, got {height} x {width}")
    return (planes * triton.cdiv(height, meta["BLOCK_H"]) * triton.cdiv(width, meta["BLOCK_W"]),)


def _operand(t: torch.Tensor | None, fallback: torch.Tensor) -> torch.Tensor:
    """An optional input as the kernels read it: contiguous, a bool mask as its bytes (uint8);
    absent: ``fallback``, which the kernel's constexpr flags never let it read."""
    if t is None:
        return fallback
    t = t.contiguous()
    return t.view(torch.uint8) if t.dtype == torch.bool else t


@triton_op(
    "pyflowops::spatial_gradient_triton",
    mutates_args=(),
    schema="(Tensor x, str operator, int order, bool normalized) -> Tensor",
)
def spatial_gradient_triton(x: torch.Tensor, operator: str, order: int, normalized: bool) -> torch.Tensor:
    """x [B, C, H, W] -> [B, C, K, H, W], K = 2 (order 1) or 3 (order 2)."""
    meta = _meta(x.dtype, operator, order)
    batch, channels, height, width = x.shape
    out = torch.empty(batch, channels, 2 if order == 1 else 3, height, width, dtype=x.dtype, device=x.device)
    if out.numel() > 0:
        wrap_triton(_spatial_gradient_kernel)[_grid(batch * channels, height, width, meta)](
            x.contiguous(), out, height, width, NORMALIZED=normalized, **meta
        )
    return out


@triton_op(
    "pyflowops::spatial_gradient_backward_triton",
    mutates_args=(),
    schema="(Tensor grad_out, str operator, int order, bool normalized) -> Tensor",
)
def spatial_gradient_backward_triton(
    grad_out: torch.Tensor, operator: str, order: int, normalized: bool
) -> torch.Tensor:
    """grad_out [B, C, K, H, W] -> grad_x [B, C, H, W]."""
    meta = _meta(grad_out.dtype, operator, order)
    batch, channels, _, height, width = grad_out.shape
    grad_x = torch.empty(batch, channels, height, width, dtype=grad_out.dtype, device=grad_out.device)
    if grad_x.numel() > 0:
        wrap_triton(_spatial_gradient_backward_kernel)[_grid(batch * channels, height, width, meta)](
            grad_out.contiguous(), grad_x, height, width, NORMALIZED=normalized, **meta
        )
    return grad_x


@triton_op(
    "pyflowops::gradient_regularization_triton",
    mutates_args=(),
    schema=(
        "(Tensor flow, Tensor? image, Tensor? mask, Tensor? target, str operator, int order, str penalty, float eps, "
        "float edge_weight, float? textureless_threshold, str reduction, bool save_weight) -> (Tensor, Tensor)"
    ),
)
def gradient_regularization_triton(
    flow: torch.Tensor, image: torch.Tensor | None, mask: torch.Tensor | None, target: torch.Tensor | None,
    operator: str, order: int, penalty: str, eps: float, edge_weight: float, textureless_threshold: float | None,
    reduction: str, save_weight: bool,
) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """flow [B, 2, H, W] -> (loss: [B, H, W] ("none") or 0-dim, flow's dtype; weight: w [B, H, W]
    in the acc dtype when save_weight and an image is given, else [0])."""
    meta = _meta(flow.dtype, operator, order, penalty, reduction)
    batch, _, height, width = flow.shape
    acc_dtype = torch.float64 if flow.dtype == torch.float64 else torch.float32
    save = save_weight and image is not None
    weight = torch.empty((batch, height, width) if save else (0,), dtype=acc_dtype, device=flow.device)
    grid = _grid(batch, height, width, meta)
    if reduction == "none":
        out = torch.empty(batch, height, width, dtype=flow.dtype, device=flow.device)
    else:
        out = torch.empty(grid[0], dtype=acc_dtype, device=flow.device)  # one sum per program
    if batch * height * width > 0:
        flow = flow.contiguous()
        thresh = image is not None and textureless_threshold is not None
        wrap_triton(_gradreg_forward_kernel)[grid](
            flow, _operand(target, flow), _operand(image, flow), _operand(mask, flow), out, weight,
            height, width, 1 if image is None else image.shape[1],
            *_split(eps), *_split(edge_weight), *_split(textureless_threshold if thresh else 0.0),
            HAS_TARGET=target is not None, HAS_MASK=mask is not None,
            EDGE=image is not None and edge_weight != 0.0, THRESH=thresh, SAVE_W=save, **meta,
        )  # fmt: skip
    if reduction == "none":
        return out, weight
    total = out.sum()  # the tile sums in a fixed order: deterministic
    if reduction == "mean":
        total = total / (batch * height * width)  # 0 / 0 = NaN for an empty input, as torch.mean
    return total.to(flow.dtype), weight


@triton_op(
    "pyflowops::gradient_regularization_backward_triton",
    mutates_args=(),
    schema=(
        "(Tensor grad_loss, Tensor flow, Tensor? target, Tensor? weight, Tensor? mask, str operator, int order, "
        "str penalty, float eps, str reduction) -> Tensor"
    ),
)
def gradient_regularization_backward_triton(
    grad_loss: torch.Tensor, flow: torch.Tensor, target: torch.Tensor | None, weight: torch.Tensor | None,
    mask: torch.Tensor | None, operator: str, order: int, penalty: str, eps: float, reduction: str,
) -> torch.Tensor:  # fmt: skip
    """grad_loss [B, H, W] ("none") or 0-dim -> grad_flow [B, 2, H, W] (grad_target = -grad_flow)."""
    meta = _meta(flow.dtype, operator, order, penalty, reduction)
    batch, _, height, width = flow.shape
    grad_flow = torch.empty(flow.shape, dtype=flow.dtype, device=flow.device)
    if grad_flow.numel() > 0:
        flow = flow.contiguous()
        w = weight if weight is not None else mask  # the forward's weight already holds the mask
        wrap_triton(_gradreg_backward_kernel)[_grid(2 * batch, height, width, meta)](
            grad_loss.contiguous(), flow, _operand(target, flow), _operand(w, flow), grad_flow, height, width,
            batch * height * width if reduction == "mean" else 1, *_split(eps),
            HAS_TARGET=target is not None, HAS_W=w is not None, **meta,
        )  # fmt: skip
    return grad_flow


@triton_op(
    "pyflowops::textureless_mask_triton",
    mutates_args=(),
    schema="(Tensor image, float threshold, str operator) -> Tensor",
)
def textureless_mask_triton(image: torch.Tensor, threshold: float, operator: str) -> torch.Tensor:
    """image [B, C, H, W] -> [B, 1, H, W] bool: edge strength e < threshold."""
    meta = _meta(image.dtype, operator)
    batch, channels, height, width = image.shape
    out = torch.empty(batch, 1, height, width, dtype=torch.bool, device=image.device)
    if out.numel() > 0:
        meta.pop("ORDER")  # edge strength: always first order
        wrap_triton(_textureless_mask_kernel)[_grid(batch, height, width, meta)](
            image.contiguous(), out.view(torch.uint8), height, width, channels, *_split(threshold), **meta
        )
    return out
