// CPU kernels of the Gaussian-splatting family. Semantics:
// docs/splat_kernel_contract.md.
//
// Projection: at::parallel_for over Gaussians with project_one / project_one_vjp.
// Binning: a stable counting sort of the (tile, Gaussian) instances (Gaussian index
// order within a tile, whatever the thread count), then each tile's segment sorted
// by (full-precision depth, index). Rasterization: one task per tile, handed out
// dynamically (tiles are uneven); a tile's list is walked once for all its pixels
// by the vector kernels of splat_cpu_vec.h. Backward: each (tile, Gaussian)
// instance's gradient goes to its own row of an [M, 7 + C] buffer, then every
// Gaussian sums its rows in tile order: race-free and deterministic.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <limits>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "common/cpu_parallel.h"
#include "splat/splat_checks.h"
#include "splat/splat_cpu_vec.h"
#include "splat/splat_math.h"

namespace pyflowops {
namespace splat {
namespace {

using vec::Gauss;
using vec::lane_int;

// Opmath copy of a contiguous tensor (or its own data when already opmath).
template <typename scalar_t, typename T = at::opmath_type<scalar_t>>
const T* opmath_data(const at::Tensor& t, std::vector<T>& storage) {
  const scalar_t* src = t.data_ptr<scalar_t>();
  if constexpr (std::is_same<scalar_t, T>::value) {
    return src;
  } else {
    storage.resize(static_cast<size_t>(t.numel()));
    at::parallel_for(0, t.numel(), 16384, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) storage[i] = static_cast<T>(src[i]);
    });
    return storage.data();
  }
}

// ---- stable grouping by key (counting sort) -------------------------------------

// Items 0..n-1 each emit keys in [0, K) (visit(i, emit) calls emit(key)); the
// grouping lists, per key, the items that emitted it in increasing item order.
// Chunks of items are counted and filled in parallel; the result does not depend
// on the chunking.
class Grouping {
 public:
  template <typename Visit>
  Grouping(int64_t n, int64_t K, const Visit& visit) : n_(n), K_(K) {
    const int64_t threads = std::max<int64_t>(1, at::get_num_threads());
    chunks_ = std::max<int64_t>(1, std::min(threads, n / 4096));
    base_.assign(static_cast<size_t>(chunks_ * K), 0);
    at::parallel_for(0, chunks_, 1, [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c) {
        int64_t* cnt = base_.data() + c * K;
        for (int64_t i = begin(c); i < begin(c + 1); ++i) visit(i, [&](int64_t key) { ++cnt[key]; });
      }
    });
    offsets_.resize(static_cast<size_t>(K + 1));
    int64_t run = 0;
    for (int64_t key = 0; key < K; ++key) {
      offsets_[key] = run;
      for (int64_t c = 0; c < chunks_; ++c) {
        const int64_t cnt = base_[c * K + key];
        base_[c * K + key] = run;
        run += cnt;
      }
    }
    offsets_[K] = run;
  }

  int64_t total() const { return offsets_[K_]; }
  const std::vector<int64_t>& offsets() const { return offsets_; }

  // values[offsets[key] + j] = the j-th item (increasing) that emitted key.
  template <typename Visit>
  void fill(const Visit& visit, int32_t* values) {
    at::parallel_for(0, chunks_, 1, [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c) {
        int64_t* cur = base_.data() + c * K_;
        for (int64_t i = begin(c); i < begin(c + 1); ++i)
          visit(i, [&](int64_t key) { values[cur[key]++] = static_cast<int32_t>(i); });
      }
    });
  }

 private:
  int64_t begin(int64_t c) const { return n_ * c / chunks_; }
  int64_t n_, K_, chunks_;
  std::vector<int64_t> base_;  // [chunks][K]: counts, then each chunk's write cursor
  std::vector<int64_t> offsets_;
};

// Sort key of a depth: the order of torch.sort (NaN last, -0 == +0) as an unsigned integer.
template <typename T>
uint64_t depth_key(T z) {
  using U = std::conditional_t<sizeof(T) == 4, uint32_t, uint64_t>;
  if (z != z) z = std::numeric_limits<T>::quiet_NaN();
  if (z == T(0)) z = T(0);
  U bits;
  std::memcpy(&bits, &z, sizeof(bits));
  const U sign = U(1) << (8 * sizeof(U) - 1);
  return static_cast<uint64_t>((bits & sign) ? ~bits : (bits | sign));
}

