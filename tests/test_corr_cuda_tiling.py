"""CPU emulation of the tiled CUDA on-the-fly correlation kernels (csrc/corr/corr_onthefly_cuda.cu).

No GPU is needed: this re-implements the kernels' index logic step by step in float64
torch (tile decomposition, the box of the union of the tiles' in-bounds patch corners,
the tiled/fallback decision, the per-thread corner slots k = sub + 4 i with the zero row,
the D-chunk staging with zero padding, the odd-stride patch store, the backward's 64-bit
coverage masks and gather for grad_fmap2 with its per-element add) and checks the
results against ``pyflowops.reference.corr`` forward and backward. The tiling constants
are parsed from the .cu file, so the two cannot drift apart silently. The per-query window
math (bilinear weights, coef, coords gradient) mirrors corr_math.h, vectorized over a tile.

The GPU itself is tested by test_corr.py (backend cuda) when a GPU is present.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch

from pyflowops.ops.corr import prepare_onthefly
from pyflowops.reference import corr as reference

from _utils import assert_close

CU_FILE = Path(__file__).resolve().parents[1] / "csrc" / "corr" / "corr_onthefly_cuda.cu"


def _constants() -> dict[str, int]:
    text = CU_FILE.read_text()
    names = ["kTileX", "kTileY", "kThreads", "kTiledMaxRadius", "kMaxBox", "kChunkBytes"]
    return {n: int(re.search(rf"constexpr int {n} = (\d+);", text).group(1)) for n in names}


K = _constants()
TILE_X, TILE_Y, MAX_BOX, TILED_MAX_R = K["kTileX"], K["kTileY"], K["kMaxBox"], K["kTiledMaxRadius"]
TILE_Q = TILE_X * TILE_Y
LANES = K["kThreads"] // TILE_Q  # lanes per query (4)
CPT = (TILED_MAX_R + 1) ** 2  # corner slots per thread (25)
CHUNKS = [K["kChunkBytes"] // 4, K["kChunkBytes"] // 8]  # channels per chunk: float / double opmath
COORD_CLAMP = 1073741824.0


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """The emulation runs many tiny ops: one intra-op thread is several times faster."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ----------------------------------------------------------------------- corr_math.h mirrors
def bilinear_setup(x: float, y: float, scale: float):
    cx, cy = x * scale, y * scale
    if not (math.isfinite(cx) and math.isfinite(cy)):
        return False, 0, 0, 0.0, 0.0
    cx, cy = min(max(cx, -COORD_CLAMP), COORD_CLAMP), min(max(cy, -COORD_CLAMP), COORD_CLAMP)
    xf, yf = math.floor(cx), math.floor(cy)
    return True, int(xf), int(yf), cx - xf, cy - yf


def patch_range(s, r: int, h: int, w: int):
    """(X0, Y0, u_lo, u_hi, v_lo, v_hi), empty for non-finite coords."""
    side = 2 * r + 2
    x0, y0 = s[1] - r, s[2] - r
    if not s[0]:
        return x0, y0, 0, 0, 0, 0
    clamp = lambda v: min(max(v, 0), side)  # noqa: E731
    u_lo, u_hi, v_lo, v_hi = clamp(-x0), clamp(w - x0), clamp(-y0), clamp(h - y0)
    return x0, y0, u_lo, max(u_hi, u_lo), v_lo, max(v_hi, v_lo)


def _weights(fx, fy):
    gx, gy = 1 - fx, 1 - fy
    return gx * gy, fx * gy, gx * fy, fx * fy


def window_forward(finite, fx, fy, P, r):
    """P [Q, S*S] (layout v*S+u) -> [Q, (2r+1)^2] (a*(2r+1)+c); NaN for non-finite."""
    S, n = 2 * r + 2, 2 * r + 1
    Pt = P.view(-1, S, S).transpose(1, 2)  # [q, u, v]
    w00, w10, w01, w11 = (w.view(-1, 1, 1) for w in _weights(fx, fy))
    out = w00 * Pt[:, :-1, :-1] + w10 * Pt[:, 1:, :-1] + w01 * Pt[:, :-1, 1:] + w11 * Pt[:, 1:, 1:]
    return torch.where(finite.view(-1, 1), out.reshape(-1, n * n), float("nan"))


