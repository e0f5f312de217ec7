// CPU kernels of the correlation lookups: at::parallel_for loops over the
// per-query helpers of corr_math.h (the same helpers corr_cuda.cu calls).
// Semantics: docs/corr_kernel_contract.md.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <tuple>
#include <type_traits>
#include <vector>

#include "common/cpu_memory.h"
#include "corr/corr_checks.h"
#include "corr/corr_cpu_vec.h"
#include "corr/corr_math.h"

namespace pyflowops {
namespace corr {
namespace {

// Queries per thread chunk below which a loop stays on one thread.
constexpr int64_t kGrain = 64;

// Pointers and map sizes of a list of contiguous levels (kept alive by the caller's
// vector); hdim, wdim: the dimensions holding the map's h and w.
template <typename T>
LevelPtrs<T> level_ptrs(const std::vector<at::Tensor>& levels, int hdim, int wdim) {
  LevelPtrs<T> p{};
  p.num = static_cast<int>(levels.size());
  for (int l = 0; l < p.num; ++l) {
    p.data[l] = levels[l].data_ptr<std::remove_const_t<T>>();
    p.h[l] = levels[l].size(hdim);
    p.w[l] = levels[l].size(wdim);
  }
  return p;
}

std::vector<at::Tensor> contiguous_all(at::TensorList list) {
  std::vector<at::Tensor> out;
  out.reserve(list.size());
  for (const auto& t : list) out.push_back(t.contiguous());
  return out;
}

// On-the-fly patch with the vectorized row dot products: for every in-bounds
// patch row v, the corners u in [u_lo, u_hi) are consecutive pixels of fmap2,
// one contiguous [n, D] block. Same values as corr_math.h's fill_patch_dot.
template <typename scalar_t, typename acc_t>
inline void fill_patch_dot_cpu(const scalar_t* f1, const scalar_t* fmap2, int64_t h, int64_t w,
                               int64_t D, const Bilinear<acc_t>& s, int r, acc_t* P) {
  const int S = 2 * r + 2;
  const PatchRange p = patch_range(s, r, h, w);
  zero_patch(P, r);
  for (int v = p.v_lo; v < p.v_hi; ++v) {
    const scalar_t* rows = fmap2 + ((p.Y0 + v) * w + p.X0 + p.u_lo) * D;
    vec::rows_dot(rows, p.u_hi - p.u_lo, D, f1, P + v * S + p.u_lo);
  }
}

// grad_pyramid is large (B*H*W*sum_l H_l*W_l values, 178 MB at 64x64 features,
// batch 2) and freshly allocated: its levels get advise_huge_pages (common/cpu_memory.h).

// ---- query tiles -------------------------------------------------------------

// The outputs and grad_out are [B, C, H, W] with C = L*(2r+1)^2: one query's C
// values lie HW apart, a different cache line and page each (324 at r = 4, L = 4).
// Queries are therefore processed in tiles of up to kTile consecutive pixels of
// one batch item, staged in a [C, kTile] buffer, so that memory is read and
// written a whole cache line per channel.
constexpr int kTile = 16;

struct Tile {
  int64_t b, ij0, n;  // batch item, first pixel, number of pixels
};

// fn(tile) for consecutive tiles covering queries [begin, end) (q = b * HW + ij).
template <typename F>
inline void for_each_tile(int64_t begin, int64_t end, int64_t HW, const F& fn) {
  for (int64_t q = begin; q < end;) {
    const int64_t b = q / HW, ij0 = q - b * HW;
    const int64_t n = std::min<int64_t>(std::min<int64_t>(kTile, end - q), HW - ij0);
    fn(Tile{b, ij0, n});
    q += n;
  }
}

// tile[c * kTile + k] = src[c * HW + k] for c < C, k < n (a full tile: fixed-size copies).
// Also prefetches the next tile's lines when it lies in the same rows (hardware
// prefetchers do not follow C streams at once).
template <typename T>
inline void load_tile(const T* src, int64_t C, int64_t HW, int64_t ij0, int64_t n, T* tile) {
  if (n == kTile) {
    const bool next = ij0 + 2 * kTile <= HW;
    for (int64_t c = 0; c < C; ++c) {
      std::memcpy(tile + c * kTile, src + c * HW, kTile * sizeof(T));
#if defined(__GNUC__) || defined(__clang__)
      if (next) __builtin_prefetch(src + c * HW + kTile);
#endif
    }
  } else {
    for (int64_t c = 0; c < C; ++c) std::memcpy(tile + c * kTile, src + c * HW, n * sizeof(T));
  }
}

template <typename T>
inline void store_tile(const T* tile, int64_t C, int64_t HW, int64_t n, T* dst) {
  if (n == kTile) {
    for (int64_t c = 0; c < C; ++c) std::memcpy(dst + c * HW, tile + c * kTile, kTile * sizeof(T));
  } else {
    for (int64_t c = 0; c < C; ++c) std::memcpy(dst + c * HW, tile + c * kTile, n * sizeof(T));
  }
}

// ---- corr_lookup --------------------------------------------------------------

// Every query reads a few short rows of its own map, a fresh 4-16 KB region the
// hardware prefetcher cannot guess, so the lookups wait on DRAM latency. Query
// q + kPrefetchAhead's rows are requested while query q is computed.
// Always inlined: GCC 12 otherwise marks this function pure (it treats
// __builtin_prefetch as side-effect free) and deletes the call.
constexpr int64_t kPrefetchAhead = 4;

template <typename scalar_t, typename coord_t>
PFO_INLINE void prefetch_patches(const LevelPtrs<const scalar_t>& lv, const coord_t* coords,
                             int64_t q, int64_t HW, int r) {
#if defined(__GNUC__) || defined(__clang__)
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t b = q / HW, ij = q - b * HW;
  const acc_t x = static_cast<acc_t>(coords[(2 * b) * HW + ij]);
  const acc_t y = static_cast<acc_t>(coords[(2 * b + 1) * HW + ij]);
  for (int l = 0; l < lv.num; ++l) {
    const Bilinear<acc_t> s = bilinear_setup(x, y, level_scale<acc_t>(l));
    const int64_t h = lv.h[l], w = lv.w[l];
    const PatchRange p = patch_range(s, r, h, w);
    if (p.u_lo == p.u_hi) continue;
    const scalar_t* map = lv.data[l] + q * h * w;
    for (int v = p.v_lo; v < p.v_hi; ++v) {
      const int64_t first = (p.Y0 + v) * w + p.X0 + p.u_lo;
      __builtin_prefetch(map + first);
      __builtin_prefetch(map + first + (p.u_hi - p.u_lo - 1));
    }
  }
#else
  (void)lv, (void)coords, (void)q, (void)HW, (void)r;
#endif
}

template <typename scalar_t, typename coord_t>
void lookup_forward_kernel(const LevelPtrs<const scalar_t>& lv, const coord_t* coords,
                           scalar_t* out, int64_t B, int64_t HW, int r) {
  using acc_t = at::opmath_type<scalar_t>;
  const int L = lv.num;
  const int64_t K = (2 * r + 1) * (2 * r + 1);
  at::parallel_for(0, B * HW, kGrain, [&](int64_t begin, int64_t end) {
    acc_t P[kMaxPatch];
    std::vector<scalar_t> out_tile(static_cast<size_t>(L * K * kTile));
    for_each_tile(begin, end, HW, [&](const Tile& t) {
      for (int64_t k = 0; k < t.n; ++k) {
        const int64_t ij = t.ij0 + k, q = t.b * HW + ij;
        if (q + kPrefetchAhead < end) prefetch_patches(lv, coords, q + kPrefetchAhead, HW, r);
        const acc_t x = static_cast<acc_t>(coords[(2 * t.b) * HW + ij]);
        const acc_t y = static_cast<acc_t>(coords[(2 * t.b + 1) * HW + ij]);
        for (int l = 0; l < L; ++l) {
          const Bilinear<acc_t> s = bilinear_setup(x, y, level_scale<acc_t>(l));
          const int64_t h = lv.h[l], w = lv.w[l];
          fill_patch(lv.data[l] + q * h * w, h, w, s, r, P);
          window_forward(s, P, r, out_tile.data() + l * K * kTile + k, kTile);
        }
      }
      store_tile(out_tile.data(), L * K, HW, t.n, out + t.b * L * K * HW + t.ij0);
    });
  });
}

template <typename scalar_t, typename coord_t>
void lookup_backward_kernel(const LevelPtrs<const scalar_t>& lv, const coord_t* coords,
                            const scalar_t* grad_out, const LevelPtrs<scalar_t>* grad_lv,
                            coord_t* grad_coords, int64_t B, int64_t HW, int r) {
  using acc_t = at::opmath_type<scalar_t>;
  const int L = lv.num;
  const int64_t K = (2 * r + 1) * (2 * r + 1);
  at::parallel_for(0, B * HW, kGrain, [&](int64_t begin, int64_t end) {
    acc_t P[kMaxPatch];
    acc_t coef[kMaxPatch];
    std::vector<scalar_t> g_tile(static_cast<size_t>(L * K * kTile));
    for_each_tile(begin, end, HW, [&](const Tile& t) {
      load_tile(grad_out + t.b * L * K * HW + t.ij0, L * K, HW, t.ij0, t.n, g_tile.data());
      for (int64_t k = 0; k < t.n; ++k) {
        const int64_t ij = t.ij0 + k, q = t.b * HW + ij;
        if (q + kPrefetchAhead < end) prefetch_patches(lv, coords, q + kPrefetchAhead, HW, r);
        const acc_t x = static_cast<acc_t>(coords[(2 * t.b) * HW + ij]);
        const acc_t y = static_cast<acc_t>(coords[(2 * t.b + 1) * HW + ij]);
        acc_t gx = acc_t(0), gy = acc_t(0);
        for (int l = 0; l < L; ++l) {
          const acc_t scale = level_scale<acc_t>(l);
          const Bilinear<acc_t> s = bilinear_setup(x, y, scale);
          const int64_t h = lv.h[l], w = lv.w[l];
          const scalar_t* g = g_tile.data() + l * K * kTile + k;  // g(a, c) at stride kTile
          fill_patch(lv.data[l] + q * h * w, h, w, s, r, P);
          acc_t dx, dy;
          window_grad_coords(s, P, r, g, kTile, &dx, &dy);
          gx += scale * dx;
          gy += scale * dy;
          if (grad_lv != nullptr && h * w > 0) {
            // This query owns its map: zero it while it is hot in cache, then store the corners.
            scalar_t* gmap = grad_lv->data[l] + q * h * w;
            std::memset(gmap, 0, sizeof(scalar_t) * h * w);  // all-zero bits is 0 in every dtype
            window_coef(s, r, g, kTile, coef);
            store_patch(s, r, coef, gmap, h, w);
          }
        }
        grad_coords[(2 * t.b) * HW + ij] = static_cast<coord_t>(gx);
        grad_coords[(2 * t.b + 1) * HW + ij] = static_cast<coord_t>(gy);
      }
    });
  });
}

at::Tensor corr_lookup_cpu(at::TensorList pyramid, const at::Tensor& coords_in, int64_t radius) {
  constexpr const char* op = "corr_lookup";
  check_lookup_inputs(pyramid, coords_in, radius, op);
  const auto levels = contiguous_all(pyramid);
  const at::Tensor coords = coords_in.contiguous();
  const int64_t B = coords.size(0), H = coords.size(2), W = coords.size(3);
  const int64_t L = static_cast<int64_t>(levels.size());
  const int64_t K = (2 * radius + 1) * (2 * radius + 1);
  at::Tensor out = at::empty({B, L * K, H, W}, levels[0].options());  // the maps' dtype
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, levels[0].scalar_type(), op, [&] {
    dispatch_coords<scalar_t>(coords, [&](auto tag) {
      using coord_t = decltype(tag);
      lookup_forward_kernel<scalar_t, coord_t>(level_ptrs<const scalar_t>(levels, 3, 4),
                                               coords.data_ptr<coord_t>(), out.data_ptr<scalar_t>(), B,
                                               H * W, static_cast<int>(radius));
    });
  });
  return out;
}

std::tuple<std::vector<at::Tensor>, at::Tensor> corr_lookup_backward_cpu(
    const at::Tensor& grad_out_in, at::TensorList pyramid, const at::Tensor& coords_in,
    int64_t radius, bool pyramid_grad) {
  constexpr const char* op = "corr_lookup_backward";
  check_lookup_inputs(pyramid, coords_in, radius, op);
  check_grad_out(grad_out_in, coords_in, pyramid[0], static_cast<int64_t>(pyramid.size()), radius, op);
  const auto levels = contiguous_all(pyramid);
  const at::Tensor coords = coords_in.contiguous();
  const at::Tensor grad_out = grad_out_in.contiguous();
  const int64_t B = coords.size(0), H = coords.size(2), W = coords.size(3);
  at::Tensor grad_coords = at::empty_like(coords);
  std::vector<at::Tensor> grad_levels;
  if (pyramid_grad) {
    // Filled (zeros + corners) by the kernel, one query's map at a time.
    for (const auto& level : levels) {
      grad_levels.push_back(at::empty(level.sizes(), level.options()));
      advise_huge_pages(grad_levels.back());
    }
  }
  if (B * H * W == 0) {
    for (auto& g : grad_levels) g.zero_();
    return {grad_levels, grad_coords};
  }
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, levels[0].scalar_type(), op, [&] {
    LevelPtrs<scalar_t> grad_ptrs = level_ptrs<scalar_t>(grad_levels, 3, 4);
    dispatch_coords<scalar_t>(coords, [&](auto tag) {
      using coord_t = decltype(tag);
      lookup_backward_kernel<scalar_t, coord_t>(level_ptrs<const scalar_t>(levels, 3, 4),
                                                coords.data_ptr<coord_t>(), grad_out.data_ptr<scalar_t>(),
                                                pyramid_grad ? &grad_ptrs : nullptr,
                                                grad_coords.data_ptr<coord_t>(), B, H * W,
                                                static_cast<int>(radius));
    });
  });
  return {grad_levels, grad_coords};
}

// ---- corr_lookup_onthefly -------------------------------------------------------

template <typename scalar_t, typename coord_t>
void onthefly_forward_kernel(const scalar_t* fmap1, const LevelPtrs<const scalar_t>& f2,
                             const coord_t* coords, scalar_t* out, int64_t B, int64_t HW,
                             int64_t D, int r) {
  using acc_t = at::opmath_type<scalar_t>;
  const int L = f2.num;
  const int64_t K = (2 * r + 1) * (2 * r + 1);
  at::parallel_for(0, B * HW, kGrain, [&](int64_t begin, int64_t end) {
    acc_t P[kMaxPatch];
    std::vector<scalar_t> out_tile(static_cast<size_t>(L * K * kTile));
    for_each_tile(begin, end, HW, [&](const Tile& t) {
      for (int64_t k = 0; k < t.n; ++k) {
        const int64_t ij = t.ij0 + k, q = t.b * HW + ij;
        const acc_t x = static_cast<acc_t>(coords[(2 * t.b) * HW + ij]);
        const acc_t y = static_cast<acc_t>(coords[(2 * t.b + 1) * HW + ij]);
        for (int l = 0; l < L; ++l) {
          const Bilinear<acc_t> s = bilinear_setup(x, y, level_scale<acc_t>(l));
          const int64_t h = f2.h[l], w = f2.w[l];
          fill_patch_dot_cpu(fmap1 + q * D, f2.data[l] + t.b * h * w * D, h, w, D, s, r, P);
          window_forward(s, P, r, out_tile.data() + l * K * kTile + k, kTile);
        }
      }
      store_tile(out_tile.data(), L * K, HW, t.n, out + t.b * L * K * HW + t.ij0);
    });
  });
}

// Pass 1 (parallel over queries, each owns its outputs): grad_coords and
// grad_fmap1[q] = sum_l sum_corners coef * fmap2_l[corner].
template <typename scalar_t, typename coord_t>
void onthefly_backward_query_kernel(const scalar_t* fmap1, const LevelPtrs<const scalar_t>& f2,
                                    const coord_t* coords, const scalar_t* grad_out,
                                    scalar_t* grad_fmap1, coord_t* grad_coords, int64_t B,
                                    int64_t HW, int64_t D, int r) {
  using acc_t = at::opmath_type<scalar_t>;
  const int L = f2.num;
  const int S = 2 * r + 2;
  const int64_t K = (2 * r + 1) * (2 * r + 1);
  at::parallel_for(0, B * HW, kGrain, [&](int64_t begin, int64_t end) {
    acc_t P[kMaxPatch];
    acc_t coef[kMaxPatch];
    std::vector<acc_t> g1(static_cast<size_t>(D));
    std::vector<scalar_t> g_tile(static_cast<size_t>(L * K * kTile));
    for_each_tile(begin, end, HW, [&](const Tile& t) {
      load_tile(grad_out + t.b * L * K * HW + t.ij0, L * K, HW, t.ij0, t.n, g_tile.data());
      for (int64_t k = 0; k < t.n; ++k) {
        const int64_t ij = t.ij0 + k, q = t.b * HW + ij;
        const acc_t x = static_cast<acc_t>(coords[(2 * t.b) * HW + ij]);
        const acc_t y = static_cast<acc_t>(coords[(2 * t.b + 1) * HW + ij]);
        const scalar_t* f1 = fmap1 + q * D;
        std::fill(g1.begin(), g1.end(), acc_t(0));
        acc_t gx = acc_t(0), gy = acc_t(0);
        for (int l = 0; l < L; ++l) {
          const acc_t scale = level_scale<acc_t>(l);
          const Bilinear<acc_t> s = bilinear_setup(x, y, scale);
          const int64_t h = f2.h[l], w = f2.w[l];
          const scalar_t* fmap2 = f2.data[l] + t.b * h * w * D;
          const scalar_t* g = g_tile.data() + l * K * kTile + k;
          fill_patch_dot_cpu(f1, fmap2, h, w, D, s, r, P);
          acc_t dx, dy;
          window_grad_coords(s, P, r, g, kTile, &dx, &dy);
          gx += scale * dx;
          gy += scale * dy;
          window_coef(s, r, g, kTile, coef);
          const PatchRange p = patch_range(s, r, h, w);
          for (int v = p.v_lo; v < p.v_hi; ++v) {  // corners u of row v: consecutive pixels
            const scalar_t* rows = fmap2 + ((p.Y0 + v) * w + p.X0 + p.u_lo) * D;
            vec::rows_axpy(rows, p.u_hi - p.u_lo, D, coef + v * S + p.u_lo, g1.data());
          }
        }
        scalar_t* out1 = grad_fmap1 + q * D;
        for (int64_t d = 0; d < D; ++d) out1[d] = static_cast<scalar_t>(g1[d]);
        grad_coords[(2 * t.b) * HW + ij] = static_cast<coord_t>(gx);
        grad_coords[(2 * t.b + 1) * HW + ij] = static_cast<coord_t>(gy);
      }
    });
  });
}

// Pass 2: grad_fmap2_l[b, Y, X, :] += coef * fmap1[q, :], a scatter over queries.
// Race-free without atomics: each task owns one (batch, channel slice) and walks
// that batch item's queries in order (deterministic). coef is recomputed from
// grad_out (it depends on the fractions and grad_out only, not on the features).
template <typename scalar_t, typename coord_t>
void onthefly_backward_fmap2_kernel(const scalar_t* fmap1, const LevelPtrs<const scalar_t>& f2,
                                    const coord_t* coords, const scalar_t* grad_out,
                                    const LevelPtrs<at::opmath_type<scalar_t>>& g2, int64_t B,
                                    int64_t HW, int64_t D, int r) {
  using acc_t = at::opmath_type<scalar_t>;
  const int L = f2.num;
  const int S = 2 * r + 2;
  const int64_t K = (2 * r + 1) * (2 * r + 1);
  // About 2 tasks per thread; slices of at least 32 channels (each task recomputes
  // coef, so thinner slices cost more), a multiple of 16 (a cache line of floats).
  const int64_t threads = std::max<int64_t>(1, at::get_num_threads());
  const int64_t want_slices = std::max<int64_t>(1, (2 * threads + B - 1) / B);
  int64_t slice = (D + want_slices - 1) / want_slices;
  slice = std::max<int64_t>(32, (slice + 15) / 16 * 16);
  const int64_t num_slices = std::max<int64_t>(1, (D + slice - 1) / slice);
  at::parallel_for(0, B * num_slices, 1, [&](int64_t begin, int64_t end) {
    acc_t coef[kMaxPatch];
    std::vector<scalar_t> g_tile(static_cast<size_t>(L * K * kTile));
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / num_slices;
      const int64_t d0 = (task - b * num_slices) * slice;
      const int64_t dn = std::min(slice, D - d0);
      if (dn <= 0) continue;
      for_each_tile(b * HW, (b + 1) * HW, HW, [&](const Tile& t) {
        load_tile(grad_out + t.b * L * K * HW + t.ij0, L * K, HW, t.ij0, t.n, g_tile.data());
        for (int64_t k = 0; k < t.n; ++k) {
          const int64_t ij = t.ij0 + k, q = b * HW + ij;
          const acc_t x = static_cast<acc_t>(coords[(2 * b) * HW + ij]);
          const acc_t y = static_cast<acc_t>(coords[(2 * b + 1) * HW + ij]);
          const scalar_t* f1 = fmap1 + q * D + d0;
          for (int l = 0; l < L; ++l) {
            const Bilinear<acc_t> s = bilinear_setup(x, y, level_scale<acc_t>(l));
            const int64_t h = f2.h[l], w = f2.w[l];
            const PatchRange p = patch_range(s, r, h, w);
            if (p.u_lo == p.u_hi || p.v_lo == p.v_hi) continue;
            window_coef(s, r, g_tile.data() + l * K * kTile + k, kTile, coef);
            acc_t* gmap = g2.data[l] + b * h * w * D + d0;
            for (int v = p.v_lo; v < p.v_hi; ++v) {  // corners u of row v: consecutive pixels
              vec::rows_scatter(gmap + ((p.Y0 + v) * w + p.X0 + p.u_lo) * D, p.u_hi - p.u_lo, D,
                                coef + v * S + p.u_lo, f1, dn);
            }
          }
        }
      });
    }
  });
}