// Tile grid of an image.
struct Grid {
  int64_t width, height, ts, tiles_x, tiles_y;
  Grid(int64_t w, int64_t h, int64_t t)
      : width(w), height(h), ts(t), tiles_x((w + t - 1) / t), tiles_y((h + t - 1) / t) {}
  int64_t count() const { return tiles_x * tiles_y; }
  template <typename T>
  vec::Tile<T> tile(int64_t id, T* px, T* py) const {
    vec::Tile<T> t;
    t.x0 = (id % tiles_x) * ts;
    t.y0 = (id / tiles_x) * ts;
    t.tw = std::min(ts, width - t.x0);
    t.th = std::min(ts, height - t.y0);
    const int64_t pixels = t.tw * t.th;
    t.padded = (pixels + vec::kMaxLanes - 1) / vec::kMaxLanes * vec::kMaxLanes;
    for (int64_t p = 0; p < t.padded; ++p) {
      const int64_t q = std::min(p, pixels - 1);  // padding: a real pixel, masked off
      px[p] = static_cast<T>(t.x0 + q % t.tw) + T(0.5);
      py[p] = static_cast<T>(t.y0 + q / t.tw) + T(0.5);
    }
    t.px = px;
    t.py = py;
    return t;
  }
};

// Gathers the Gaussians in opmath.
template <typename scalar_t, typename T = at::opmath_type<scalar_t>>
std::vector<Gauss<T>> gather_gaussians(const at::Tensor& means2d, const at::Tensor& conics,
                                       const at::Tensor& opacities, const at::Tensor& depths,
                                       const at::Tensor& radii) {
  const int64_t n = means2d.size(0);
  std::vector<Gauss<T>> gs(static_cast<size_t>(n));
  const scalar_t* m = means2d.data_ptr<scalar_t>();
  const scalar_t* c = conics.data_ptr<scalar_t>();
  const scalar_t* o = opacities.data_ptr<scalar_t>();
  const scalar_t* z = depths.data_ptr<scalar_t>();
  const int32_t* r = radii.data_ptr<int32_t>();
  at::parallel_for(0, n, 8192, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      gs[i] = {T(m[2 * i]), T(m[2 * i + 1]), T(c[3 * i]), T(c[3 * i + 1]), T(c[3 * i + 2]),
               T(o[i]),     T(z[i]),         T(r[i]),     T(0),            T(0)};
      vec::set_footprint(gs[i]);
    }
  });
  return gs;
}

// The binning: tile_offsets [T+1] int32 and gaussian_ids [M] int32 (contract order).
template <typename T>
std::pair<at::Tensor, at::Tensor> bin_gaussians(const std::vector<Gauss<T>>& gs,
                                                const int32_t* radii, const Grid& grid,
                                                const at::Tensor& like, const char* op) {
  const int64_t n = static_cast<int64_t>(gs.size());
  auto visit = [&](int64_t i, const auto& emit) {
    int64_t tx0, tx1, ty0, ty1;
    tile_bounds(gs[i].mx, gs[i].my, radii[i], grid.width, grid.height, grid.ts, &tx0, &tx1, &ty0,
                &ty1);
    for (int64_t ty = ty0; ty < ty1; ++ty)
      for (int64_t tx = tx0; tx < tx1; ++tx) emit(ty * grid.tiles_x + tx);
  };
  Grouping groups(n, grid.count(), visit);
  const int64_t m = groups.total();
  TORCH_CHECK(m < (int64_t(1) << 31), op, ": ", m,
              " (tile, Gaussian) instances do not fit int32; use larger tiles");
  const auto opts = like.options().dtype(at::kInt);
  at::Tensor offsets = at::empty({grid.count() + 1}, opts);
  at::Tensor ids = at::empty({m}, opts);
  int32_t* off = offsets.data_ptr<int32_t>();
  for (int64_t t = 0; t <= grid.count(); ++t) off[t] = static_cast<int32_t>(groups.offsets()[t]);
  int32_t* id = ids.data_ptr<int32_t>();
  groups.fill(visit, id);
  // Each tile front to back: (depth, index) ascending.
  parallel_tasks(grid.count(), m, [&](const auto& next) {
    std::vector<std::pair<uint64_t, int32_t>> seg;
    for (int64_t t = next(); t >= 0; t = next()) {
      seg.clear();
      for (int64_t k = off[t]; k < off[t + 1]; ++k) seg.emplace_back(depth_key(gs[id[k]].z), id[k]);
      std::sort(seg.begin(), seg.end());
      for (int64_t k = off[t]; k < off[t + 1]; ++k) id[k] = seg[k - off[t]].second;
    }
  });
  return {offsets, ids};
}

