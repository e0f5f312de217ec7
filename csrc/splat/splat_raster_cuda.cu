// CUDA rasterization kernels of the Gaussian-splatting family and their launchers.
// Semantics: docs/splat_kernel_contract.md; per-pixel math: pixel_alpha /
// pixel_alpha_vjp of splat_math.h (the math the CPU tests check).
//
// Grid: blockIdx.x = tile, blockIdx.y = chunk of CH channels. A block has
// min(ts^2, 256) threads (at least a warp), one pixel each; larger tiles are walked as
// 256-pixel strips one after the other. Each strip walks its tile's list in batches of
// Gaussians staged in shared memory (geometry record + the chunk's CH features).
//
//   forward: front to back; early exit once every pixel of the strip is done
//     (__syncthreads_count). CH channels live in registers (CH in {1, 2, 3, 4, 8, 16,
//     32}: C <= 4 exactly, else padded); C > 32 takes ceil(C / 32) chunks, each
//     recomputing the alphas (cheap next to 32 channel FMAs), and chunk 0 alone writes
//     alpha, depth and last.
//   backward: back to front from each pixel's `last`, batches in reverse. Every lane of
//     a warp is at the same instance at each step, so a Gaussian's 7 + CH gradient terms
//     are summed over the warp by a reduce-scatter (lane l ends up with the sum of term l:
//     ~NV shuffles instead of 5 NV for one butterfly per term) and added to global
//     memory with one atomicAdd per term per warp, by different lanes at once.
//     Channels enter g_alpha only through sum_c grad_image_c (f_c T - S_c / (1 - alpha)),
//     so one running scalar S = sum_c grad_image_c S_c replaces the C running sums, and
//     since every gradient is linear in g_alpha, each chunk adds its own channels' part
//     (chunk 0 also the depth and alpha terms): any C, CH registers per term.
//
// No ATen operators here (allocation and checks are in splat_cuda_ops.cpp).
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "splat/splat_cuda.h"
#include "splat/splat_math.h"