at::Tensor corr_lookup_onthefly_cpu(const at::Tensor& fmap1_in, at::TensorList fmap2_levels,
                                    const at::Tensor& coords_in, int64_t radius) {
  constexpr const char* op = "corr_lookup_onthefly";
  check_onthefly_inputs(fmap1_in, fmap2_levels, coords_in, radius, op);
  const auto levels = contiguous_all(fmap2_levels);
  const at::Tensor fmap1 = fmap1_in.contiguous();
  const at::Tensor coords = coords_in.contiguous();
  const int64_t B = coords.size(0), H = coords.size(2), W = coords.size(3), D = fmap1.size(3);
  const int64_t L = static_cast<int64_t>(levels.size());
  const int64_t K = (2 * radius + 1) * (2 * radius + 1);
  at::Tensor out = at::empty({B, L * K, H, W}, fmap1.options());  // the maps' dtype
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, fmap1.scalar_type(), op, [&] {
    dispatch_coords<scalar_t>(coords, [&](auto tag) {
      using coord_t = decltype(tag);
      onthefly_forward_kernel<scalar_t, coord_t>(fmap1.data_ptr<scalar_t>(),
                                                 level_ptrs<const scalar_t>(levels, 1, 2),
                                                 coords.data_ptr<coord_t>(), out.data_ptr<scalar_t>(), B,
                                                 H * W, D, static_cast<int>(radius));
    });
  });
  return out;
}