def window_coef(finite, fx, fy, g, r):
    """g [Q, (2r+1)^2] -> coef [Q, S*S] (layout v*S+u); 0 for non-finite."""
    n = 2 * r + 1
    Gp = torch.nn.functional.pad(g.view(-1, n, n), (1, 1, 1, 1))  # [q, a+1, c+1]
    w00, w10, w01, w11 = (w.view(-1, 1, 1) for w in _weights(fx, fy))
    cuv = w00 * Gp[:, 1:, 1:] + w10 * Gp[:, :-1, 1:] + w01 * Gp[:, 1:, :-1] + w11 * Gp[:, :-1, :-1]  # [q, u, v]
    return torch.where(finite.view(-1, 1), cuv.transpose(1, 2).reshape(g.shape[0], -1), 0.0)


def window_grad_coords(finite, fx, fy, P, g, r):
    S, n = 2 * r + 2, 2 * r + 1
    Pt = P.view(-1, S, S).transpose(1, 2)
    g = g.view(-1, n, n)
    fx, fy = fx.view(-1, 1, 1), fy.view(-1, 1, 1)
    dx = (g * ((1 - fy) * (Pt[:, 1:, :-1] - Pt[:, :-1, :-1]) + fy * (Pt[:, 1:, 1:] - Pt[:, :-1, 1:]))).sum((1, 2))
    dy = (g * ((1 - fx) * (Pt[:, :-1, 1:] - Pt[:, :-1, :-1]) + fx * (Pt[:, 1:, 1:] - Pt[:, 1:, :-1]))).sum((1, 2))
    nan = torch.tensor(float("nan"), dtype=P.dtype)
    return torch.where(finite, dx, nan), torch.where(finite, dy, nan)


