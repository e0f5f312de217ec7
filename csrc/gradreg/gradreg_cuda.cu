// CUDA kernels of the gradient-regularization family and their launchers.
//
// Every kernel but textureless_mask works on 2D pixel tiles of kTileH x kTileW =
// 16 x 32 with blocks of 32 x 8 threads: thread (tx, ty) owns tile rows ty and
// ty + 8 of column tx, so each warp reads and writes 32 consecutive pixels of a row.
// What a tile's stencils read is staged in shared memory with a halo, every cell
// holding its replicate-clamped source pixel (so staging never reads out of bounds),
// and the per-pixel math is the gradreg_math.h helpers the CPU kernels call:
// load_3x3 with a shared-memory getter, apply_stencil, penalty_*, pixel_weight,
// gather_3x3. Blocks loop over tiles (plane, tile row, tile col) with a block
// stride, so any B x H x W fits the 1D grid; all offsets are int64.
//
//   regularization forward: stage d = flow - target (2 planes) and the image in
//     chunks of kImageChunk channels, 1-pixel halo; per pixel e, w and L. L is
//     stored ("none") or summed into one partial per block (fixed-order shuffle
//     tree), and finalize_kernel sums the partials in a fixed order: reproducible,
//     no float atomics.
//   regularization backward (a gather, no atomics): stage d with a 2-pixel halo,
//     compute coef_{c,k}(q) = gl(q) w(q) rho'(G_{c,k}(q)) for the tile plus a
//     1-pixel halo into shared memory, then gather per output pixel.
//   spatial_gradient forward/backward: the same two steps on x / grad_out planes.
//   textureless_mask: one thread per pixel calling edge_strength on global memory
//     (not on the training path).
//
// No ATen ops here (allocation, checks and output dtypes are in gradreg_cuda_ops.cpp).
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "gradreg/gradreg_cuda.h"
#include "gradreg/gradreg_math.h"
#include "gradreg/gradreg_stencil.h"  // never gradreg_checks.h in nvcc code

