// Tiled CUDA kernels of corr_lookup_onthefly (forward and backward) and their launchers.
//
// The per-query window math is corr_math.h's (bilinear_setup, patch_range,
// window_forward, window_coef, window_grad_coords); what is CUDA-only is how
// the corner dot products P[u][v] = <fmap1[b,i,j,:], fmap2_l[b,Y,X,:]> are
// shared between neighbouring queries:
//
// * A block (kThreads = 256 threads) owns a kTileX x kTileY = 8x8 tile of
//   query pixels of one batch item. The forward runs one block per (tile,
//   level); the backward one block per tile, looping over the levels (so the
//   block owns its queries' grad_fmap1 rows and grad_coords: no atomics there).
// * Per level the block computes the box: the integer bounding box of the union
//   of its queries' in-bounds patch corners (patch_range), clipped to the map.
//   Queries outside the image, with non-finite coords or with a patch wholly
//   off the map add nothing to it.
// * Tiled path (r <= kTiledMaxRadius and box <= kMaxBox elements): D is walked
//   in chunks of kChunk channels (64 bytes of opmath values). Each chunk
//   stages the tile's fmap1 rows [64 x kChunk] and the box's fmap2 rows
//   [box x kChunk] in shared memory (threads over channels: coalesced loads;
//   zero padding past D), plus a zero row that corners off the map point at.
//   Thread t works for query q = t / 4 (four lanes of a warp per query) on the
//   corners k = (t % 4) + 4 i, i < (r+1)^2 <= kCornersPerThread: S^2 = 4 (r+1)^2,
//   so the 4 lanes cover the patch exactly. Its dot products accumulate in
//   registers across chunks; then the patches go to shared memory and one
//   thread per query applies window_forward.
//   Backward: a first pass over D rebuilds the patches (as the forward);
//   window_coef and window_grad_coords run per query on them (two warps each);
//   a second pass over D then computes, per chunk,
//     grad_fmap1[q, d] += sum_k coef[q][k] * fmap2[corner k of q, d]  (4 lanes + shuffles),
//     grad_fmap2[e, d]  = sum_q coef[q][k(q, e)] * fmap1[q, d]         (one thread per box
//                         element e, a gather over the queries covering e: a 64-bit mask),
//   the latter staged in shared memory and added with one atomicAdd per box
//   element and channel (coalesced over the channels).
// * Fallback (larger radius, or a box past kMaxBox: large incoherent flow):
//   one warp per query, lanes over channels (coalesced reads), a warp
//   reduction per corner; the same helpers on a per-warp patch in shared
//   memory; grad_fmap2 by one atomicAdd per corner and channel.
//
// The constants below are parsed by tests/test_corr_cuda_tiling.py, which
// re-implements this file's tile, box, fallback, chunk and gather logic on the
// CPU and checks it against the reference: keep both in step.
//
// No ATen ops here (allocation and checks are in corr_cuda_ops.cpp).
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <vector>

#include "corr/corr_cuda.h"
#include "corr/corr_cuda_levels.h"
#include "corr/corr_dispatch.h"  // dispatch_coords (never corr_checks.h in nvcc code)
#include "corr/corr_math.h"