# ----------------------------------------------------------------------- the kernels' tiling
class Tile:
    """tile_setup(): one (batch item, tile, level); mutate="box" shrinks the box by one column
    (a deliberately wrong box, to show that the checks catch it)."""

    def __init__(self, coords, b, ty, tx, level, h, w, r, mutate=None):
        H, W = coords.shape[2:]
        self.r, self.S = r, 2 * r + 2
        self.ij, self.finite, self.fx, self.fy, self.ranges = [], [], [], [], []
        boxes = []
        for q in range(TILE_Q):
            i, j = ty * TILE_Y + q // TILE_X, tx * TILE_X + q % TILE_X
            if i >= H or j >= W:
                self.ij.append(-1)
                self.ranges.append(None)
                s = (False, 0, 0, 0.0, 0.0)
            else:
                self.ij.append(i * W + j)
                s = bilinear_setup(float(coords[b, 0, i, j]), float(coords[b, 1, i, j]), 2.0**-level)
                pr = patch_range(s, r, h, w)
                nonempty = pr[2] < pr[3] and pr[4] < pr[5]
                self.ranges.append(pr if nonempty else None)
                if nonempty:
                    boxes.append((pr[0] + pr[2], pr[0] + pr[3], pr[1] + pr[4], pr[1] + pr[5]))
            self.finite.append(s[0])
            self.fx.append(s[3])
            self.fy.append(s[4])
        self.active = torch.tensor([v >= 0 for v in self.ij])
        self.finite = torch.tensor(self.finite)
        self.fx, self.fy = torch.tensor(self.fx, dtype=torch.float64), torch.tensor(self.fy, dtype=torch.float64)
        if boxes:
            self.bx0, self.bx1 = min(x[0] for x in boxes), max(x[1] for x in boxes)
            self.by0, self.by1 = min(x[2] for x in boxes), max(x[3] for x in boxes)
        else:  # INT_MAX / INT_MIN, as the kernel initialises its atomicMin/atomicMax
            self.bx0 = self.by0 = 2**31 - 1
            self.bx1 = self.by1 = -(2**31)
        if mutate == "box" and boxes:
            self.bx1 -= 1
        empty = self.bx1 <= self.bx0
        self.bw = 0 if empty else self.bx1 - self.bx0
        n = 0 if empty else self.bw * (self.by1 - self.by0)
        self.tiled = r <= TILED_MAX_R and n <= MAX_BOX
        self.n = n if self.tiled else 0
        # q_x, q_y (box-relative patch origin) and q_range, 0 for queries without in-bounds corners
        self.q_x = torch.tensor([pr[0] - self.bx0 if pr else 0 for pr in self.ranges])
        self.q_y = torch.tensor([pr[1] - self.by0 if pr else 0 for pr in self.ranges])
        rng = [pr[2:] if pr else (0, 0, 0, 0) for pr in self.ranges]
        self.u_lo, self.u_hi, self.v_lo, self.v_hi = (torch.tensor(c) for c in zip(*rng))
        e = torch.arange(self.n)
        self.box_y, self.box_x = self.by0 + e // max(self.bw, 1), self.bx0 + e % max(self.bw, 1)

    def corner_rows(self):
        """[64, 4, CPT] box row of thread (q, sub)'s slot i (corner k = sub + 4 i), MAX_BOX = zero row."""
        S, ncpt = self.S, (self.r + 1) ** 2
        i = torch.arange(CPT).view(1, 1, -1)
        k = torch.arange(LANES).view(1, -1, 1) + LANES * i
        u, v = k % S, k // S
        col = lambda t: t.view(-1, 1, 1)  # noqa: E731
        inside = (i < ncpt) & (u >= col(self.u_lo)) & (u < col(self.u_hi)) & (v >= col(self.v_lo)) & (v < col(self.v_hi))
        return torch.where(inside, (col(self.q_y) + v) * self.bw + col(self.q_x) + u, MAX_BOX), k

    def stage(self, f1_rows, f2_map, d0, chunk):
        """stage_chunk(): [64, chunk] fmap1 rows and [MAX_BOX + 1, chunk] box rows (last = zero row)."""
        D = f1_rows.shape[1]
        d1 = min(d0 + chunk, D)
        sF1 = torch.zeros(TILE_Q, chunk, dtype=torch.float64)
        act = self.active.nonzero().flatten()
        sF1[act, : d1 - d0] = f1_rows[torch.tensor(self.ij)[act], d0:d1]
        sF2 = torch.zeros(MAX_BOX + 1, chunk, dtype=torch.float64)
        sF2[: self.n, : d1 - d0] = f2_map[self.box_y, self.box_x, d0:d1]
        return sF1, sF2

    def tiled_patches(self, f1_rows, f2_map, chunk):
        """tiled_dots() + the patch store into region[q * ps + k] -> P [64, S*S]."""
        rows, k = self.corner_rows()
        acc = torch.zeros(TILE_Q, LANES, CPT, dtype=torch.float64)
        if self.n:
            for d0 in range(0, f1_rows.shape[1], chunk):
                sF1, sF2 = self.stage(f1_rows, f2_map, d0, chunk)
                acc += (sF2[rows] * sF1.view(TILE_Q, 1, 1, chunk)).sum(-1)
        ps, ncpt = self.S**2 + 1, (self.r + 1) ** 2
        region = torch.full((TILE_Q * ps,), float("nan"), dtype=torch.float64)  # unwritten slots show
        q = torch.arange(TILE_Q).view(-1, 1, 1).expand_as(acc)
        used = (torch.arange(CPT) < ncpt).view(1, 1, -1).expand_as(acc)
        region[(q * ps + k.expand_as(acc))[used]] = acc[used]
        return region.view(TILE_Q, ps)[:, : self.S**2]

    def cover(self):
        """[n, 64] bool: box element e is an in-bounds corner of query q (the 64-bit masks)."""
        ex, ey = (torch.arange(self.n) % max(self.bw, 1)).view(-1, 1), (torch.arange(self.n) // max(self.bw, 1)).view(-1, 1)
        u, v = ex - self.q_x.view(1, -1), ey - self.q_y.view(1, -1)
        return (u >= self.u_lo) & (u < self.u_hi) & (v >= self.v_lo) & (v < self.v_hi)


def fallback_patch(tile, q, f1_rows, f2_map):
    """warp_patch(): the query's in-bounds corners, whole-D dot products."""
    S = tile.S
    P = torch.zeros(S * S, dtype=torch.float64)
    pr = tile.ranges[q]
    if pr is not None:
        for v in range(pr[4], pr[5]):
            for u in range(pr[2], pr[3]):
                P[v * S + u] = f1_rows[tile.ij[q]] @ f2_map[pr[1] + v, pr[0] + u]
    return P


def _tiles(H, W):
    return [(ty, tx) for ty in range(-(-H // TILE_Y)) for tx in range(-(-W // TILE_X))]


def emulate_forward(fmap1, levels, coords, r, chunk, mutate=None, stats=None):
    """onthefly_forward_kernel over its grid (blocks: batch x tiles x levels)."""
    B, H, W, D = fmap1.shape
    L, Kw = len(levels), (2 * r + 1) ** 2
    out = torch.full((B, L * Kw, H * W), float("nan"), dtype=torch.float64)  # poison: unwritten shows
    for b in range(B):
        f1_rows = fmap1[b].reshape(H * W, D)
        for ty, tx in _tiles(H, W):
            for level, f2 in enumerate(levels):
                tile = Tile(coords, b, ty, tx, level, f2.shape[1], f2.shape[2], r, mutate)
                if stats is not None:
                    stats["tiled" if tile.tiled else "fallback"] += 1
                if tile.tiled:
                    P = tile.tiled_patches(f1_rows, f2[b], chunk)
                else:
                    P = torch.stack([fallback_patch(tile, q, f1_rows, f2[b]) for q in range(TILE_Q)])
                vals = window_forward(tile.finite, tile.fx, tile.fy, P, r)
                act = tile.active.nonzero().flatten()
                out[b, level * Kw : (level + 1) * Kw, torch.tensor(tile.ij)[act]] = vals[act].T
    return out.view(B, L * Kw, H, W)


def emulate_backward(grad_out, fmap1, levels, coords, r, chunk, mutate=None):
    """onthefly_backward_kernel: one block per (batch item, tile), levels in turn."""
    B, H, W, D = fmap1.shape
    Kw = (2 * r + 1) ** 2
    g1 = torch.zeros(B, H * W, D, dtype=torch.float64)
    g2 = [torch.zeros_like(f) for f in levels]
    gcoords = torch.full((B, 2, H * W), float("nan"), dtype=torch.float64)
    gout = grad_out.reshape(B, -1, H * W)
    for b in range(B):
        f1_rows = fmap1[b].reshape(H * W, D)
        for ty, tx in _tiles(H, W):
            gc = torch.zeros(2, TILE_Q, dtype=torch.float64)
            for level, f2 in enumerate(levels):
                tile = Tile(coords, b, ty, tx, level, f2.shape[1], f2.shape[2], r, mutate)
                act = tile.active.nonzero().flatten()
                ij = torch.tensor(tile.ij).clamp(min=0)
                g = gout[b, level * Kw : (level + 1) * Kw, ij].T  # [64, K] (rows of inactive q unused)
                scale = 2.0**-level
                S = tile.S
                if tile.tiled:
                    P = tile.tiled_patches(f1_rows, f2[b], chunk)
                    coef = torch.where(tile.active.view(-1, 1), window_coef(tile.finite, tile.fx, tile.fy, g, r), 0.0)
                    dx, dy = window_grad_coords(tile.finite, tile.fx, tile.fy, P, g, r)
                    gc[0, act] += scale * dx[act]
                    gc[1, act] += scale * dy[act]
                    if tile.n == 0:
                        continue
                    rows, k = tile.corner_rows()
                    ncpt = (r + 1) ** 2
                    cf = torch.where(torch.arange(CPT).view(1, 1, -1) < ncpt, coef.gather(1, k.clamp(max=S * S - 1).view(1, -1).expand(TILE_Q, -1)).view(TILE_Q, LANES, CPT), 0.0)
                    cover = tile.cover()
                    ek = (torch.arange(tile.n) // tile.bw) * S + torch.arange(tile.n) % tile.bw
                    kk = (ek.view(-1, 1) - (tile.q_y * S + tile.q_x).view(1, -1)).clamp(0, S * S - 1)
                    A = torch.where(cover, coef.T.gather(0, kk), 0.0)  # [n, 64]: coef[q][k(q, e)]
                    live = cover.any(1)  # cover[e] != 0: only those get an atomicAdd
                    for d0 in range(0, D, chunk):
                        sF1, sF2 = tile.stage(f1_rows, f2[b], d0, chunk)
                        d1 = min(d0 + chunk, D)
                        part = (cf.unsqueeze(-1) * sF2[rows]).sum((1, 2))  # [64, chunk]: 4 lanes + shuffles
                        g1[b, ij[act], d0:d1] += part[act, : d1 - d0]
                        gsum = A @ sF1  # [n, chunk]
                        e = live.nonzero().flatten()
                        g2[level][b, tile.box_y[e], tile.box_x[e], d0:d1] += gsum[e, : d1 - d0]
                    continue
                for q in act.tolist():  # fallback: warp per query
                    P = fallback_patch(tile, q, f1_rows, f2[b]).view(1, -1)
                    qs = slice(q, q + 1)
                    fin, fx, fy = tile.finite[qs], tile.fx[qs], tile.fy[qs]
                    dx, dy = window_grad_coords(fin, fx, fy, P, g[qs], r)
                    gc[0, q] += scale * dx[0]
                    gc[1, q] += scale * dy[0]
                    coef = window_coef(fin, fx, fy, g[qs], r)[0]
                    pr = tile.ranges[q]
                    if pr is None:
                        continue
                    for v in range(pr[4], pr[5]):
                        for u in range(pr[2], pr[3]):
                            c = coef[v * S + u]
                            g1[b, tile.ij[q]] += c * f2[b, pr[1] + v, pr[0] + u]
                            g2[level][b, pr[1] + v, pr[0] + u] += c * f1_rows[tile.ij[q]]
            act = [q for q in range(TILE_Q) if tile.ij[q] >= 0]
            gcoords[b, :, [tile.ij[q] for q in act]] = gc[:, act]
    return g1.view(B, H, W, D), g2, gcoords.view(B, 2, H, W)


# ----------------------------------------------------------------------- cases
def smooth_coords(B, H, W, flow=(3.3, -2.7), zoom=0.1):
    """Coherent flow: identity + a translation + a gentle zoom (boxes stay small)."""
    y, x = torch.meshgrid(torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64), indexing="ij")
    base = torch.stack([x * (1 + zoom) + flow[0], y * (1 - zoom) + flow[1]])
    return (base + 0.37).unsqueeze(0).repeat(B, 1, 1, 1) + 0.2 * torch.rand(B, 2, H, W, dtype=torch.float64)


def incoherent_coords(B, H, W, spread=60.0):
    """Large random flow: each query's window anywhere on (and off) the map: boxes overflow."""
    return (torch.rand(B, 2, H, W, dtype=torch.float64) * 2 - 0.5) * spread + 0.123


def run_case(B, D, H, W, levels, r, coords, chunk, mutate=None, stats=None):
    fmap1 = torch.randn(B, D, H, W, dtype=torch.float64)
    fmap2 = torch.randn(B, D, H, W, dtype=torch.float64)
    f1, f2, crd = (t.clone().requires_grad_(True) for t in (fmap1, fmap2, coords))
    want = reference.corr_lookup_onthefly(f1, f2, crd, r, levels)
    cot = torch.randn_like(want)
    want_grads = torch.autograd.grad(want, [f1, f2, crd], cot)

    p1, p2 = fmap1.clone().requires_grad_(True), fmap2.clone().requires_grad_(True)
    f1_cl, lv = prepare_onthefly(p1, p2, levels)  # the kernels' inputs (as the op passes them)
    got = emulate_forward(f1_cl.detach(), [x.detach() for x in lv], coords, r, chunk, mutate, stats)
    g1, g2, gcrd = emulate_backward(cot, f1_cl.detach(), [x.detach() for x in lv], coords, r, chunk, mutate)
    gf1, gf2 = torch.autograd.grad([f1_cl, *lv], [p1, p2], [g1, *g2])
    assert_close(got, want)
    for a, w in zip((gf1, gf2, gcrd), want_grads):
        assert_close(a, w)


# (B, D, H, W, levels, radius): odd sizes, HW not a multiple of the tile, D not a multiple of a chunk,
# maps of width/height 1 (tile straddling the map edge), radius 0..5 (5: beyond the tiled path).
CASES = [
    (1, 13, 9, 11, 2, 1),
    (2, 7, 10, 17, 3, 2),
    (1, 20, 8, 8, 2, 3),
    (2, 9, 13, 9, 3, 4),
    (1, 3, 3, 19, 2, 2),  # level 1 is 1 x 9
    (2, 5, 11, 3, 2, 4),  # level 1 is 5 x 1
    (1, 6, 1, 10, 1, 2),  # height-1 map
    (1, 17, 6, 7, 1, 0),
    (1, 4, 7, 6, 2, 5),  # radius 5: fallback everywhere
]


@pytest.mark.parametrize("chunk", CHUNKS, ids=[f"chunk{c}" for c in CHUNKS])
@pytest.mark.parametrize("case", CASES, ids=[f"B{b}D{d}H{h}W{w}L{l}r{r}" for b, d, h, w, l, r in CASES])
def test_coherent_flow(case, chunk):
    torch.manual_seed(0)
    B, D, H, W, L, r = case
    stats = {"tiled": 0, "fallback": 0}
    run_case(B, D, H, W, L, r, smooth_coords(B, H, W), chunk, stats=stats)
    assert stats["tiled"] > 0 or r > TILED_MAX_R


def test_incoherent_flow_takes_the_fallback():
    torch.manual_seed(1)
    B, D, H, W, L, r = 2, 5, 23, 25, 2, 4  # level 0: 575 > kMaxBox pixels, so a box can overflow
    stats = {"tiled": 0, "fallback": 0}
    run_case(B, D, H, W, L, r, incoherent_coords(B, H, W, spread=40.0), CHUNKS[1], stats=stats)
    assert stats["fallback"] > 0


def test_tiles_mixing_both_paths_far_and_nonfinite_coords():
    """Half the image coherent, half incoherent; coords far outside, NaN and inf in some tiles."""
    torch.manual_seed(2)
    B, D, H, W, L, r = 2, 10, 17, 35, 2, 3
    coords = smooth_coords(B, H, W, flow=(-1.5, 2.25))
    coords[:, :, :, 17:] = incoherent_coords(B, H, W - 17, spread=60.0)
    coords[0, :, 0, 0] = torch.tensor([1.0e4, -2.5e4], dtype=torch.float64)
    coords[1, 0, 3, 4] = -3.3e3
    coords[0, 1, 2, 5] = float("nan")
    coords[1, 0, 9, 15] = float("inf")
    coords[:, :, 8:, :8] = -40.5  # a tile whose windows are all off the map: empty box
    stats = {"tiled": 0, "fallback": 0}
    fmap1 = torch.randn(B, D, H, W, dtype=torch.float64)
    lv = prepare_onthefly(fmap1, torch.randn(B, D, H, W, dtype=torch.float64), L)
    out = emulate_forward(lv[0], lv[1], coords, r, CHUNKS[0], stats=stats)
    assert stats["tiled"] > 0 and stats["fallback"] > 0
    assert out[0, :, 2, 5].isnan().all() and out[1, :, 9, 15].isnan().all()
    assert out.isnan().sum() == 2 * out.shape[1]
    finite = coords.clone()
    finite[0, 1, 2, 5] = 3.5  # the reference has no NaN semantics of its own: compare on finite coords
    finite[1, 0, 9, 15] = 7.25
    run_case(B, D, H, W, L, r, finite, CHUNKS[0])
    g1, g2, gc = emulate_backward(torch.randn_like(out), lv[0], lv[1], coords, r, CHUNKS[0])
    assert not g1.isnan().any() and not any(g.isnan().any() for g in g2)
    assert gc.isnan().sum() == 4 and gc[0, :, 2, 5].isnan().all() and gc[1, :, 9, 15].isnan().all()


def test_box_sizes_of_the_benchmark_shape_fit():
    """RAFT at 128^2 features, r = 4, smooth flow: every tile of every level takes the tiled path."""
    coords = smooth_coords(1, 32, 32, flow=(5.0, -3.0), zoom=0.05)
    for level in range(4):
        size = 32 >> level
        for ty, tx in _tiles(32, 32):
            assert Tile(coords, 0, ty, tx, level, size, size, 4).tiled


def test_wrong_box_is_caught():
    """A box one column too narrow must fail the comparison (the checks above can fail)."""
    torch.manual_seed(3)
    with pytest.raises(AssertionError):
        run_case(1, 6, 9, 10, 2, 2, smooth_coords(1, 9, 10), CHUNKS[0], mutate="box")