namespace pyflowops {
namespace gradreg {
namespace cuda {
namespace {

constexpr int kTileW = 32;  // = blockDim.x: one warp spans a tile row
constexpr int kThreadsY = 8;
constexpr int kRowsPerThread = 2;  // amortizes the halo: 18 x 34 cells per 16 x 32 pixels
constexpr int kTileH = kThreadsY * kRowsPerThread;
constexpr int kThreads = kTileW * kThreadsY;
constexpr int kImageChunk = 4;  // image channels staged per barrier (RGB: one chunk)
constexpr int64_t kMaxBlocks = int64_t(1) << 20;  // grid cap; blocks then loop over tiles
constexpr int kFinalizeThreads = 1024;
constexpr int kPixelThreads = 256;  // textureless_mask

// Resident blocks per SM the regularization kernels are built for (__launch_bounds__):
// 4 caps them at 64 registers: 50% occupancy instead of 25% for the float forward,
// which takes 93-99 unconstrained (sm_90: no spills at 64; sm_80: 4-8 bytes). Double: 85.
template <typename scalar_t>
constexpr int kMinBlocks = std::is_same<at::opmath_type<scalar_t>, double>::value ? 3 : 4;

// Halo tile of radius R: cell (r, c) holds source pixel (y0 - R + r, x0 - R + c), clamped.
template <int R>
struct Halo {
  static constexpr int kW = kTileW + 2 * R;
  static constexpr int kCells = (kTileH + 2 * R) * kW;
};

// Tiles of `planes` H x W images, numbered t = (plane * tiles_y + tile_row) * tiles_x + tile_col.
struct TileGrid {
  int64_t tiles_x, per_plane, total;
};

TileGrid make_tiles(int64_t planes, int64_t H, int64_t W) {
  TileGrid g;
  g.tiles_x = (W + kTileW - 1) / kTileW;
  g.per_plane = g.tiles_x * ((H + kTileH - 1) / kTileH);
  g.total = planes * g.per_plane;
  return g;
}

unsigned int grid_blocks(const TileGrid& g) {
  return static_cast<unsigned int>(std::min(g.total, kMaxBlocks));
}

struct Tile {
  int64_t plane, y0, x0;  // y0, x0: the tile's top-left pixel
};

__device__ __forceinline__ Tile tile_at(const TileGrid& g, int64_t t) {
  Tile tile;
  tile.plane = t / g.per_plane;
  const int64_t rest = t - tile.plane * g.per_plane;
  const int64_t row = rest / g.tiles_x;
  tile.y0 = row * kTileH;
  tile.x0 = (rest - row * g.tiles_x) * kTileW;
  return tile;
}

__device__ __forceinline__ int thread_rank() { return threadIdx.y * kTileW + threadIdx.x; }

// fill(n, offset) for every cell n of the tile's radius-R halo; offset = row * W + col of
// its clamped source pixel (the same offset serves every plane of the input).
template <int R, typename Fill>
__device__ __forceinline__ void for_each_halo_cell(const Tile& t, int64_t H, int64_t W,
                                                   const Fill& fill) {
  for (int n = thread_rank(); n < Halo<R>::kCells; n += kThreads) {
    const int r = n / Halo<R>::kW, c = n - r * Halo<R>::kW;
    fill(n, clamp_index(t.y0 - R + r, H) * W + clamp_index(t.x0 - R + c, W));
  }
}

// body(s, i, j) for this thread's pixels (i, j) = (y0 + ty + s * kThreadsY, x0 + tx) in the image.
template <typename Body>
__device__ __forceinline__ void for_each_own_pixel(const Tile& t, int64_t H, int64_t W,
                                                   const Body& body) {
  const int64_t j = t.x0 + threadIdx.x;
#pragma unroll
  for (int s = 0; s < kRowsPerThread; ++s) {
    const int64_t i = t.y0 + threadIdx.y + s * kThreadsY;
    if (i < H && j < W) body(s, i, j);
  }
}

// load_3x3 getter over a radius-R halo tile: image pixel (row, col) -> its cell. load_3x3
// asks only for clamped neighbours of pixels whose stencil the tile covers.
template <int R, typename acc_t>
struct SharedGet {
  const acc_t* cells;
  int64_t oy, ox;  // the halo's top-left pixel: (y0 - R, x0 - R)
  PFO_INLINE acc_t operator()(int64_t row, int64_t col) const {
    return cells[static_cast<int>(row - oy) * Halo<R>::kW + static_cast<int>(col - ox)];
  }
};

template <int R, typename acc_t>
__device__ __forceinline__ SharedGet<R, acc_t> shared_get(const acc_t* cells, const Tile& t) {
  return {cells, t.y0 - R, t.x0 - R};
}

// mask[idx] as acc_t; a bool mask is read as bytes (nonzero = true).
template <typename scalar_t, typename acc_t>
__device__ __forceinline__ acc_t load_mask(const void* mask, bool is_bool, int64_t idx) {
  return is_bool ? (static_cast<const uint8_t*>(mask)[idx] != 0 ? acc_t(1) : acc_t(0))
                 : static_cast<acc_t>(static_cast<const scalar_t*>(mask)[idx]);
}

// s_d[c] = flow_c - target_c (or flow_c) over the tile's radius-R halo, for c = 0, 1;
// flow/target point at batch b's [2, H, W].
template <int R, typename scalar_t, typename acc_t>
__device__ __forceinline__ void stage_d(acc_t (*s_d)[Halo<R>::kCells], const Tile& t,
                                        const scalar_t* flow, const scalar_t* target,
                                        int64_t H, int64_t W) {
  const int64_t HW = H * W;
  for_each_halo_cell<R>(t, H, W, [&](int n, int64_t off) {
    for (int c = 0; c < 2; ++c) {
      acc_t v = static_cast<acc_t>(flow[c * HW + off]);
      if (target != nullptr) v -= static_cast<acc_t>(target[c * HW + off]);
      s_d[c][n] = v;
    }
  });
}

// The sum over q in p's clamped 3x3 neighbourhood and directions k of scale_k *
// tapw_k(q -> p) * coef[k][cell(q)], coef: K planes of a radius-1 halo tile of q.
// Interior p (one tap of every q lands on it) asks gather_3x3 for the centre of a 3x3
// image, which has the same taps: with constant arguments clamp_hits/tap_weight fold
// to the stencil's nonzero taps at compile time (12 FMAs for Sobel), in the same
// order as the general call, which serves the border pixels.
template <Operator OP, int ORDER, typename acc_t>
__device__ __forceinline__ acc_t gather_tile(const acc_t (*coef)[Halo<1>::kCells],
                                             const acc_t* scale, const Tile& t, int64_t i,
                                             int64_t j, int64_t H, int64_t W) {
  constexpr int K = Stencil<OP, ORDER>::kDirections;
  constexpr int CW = Halo<1>::kW;
  if (i >= 1 && i + 1 < H && j >= 1 && j + 1 < W) {
    // q = p + (qi - 1, qj - 1) sits at cell (i - y0 + qi, j - x0 + qj).
    const int base = static_cast<int>(i - t.y0) * CW + static_cast<int>(j - t.x0);
    return gather_3x3<OP, ORDER>(1, 1, 3, 3, scale, [&](int64_t qi, int64_t qj, acc_t* c) {
      const int cell = base + static_cast<int>(qi) * CW + static_cast<int>(qj);
      for (int k = 0; k < K; ++k) c[k] = coef[k][cell];
    });
  }
  return gather_3x3<OP, ORDER>(i, j, H, W, scale, [&](int64_t qi, int64_t qj, acc_t* c) {
    const int cell = static_cast<int>(qi - t.y0 + 1) * CW + static_cast<int>(qj - t.x0 + 1);
    for (int k = 0; k < K; ++k) c[k] = coef[k][cell];
  });
}

// Sum of v over the block, valid in thread 0; fixed shuffle tree, so reproducible.
template <int THREADS, typename acc_t>
__device__ __forceinline__ acc_t block_sum(acc_t v, int rank) {
  static_assert(THREADS % 32 == 0 && THREADS <= 1024, "whole warps, at most 32");
  __shared__ acc_t warp_sums[THREADS / 32];
  const int lane = rank % 32, warp = rank / 32;
  for (int o = 16; o > 0; o /= 2) v += __shfl_down_sync(0xffffffffu, v, o);
  if (lane == 0) warp_sums[warp] = v;
  __syncthreads();
  v = acc_t(0);
  if (warp == 0) {
    if (lane < THREADS / 32) v = warp_sums[lane];
    for (int o = 16; o > 0; o /= 2) v += __shfl_down_sync(0xffffffffu, v, o);
  }
  return v;
}

// ---- spatial_gradient ------------------------------------------------------------------

template <typename scalar_t, Operator OP, int ORDER>
__global__ void __launch_bounds__(kThreads)
    spatial_gradient_forward_kernel(const scalar_t* __restrict__ x, scalar_t* __restrict__ out,
                                    int64_t H, int64_t W, TileGrid tiles, bool normalized) {
  using acc_t = at::opmath_type<scalar_t>;
  constexpr int K = Stencil<OP, ORDER>::kDirections;
  __shared__ acc_t s_x[Halo<1>::kCells];
  acc_t scale[K];
  stencil_scales<OP, ORDER>(normalized, scale);
  const int64_t HW = H * W;
  for (int64_t t = blockIdx.x; t < tiles.total; t += gridDim.x) {
    const Tile tile = tile_at(tiles, t);
    const scalar_t* src = x + tile.plane * HW;
    for_each_halo_cell<1>(tile, H, W, [&](int n, int64_t off) { s_x[n] = static_cast<acc_t>(src[off]); });
    __syncthreads();
    for_each_own_pixel(tile, H, W, [&](int, int64_t i, int64_t j) {
      acc_t nb[3][3], g[K];
      load_3x3(shared_get<1>(s_x, tile), i, j, H, W, nb);
      apply_stencil<OP, ORDER>(nb, scale, g);
      scalar_t* dst = out + tile.plane * K * HW + i * W + j;  // out[b, c, k, i, j]
      for (int k = 0; k < K; ++k) dst[k * HW] = static_cast<scalar_t>(g[k]);
    });
    __syncthreads();  // s_x is refilled for the next tile
  }
}

template <typename scalar_t, Operator OP, int ORDER>
__global__ void __launch_bounds__(kThreads)
    spatial_gradient_backward_kernel(const scalar_t* __restrict__ grad_out,
                                     scalar_t* __restrict__ grad_x, int64_t H, int64_t W,
                                     TileGrid tiles, bool normalized) {
  using acc_t = at::opmath_type<scalar_t>;
  constexpr int K = Stencil<OP, ORDER>::kDirections;
  __shared__ acc_t s_g[K][Halo<1>::kCells];  // grad_out of the tile + 1-pixel halo
  acc_t scale[K];
  stencil_scales<OP, ORDER>(normalized, scale);
  const int64_t HW = H * W;
  for (int64_t t = blockIdx.x; t < tiles.total; t += gridDim.x) {
    const Tile tile = tile_at(tiles, t);
    const scalar_t* src = grad_out + tile.plane * K * HW;
    // Cells outside the image hold clamped copies; gather_3x3 never visits them.
    for_each_halo_cell<1>(tile, H, W, [&](int n, int64_t off) {
      for (int k = 0; k < K; ++k) s_g[k][n] = static_cast<acc_t>(src[k * HW + off]);
    });
    __syncthreads();
    for_each_own_pixel(tile, H, W, [&](int, int64_t i, int64_t j) {
      grad_x[tile.plane * HW + i * W + j] =
          static_cast<scalar_t>(gather_tile<OP, ORDER>(s_g, scale, tile, i, j, H, W));
    });
    __syncthreads();
  }
}

// ---- gradient_regularization -------------------------------------------------------------

template <typename scalar_t>
struct ForwardArgs {
  using acc_t = at::opmath_type<scalar_t>;
  const scalar_t* flow;    // [B, 2, H, W]
  const scalar_t* target;  // [B, 2, H, W] or nullptr
  const scalar_t* image;   // [B, C, H, W]; read only when need_e
  const void* mask;        // [B, 1, H, W] bool or scalar_t, or nullptr
  bool mask_is_bool;
  bool need_e;             // image given and e matters (edge_weight != 0 or a threshold)
  scalar_t* loss;          // [B, H, W] ("none") or nullptr
  acc_t* weight;           // [B, H, W] or nullptr (not saved)
  acc_t* partials;         // [gridDim.x] ("sum"/"mean") or nullptr
  int64_t C, H, W;
  TileGrid tiles;          // planes = B
  Penalty penalty;
  acc_t eps;
  WeightParams wp;         // all off without an image
};

template <typename scalar_t, Operator OP, int ORDER>
__global__ void __launch_bounds__(kThreads, kMinBlocks<scalar_t>)
    regularization_forward_kernel(const ForwardArgs<scalar_t> a) {
  using acc_t = at::opmath_type<scalar_t>;
  constexpr int K = Stencil<OP, ORDER>::kDirections;
  __shared__ acc_t s_d[2][Halo<1>::kCells];
  __shared__ acc_t s_img[kImageChunk][Halo<1>::kCells];
  acc_t scale[K], escale[2];
  stencil_scales<OP, ORDER>(true, scale);
  stencil_scales<OP, 1>(true, escale);  // e is always first order
  const int64_t H = a.H, W = a.W, HW = H * W;
  const int64_t C = a.need_e ? a.C : 0;
  acc_t partial = acc_t(0);
  for (int64_t t = blockIdx.x; t < a.tiles.total; t += gridDim.x) {
    const Tile tile = tile_at(a.tiles, t);
    const int64_t b = tile.plane;
    stage_d<1>(s_d, tile, a.flow + b * 2 * HW,
               a.target != nullptr ? a.target + b * 2 * HW : nullptr, H, W);
    // Edge strength, image channels in chunks; the first barrier also covers s_d. One
    // pass with nc = 0 without an image. Sum in channel order, as edge_strength.
    acc_t esum[kRowsPerThread];
    for (int s = 0; s < kRowsPerThread; ++s) esum[s] = acc_t(0);
    int64_t c0 = 0;
    do {
      const int nc = static_cast<int>(std::min<int64_t>(kImageChunk, C - c0));
      if (c0 > 0) __syncthreads();  // the previous chunk has been read
      if (nc > 0) {
        const scalar_t* image = a.image + (b * a.C + c0) * HW;
        for_each_halo_cell<1>(tile, H, W, [&](int n, int64_t off) {
#pragma unroll
          for (int c = 0; c < kImageChunk; ++c)
            if (c < nc) s_img[c][n] = static_cast<acc_t>(image[c * HW + off]);
        });
      }
      __syncthreads();
      if (nc > 0) {
        for_each_own_pixel(tile, H, W, [&](int s, int64_t i, int64_t j) {
          for (int c = 0; c < nc; ++c) {
            acc_t nb[3][3], g[2];
            load_3x3(shared_get<1>(s_img[c], tile), i, j, H, W, nb);
            apply_stencil<OP, 1>(nb, escale, g);
            esum[s] += pfo_abs(g[0]) + pfo_abs(g[1]);
          }
        });
      }
      c0 += kImageChunk;
    } while (c0 < C);

    for_each_own_pixel(tile, H, W, [&](int s, int64_t i, int64_t j) {
      const int64_t pix = b * HW + i * W + j;  // [B, H, W] and [B, 1, H, W] index
      const acc_t m = a.mask != nullptr ? load_mask<scalar_t, acc_t>(a.mask, a.mask_is_bool, pix)
                                        : acc_t(1);
      // As edge_strength (C == 0: NaN, as the mean of nothing); pixel_weight ignores e
      // when need_e is false.
      const acc_t e = a.need_e ? esum[s] / acc_t(2 * C) : acc_t(0);
      const acc_t w = pixel_weight(m, e, a.wp);
      acc_t rho = acc_t(0);
      for (int c = 0; c < 2; ++c) {
        acc_t nb[3][3], g[K];
        load_3x3(shared_get<1>(s_d[c], tile), i, j, H, W, nb);
        apply_stencil<OP, ORDER>(nb, scale, g);
        for (int k = 0; k < K; ++k) rho += penalty_value(a.penalty, g[k], a.eps);
      }
      const acc_t L = w * rho;
      if (a.weight != nullptr) a.weight[pix] = w;
      if (a.partials != nullptr) {
        partial += L;
      } else {
        a.loss[pix] = static_cast<scalar_t>(L);
      }
    });
    __syncthreads();  // shared tiles are refilled for the next tile
  }
  if (a.partials != nullptr) {  // uniform: every thread of the block reaches block_sum
    const acc_t sum = block_sum<kThreads>(partial, thread_rank());
    if (thread_rank() == 0) a.partials[blockIdx.x] = sum;
  }
}

// out = sum(partials) (divided by count for "mean"; 0 / 0 = NaN for an empty input).
template <typename scalar_t>
__global__ void __launch_bounds__(kFinalizeThreads)
    finalize_kernel(const at::opmath_type<scalar_t>* __restrict__ partials, int64_t n,
                    int64_t count, bool mean, scalar_t* __restrict__ out) {
  using acc_t = at::opmath_type<scalar_t>;
  acc_t v = acc_t(0);
  for (int64_t i = threadIdx.x; i < n; i += kFinalizeThreads) v += partials[i];
  v = block_sum<kFinalizeThreads>(v, static_cast<int>(threadIdx.x));
  if (threadIdx.x == 0) out[0] = static_cast<scalar_t>(mean ? v / static_cast<acc_t>(count) : v);
}

template <typename scalar_t>
struct BackwardArgs {
  using acc_t = at::opmath_type<scalar_t>;
  const scalar_t* grad_loss;  // [B, H, W] when per_pixel, else one element
  bool per_pixel;             // reduction "none"
  bool mean;
  int64_t count;              // B * H * W, the divisor of "mean"
  const scalar_t* flow;       // [B, 2, H, W]
  const scalar_t* target;     // [B, 2, H, W] or nullptr
  const acc_t* weight;        // [B, H, W] or nullptr
  const void* mask;           // [B, 1, H, W] bool or scalar_t, or nullptr (read without weight)
  bool mask_is_bool;
  scalar_t* grad_flow;        // [B, 2, H, W]
  int64_t H, W;
  TileGrid tiles;             // planes = B
  Penalty penalty;
  acc_t eps;
};

template <typename scalar_t, Operator OP, int ORDER>
__global__ void __launch_bounds__(kThreads, kMinBlocks<scalar_t>)
    regularization_backward_kernel(const BackwardArgs<scalar_t> a) {
  using acc_t = at::opmath_type<scalar_t>;
  constexpr int K = Stencil<OP, ORDER>::kDirections;
  constexpr int CW = Halo<1>::kW;
  __shared__ acc_t s_d[2][Halo<2>::kCells];     // d: tile + 2-pixel halo
  __shared__ acc_t s_c[2][K][Halo<1>::kCells];  // coef: tile + 1-pixel halo
  acc_t scale[K];
  stencil_scales<OP, ORDER>(true, scale);
  const int64_t H = a.H, W = a.W, HW = H * W;
  acc_t gl_all = acc_t(0);  // gl of "sum" / "mean"
  if (!a.per_pixel) {
    gl_all = static_cast<acc_t>(a.grad_loss[0]);
    if (a.mean) gl_all /= static_cast<acc_t>(a.count);
  }
  for (int64_t t = blockIdx.x; t < a.tiles.total; t += gridDim.x) {
    const Tile tile = tile_at(a.tiles, t);
    const int64_t b = tile.plane;
    stage_d<2>(s_d, tile, a.flow + b * 2 * HW,
               a.target != nullptr ? a.target + b * 2 * HW : nullptr, H, W);
    __syncthreads();
    // Coefficients at q = (y0 - 1 + r, x0 - 1 + c); cells outside the image are skipped
    // (gather_3x3 never visits them). Halo cells repeat the neighbour tiles' work.
    for (int n = thread_rank(); n < Halo<1>::kCells; n += kThreads) {
      const int r = n / CW, cc = n - r * CW;
      const int64_t qi = tile.y0 - 1 + r, qj = tile.x0 - 1 + cc;
      if (qi < 0 || qi >= H || qj < 0 || qj >= W) continue;
      const int64_t q = b * HW + qi * W + qj;
      const acc_t gl = a.per_pixel ? static_cast<acc_t>(a.grad_loss[q]) : gl_all;
      const acc_t w = a.weight != nullptr ? a.weight[q]
                      : a.mask != nullptr ? load_mask<scalar_t, acc_t>(a.mask, a.mask_is_bool, q)
                                          : acc_t(1);
      const acc_t gw = gl * w;
      for (int c = 0; c < 2; ++c) {
        acc_t nb[3][3], g[K];
        load_3x3(shared_get<2>(s_d[c], tile), qi, qj, H, W, nb);
        apply_stencil<OP, ORDER>(nb, scale, g);
        for (int k = 0; k < K; ++k) s_c[c][k][n] = gw * penalty_grad(a.penalty, g[k], a.eps);
      }
    }
    __syncthreads();
    for_each_own_pixel(tile, H, W, [&](int, int64_t i, int64_t j) {
      for (int c = 0; c < 2; ++c) {
        a.grad_flow[(b * 2 + c) * HW + i * W + j] =
            static_cast<scalar_t>(gather_tile<OP, ORDER>(s_c[c], scale, tile, i, j, H, W));
      }
    });
    __syncthreads();
  }
}

// ---- textureless_mask ----------------------------------------------------------------

template <typename scalar_t, Operator OP>
__global__ void __launch_bounds__(kPixelThreads)
    textureless_mask_kernel(const scalar_t* __restrict__ image, bool* __restrict__ out,
                            int64_t N, int64_t C, int64_t H, int64_t W,
                            at::opmath_type<scalar_t> threshold) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t HW = H * W;
  for (int64_t n = static_cast<int64_t>(blockIdx.x) * kPixelThreads + threadIdx.x; n < N;
       n += static_cast<int64_t>(gridDim.x) * kPixelThreads) {
    const int64_t b = n / HW, ij = n - b * HW, i = ij / W, j = ij - i * W;
    const acc_t e = edge_strength<OP, acc_t>(image + b * C * HW, C, i, j, H, W);
    out[n] = e < threshold;  // as pixel_weight: NaN -> false
  }
}

}  // namespace

// ---- launchers ------------------------------------------------------------------------

void spatial_gradient_forward(const at::Tensor& x, StencilKind kind, bool normalized,
                              const at::Tensor& out) {
  const int64_t H = x.size(2), W = x.size(3);
  const TileGrid tiles = make_tiles(x.size(0) * x.size(1), H, W);
  if (tiles.total == 0) return;
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "spatial_gradient_cuda", [&] {
    PFO_DISPATCH_STENCIL(kind, [&] {
      spatial_gradient_forward_kernel<scalar_t, OP, ORDER>
          <<<grid_blocks(tiles), dim3(kTileW, kThreadsY), 0, stream>>>(
              x.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>(), H, W, tiles,
              normalized);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
}

void spatial_gradient_backward(const at::Tensor& grad_out, StencilKind kind, bool normalized,
                               const at::Tensor& grad_x) {
  const int64_t H = grad_out.size(3), W = grad_out.size(4);
  const TileGrid tiles = make_tiles(grad_out.size(0) * grad_out.size(1), H, W);
  if (tiles.total == 0) return;
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad_out.scalar_type(), "spatial_gradient_backward_cuda", [&] {
    PFO_DISPATCH_STENCIL(kind, [&] {
      spatial_gradient_backward_kernel<scalar_t, OP, ORDER>
          <<<grid_blocks(tiles), dim3(kTileW, kThreadsY), 0, stream>>>(
              grad_out.const_data_ptr<scalar_t>(), grad_x.mutable_data_ptr<scalar_t>(), H, W,
              tiles, normalized);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
}

int64_t regularization_num_partials(int64_t B, int64_t H, int64_t W) {
  const TileGrid tiles = make_tiles(B, H, W);
  return tiles.total == 0 ? 0 : static_cast<int64_t>(grid_blocks(tiles));
}

void regularization_forward(const at::Tensor& flow, const at::Tensor& image,
                            const at::Tensor& mask, const at::Tensor& target,
                            const RegularizationParams& p, const at::Tensor& loss,
                            const at::Tensor& weight, const at::Tensor& partials) {
  const int64_t B = flow.size(0), H = flow.size(2), W = flow.size(3);
  const TileGrid tiles = make_tiles(B, H, W);
  const bool reduce = p.reduction != Reduction::kNone;
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, flow.scalar_type(), "gradient_regularization_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    if (tiles.total > 0) {
      TORCH_CHECK(!reduce || partials.numel() == regularization_num_partials(B, H, W),
                  "gradient_regularization: partials buffer of the wrong size");
      const bool has_image = image.defined();
      ForwardArgs<scalar_t> a{};
      a.flow = flow.const_data_ptr<scalar_t>();
      a.target = target.defined() ? target.const_data_ptr<scalar_t>() : nullptr;
      a.need_e = has_image && (p.weight.edge_weight != 0.0 || p.weight.has_threshold);
      a.image = a.need_e ? image.const_data_ptr<scalar_t>() : nullptr;
      a.mask = mask.defined() ? mask.const_data_ptr() : nullptr;
      a.mask_is_bool = mask.defined() && mask.scalar_type() == at::kBool;
      a.loss = reduce ? nullptr : loss.mutable_data_ptr<scalar_t>();
      a.weight = weight.defined() && weight.numel() > 0 ? weight.mutable_data_ptr<acc_t>() : nullptr;
      a.partials = reduce ? partials.mutable_data_ptr<acc_t>() : nullptr;
      a.C = has_image ? image.size(1) : 0;
      a.H = H;
      a.W = W;
      a.tiles = tiles;
      a.penalty = p.penalty;
      a.eps = static_cast<acc_t>(p.eps);
      a.wp = has_image ? p.weight : WeightParams{0.0, 0.0, false};
      PFO_DISPATCH_STENCIL(p.kind, [&] {
        regularization_forward_kernel<scalar_t, OP, ORDER>
            <<<grid_blocks(tiles), dim3(kTileW, kThreadsY), 0, stream>>>(a);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
    }
    if (reduce) {  // also for an empty input: sum 0, mean NaN
      finalize_kernel<scalar_t><<<1, kFinalizeThreads, 0, stream>>>(
          partials.numel() > 0 ? partials.const_data_ptr<acc_t>() : nullptr, partials.numel(),
          B * H * W, p.reduction == Reduction::kMean, loss.mutable_data_ptr<scalar_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
  });
}

void regularization_backward(const at::Tensor& grad_loss, const at::Tensor& flow,
                             const at::Tensor& target, const at::Tensor& weight,
                             const at::Tensor& mask, const RegularizationParams& p,
                             const at::Tensor& grad_flow) {
  const int64_t B = flow.size(0), H = flow.size(2), W = flow.size(3);
  const TileGrid tiles = make_tiles(B, H, W);
  if (tiles.total == 0) return;
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, flow.scalar_type(), "gradient_regularization_backward_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    BackwardArgs<scalar_t> a{};
    a.grad_loss = grad_loss.const_data_ptr<scalar_t>();
    a.per_pixel = p.reduction == Reduction::kNone;
    a.mean = p.reduction == Reduction::kMean;
    a.count = B * H * W;
    a.flow = flow.const_data_ptr<scalar_t>();
    a.target = target.defined() ? target.const_data_ptr<scalar_t>() : nullptr;
    a.weight = weight.defined() ? weight.const_data_ptr<acc_t>() : nullptr;
    a.mask = mask.defined() ? mask.const_data_ptr() : nullptr;
    a.mask_is_bool = mask.defined() && mask.scalar_type() == at::kBool;
    a.grad_flow = grad_flow.mutable_data_ptr<scalar_t>();
    a.H = H;
    a.W = W;
    a.tiles = tiles;
    a.penalty = p.penalty;
    a.eps = static_cast<acc_t>(p.eps);
    PFO_DISPATCH_STENCIL(p.kind, [&] {
      regularization_backward_kernel<scalar_t, OP, ORDER>
          <<<grid_blocks(tiles), dim3(kTileW, kThreadsY), 0, stream>>>(a);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
}

void textureless_mask(const at::Tensor& image, double threshold, StencilKind kind,
                      const at::Tensor& out) {
  const int64_t B = image.size(0), C = image.size(1), H = image.size(2), W = image.size(3);
  const int64_t N = B * H * W;
  if (N == 0) return;
  const unsigned int blocks = static_cast<unsigned int>(
      std::min<int64_t>((N + kPixelThreads - 1) / kPixelThreads, kMaxBlocks));
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, image.scalar_type(), "textureless_mask_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* src = image.const_data_ptr<scalar_t>();
    bool* dst = out.mutable_data_ptr<bool>();
    if (kind.op == Operator::kSobel) {
      textureless_mask_kernel<scalar_t, Operator::kSobel><<<blocks, kPixelThreads, 0, stream>>>(
          src, dst, N, C, H, W, static_cast<acc_t>(threshold));
    } else {
      textureless_mask_kernel<scalar_t, Operator::kDiff><<<blocks, kPixelThreads, 0, stream>>>(
          src, dst, N, C, H, W, static_cast<acc_t>(threshold));
    }
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

}  // namespace cuda
}  // namespace gradreg
}  // namespace pyflowops