std::tuple<at::Tensor, std::vector<at::Tensor>, at::Tensor> corr_lookup_onthefly_backward_cpu(
    const at::Tensor& grad_out_in, const at::Tensor& fmap1_in, at::TensorList fmap2_levels,
    const at::Tensor& coords_in, int64_t radius) {
  constexpr const char* op = "corr_lookup_onthefly_backward";
  check_onthefly_inputs(fmap1_in, fmap2_levels, coords_in, radius, op);
  check_grad_out(grad_out_in, coords_in, fmap1_in, static_cast<int64_t>(fmap2_levels.size()), radius, op);
  const auto levels = contiguous_all(fmap2_levels);
  const at::Tensor fmap1 = fmap1_in.contiguous();
  const at::Tensor coords = coords_in.contiguous();
  const at::Tensor grad_out = grad_out_in.contiguous();
  const int64_t B = coords.size(0), H = coords.size(2), W = coords.size(3), D = fmap1.size(3);
  at::Tensor grad_fmap1 = at::empty_like(fmap1);
  at::Tensor grad_coords = at::empty_like(coords);
  // grad_fmap2 accumulates over queries: in the opmath type (float for half/bf16).
  const auto acc_type = at::toOpMathType(fmap1.scalar_type());
  std::vector<at::Tensor> grad_levels;
  for (const auto& level : levels)
    grad_levels.push_back(at::zeros(level.sizes(), level.options().dtype(acc_type)));
  if (B * H * W > 0) {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, fmap1.scalar_type(), op, [&] {
      using acc_t = at::opmath_type<scalar_t>;
      const auto f2 = level_ptrs<const scalar_t>(levels, 1, 2);
      dispatch_coords<scalar_t>(coords, [&](auto tag) {
        using coord_t = decltype(tag);
        onthefly_backward_query_kernel<scalar_t, coord_t>(
            fmap1.data_ptr<scalar_t>(), f2, coords.data_ptr<coord_t>(),
            grad_out.data_ptr<scalar_t>(), grad_fmap1.data_ptr<scalar_t>(),
            grad_coords.data_ptr<coord_t>(), B, H * W, D, static_cast<int>(radius));
        if (D > 0) {
          onthefly_backward_fmap2_kernel<scalar_t, coord_t>(
              fmap1.data_ptr<scalar_t>(), f2, coords.data_ptr<coord_t>(),
              grad_out.data_ptr<scalar_t>(), level_ptrs<acc_t>(grad_levels, 1, 2), B, H * W, D,
              static_cast<int>(radius));
        }
      });
    });
  }
  if (acc_type != fmap1.scalar_type()) {
    for (auto& g : grad_levels) g = g.to(fmap1.scalar_type());
  }
  return {grad_fmap1, grad_levels, grad_coords};
}

}  // namespace

TORCH_LIBRARY_IMPL(pyflowops, CPU, m) {
  m.impl("corr_lookup", &corr_lookup_cpu);
  m.impl("corr_lookup_backward", &corr_lookup_backward_cpu);
  m.impl("corr_lookup_onthefly", &corr_lookup_onthefly_cpu);
  m.impl("corr_lookup_onthefly_backward", &corr_lookup_onthefly_backward_cpu);
}

}  // namespace corr
}  // namespace pyflowops