// ---- projection ------------------------------------------------------------------

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> project_gaussians_cpu(
    const at::Tensor& means, const at::Tensor& quats, const at::Tensor& scales,
    const at::Tensor& viewmat, const at::Tensor& K, int64_t width, int64_t height, double near,
    double far) {
  constexpr const char* op = "project_gaussians";
  const int64_t n = check_project_inputs(means, quats, scales, viewmat, K, op);
  check_image_size(width, height, op);
  at::Tensor means2d = at::empty({n, 2}, means.options());
  at::Tensor conics = at::empty({n, 3}, means.options());
  at::Tensor depths = at::empty({n}, means.options());
  at::Tensor radii = at::empty({n}, means.options().dtype(at::kInt));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, means.scalar_type(), op, [&] {
    using T = at::opmath_type<scalar_t>;
    const Camera<T> cam = load_camera<T>(viewmat.data_ptr<scalar_t>(), K.data_ptr<scalar_t>());
    const scalar_t *m = means.data_ptr<scalar_t>(), *q = quats.data_ptr<scalar_t>(),
                   *s = scales.data_ptr<scalar_t>();
    scalar_t *m2 = means2d.data_ptr<scalar_t>(), *co = conics.data_ptr<scalar_t>(),
             *d = depths.data_ptr<scalar_t>();
    int32_t* r = radii.data_ptr<int32_t>();
    at::parallel_for(0, n, 1024, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        const T mi[3] = {T(m[3 * i]), T(m[3 * i + 1]), T(m[3 * i + 2])};
        const T qi[4] = {T(q[4 * i]), T(q[4 * i + 1]), T(q[4 * i + 2]), T(q[4 * i + 3])};
        const T si[3] = {T(s[3 * i]), T(s[3 * i + 1]), T(s[3 * i + 2])};
        T mo[2], co_[3], depth;
        project_one(mi, qi, si, cam, width, height, T(near), T(far), mo, co_, &depth, r + i);
        for (int k = 0; k < 2; ++k) m2[2 * i + k] = static_cast<scalar_t>(mo[k]);
        for (int k = 0; k < 3; ++k) co[3 * i + k] = static_cast<scalar_t>(co_[k]);
        d[i] = static_cast<scalar_t>(depth);
      }
    });
  });
  return {means2d, conics, depths, radii};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> project_gaussians_backward_cpu(
    const at::Tensor& means, const at::Tensor& quats, const at::Tensor& scales,
    const at::Tensor& viewmat, const at::Tensor& K, const at::Tensor& radii,
    const at::Tensor& grad_means2d, const at::Tensor& grad_conics, const at::Tensor& grad_depths) {
  constexpr const char* op = "project_gaussians_backward";
  const int64_t n = check_project_inputs(means, quats, scales, viewmat, K, op);
  check_project_backward_inputs(means, radii, grad_means2d, grad_conics, grad_depths, op);
  at::Tensor g_means = at::empty({n, 3}, means.options());
  at::Tensor g_quats = at::empty({n, 4}, means.options());
  at::Tensor g_scales = at::empty({n, 3}, means.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, means.scalar_type(), op, [&] {
    using T = at::opmath_type<scalar_t>;
    const Camera<T> cam = load_camera<T>(viewmat.data_ptr<scalar_t>(), K.data_ptr<scalar_t>());
    const scalar_t *m = means.data_ptr<scalar_t>(), *q = quats.data_ptr<scalar_t>(),
                   *s = scales.data_ptr<scalar_t>(), *gm2 = grad_means2d.data_ptr<scalar_t>(),
                   *gc = grad_conics.data_ptr<scalar_t>(), *gd = grad_depths.data_ptr<scalar_t>();
    const int32_t* r = radii.data_ptr<int32_t>();
    scalar_t *om = g_means.data_ptr<scalar_t>(), *oq = g_quats.data_ptr<scalar_t>(),
             *os = g_scales.data_ptr<scalar_t>();
    at::parallel_for(0, n, 1024, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        T gmean[3] = {0, 0, 0}, gquat[4] = {0, 0, 0, 0}, gscale[3] = {0, 0, 0};
        if (r[i] > 0) {
          const T mi[3] = {T(m[3 * i]), T(m[3 * i + 1]), T(m[3 * i + 2])};
          const T qi[4] = {T(q[4 * i]), T(q[4 * i + 1]), T(q[4 * i + 2]), T(q[4 * i + 3])};
          const T si[3] = {T(s[3 * i]), T(s[3 * i + 1]), T(s[3 * i + 2])};
          const T g2[2] = {T(gm2[2 * i]), T(gm2[2 * i + 1])};
          const T g3[3] = {T(gc[3 * i]), T(gc[3 * i + 1]), T(gc[3 * i + 2])};
          project_one_vjp(mi, qi, si, cam, g2, g3, T(gd[i]), gmean, gquat, gscale);
        }
        for (int k = 0; k < 3; ++k) om[3 * i + k] = static_cast<scalar_t>(gmean[k]);
        for (int k = 0; k < 4; ++k) oq[4 * i + k] = static_cast<scalar_t>(gquat[k]);
        for (int k = 0; k < 3; ++k) os[3 * i + k] = static_cast<scalar_t>(gscale[k]);
      }
    });
  });
  return {g_means, g_quats, g_scales};
}