namespace pyflowops {
namespace corr {
namespace cuda {
namespace {

// ---- tiling constants (mirrored by tests/test_corr_cuda_tiling.py) ------------------------
constexpr int kTileX = 8;           // query columns per tile
constexpr int kTileY = 8;           // query rows per tile
constexpr int kThreads = 256;       // threads per block
constexpr int kTiledMaxRadius = 4;  // larger radii take the fallback
constexpr int kMaxBox = 512;        // box elements (fmap2 pixels) the shared memory holds
constexpr int kChunkBytes = 64;     // channels per chunk: 16 float / 8 double opmath values

constexpr int kTileQ = kTileX * kTileY;
constexpr int kLanesPerQuery = kThreads / kTileQ;                                   // 4
constexpr int kCornersPerThread = (kTiledMaxRadius + 1) * (kTiledMaxRadius + 1);    // 25
constexpr int kPatchStride = (2 * kTiledMaxRadius + 2) * (2 * kTiledMaxRadius + 2) + 1;  // odd
constexpr int kWarps = kThreads / 32;
// Two backward blocks per SM (ptxas then caps it at 128 registers, with ~190 bytes of
// spills; with 1 it takes 168-213 registers and no spills: compare on a GPU).
constexpr int kBackwardMinBlocks = 2;
static_assert(kTileQ == 64, "the coverage masks of the backward are 64-bit");
static_assert(kLanesPerQuery == 4, "S^2 = 4 (r+1)^2 corners: 4 lanes per query");
constexpr int kIdxWords = (kCornersPerThread + 1) / 2;  // corner row offsets, 16 bits each

template <typename acc_t>
struct Smem {
  static constexpr int kChunk = kChunkBytes / static_cast<int>(sizeof(acc_t));
  // Row stride of the staged rows: 80 bytes, so 16-byte loads of 8 consecutive rows hit
  // distinct bank groups, and every row starts 16-byte aligned.
  static constexpr int kRow = kChunk + 16 / static_cast<int>(sizeof(acc_t));
  static constexpr int kStage = (kTileQ + kMaxBox + 1) * kRow;  // fmap1 rows | box rows | zero row
  static constexpr int kPatches = kTileQ * kPatchStride;        // tiled patches (alias the stage)
  static constexpr int kWarpPatches = 2 * kWarps * kMaxPatch;   // fallback P + coef per warp
  static constexpr int kRegionA = std::max(kStage, std::max(kPatches, kWarpPatches));
  static constexpr int kRegionC = kTileQ * kPatchStride;        // backward: coef of the patches
  static constexpr size_t kForwardBytes = sizeof(acc_t) * kRegionA;
  static constexpr size_t kBackwardBytes = sizeof(acc_t) * (kRegionA + kRegionC);
  static_assert((kTileQ + kMaxBox + 1) * kRow < 65536, "corner offsets are packed in 16 bits");
};

// What every thread of a block knows about its tile at one level (static shared memory).
struct TileInfo {
  int64_t q_row[kTileQ];     // element offset of fmap1[b, i, j, 0]; -1 outside the image
  int q_x[kTileQ];           // patch origin X0 - bx0 (box-relative; 0 if no corner in bounds)
  int q_y[kTileQ];           // Y0 - by0
  int q_range[kTileQ];       // in-bounds corners u_lo | u_hi << 8 | v_lo << 16 | v_hi << 24
  int64_t box_row[kMaxBox];  // element offset of fmap2_l[b, by0 + e / bw, bx0 + e % bw, 0]
  int bx0, by0, bx1, by1;    // the box [bx0, bx1) x [by0, by1); bx1 <= bx0 when empty
};

struct Box {
  int bw, n;   // width, elements (0 when empty)
  bool tiled;  // the tiled path handles this (tile, level)
};

__device__ __forceinline__ int range_part(int packed, int which) { return (packed >> (8 * which)) & 255; }

// Query q's level-l window. Returns false outside the image (then s is unset).
template <typename acc_t, typename coord_t>
__device__ __forceinline__ bool tile_query(const coord_t* coords, int64_t b, int64_t H, int64_t W,
                                           int64_t ty, int64_t tx, int q, acc_t scale,
                                           Bilinear<acc_t>* s, int64_t* ij) {
  const int64_t i = ty * kTileY + q / kTileX, j = tx * kTileX + q % kTileX;
  if (i >= H || j >= W) return false;
  const int64_t HW = H * W;
  *ij = i * W + j;
  const acc_t x = static_cast<acc_t>(coords[(2 * b) * HW + *ij]);
  const acc_t y = static_cast<acc_t>(coords[(2 * b + 1) * HW + *ij]);
  *s = bilinear_setup(x, y, scale);
  return true;
}

// Fills info for one level and returns the box. Threads t < kTileQ compute query t
// (s, ij, active come back to them). Ends with __syncthreads(); the caller must
// sync before calling it again (other threads may still read the previous level).
template <typename acc_t, typename coord_t>
__device__ Box tile_setup(TileInfo& info, const coord_t* coords, int64_t b, int64_t H, int64_t W,
                          int64_t D, int64_t ty, int64_t tx, int l, int64_t h, int64_t w, int r,
                          Bilinear<acc_t>* s, int64_t* ij, bool* active) {
  const int t = threadIdx.x;
  if (t == 0) {
    info.bx0 = INT_MAX;
    info.by0 = INT_MAX;
    info.bx1 = INT_MIN;
    info.by1 = INT_MIN;
  }
  __syncthreads();
  PatchRange pr{};
  bool any = false;
  *active = false;
  if (t < kTileQ) {
    *active = tile_query(coords, b, H, W, ty, tx, t, level_scale<acc_t>(l), s, ij);
    if (*active) {
      pr = patch_range(*s, r, h, w);
      any = pr.u_lo < pr.u_hi && pr.v_lo < pr.v_hi;
    }
    if (any) {  // corners X0 + [u_lo, u_hi) x Y0 + [v_lo, v_hi) lie on the map: ints
      atomicMin(&info.bx0, static_cast<int>(pr.X0 + pr.u_lo));
      atomicMax(&info.bx1, static_cast<int>(pr.X0 + pr.u_hi));
      atomicMin(&info.by0, static_cast<int>(pr.Y0 + pr.v_lo));
      atomicMax(&info.by1, static_cast<int>(pr.Y0 + pr.v_hi));
    }
  }
  __syncthreads();
  Box box;
  const bool empty = info.bx1 <= info.bx0;
  box.bw = empty ? 0 : info.bx1 - info.bx0;
  const int64_t n = empty ? 0 : static_cast<int64_t>(box.bw) * (info.by1 - info.by0);
  box.tiled = r <= kTiledMaxRadius && n <= kMaxBox;
  box.n = box.tiled ? static_cast<int>(n) : 0;
  if (t < kTileQ) {
    info.q_row[t] = *active ? (b * H * W + *ij) * D : -1;
    info.q_x[t] = any ? static_cast<int>(pr.X0 - info.bx0) : 0;
    info.q_y[t] = any ? static_cast<int>(pr.Y0 - info.by0) : 0;
    info.q_range[t] = any ? pr.u_lo | pr.u_hi << 8 | pr.v_lo << 16 | pr.v_hi << 24 : 0;
  }
  for (int e = t; e < box.n; e += kThreads) {
    const int64_t Y = info.by0 + e / box.bw, X = info.bx0 + e % box.bw;
    info.box_row[e] = ((b * h + Y) * w + X) * D;
  }
  __syncthreads();
  return box;
}

// Shared-memory offsets (row * kRow, from the box rows) of thread (q, sub)'s corners
// k = sub + 4 i: the box row of an in-bounds corner, else the zero row kMaxBox (also
// for unused slots). Two 16-bit offsets per register (corner_row unpacks them).
template <typename acc_t>
__device__ __forceinline__ void corner_rows(const TileInfo& info, const Box& box, int q, int sub,
                                            int r, unsigned (&idx)[kIdxWords]) {
  const int S = 2 * r + 2, ncpt = (r + 1) * (r + 1);
  const int rng = info.q_range[q];
  const int u_lo = range_part(rng, 0), u_hi = range_part(rng, 1);
  const int v_lo = range_part(rng, 2), v_hi = range_part(rng, 3);
#pragma unroll
  for (int i = 0; i < kCornersPerThread; ++i) {
    const int k = sub + kLanesPerQuery * i, u = k % S, v = k / S;
    const bool in = i < ncpt && u >= u_lo && u < u_hi && v >= v_lo && v < v_hi;
    const unsigned off = (in ? (info.q_y[q] + v) * box.bw + info.q_x[q] + u : kMaxBox) * Smem<acc_t>::kRow;
    if (i % 2 == 0) idx[i / 2] = off;
    else idx[i / 2] |= off << 16;
  }
}

__device__ __forceinline__ int corner_row(const unsigned (&idx)[kIdxWords], int i) {
  return static_cast<int>((idx[i / 2] >> (16 * (i % 2))) & 0xffffu);
}

// Stages chunk [d0, d0 + kChunk) of the tile's fmap1 rows and the box's fmap2 rows
// (zero past D and outside the image). Caller syncs before (buffer free) and after.
template <typename scalar_t, typename acc_t>
__device__ __forceinline__ void stage_chunk(const TileInfo& info, const Box& box,
                                            const scalar_t* __restrict__ fmap1,
                                            const scalar_t* __restrict__ fmap2, int64_t D,
                                            int64_t d0, acc_t* sF1, acc_t* sF2) {
  constexpr int C = Smem<acc_t>::kChunk, R = Smem<acc_t>::kRow;
  for (int n = threadIdx.x; n < kTileQ * C; n += kThreads) {
    const int q = n / C, d = n % C;
    const int64_t row = info.q_row[q];
    sF1[q * R + d] = row >= 0 && d0 + d < D ? static_cast<acc_t>(fmap1[row + d0 + d]) : acc_t(0);
  }
#pragma unroll 4
  for (int n = threadIdx.x; n < box.n * C; n += kThreads) {
    const int e = n / C, d = n % C;
    sF2[e * R + d] = d0 + d < D ? static_cast<acc_t>(fmap2[info.box_row[e] + d0 + d]) : acc_t(0);
  }
}

// dst = one chunk of a staged row (16-byte shared loads; rows are 16-byte aligned).
__device__ __forceinline__ void load_chunk(const float* src, float (&dst)[16]) {
#pragma unroll
  for (int m = 0; m < 4; ++m) {
    const float4 v = reinterpret_cast<const float4*>(src)[m];
    dst[4 * m] = v.x, dst[4 * m + 1] = v.y, dst[4 * m + 2] = v.z, dst[4 * m + 3] = v.w;
  }
}
__device__ __forceinline__ void load_chunk(const double* src, double (&dst)[8]) {
#pragma unroll
  for (int m = 0; m < 4; ++m) {
    const double2 v = reinterpret_cast<const double2*>(src)[m];
    dst[2 * m] = v.x, dst[2 * m + 1] = v.y;
  }
}

// Tiled pass over D: acc[i] = <fmap1 row of q, fmap2 row of corner sub + 4 i>.
template <typename scalar_t, typename acc_t>
__device__ __forceinline__ void tiled_dots(const TileInfo& info, const Box& box,
                                           const scalar_t* fmap1, const scalar_t* fmap2, int64_t D,
                                           int q, int r, const unsigned (&idx)[kIdxWords],
                                           acc_t* region, acc_t (&acc)[kCornersPerThread]) {
  constexpr int C = Smem<acc_t>::kChunk, R = Smem<acc_t>::kRow;
  acc_t* sF1 = region;
  acc_t* sF2 = region + kTileQ * R;
  const int ncpt = (r + 1) * (r + 1);
#pragma unroll
  for (int i = 0; i < kCornersPerThread; ++i) acc[i] = acc_t(0);
  if (box.n == 0) return;  // no corner of the tile on the map: all zero
  if (threadIdx.x < R) sF2[kMaxBox * R + threadIdx.x] = acc_t(0);  // the zero row
  for (int64_t d0 = 0; d0 < D; d0 += C) {
    __syncthreads();  // the previous chunk is consumed
    stage_chunk(info, box, fmap1, fmap2, D, d0, sF1, sF2);
    __syncthreads();
    acc_t f1[C];
    load_chunk(sF1 + q * R, f1);
#pragma unroll
    for (int i = 0; i < kCornersPerThread; ++i) {
      if (i < ncpt) {  // uniform over the block
        acc_t f2[C];
        load_chunk(sF2 + corner_row(idx, i), f2);
        acc_t sum = acc[i];
#pragma unroll
        for (int d = 0; d < C; ++d) sum += f1[d] * f2[d];
        acc[i] = sum;
      }
    }
  }
}

template <typename acc_t>
__device__ __forceinline__ acc_t warp_sum(acc_t v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Fallback patch of one query (the calling warp): P = fill_patch_dot's values, lanes over D.
template <typename scalar_t, typename acc_t>
__device__ void warp_patch(const scalar_t* f1, const scalar_t* fmap2, int64_t h, int64_t w,
                           int64_t D, const Bilinear<acc_t>& s, int r, acc_t* P) {
  const int lane = threadIdx.x % 32, S = 2 * r + 2;
  for (int k = lane; k < S * S; k += 32) P[k] = acc_t(0);
  const PatchRange p = patch_range(s, r, h, w);
  for (int v = p.v_lo; v < p.v_hi; ++v) {
    for (int u = p.u_lo; u < p.u_hi; ++u) {
      const scalar_t* f2 = fmap2 + ((p.Y0 + v) * w + (p.X0 + u)) * D;
      acc_t sum = acc_t(0);
      for (int64_t d = lane; d < D; d += 32) sum += static_cast<acc_t>(f1[d]) * static_cast<acc_t>(f2[d]);
      sum = warp_sum(sum);
      if (lane == 0) P[v * S + u] = sum;
    }
  }
  __syncwarp();
}

// ---- forward ---------------------------------------------------------------------------

template <typename scalar_t, typename coord_t>
__global__ void __launch_bounds__(kThreads)
    onthefly_forward_kernel(const scalar_t* __restrict__ fmap1, LevelPtrs<const scalar_t> f2,
                            const coord_t* __restrict__ coords, scalar_t* __restrict__ out,
                            int64_t H, int64_t W, int64_t D, int r, int64_t tiles_x,
                            int64_t tiles_per_image) {
  using acc_t = at::opmath_type<scalar_t>;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  acc_t* region = reinterpret_cast<acc_t*>(smem_raw);
  __shared__ TileInfo info;
  const int l = blockIdx.y, L = f2.num, t = threadIdx.x;
  const int64_t b = blockIdx.x / tiles_per_image, tile = blockIdx.x % tiles_per_image;
  const int64_t ty = tile / tiles_x, tx = tile % tiles_x;
  const int64_t HW = H * W, h = f2.h[l], w = f2.w[l], K = (2 * r + 1) * (2 * r + 1);
  const scalar_t* fmap2 = f2.data[l];
  Bilinear<acc_t> s{};
  int64_t ij = 0;
  bool active;
  const Box box = tile_setup(info, coords, b, H, W, D, ty, tx, l, h, w, r, &s, &ij, &active);
  scalar_t* out_l = out + (b * L + l) * K * HW;
  if (box.tiled) {
    const int q = t / kLanesPerQuery, sub = t % kLanesPerQuery, S = 2 * r + 2, ps = S * S + 1;
    unsigned idx[kIdxWords];
    corner_rows<acc_t>(info, box, q, sub, r, idx);
    acc_t acc[kCornersPerThread];
    tiled_dots(info, box, fmap1, fmap2, D, q, r, idx, region, acc);
    __syncthreads();  // the patches overwrite the staged rows
#pragma unroll
    for (int i = 0; i < kCornersPerThread; ++i) {
      if (i < (r + 1) * (r + 1)) region[q * ps + sub + kLanesPerQuery * i] = acc[i];
    }
    __syncthreads();
    if (active) window_forward(s, region + t * ps, r, out_l + ij, HW);
    return;
  }
  // Fallback: warp per query.
  const int warp = t / 32, lane = t % 32;
  acc_t* P = region + warp * kMaxPatch;
  const acc_t scale = level_scale<acc_t>(l);
  for (int q = warp; q < kTileQ; q += kWarps) {
    Bilinear<acc_t> sq;
    int64_t ijq;
    if (!tile_query(coords, b, H, W, ty, tx, q, scale, &sq, &ijq)) continue;  // warp-uniform
    warp_patch(fmap1 + (b * HW + ijq) * D, fmap2 + b * h * w * D, h, w, D, sq, r, P);
    if (lane == 0) window_forward(sq, P, r, out_l + ijq, HW);
    __syncwarp();
  }
}

// ---- backward --------------------------------------------------------------------------

template <typename scalar_t, typename coord_t>
__global__ void __launch_bounds__(kThreads, kBackwardMinBlocks) onthefly_backward_kernel(
    const scalar_t* __restrict__ fmap1, LevelPtrs<const scalar_t> f2,
    const coord_t* __restrict__ coords, const scalar_t* __restrict__ grad_out,
    at::opmath_type<scalar_t>* __restrict__ grad_fmap1, LevelPtrs<at::opmath_type<scalar_t>> g2,
    coord_t* __restrict__ grad_coords, int64_t H, int64_t W, int64_t D, int r, int64_t tiles_x,
    int64_t tiles_per_image) {
  using acc_t = at::opmath_type<scalar_t>;
  constexpr int C = Smem<acc_t>::kChunk, R = Smem<acc_t>::kRow;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  acc_t* region = reinterpret_cast<acc_t*>(smem_raw);
  acc_t* sC = region + Smem<acc_t>::kRegionA;  // coef patches, [kTileQ][ps]
  __shared__ TileInfo info;
  __shared__ unsigned long long cover[kMaxBox];  // bit q: box element e is a corner of query q
  __shared__ acc_t gcoord[2][kTileQ];            // grad_coords, summed over the levels
  const int L = f2.num, t = threadIdx.x;
  const int64_t b = blockIdx.x / tiles_per_image, tile = blockIdx.x % tiles_per_image;
  const int64_t ty = tile / tiles_x, tx = tile % tiles_x;
  const int64_t HW = H * W, K = (2 * r + 1) * (2 * r + 1);
  const int S = 2 * r + 2, ps = S * S + 1;
  if (t < kTileQ) gcoord[0][t] = gcoord[1][t] = acc_t(0);
  Bilinear<acc_t> s{};
  int64_t ij = 0;
  bool active = false;
  for (int l = 0; l < L; ++l) {
    __syncthreads();  // the previous level is done with info and the shared buffers
    const int64_t h = f2.h[l], w = f2.w[l];
    const scalar_t* fmap2 = f2.data[l];
    acc_t* gmap2 = g2.data[l];
    const acc_t scale = level_scale<acc_t>(l);
    const scalar_t* g_l = grad_out + (b * L + l) * K * HW;
    const Box box = tile_setup(info, coords, b, H, W, D, ty, tx, l, h, w, r, &s, &ij, &active);
    if (box.tiled) {
      const int q = t / kLanesPerQuery, sub = t % kLanesPerQuery, ncpt = (r + 1) * (r + 1);
      for (int e = t; e < box.n; e += kThreads) {  // which queries have box element e as a corner
        const int ex = e % box.bw, ey = e / box.bw;
        unsigned long long m = 0;
        for (int qq = 0; qq < kTileQ; ++qq) {
          const int rng = info.q_range[qq], u = ex - info.q_x[qq], v = ey - info.q_y[qq];
          if (u >= range_part(rng, 0) && u < range_part(rng, 1) && v >= range_part(rng, 2) &&
              v < range_part(rng, 3))
            m |= 1ull << qq;
        }
        cover[e] = m;
      }
      unsigned idx[kIdxWords];
      corner_rows<acc_t>(info, box, q, sub, r, idx);
      acc_t acc[kCornersPerThread];
      tiled_dots(info, box, fmap1, fmap2, D, q, r, idx, region, acc);  // pass 1: the patches
      __syncthreads();
#pragma unroll
      for (int i = 0; i < kCornersPerThread; ++i) {
        if (i < ncpt) region[q * ps + sub + kLanesPerQuery * i] = acc[i];
      }
      __syncthreads();
      if (t < kTileQ) {  // warps 0-1: corner coefficients
        if (active) {
          window_coef(s, r, g_l + ij, HW, sC + t * ps);
        } else {
          for (int k = 0; k < S * S; ++k) sC[t * ps + k] = acc_t(0);
        }
      } else if (t < 2 * kTileQ) {  // warps 2-3: coords gradient of query t - 64
        Bilinear<acc_t> sq;
        int64_t ijq;
        if (tile_query(coords, b, H, W, ty, tx, t - kTileQ, scale, &sq, &ijq)) {
          acc_t dx, dy;
          window_grad_coords(sq, region + (t - kTileQ) * ps, r, g_l + ijq, HW, &dx, &dy);
          gcoord[0][t - kTileQ] += scale * dx;
          gcoord[1][t - kTileQ] += scale * dy;
        }
      }
      __syncthreads();
      if (box.n == 0) continue;  // no corner on the map: no fmap gradient from this level
      const acc_t* cf = sC + q * ps + sub;  // this thread's corner coefficients, stride 4
      acc_t* sF1 = region;
      acc_t* sF2 = region + kTileQ * R;
      if (t < R) sF2[kMaxBox * R + t] = acc_t(0);  // the zero row
      const int64_t q_row = info.q_row[q];
      for (int64_t d0 = 0; d0 < D; d0 += C) {  // pass 2: the fmap gradients
        __syncthreads();
        stage_chunk(info, box, fmap1, fmap2, D, d0, sF1, sF2);
        __syncthreads();
        // grad_fmap1 (owned by this block): the 4 lanes of q sum their corners, then shuffle.
        acc_t part[C];
#pragma unroll
        for (int d = 0; d < C; ++d) part[d] = acc_t(0);
#pragma unroll
        for (int i = 0; i < kCornersPerThread; ++i) {
          if (i < ncpt) {
            acc_t f2v[C];
            load_chunk(sF2 + corner_row(idx, i), f2v);
            const acc_t c = cf[kLanesPerQuery * i];
#pragma unroll
            for (int d = 0; d < C; ++d) part[d] += c * f2v[d];
          }
        }
#pragma unroll
        for (int d = 0; d < C; ++d) {
          part[d] += __shfl_xor_sync(0xffffffffu, part[d], 1);
          part[d] += __shfl_xor_sync(0xffffffffu, part[d], 2);
          if (d % kLanesPerQuery == sub && q_row >= 0 && d0 + d < D) grad_fmap1[q_row + d0 + d] += part[d];
        }
        __syncthreads();  // sF2 is read; it now takes grad_fmap2's box rows
        // grad_fmap2 of box element e: a gather over the queries that have e as a corner.
        for (int e = t; e < box.n; e += kThreads) {
          const int ek = (e / box.bw) * S + e % box.bw;
          acc_t gsum[C];
#pragma unroll
          for (int d = 0; d < C; ++d) gsum[d] = acc_t(0);
          for (unsigned long long m = cover[e]; m != 0; m &= m - 1) {
            const int qq = __ffsll(static_cast<long long>(m)) - 1;
            const acc_t c = sC[qq * ps + ek - (info.q_y[qq] * S + info.q_x[qq])];
            acc_t f1v[C];
            load_chunk(sF1 + qq * R, f1v);
#pragma unroll
            for (int d = 0; d < C; ++d) gsum[d] += c * f1v[d];
          }
#pragma unroll
          for (int d = 0; d < C; ++d) sF2[e * R + d] = gsum[d];
        }
        __syncthreads();
        for (int n = t; n < box.n * C; n += kThreads) {  // one atomic per element, coalesced over d
          const int e = n / C, d = n % C;
          if (d0 + d < D && cover[e] != 0) atomicAdd(gmap2 + info.box_row[e] + d0 + d, sF2[e * R + d]);
        }
      }
      continue;
    }
    // Fallback: warp per query.
    const int warp = t / 32, lane = t % 32;
    acc_t* P = region + warp * 2 * kMaxPatch;
    acc_t* coef = P + kMaxPatch;
    for (int q = warp; q < kTileQ; q += kWarps) {
      Bilinear<acc_t> sq;
      int64_t ijq;
      if (!tile_query(coords, b, H, W, ty, tx, q, scale, &sq, &ijq)) continue;  // warp-uniform
      const int64_t row = (b * HW + ijq) * D;
      warp_patch(fmap1 + row, fmap2 + b * h * w * D, h, w, D, sq, r, P);
      if (lane == 0) {
        acc_t dx, dy;
        window_grad_coords(sq, P, r, g_l + ijq, HW, &dx, &dy);
        gcoord[0][q] += scale * dx;
        gcoord[1][q] += scale * dy;
        window_coef(sq, r, g_l + ijq, HW, coef);
      }
      __syncwarp();
      const PatchRange p = patch_range(sq, r, h, w);
      for (int64_t d = lane; d < D; d += 32) {
        const acc_t f1d = static_cast<acc_t>(fmap1[row + d]);
        acc_t sum = acc_t(0);
        for (int v = p.v_lo; v < p.v_hi; ++v) {
          for (int u = p.u_lo; u < p.u_hi; ++u) {
            const int64_t corner = ((b * h + p.Y0 + v) * w + p.X0 + u) * D + d;
            const acc_t c = coef[v * S + u];
            sum += c * static_cast<acc_t>(fmap2[corner]);
            atomicAdd(gmap2 + corner, c * f1d);
          }
        }
        grad_fmap1[row + d] += sum;
      }
      __syncwarp();
    }
  }
  __syncthreads();
  if (active) {
    grad_coords[(2 * b) * HW + ij] = static_cast<coord_t>(gcoord[0][t]);
    grad_coords[(2 * b + 1) * HW + ij] = static_cast<coord_t>(gcoord[1][t]);
  }
}

// ---- launch helpers --------------------------------------------------------------------

struct Grid {
  int64_t tiles_x, tiles_per_image, blocks;
};

Grid tile_grid(int64_t B, int64_t H, int64_t W, const std::vector<at::Tensor>& levels) {
  for (const auto& level : levels) {  // box coordinates are ints
    TORCH_CHECK(level.size(1) < (int64_t(1) << 30) && level.size(2) < (int64_t(1) << 30),
                "corr_lookup_onthefly (CUDA): fmap2 levels must be smaller than 2^30 per side");
  }
  Grid g;
  g.tiles_x = (W + kTileX - 1) / kTileX;
  g.tiles_per_image = g.tiles_x * ((H + kTileY - 1) / kTileY);
  g.blocks = B * g.tiles_per_image;
  TORCH_CHECK(g.blocks <= INT_MAX, "corr_lookup_onthefly (CUDA): too many tiles (", g.blocks, ")");
  return g;
}

// Dynamic shared memory past 48 KB must be opted into per kernel.
template <typename Kernel>
void allow_smem(Kernel kernel, size_t bytes) {
  int device = c10::cuda::current_device(), optin = 0;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  TORCH_CHECK(bytes + sizeof(TileInfo) + 8 * kMaxBox + 1024 <= static_cast<size_t>(optin),
              "corr_lookup_onthefly (CUDA): needs ", bytes, " bytes of shared memory per block, the GPU "
              "offers ", optin);
  C10_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                      static_cast<int>(bytes)));
}

}  // namespace

void onthefly_forward(const at::Tensor& fmap1, const std::vector<at::Tensor>& fmap2_levels,
                      const at::Tensor& coords, int64_t radius, const at::Tensor& out) {
  const int64_t B = coords.size(0), H = coords.size(2), W = coords.size(3), D = fmap1.size(3);
  if (B * H * W == 0) return;
  const Grid g = tile_grid(B, H, W, fmap2_levels);
  const dim3 grid(static_cast<unsigned int>(g.blocks), static_cast<unsigned int>(fmap2_levels.size()));
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, fmap1.scalar_type(), "corr_lookup_onthefly_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    dispatch_coords<scalar_t>(coords, [&](auto tag) {
      using coord_t = decltype(tag);
      const auto kernel = onthefly_forward_kernel<scalar_t, coord_t>;
      const size_t bytes = Smem<acc_t>::kForwardBytes;
      allow_smem(kernel, bytes);
      kernel<<<grid, kThreads, bytes, stream>>>(
          fmap1.const_data_ptr<scalar_t>(), level_ptrs<const scalar_t>(fmap2_levels, 1, 2),
          coords.const_data_ptr<coord_t>(), out.mutable_data_ptr<scalar_t>(), H, W, D,
          static_cast<int>(radius), g.tiles_x, g.tiles_per_image);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
}

void onthefly_backward(const at::Tensor& grad_out, const at::Tensor& fmap1,
                       const std::vector<at::Tensor>& fmap2_levels, const at::Tensor& coords,
                       int64_t radius, const at::Tensor& grad_fmap1_acc,
                       const std::vector<at::Tensor>& grad_fmap2_acc,
                       const at::Tensor& grad_coords) {
  const int64_t B = coords.size(0), H = coords.size(2), W = coords.size(3), D = fmap1.size(3);
  if (B * H * W == 0) return;
  const Grid g = tile_grid(B, H, W, fmap2_levels);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, fmap1.scalar_type(), "corr_lookup_onthefly_backward_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    dispatch_coords<scalar_t>(coords, [&](auto tag) {
      using coord_t = decltype(tag);
      const auto kernel = onthefly_backward_kernel<scalar_t, coord_t>;
      const size_t bytes = Smem<acc_t>::kBackwardBytes;
      allow_smem(kernel, bytes);
      kernel<<<static_cast<unsigned int>(g.blocks), kThreads, bytes, stream>>>(
          fmap1.const_data_ptr<scalar_t>(), level_ptrs<const scalar_t>(fmap2_levels, 1, 2),
          coords.const_data_ptr<coord_t>(), grad_out.const_data_ptr<scalar_t>(),
          grad_fmap1_acc.mutable_data_ptr<acc_t>(), level_ptrs<acc_t>(grad_fmap2_acc, 1, 2),
          grad_coords.mutable_data_ptr<coord_t>(), H, W, D, static_cast<int>(radius), g.tiles_x,
          g.tiles_per_image);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
}

}  // namespace cuda
}  // namespace corr
}  // namespace pyflowops