namespace pyflowops {
namespace splat {
namespace cuda {
namespace {

constexpr int kMaxThreads = 256;
constexpr unsigned kFullMask = 0xffffffffu;

// Gaussians staged per batch: many for few channels (fewer barriers per Gaussian),
// 64 when CH features per record would make the stage large.
template <int CH>
constexpr int kBatch = CH <= 4 ? 256 : 64;

// A Gaussian's geometry as the per-pixel loop reads it (one broadcast record).
template <typename T>
struct alignas(4 * sizeof(T)) GaussRec {
  T mx, my, a, b, c, o, r, z;  // mean2d, conic, opacity, radius (as T), depth
};

// The pixels of one block: tile (tx, ty) of ts x ts pixels, walked in strips of
// blockDim.x pixels.
struct TileStrip {
  int64_t x0, y0;  // the tile's top-left pixel
  int ts, strips;  // tile size, strips per tile
};

__device__ __forceinline__ TileStrip tile_strip(int64_t tiles_x, int ts) {
  TileStrip t;
  const int64_t tile = blockIdx.x;
  t.x0 = (tile % tiles_x) * ts;
  t.y0 = (tile / tiles_x) * ts;
  t.ts = ts;
  t.strips = (ts * ts + blockDim.x - 1) / blockDim.x;
  return t;
}

// This thread's pixel (i, j) in strip s; false when it lies outside the tile or image.
__device__ __forceinline__ bool strip_pixel(const TileStrip& t, int s, int64_t H, int64_t W,
                                            int64_t* i, int64_t* j) {
  const int p = s * blockDim.x + threadIdx.x;
  *i = t.y0 + p / t.ts;
  *j = t.x0 + p % t.ts;
  return p < t.ts * t.ts && *i < H && *j < W;
}

template <typename scalar_t>
struct GaussPtrs {
  const scalar_t* means2d;   // [N,2]
  const scalar_t* conics;    // [N,3]
  const scalar_t* opac;      // [N]
  const scalar_t* features;  // [N,C]
  const scalar_t* depths;    // [N]
  const int32_t* radii;      // [N]
  const scalar_t* bg;        // [C] or nullptr
  const int32_t* offsets;    // [T+1]
  const int32_t* ids;        // [M]
  int64_t C, H, W, tiles_x;
  int ts;
};

// Stages list positions [lo, lo + nb) of the tile (instances start + lo ...) into
// shared memory: records, Gaussian ids and the chunk's features (0 past C).
template <int CH, typename scalar_t, typename T>
__device__ __forceinline__ void stage_batch(const GaussPtrs<scalar_t>& p, int64_t first, int nb,
                                            int64_t c0, GaussRec<T>* s_g, int32_t* s_id,
                                            T* s_f) {
  for (int k = threadIdx.x; k < nb; k += blockDim.x) {
    const int32_t g = p.ids[first + k];
    GaussRec<T> r;
    r.mx = static_cast<T>(p.means2d[2 * int64_t(g)]);
    r.my = static_cast<T>(p.means2d[2 * int64_t(g) + 1]);
    r.a = static_cast<T>(p.conics[3 * int64_t(g)]);
    r.b = static_cast<T>(p.conics[3 * int64_t(g) + 1]);
    r.c = static_cast<T>(p.conics[3 * int64_t(g) + 2]);
    r.o = static_cast<T>(p.opac[g]);
    r.r = static_cast<T>(p.radii[g]);
    r.z = static_cast<T>(p.depths[g]);
    s_g[k] = r;
    if (s_id != nullptr) s_id[k] = g;
  }
  for (int e = threadIdx.x; e < nb * CH; e += blockDim.x) {
    const int k = e / CH, c = e % CH;
    const int64_t g = p.ids[first + k];
    s_f[e] = c0 + c < p.C ? static_cast<T>(p.features[g * p.C + c0 + c]) : T(0);
  }
}

// ---- forward --------------------------------------------------------------------------

template <typename scalar_t>
struct ForwardOut {
  scalar_t* image;  // [H,W,C]
  scalar_t* alpha;  // [H,W,1]
  scalar_t* depth;  // [H,W,1]
  int32_t* last;    // [H,W]
};

template <typename scalar_t, int CH>
__global__ void __launch_bounds__(kMaxThreads)
    rasterize_forward_kernel(GaussPtrs<scalar_t> p, ForwardOut<scalar_t> out) {
  using T = at::opmath_type<scalar_t>;
  constexpr int B = kBatch<CH>;
  __shared__ GaussRec<T> s_g[B];
  __shared__ T s_f[B * CH];
  const TileStrip tile = tile_strip(p.tiles_x, p.ts);
  const int64_t c0 = static_cast<int64_t>(blockIdx.y) * CH;
  const int64_t start = p.offsets[blockIdx.x], len = p.offsets[blockIdx.x + 1] - start;
  for (int s = 0; s < tile.strips; ++s) {
    int64_t i, j;
    const bool inside = strip_pixel(tile, s, p.H, p.W, &i, &j);
    const T px = static_cast<T>(j) + T(0.5), py = static_cast<T>(i) + T(0.5);
    T tr = T(1), dep = T(0), acc[CH];
#pragma unroll
    for (int c = 0; c < CH; ++c) acc[c] = T(0);
    int64_t last = 0;
    bool done = !inside;
    for (int64_t lo = 0; lo < len; lo += B) {
      // Also the barrier before the stage is overwritten.
      if (__syncthreads_count(done) == static_cast<int>(blockDim.x)) break;
      const int nb = static_cast<int>(min(int64_t(B), len - lo));
      stage_batch<CH>(p, start + lo, nb, c0, s_g, static_cast<int32_t*>(nullptr), s_f);
      __syncthreads();
      for (int k = 0; k < nb && !done; ++k) {
        const GaussRec<T> G = s_g[k];
        PixelHit<T> hit;
        if (!pixel_alpha(px, py, G.mx, G.my, G.r, G.a, G.b, G.c, G.o, &hit)) continue;
        const T next = tr * (T(1) - hit.alpha);
        if (next < T(kTransmittanceMin)) {
          done = true;
          break;
        }
        const T w = hit.alpha * tr;
#pragma unroll
        for (int c = 0; c < CH; ++c) acc[c] += s_f[k * CH + c] * w;
        dep += G.z * w;
        tr = next;
        last = lo + k + 1;
      }
    }
    if (inside) {
      const int64_t pix = i * p.W + j;
#pragma unroll
      for (int c = 0; c < CH; ++c) {
        if (c0 + c >= p.C) break;
        const T bg = p.bg != nullptr ? static_cast<T>(p.bg[c0 + c]) : T(0);
        out.image[pix * p.C + c0 + c] = static_cast<scalar_t>(acc[c] + tr * bg);
      }
      if (blockIdx.y == 0) {
        out.alpha[pix] = static_cast<scalar_t>(T(1) - tr);
        out.depth[pix] = static_cast<scalar_t>(dep);
        out.last[pix] = static_cast<int32_t>(last);
      }
    }
    __syncthreads();  // the next strip restages
  }
}

// ---- backward -------------------------------------------------------------------------

// Warp reduce-scatter of N (a power of two) values per lane, level by level with xor
// offset S: at a halving level the lanes with bit S set keep (and receive the partner's)
// upper half, the others the lower half; once one value is left the remaining levels
// are plain butterflies. Afterwards v[j] (j < max(N / 32, 1)) holds the warp sum of
// value base + j, identical on the lanes that differ only in the plain levels' bits.
template <int N, int S, typename T>
__device__ __forceinline__ void reduce_scatter(T* v, int lane, int* base) {
  if constexpr (S > 0) {
    if constexpr (N >= 2) {
      constexpr int H = N / 2;
      const bool upper = (lane & S) != 0;
#pragma unroll
      for (int k = 0; k < H; ++k) {
        const T send = upper ? v[k] : v[k + H];
        const T keep = upper ? v[k + H] : v[k];
        v[k] = keep + __shfl_xor_sync(kFullMask, send, S);
      }
      if (upper) *base += H;
      reduce_scatter<H, S / 2>(v, lane, base);
    } else {
      v[0] += __shfl_xor_sync(kFullMask, v[0], S);
      reduce_scatter<1, S / 2>(v, lane, base);
    }
  }
}

constexpr int next_pow2(int n) { return n <= 1 ? 1 : 2 * next_pow2((n + 1) / 2); }

template <typename T>
struct BackwardOut {  // opmath accumulators, zero-initialized
  T* means2d;   // [N,2]
  T* conics;    // [N,3]
  T* opac;      // [N]
  T* features;  // [N,C]
  T* depths;    // [N]
};

template <typename scalar_t>
struct BackwardIn {
  const scalar_t* grad_image;  // [H,W,C]
  const scalar_t* grad_alpha;  // [H,W,1]
  const scalar_t* grad_depth;  // [H,W,1]
  const scalar_t* alpha;       // [H,W,1]
  const int32_t* last;         // [H,W]
};

// Terms of one instance's gradient: 0-1 means2d, 2-4 conic, 5 opacity, 6 depth,
// 7.. the chunk's features.
constexpr int kGeomTerms = 7;

template <typename T>
__device__ __forceinline__ void add_term(const BackwardOut<T>& out, int idx, int64_t g,
                                         int64_t C, int64_t c0, T v) {
  if (v == T(0)) return;  // e.g. depth/alpha terms of chunks > 0, clamped alphas
  T* dst;
  if (idx < 2) dst = out.means2d + 2 * g + idx;
  else if (idx < 5) dst = out.conics + 3 * g + (idx - 2);
  else if (idx == 5) dst = out.opac + g;
  else if (idx == 6) dst = out.depths + g;
  else if (c0 + idx - kGeomTerms < C) dst = out.features + g * C + c0 + idx - kGeomTerms;
  else return;
  atomicAdd(dst, v);
}

template <typename scalar_t, int CH>
__global__ void __launch_bounds__(kMaxThreads)
    rasterize_backward_kernel(GaussPtrs<scalar_t> p, BackwardIn<scalar_t> in,
                              BackwardOut<at::opmath_type<scalar_t>> out) {
  using T = at::opmath_type<scalar_t>;
  constexpr int B = kBatch<CH>;
  constexpr int NV = kGeomTerms + CH, NP = next_pow2(NV);
  constexpr int kPlainMask = NP >= 32 ? 0 : 32 / NP - 1;  // lanes that share a sum
  constexpr int kPerLane = NP >= 32 ? NP / 32 : 1;
  __shared__ GaussRec<T> s_g[B];
  __shared__ int32_t s_id[B];
  __shared__ T s_f[B * CH];
  __shared__ int s_kmax;
  const TileStrip tile = tile_strip(p.tiles_x, p.ts);
  const int64_t c0 = static_cast<int64_t>(blockIdx.y) * CH;
  const bool chunk0 = blockIdx.y == 0;
  const int64_t start = p.offsets[blockIdx.x], len = p.offsets[blockIdx.x + 1] - start;
  const int lane = threadIdx.x % 32;
  for (int s = 0; s < tile.strips; ++s) {
    int64_t i, j;
    const bool inside = strip_pixel(tile, s, p.H, p.W, &i, &j);
    const int64_t pix = inside ? i * p.W + j : 0;
    const T px = static_cast<T>(j) + T(0.5), py = static_cast<T>(i) + T(0.5);
    // Clamped to the list: a bad saved `last` cannot read past the tile's instances.
    const int64_t last = inside ? min(max(int64_t(in.last[pix]), int64_t(0)), len) : 0;
    const T t_final = inside ? T(1) - static_cast<T>(in.alpha[pix]) : T(1);
    T gimg[CH];
    T s_img = T(0);  // sum_c grad_image_c S_c, S_c starting at t_final * background_c
#pragma unroll
    for (int c = 0; c < CH; ++c) {
      const bool ok = inside && c0 + c < p.C;
      gimg[c] = ok ? static_cast<T>(in.grad_image[pix * p.C + c0 + c]) : T(0);
      if (ok && p.bg != nullptr) s_img += gimg[c] * t_final * static_cast<T>(p.bg[c0 + c]);
    }
    const T ga = inside && chunk0 ? static_cast<T>(in.grad_alpha[pix]) : T(0);
    const T gd = inside && chunk0 ? static_cast<T>(in.grad_depth[pix]) : T(0);
    T tr = t_final, s_dep = T(0);

    if (threadIdx.x == 0) s_kmax = 0;
    __syncthreads();
    int64_t warp_max = last;  // the warp's furthest `last` (<= len < 2^31)
    for (int o = 16; o > 0; o /= 2)
      warp_max = max(warp_max, int64_t(__shfl_xor_sync(kFullMask, static_cast<int>(warp_max), o)));
    if (lane == 0) atomicMax(&s_kmax, static_cast<int>(warp_max));
    __syncthreads();
    const int64_t kmax = s_kmax;

    for (int64_t hi = kmax; hi > 0; hi -= B) {
      const int64_t lo = max(hi - B, int64_t(0));
      const int nb = static_cast<int>(hi - lo);
      __syncthreads();  // the previous batch is consumed
      stage_batch<CH>(p, start + lo, nb, c0, s_g, s_id, s_f);
      __syncthreads();
      // This warp's lanes all stop before warp_max: start there (warp-uniform).
      const int k_end = static_cast<int>(min(int64_t(nb), max(warp_max - lo, int64_t(0))));
      for (int k = k_end - 1; k >= 0; --k) {
        const GaussRec<T> G = s_g[k];
        PixelHit<T> hit;
        const bool hits = lo + k < last &&
                          pixel_alpha(px, py, G.mx, G.my, G.r, G.a, G.b, G.c, G.o, &hit);
        if (!__any_sync(kFullMask, hits)) continue;  // warp-uniform
        T v[NP];
#pragma unroll
        for (int q = 0; q < NP; ++q) v[q] = T(0);
        if (hits) {
          const T inv = T(1) / (T(1) - hit.alpha);
          tr = tr * inv;  // transmittance in front of G
          const T w = hit.alpha * tr;
          T dot = T(0);  // grad_image . features
#pragma unroll
          for (int c = 0; c < CH; ++c) {
            dot += gimg[c] * s_f[k * CH + c];
            v[kGeomTerms + c] = w * gimg[c];
          }
          const T g_alpha =
              tr * dot - s_img * inv + gd * (G.z * tr - s_dep * inv) + ga * t_final * inv;
          s_img += w * dot;
          s_dep += G.z * w;
          v[6] = w * gd;
          pixel_alpha_vjp(hit, G.a, G.b, G.c, g_alpha, v, v + 2, v + 5);
        }
        int base = 0;
        reduce_scatter<NP, 16>(v, lane, &base);
        if ((lane & kPlainMask) == 0) {
          const int64_t g = s_id[k];
#pragma unroll
          for (int q = 0; q < kPerLane; ++q)
            if (base + q < NV) add_term(out, base + q, g, p.C, c0, v[q]);
        }
      }
    }
    __syncthreads();  // s_kmax and the stage are reused by the next strip
  }
}

// ---- launch helpers -----------------------------------------------------------------

// Calls launch(std::integral_constant<int, CH>) for the chunk width that serves C
// channels: C itself up to 4, else the next of 8, 16, 32 (at most MaxChunk).
template <int MaxChunk, typename Launch>
void with_chunk(int64_t C, const Launch& launch) {
  if (C == 1) launch(std::integral_constant<int, 1>());
  else if (C == 2) launch(std::integral_constant<int, 2>());
  else if (C == 3) launch(std::integral_constant<int, 3>());
  else if (C == 4) launch(std::integral_constant<int, 4>());
  else if (C <= 8) launch(std::integral_constant<int, 8>());
  else if constexpr (MaxChunk <= 16) launch(std::integral_constant<int, 16>());
  else if (C <= 16) launch(std::integral_constant<int, 16>());
  else launch(std::integral_constant<int, 32>());
}

template <typename scalar_t>
GaussPtrs<scalar_t> gauss_ptrs(const at::Tensor& means2d, const at::Tensor& conics,
                               const at::Tensor& opacities, const at::Tensor& features,
                               const at::Tensor& depths, const at::Tensor& radii,
                               const at::Tensor& background, const TileGrid& grid,
                               const at::Tensor& tile_offsets, const at::Tensor& gaussian_ids) {
  GaussPtrs<scalar_t> p;
  p.means2d = means2d.data_ptr<scalar_t>();
  p.conics = conics.data_ptr<scalar_t>();
  p.opac = opacities.data_ptr<scalar_t>();
  p.features = features.data_ptr<scalar_t>();
  p.depths = depths.data_ptr<scalar_t>();
  p.radii = radii.data_ptr<int32_t>();
  p.bg = background.defined() ? background.data_ptr<scalar_t>() : nullptr;
  p.offsets = tile_offsets.data_ptr<int32_t>();
  p.ids = gaussian_ids.data_ptr<int32_t>();
  p.C = features.size(1);
  p.H = grid.height;
  p.W = grid.width;
  p.tiles_x = grid.tiles_x;
  p.ts = static_cast<int>(grid.tile_size);
  return p;
}

// Grid (tiles, channel chunks) and block (one pixel per thread, at least a warp).
void raster_shape(const TileGrid& grid, int64_t C, int CH, dim3* blocks, dim3* threads) {
  const int64_t chunks = (C + CH - 1) / CH;
  TORCH_CHECK(grid.count() < (int64_t(1) << 31) && chunks <= 65535,
              "rasterize_gaussians: too many tiles or channels for one launch");
  *blocks = dim3(static_cast<unsigned>(grid.count()), static_cast<unsigned>(chunks));
  const int64_t px = grid.tile_size * grid.tile_size;
  *threads = dim3(static_cast<unsigned>(std::max<int64_t>(32, std::min<int64_t>(px, kMaxThreads))));
}

// Forward chunks up to 32 channels; the backward holds twice the registers per channel
// (grad_image and the gradient terms), so it stops at 16.
constexpr int kForwardMaxChunk = 32;
constexpr int kBackwardMaxChunk = 16;

}  // namespace

void rasterize_forward(const at::Tensor& means2d, const at::Tensor& conics,
                       const at::Tensor& opacities, const at::Tensor& features,
                       const at::Tensor& depths, const at::Tensor& radii,
                       const at::Tensor& background, const TileGrid& grid,
                       const at::Tensor& tile_offsets, const at::Tensor& gaussian_ids,
                       const at::Tensor& image, const at::Tensor& alpha,
                       const at::Tensor& depth, const at::Tensor& last) {
  const int64_t C = features.size(1);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, means2d.scalar_type(),
                                  "rasterize_gaussians", [&] {
    const auto p = gauss_ptrs<scalar_t>(means2d, conics, opacities, features, depths, radii,
                                        background, grid, tile_offsets, gaussian_ids);
    const ForwardOut<scalar_t> out{image.data_ptr<scalar_t>(), alpha.data_ptr<scalar_t>(),
                                   depth.data_ptr<scalar_t>(), last.data_ptr<int32_t>()};
    with_chunk<kForwardMaxChunk>(C, [&](auto ch) {
      constexpr int CH = decltype(ch)::value;
      dim3 blocks, threads;
      raster_shape(grid, C, CH, &blocks, &threads);
      rasterize_forward_kernel<scalar_t, CH><<<blocks, threads, 0, stream>>>(p, out);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
}

void rasterize_backward(const at::Tensor& grad_image, const at::Tensor& grad_alpha,
                        const at::Tensor& grad_depth, const at::Tensor& means2d,
                        const at::Tensor& conics, const at::Tensor& opacities,
                        const at::Tensor& features, const at::Tensor& depths,
                        const at::Tensor& radii, const at::Tensor& background,
                        const at::Tensor& alpha, const TileGrid& grid,
                        const at::Tensor& tile_offsets, const at::Tensor& gaussian_ids,
                        const at::Tensor& last, const at::Tensor& grad_means2d,
                        const at::Tensor& grad_conics, const at::Tensor& grad_opacities,
                        const at::Tensor& grad_features, const at::Tensor& grad_depths) {
  const int64_t C = features.size(1);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, means2d.scalar_type(),
                                  "rasterize_gaussians_backward", [&] {
    using T = at::opmath_type<scalar_t>;
    const auto p = gauss_ptrs<scalar_t>(means2d, conics, opacities, features, depths, radii,
                                        background, grid, tile_offsets, gaussian_ids);
    const BackwardIn<scalar_t> in{grad_image.data_ptr<scalar_t>(),
                                  grad_alpha.data_ptr<scalar_t>(),
                                  grad_depth.data_ptr<scalar_t>(), alpha.data_ptr<scalar_t>(),
                                  last.data_ptr<int32_t>()};
    const BackwardOut<T> out{grad_means2d.data_ptr<T>(), grad_conics.data_ptr<T>(),
                             grad_opacities.data_ptr<T>(), grad_features.data_ptr<T>(),
                             grad_depths.data_ptr<T>()};
    with_chunk<kBackwardMaxChunk>(C, [&](auto ch) {
      constexpr int CH = decltype(ch)::value;
      dim3 blocks, threads;
      raster_shape(grid, C, CH, &blocks, &threads);
      rasterize_backward_kernel<scalar_t, CH><<<blocks, threads, 0, stream>>>(p, in, out);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
}

}  // namespace cuda
}  // namespace splat
}  // namespace pyflowops