// ---- rasterization -----------------------------------------------------------------

// Per-thread tile buffers: `planes` planes of up to ts*ts (padded) opmath values,
// pixel centers, the int `last` lanes and the backward's pack accumulators.
template <typename T>
struct TileScratch {
  int64_t padded;
  std::vector<T> data;
  std::vector<lane_int<T>> last;
  TileScratch(int64_t ts, int64_t planes, int64_t acc)
      : padded((ts * ts + vec::kMaxLanes - 1) / vec::kMaxLanes * vec::kMaxLanes),
        data(static_cast<size_t>((planes + 2) * padded + acc * vec::kMaxLanes + 16)),
        last(static_cast<size_t>(padded)) {}
  T* plane(int64_t i) { return data.data() + (2 + i) * padded; }
  T* px() { return data.data(); }
  T* py() { return data.data() + padded; }
  // 64-byte aligned room for `acc` packs after the planes.
  T* acc(int64_t planes) {
    auto a = reinterpret_cast<uintptr_t>(plane(planes));
    return reinterpret_cast<T*>((a + 63) & ~uintptr_t(63));
  }
};

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
rasterize_gaussians_cpu(const at::Tensor& means2d, const at::Tensor& conics,
                        const at::Tensor& opacities, const at::Tensor& features,
                        const at::Tensor& depths, const at::Tensor& radii, int64_t width,
                        int64_t height, const c10::optional<at::Tensor>& background,
                        int64_t tile_size) {
  constexpr const char* op = "rasterize_gaussians";
  const int64_t C = check_rasterize_inputs(means2d, conics, opacities, features, depths, radii,
                                           background, width, height, tile_size, op);
  const Grid grid(width, height, tile_size);
  at::Tensor image = at::empty({height, width, C}, means2d.options());
  at::Tensor alpha = at::empty({height, width, 1}, means2d.options());
  at::Tensor depth = at::empty({height, width, 1}, means2d.options());
  at::Tensor last = at::empty({height, width}, means2d.options().dtype(at::kInt));
  at::Tensor offsets, ids;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, means2d.scalar_type(), op, [&] {
    using T = at::opmath_type<scalar_t>;
    const auto gs = gather_gaussians<scalar_t>(means2d, conics, opacities, depths, radii);
    std::vector<T> feat_store, bg_store;
    const T* feat = opmath_data<scalar_t>(features, feat_store);
    const T* bg = background.has_value() ? opmath_data<scalar_t>(*background, bg_store) : nullptr;
    std::tie(offsets, ids) = bin_gaussians(gs, radii.data_ptr<int32_t>(), grid, means2d, op);
    const int32_t* off = offsets.data_ptr<int32_t>();
    const int32_t* id = ids.data_ptr<int32_t>();
    scalar_t *img = image.data_ptr<scalar_t>(), *al = alpha.data_ptr<scalar_t>(),
             *dp = depth.data_ptr<scalar_t>();
    int32_t* lst = last.data_ptr<int32_t>();
    parallel_tasks(grid.count(), width * height, [&](const auto& next) {
      TileScratch<T> sc(tile_size, C + 2, 0);
      const vec::ForwardState<T> st{sc.plane(0), sc.plane(1), sc.plane(2), sc.last.data()};
      for (int64_t ti = next(); ti >= 0; ti = next()) {
        const vec::Tile<T> t = grid.tile<T>(ti, sc.px(), sc.py());
        vec::forward_tile<T>(gs.data(), feat, C, id + off[ti], off[ti + 1] - off[ti], t, st);
        for (int64_t p = 0; p < t.tw * t.th; ++p) {
          const int64_t pix = (t.y0 + p / t.tw) * width + t.x0 + p % t.tw;
          const T tr = st.trans[p];
          for (int64_t c = 0; c < C; ++c) {
            const T v = st.image[c * t.padded + p];
            img[pix * C + c] = static_cast<scalar_t>(bg ? v + tr * bg[c] : v);
          }
          al[pix] = static_cast<scalar_t>(T(1) - tr);
          dp[pix] = static_cast<scalar_t>(st.depth[p]);
          lst[pix] = static_cast<int32_t>(sc.last[p]);
        }
      }
    });
  });
  return {image, alpha, depth, offsets, ids, last};
}

