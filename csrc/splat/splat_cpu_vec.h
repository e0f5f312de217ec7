// CPU-only tile kernels of the Gaussian-splatting rasterizer (included by
// splat_cpu.cpp only).
//
// One call renders (or replays backwards) one tile: its pixels are flattened
// row-major into packs of N lanes and every Gaussian of the tile's list visits
// the packs its (superset) pixel box covers. Per lane the numbers are those of
// pixel_alpha / pixel_alpha_vjp in splat_math.h and of the contract's loops, term
// for term; skipped lanes are masked with selects (never multiplied by 0, so a
// non-finite input of a skipped pair cannot leak). The N-lane packs and vexp
// (~1 ulp expf) are common/cpu_vec.h's, compiled for baseline
// x86-64 (SSE2) and AVX2 and picked at run time; doubles use std::exp per lane.
// Masks are integer lanes of -1 / 0 (also for N == 1, where they are scalars).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "common/cpu_isa.h"
#include "common/cpu_vec.h"
#include "splat/splat_math.h"

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

namespace pyflowops {
namespace splat {
namespace vec {

using pyflowops::vec::hsum;
using pyflowops::vec::load;
using pyflowops::vec::P;
using pyflowops::vec::splat;
using pyflowops::vec::store;

// One screen-space Gaussian in opmath (gathered once per call), with the half
// extents (ex, ey) of the pixel box outside which no pixel can pass its tests.
template <typename T>
struct Gauss {
  T mx, my, a, b, c, o, z, r;  // mean2d, conic, opacity, depth, radius (as T)
  T ex, ey;                    // half extents of the footprint; < 0: no pixel passes
};

// Footprint of g: the radius box, shrunk to the ellipse o exp(-sigma) >= 1/255 when
// the conic is positive definite. That ellipse's half extents are
// sqrt(2 s (conic^-1)_00), sqrt(2 s (conic^-1)_11) with s = ln(255 o); s gets a
// margin (0.5 + 1e-3 s) so that no pixel the rounded per-lane test would keep is
// left out. Opacity < 1/255: empty (alpha <= o). NaN opacity: the radius box.
template <typename T>
inline void set_footprint(Gauss<T>& g) {
  g.ex = g.ey = g.r;
  if (g.o < T(kAlphaMin)) {
    g.ex = g.ey = T(-1);
    return;
  }
  const double det = double(g.a) * g.c - double(g.b) * g.b;
  if (!(g.a > T(0) && det > 0.0 && std::isfinite(det) && std::isfinite(double(g.o)))) return;
  double s = std::log(double(g.o) / kAlphaMin);
  s += 0.5 + 1e-3 * s;
  const double ex = std::sqrt(2.0 * s * g.c / det) + 1.0, ey = std::sqrt(2.0 * s * g.a / det) + 1.0;
  if (ex < double(g.r)) g.ex = static_cast<T>(ex);
  if (ey < double(g.r)) g.ey = static_cast<T>(ey);
}

// One tile: pixels (y0 + p / tw, x0 + p % tw) for p < tw * th, packs of N lanes
// up to `padded` (a multiple of every N); px/py hold the pixel centers.
template <typename T>
struct Tile {
  int64_t x0, y0, tw, th, padded;
  const T* px;
  const T* py;
};

template <typename T, int N>
using M = typename pyflowops::vec::Pack<T, N>::itype;
// The integer of a mask lane (and of the per-pixel `last` buffers).
template <typename T>
using lane_int = std::conditional_t<sizeof(T) == 4, int32_t, int64_t>;

template <typename T, int N>
PFO_ALWAYS_INLINE M<T, N> msplat(int64_t v) {
  if constexpr (N == 1) {
    return static_cast<M<T, N>>(v);
  } else {
    return static_cast<lane_int<T>>(v) - M<T, N>{};
  }
}
// -1 where a < b, else 0 (also for N == 1).
template <typename T, int N>
PFO_ALWAYS_INLINE M<T, N> lt(P<T, N> a, P<T, N> b) {
  if constexpr (N == 1) {
    return a < b ? -1 : 0;
  } else {
    return a < b;
  }
}
template <typename T, int N>
PFO_ALWAYS_INLINE M<T, N> le(P<T, N> a, P<T, N> b) {
  if constexpr (N == 1) {
    return a <= b ? -1 : 0;
  } else {
    return a <= b;
  }
}
template <typename T, int N>
PFO_ALWAYS_INLINE M<T, N> ilt(M<T, N> a, M<T, N> b) {
  if constexpr (N == 1) {
    return a < b ? -1 : 0;
  } else {
    return a < b;
  }
}
template <typename V, typename Mask>
PFO_ALWAYS_INLINE V sel(Mask m, V a, V b) {
  return m ? a : b;
}
template <typename T, int N>
PFO_ALWAYS_INLINE int popcount(M<T, N> m) {
  if constexpr (N == 1) {
    return m != 0;
  } else {
    int r = 0;
    for (int l = 0; l < N; ++l) r += m[l] != 0;
    return r;
  }
}
template <typename T, int N>
PFO_ALWAYS_INLINE P<T, N> vexp(P<T, N> x) {
  if constexpr (std::is_same<T, float>::value) {
    return pyflowops::vec::vexp<N>(x);
  } else if constexpr (N == 1) {
    return std::exp(x);
  } else {
    for (int l = 0; l < N; ++l) x[l] = std::exp(x[l]);
    return x;
  }
}

// Rows [row0, row1] and columns [col0, col1] of the tile (local) holding g's
// footprint, one pixel of slack for rounding (NaN centers: the whole tile); false
// when it misses the tile. The kernels visit the packs of each row in increasing
// order, each pack once (rows of a tile narrower than a pack share packs).
template <typename T>
struct Span {
  int64_t row0, row1, col0, col1;
};

template <typename T>
PFO_ALWAYS_INLINE bool footprint_span(const Gauss<T>& g, const Tile<T>& t, Span<T>* s) {
  if (g.ex < T(0)) return false;
  const T tw = static_cast<T>(t.tw), th = static_cast<T>(t.th);
  const T c0 = pfo_floor(g.mx - g.ex - T(0.5)) - static_cast<T>(t.x0) - T(1);
  const T c1 = pfo_ceil(g.mx + g.ex - T(0.5)) - static_cast<T>(t.x0) + T(1);
  const T r0 = pfo_floor(g.my - g.ey - T(0.5)) - static_cast<T>(t.y0) - T(1);
  const T r1 = pfo_ceil(g.my + g.ey - T(0.5)) - static_cast<T>(t.y0) + T(1);
  if (c1 < T(0) || c0 >= tw || r1 < T(0) || r0 >= th) return false;
  s->col0 = c0 > T(0) ? static_cast<int64_t>(c0) : 0;
  s->row0 = r0 > T(0) ? static_cast<int64_t>(r0) : 0;
  s->col1 = c1 < tw - T(1) ? static_cast<int64_t>(c1) : t.tw - 1;
  s->row1 = r1 < th - T(1) ? static_cast<int64_t>(r1) : t.th - 1;
  return true;
}

// Loops p over the packs of span `sp` (see footprint_span); N lanes.
#define PFO_SPLAT_FOR_EACH_PACK(sp, t, N, p)                                         \
  for (int64_t row_ = (sp).row0, next_ = 0; row_ <= (sp).row1; ++row_)              \
    for (int64_t p = std::max(next_, (row_ * (t).tw + (sp).col0) / (N) * (N)),       \
                 p1_ = (row_ * (t).tw + (sp).col1) / (N) * (N);                      \
         p <= p1_ || ((next_ = p1_ + (N)), false); p += (N))

// true where any lane of the mask is set.
template <typename T, int N>
PFO_ALWAYS_INLINE bool any(M<T, N> m) {
  if constexpr (N == 1) {
    return m != 0;
  } else {
    uint64_t w[sizeof(m) / 8];
    std::memcpy(w, &m, sizeof(m));
    uint64_t r = 0;
    for (size_t i = 0; i < sizeof(m) / 8; ++i) r |= w[i];
    return r != 0;
  }
}

// Per lane: the pair's alpha, e = exp(-sigma), dx, dy and masks: ok (passes the radius
// test and both skips) and clamped (o e >= 0.999). pixel_alpha on N lanes.
template <typename T, int N>
struct Hit {
  P<T, N> dx, dy, e, alpha;
  M<T, N> ok, clamped;
};

template <typename T, int N>
PFO_ALWAYS_INLINE Hit<T, N> hit_at(const Gauss<T>& g, const Tile<T>& t, int64_t p) {
  using V = P<T, N>;
  Hit<T, N> h;
  h.dx = load<T, N>(t.px + p) - g.mx;
  h.dy = load<T, N>(t.py + p) - g.my;
  const V r = splat<T, N>(g.r);
  const M<T, N> inside = le<T, N>(pyflowops::vec::vabs<T, N>(h.dx), r) &
                         le<T, N>(pyflowops::vec::vabs<T, N>(h.dy), r);
  const V sigma = T(0.5) * (g.a * h.dx * h.dx + g.c * h.dy * h.dy) + g.b * h.dx * h.dy;
  h.e = vexp<T, N>(-sigma);
  const V raw = g.o * h.e;
  const V amax = splat<T, N>(T(kAlphaMax));
  h.clamped = ~lt<T, N>(raw, amax);
  h.alpha = sel(h.clamped, amax, raw);
  h.ok = inside & ~lt<T, N>(sigma, splat<T, N>(T(0))) &
         ~lt<T, N>(h.alpha, splat<T, N>(T(kAlphaMin)));
  return h;
}

// ---- forward -----------------------------------------------------------------------

// Per-pixel state of a tile (planar, `padded` entries each): transmittance, depth,
// features [C][padded], last (as the mask's integer type).
template <typename T>
struct ForwardState {
  T* trans;
  T* depth;
  T* image;
  void* last;
};

// Composites the tile's list ids[0..count) front to back into st (initialized here).
template <typename T, int N>
PFO_ALWAYS_INLINE void forward_tile_impl(const Gauss<T>* gs, const T* feat, int64_t C,
                                         const int32_t* ids, int64_t count, const Tile<T>& t,
                                         const ForwardState<T>& st) {
  using V = P<T, N>;
  using I = M<T, N>;
  auto* last = static_cast<lane_int<T>*>(st.last);
  const int64_t pixels = t.tw * t.th;
  for (int64_t p = 0; p < t.padded; ++p) {
    st.trans[p] = T(1);
    st.depth[p] = T(0);
    last[p] = p < pixels ? 0 : -1;  // -1: a padding lane, never alive
  }
  for (int64_t q = 0; q < C * t.padded; ++q) st.image[q] = T(0);
  int64_t alive = pixels;
  const V zero = splat<T, N>(T(0)), one = splat<T, N>(T(1));
  const V tmin = splat<T, N>(T(kTransmittanceMin));
  for (int64_t k = 0; k < count && alive > 0; ++k) {
    const Gauss<T> g = gs[ids[k]];
    const T* f = feat + static_cast<int64_t>(ids[k]) * C;
    if (k + 8 < count) __builtin_prefetch(gs + ids[k + 8]);
    Span<T> sp;
    if (!footprint_span(g, t, &sp)) continue;
    PFO_SPLAT_FOR_EACH_PACK(sp, t, N, p) {
      const I lp = load<lane_int<T>, N>(last + p);
      const I live = ~ilt<T, N>(lp, msplat<T, N>(0));  // last >= 0: alive
      if (!any<T, N>(live)) continue;
      const Hit<T, N> h = hit_at<T, N>(g, t, p);
      const I ok = h.ok & live;
      if (!any<T, N>(ok)) continue;
      const V tr = load<T, N>(st.trans + p);
      const V tn = tr * (one - h.alpha);
      const I stop = ok & lt<T, N>(tn, tmin);
      const I contrib = ok & ~stop;
      if (any<T, N>(stop)) alive -= popcount<T, N>(stop);
      const V w = h.alpha * tr;
      for (int64_t c = 0; c < C; ++c) {
        T* img = st.image + c * t.padded + p;
        store<T, N>(img, load<T, N>(img) + sel(contrib, f[c] * w, zero));
      }
      store<T, N>(st.depth + p, load<T, N>(st.depth + p) + sel(contrib, g.z * w, zero));
      store<T, N>(st.trans + p, sel(contrib, tn, tr));
      I nl = sel(contrib, msplat<T, N>(k + 1), lp);
      nl = sel(stop, ~nl, nl);  // stopped: -(last + 1) < 0 marks the lane dead
      store<lane_int<T>, N>(last + p, nl);
    }
  }
  for (int64_t p = 0; p < t.padded; ++p)
    if (last[p] < 0) last[p] = ~last[p];  // decode the stopped lanes
}

// ---- backward ----------------------------------------------------------------------

// Per-pixel inputs and state of a tile's backward (planar, `padded` entries):
// cotangents, final transmittance, last (int lanes, 0 on padding), and the
// running sums S_c [C][padded], S_d, T.
template <typename T>
struct BackwardState {
  const T* g_image;  // [C][padded]
  const T* g_alpha;
  const T* g_depth;
  const T* trans_final;
  const void* last;
  T* s_image;  // [C][padded]
  T* s_depth;
  T* trans;
};

// Replays the tile back to front; inst[k * (7 + C) + j] receives instance k's
// gradient: (mean2d x, y, conic a, b, c, opacity, depth, features[C]).
// s_image/s_depth/trans are initialized here; inst must be zeroed by the caller.
template <typename T, int N>
PFO_ALWAYS_INLINE void backward_tile_impl(const Gauss<T>* gs, const T* feat, int64_t C,
                                          const int32_t* ids, int64_t kmax, const Tile<T>& t,
                                          const T* background, const BackwardState<T>& st,
                                          T* acc, T* inst) {
  using V = P<T, N>;
  using I = M<T, N>;
  using int_t = lane_int<T>;
  const auto* last = static_cast<const int_t*>(st.last);
  for (int64_t p = 0; p < t.padded; ++p) {
    st.trans[p] = st.trans_final[p];
    st.s_depth[p] = T(0);
    for (int64_t c = 0; c < C; ++c)
      st.s_image[c * t.padded + p] = background ? st.trans_final[p] * background[c] : T(0);
  }
  const V zero = splat<T, N>(T(0)), one = splat<T, N>(T(1)), half = splat<T, N>(T(0.5));
  const int64_t stride = 7 + C;
  V* va = reinterpret_cast<V*>(acc);  // 7 + C packs (aligned by the caller)
  for (int64_t k = kmax - 1; k >= 0; --k) {
    const Gauss<T> g = gs[ids[k]];
    const T* f = feat + static_cast<int64_t>(ids[k]) * C;
    if (k >= 8) __builtin_prefetch(gs + ids[k - 8]);
    bool touched = false;
    Span<T> sp;
    if (!footprint_span(g, t, &sp)) continue;
    PFO_SPLAT_FOR_EACH_PACK(sp, t, N, p) {
      const I act = ilt<T, N>(msplat<T, N>(k), load<int_t, N>(last + p));
      if (!any<T, N>(act)) continue;
      const Hit<T, N> h = hit_at<T, N>(g, t, p);
      const I ok = h.ok & act;
      if (!any<T, N>(ok)) continue;
      if (!touched) {
        for (int64_t j = 0; j < stride; ++j) va[j] = zero;
        touched = true;
      }
      const V om = one - h.alpha;
      const V tr = sel(ok, load<T, N>(st.trans + p) / om, load<T, N>(st.trans + p));
      store<T, N>(st.trans + p, tr);
      const V w = h.alpha * tr;
      V ga = zero;
      for (int64_t c = 0; c < C; ++c) {
        const V gi = load<T, N>(st.g_image + c * t.padded + p);
        T* s = st.s_image + c * t.padded + p;
        const V sc = load<T, N>(s);
        ga += gi * (f[c] * tr - sc / om);
        va[7 + c] += sel(ok, w * gi, zero);
        store<T, N>(s, sc + sel(ok, f[c] * w, zero));
      }
      const V gd = load<T, N>(st.g_depth + p), sd = load<T, N>(st.s_depth + p);
      ga += gd * (g.z * tr - sd / om) + load<T, N>(st.g_alpha + p) * load<T, N>(st.trans_final + p) / om;
      va[6] += sel(ok, w * gd, zero);
      store<T, N>(st.s_depth + p, sd + sel(ok, g.z * w, zero));
      const I grad = ok & ~h.clamped;
      if (!any<T, N>(grad)) continue;
      va[5] += sel(grad, ga * h.e, zero);
      const V gs_ = -ga * h.alpha;  // g_sigma
      va[2] += sel(grad, gs_ * half * h.dx * h.dx, zero);
      va[3] += sel(grad, gs_ * h.dx * h.dy, zero);
      va[4] += sel(grad, gs_ * half * h.dy * h.dy, zero);
      va[0] += sel(grad, -gs_ * (g.a * h.dx + g.b * h.dy), zero);
      va[1] += sel(grad, -gs_ * (g.b * h.dx + g.c * h.dy), zero);
    }
    if (touched)
      for (int64_t j = 0; j < stride; ++j) inst[k * stride + j] = hsum<T, N>(va[j]);
  }
}

// ---- one wrapper per instruction set, picked at run time ------------------------------

// Lanes per pack: 16 bytes (SSE2) or 32 (AVX2); padded tiles are multiples of kMaxLanes.
constexpr int kMaxLanes = 8;

template <typename T>
constexpr int lanes(int bytes) {
  return PFO_VEC_EXT ? bytes / static_cast<int>(sizeof(T)) : 1;
}

#define PFO_SPLAT_WRAPPERS(SUF, ATTR, BYTES)                                                    \
  template <typename T>                                                                        \
  ATTR void forward_tile_##SUF(const Gauss<T>* gs, const T* feat, int64_t C,                   \
                               const int32_t* ids, int64_t count, const Tile<T>& t,            \
                               const ForwardState<T>& st) {                                    \
    forward_tile_impl<T, lanes<T>(BYTES)>(gs, feat, C, ids, count, t, st);                     \
  }                                                                                            \
  template <typename T>                                                                        \
  ATTR void backward_tile_##SUF(const Gauss<T>* gs, const T* feat, int64_t C,                  \
                                const int32_t* ids, int64_t kmax, const Tile<T>& t,            \
                                const T* background, const BackwardState<T>& st, T* acc,       \
                                T* inst) {                                                     \
    backward_tile_impl<T, lanes<T>(BYTES)>(gs, feat, C, ids, kmax, t, background, st, acc,     \
                                           inst);                                              \
  }

PFO_SPLAT_WRAPPERS(base, , 16)
#if PFO_X86_MULTIVERSION
PFO_SPLAT_WRAPPERS(avx2, __attribute__((target("avx2,fma"))), 32)
inline bool use_avx2() { return cpu::isa() != cpu::Isa::kBase; }
#define PFO_SPLAT_PICK(NAME) (use_avx2() ? NAME##_avx2<T> : NAME##_base<T>)
#else
#define PFO_SPLAT_PICK(NAME) (NAME##_base<T>)
#endif
#undef PFO_SPLAT_WRAPPERS

template <typename T>
inline void forward_tile(const Gauss<T>* gs, const T* feat, int64_t C, const int32_t* ids,
                         int64_t count, const Tile<T>& t, const ForwardState<T>& st) {
  PFO_SPLAT_PICK(forward_tile)(gs, feat, C, ids, count, t, st);
}

template <typename T>
inline void backward_tile(const Gauss<T>* gs, const T* feat, int64_t C, const int32_t* ids,
                          int64_t kmax, const Tile<T>& t, const T* background,
                          const BackwardState<T>& st, T* acc, T* inst) {
  PFO_SPLAT_PICK(backward_tile)(gs, feat, C, ids, kmax, t, background, st, acc, inst);
}
#undef PFO_SPLAT_PICK
#undef PFO_SPLAT_FOR_EACH_PACK

}  // namespace vec
}  // namespace splat
}  // namespace pyflowops

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