// The saved binning must be one rasterize_gaussians could have made: offsets from
// 0 to M, non-decreasing; ids in [0, N); last within its tile's list.
void check_binning(const at::Tensor& offsets, const at::Tensor& ids, const at::Tensor& last,
                   int64_t n, const Grid& grid, const char* op) {
  const int32_t* off = offsets.data_ptr<int32_t>();
  TORCH_CHECK(off[0] == 0 && off[grid.count()] == ids.size(0), op,
              ": tile_offsets must run from 0 to gaussian_ids.size(0)");
  for (int64_t t = 0; t < grid.count(); ++t)
    TORCH_CHECK(off[t] <= off[t + 1], op, ": tile_offsets must be non-decreasing");
  const int32_t* id = ids.data_ptr<int32_t>();
  for (int64_t m = 0; m < ids.size(0); ++m)
    TORCH_CHECK(id[m] >= 0 && id[m] < n, op, ": gaussian_ids out of range");
  const int32_t* l = last.data_ptr<int32_t>();
  for (int64_t i = 0; i < grid.height; ++i)
    for (int64_t j = 0; j < grid.width; ++j) {
      const int64_t t = (i / grid.ts) * grid.tiles_x + j / grid.ts;
      const int32_t v = l[i * grid.width + j];
      TORCH_CHECK(v >= 0 && v <= off[t + 1] - off[t], op, ": last out of range");
    }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
rasterize_gaussians_backward_cpu(
    const at::Tensor& grad_image, const at::Tensor& grad_alpha, const at::Tensor& grad_depth,
    const at::Tensor& means2d, const at::Tensor& conics, const at::Tensor& opacities,
    const at::Tensor& features, const at::Tensor& depths, const at::Tensor& radii,
    const c10::optional<at::Tensor>& background, const at::Tensor& alpha,
    const at::Tensor& tile_offsets, const at::Tensor& gaussian_ids, const at::Tensor& last,
    int64_t width, int64_t height, int64_t tile_size) {
  constexpr const char* op = "rasterize_gaussians_backward";
  const int64_t C = check_rasterize_inputs(means2d, conics, opacities, features, depths, radii,
                                           background, width, height, tile_size, op);
  check_rasterize_backward_inputs(means2d, grad_image, grad_alpha, grad_depth, alpha,
                                  tile_offsets, gaussian_ids, last, C, width, height, tile_size,
                                  op);
  const int64_t n = means2d.size(0), m = gaussian_ids.size(0), stride = 7 + C;
  const Grid grid(width, height, tile_size);
  check_binning(tile_offsets, gaussian_ids, last, n, grid, op);
  at::Tensor g_means2d = at::empty({n, 2}, means2d.options());
  at::Tensor g_conics = at::empty({n, 3}, means2d.options());
  at::Tensor g_opacities = at::empty({n}, means2d.options());
  at::Tensor g_features = at::empty({n, C}, means2d.options());
  at::Tensor g_depths = at::empty({n}, means2d.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, means2d.scalar_type(), op, [&] {
    using T = at::opmath_type<scalar_t>;
    const auto gs = gather_gaussians<scalar_t>(means2d, conics, opacities, depths, radii);
    std::vector<T> feat_store, bg_store;
    const T* feat = opmath_data<scalar_t>(features, feat_store);
    const T* bg = background.has_value() ? opmath_data<scalar_t>(*background, bg_store) : nullptr;
    const int32_t* off = tile_offsets.data_ptr<int32_t>();
    const int32_t* id = gaussian_ids.data_ptr<int32_t>();
    const int32_t* lst = last.data_ptr<int32_t>();
    const scalar_t *gi = grad_image.data_ptr<scalar_t>(), *ga = grad_alpha.data_ptr<scalar_t>(),
                   *gd = grad_depth.data_ptr<scalar_t>(), *al = alpha.data_ptr<scalar_t>();
    std::vector<T> inst(static_cast<size_t>(m * stride));
    // Planes: g_image [C], g_alpha, g_depth, trans_final, s_image [C], s_depth, trans.
    const int64_t planes = 2 * C + 5;
    parallel_tasks(grid.count(), width * height, [&](const auto& next) {
      TileScratch<T> sc(tile_size, planes, stride);
      const vec::BackwardState<T> st{sc.plane(0),     sc.plane(C),         sc.plane(C + 1),
                                     sc.plane(C + 2), sc.last.data(),      sc.plane(C + 3),
                                     sc.plane(2 * C + 3), sc.plane(2 * C + 4)};
      T* g_img = sc.plane(0);
      T* g_al = sc.plane(C);
      T* g_dp = sc.plane(C + 1);
      T* t_fin = sc.plane(C + 2);
      for (int64_t ti = next(); ti >= 0; ti = next()) {
        const vec::Tile<T> t = grid.tile<T>(ti, sc.px(), sc.py());
        std::fill(inst.begin() + off[ti] * stride, inst.begin() + off[ti + 1] * stride, T(0));
        int64_t kmax = 0;
        for (int64_t p = 0; p < t.padded; ++p) {
          const bool real = p < t.tw * t.th;
          const int64_t pix = real ? (t.y0 + p / t.tw) * width + t.x0 + p % t.tw : 0;
          sc.last[p] = real ? lst[pix] : 0;
          kmax = std::max<int64_t>(kmax, sc.last[p]);
          for (int64_t c = 0; c < C; ++c) g_img[c * t.padded + p] = real ? T(gi[pix * C + c]) : T(0);
          g_al[p] = real ? T(ga[pix]) : T(0);
          g_dp[p] = real ? T(gd[pix]) : T(0);
          t_fin[p] = real ? T(1) - T(al[pix]) : T(1);
        }
        vec::backward_tile<T>(gs.data(), feat, C, id + off[ti], kmax, t, bg, st, sc.acc(planes),
                              inst.data() + off[ti] * stride);
      }
    });
    // Per Gaussian, its instances in tile order (increasing instance index).
    Grouping by_gaussian(m, n, [&](int64_t k, const auto& emit) { emit(id[k]); });
    std::vector<int32_t> order(static_cast<size_t>(m));
    by_gaussian.fill([&](int64_t k, const auto& emit) { emit(id[k]); }, order.data());
    const auto& goff = by_gaussian.offsets();
    scalar_t *om = g_means2d.data_ptr<scalar_t>(), *oc = g_conics.data_ptr<scalar_t>(),
             *oo = g_opacities.data_ptr<scalar_t>(), *of = g_features.data_ptr<scalar_t>(),
             *oz = g_depths.data_ptr<scalar_t>();
    at::parallel_for(0, n, 256, [&](int64_t b, int64_t e) {
      std::vector<T> sum(static_cast<size_t>(stride));
      for (int64_t g = b; g < e; ++g) {
        std::fill(sum.begin(), sum.end(), T(0));
        for (int64_t j = goff[g]; j < goff[g + 1]; ++j) {
          const T* row = inst.data() + static_cast<int64_t>(order[j]) * stride;
          for (int64_t q = 0; q < stride; ++q) sum[q] += row[q];
        }
        for (int k = 0; k < 2; ++k) om[2 * g + k] = static_cast<scalar_t>(sum[k]);
        for (int k = 0; k < 3; ++k) oc[3 * g + k] = static_cast<scalar_t>(sum[2 + k]);
        oo[g] = static_cast<scalar_t>(sum[5]);
        oz[g] = static_cast<scalar_t>(sum[6]);
        for (int64_t c = 0; c < C; ++c) of[g * C + c] = static_cast<scalar_t>(sum[7 + c]);
      }
    });
  });
  return {g_means2d, g_conics, g_opacities, g_features, g_depths};
}

}  // namespace

TORCH_LIBRARY_IMPL(pyflowops, CPU, m) {
  m.impl("project_gaussians", &project_gaussians_cpu);
  m.impl("project_gaussians_backward", &project_gaussians_backward_cpu);
  m.impl("rasterize_gaussians", &rasterize_gaussians_cpu);
  m.impl("rasterize_gaussians_backward", &rasterize_gaussians_backward_cpu);
}

}  // namespace splat
}  // namespace pyflowops
