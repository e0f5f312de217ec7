// CPU-only row kernels of the gradient-regularization family (included by
// gradreg_cpu.cpp only).
//
// Every kernel handles the interior columns j in [1, W-2] of one output row
// (no column clamping there; rows come in as already-clamped row pointers);
// gradreg_cpu.cpp does the border columns with the per-pixel helpers of
// gradreg_math.h. The formulas are those helpers', term for term and in the same
// order, on N lanes at a time: GCC/Clang vector extensions, compiled for
// baseline x86-64 (SSE2) and for AVX2 (common/cpu_isa.h). T is the opmath type
// (float or double); half/bfloat16 rows are converted to float first.
// N == 1 is plain scalar code (row tails, and compilers without the extension).
// PlaneRows hands those kernels their opmath input rows.
#pragma once

#include <ATen/OpMathType.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "common/cpu_isa.h"
#include "common/cpu_vec.h"
#include "gradreg/gradreg_math.h"

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpsabi"  // vectors only pass between inlined functions
#endif

namespace pyflowops {
namespace gradreg {
namespace vec {

// The N-lane packs, load/store/splat/hsum, vabs/vsqrt/vexp (common/cpu_vec.h).
using namespace pyflowops::vec;

// ---- per-pixel bodies (N lanes at column j) ---------------------------------------

// rows[t]: row i + t - 1 (clamped) of one plane.
template <typename T>
using Rows3 = const T* const (&)[3];

// g[k] = scale[k] * sum_ab tap_k(a, b) * x[i + a - 1][j + b - 1]  (apply_stencil).
template <typename T, int N, Operator OP, int ORDER>
PFO_ALWAYS_INLINE void stencil_at(Rows3<T> rows, int64_t j, const T* scale, P<T, N>* g) {
  using S = Stencil<OP, ORDER>;
  for (int k = 0; k < S::kDirections; ++k) {
    P<T, N> s = splat<T, N>(T(0));
    for (int a = 0; a < 3; ++a)
      for (int b = 0; b < 3; ++b)
        if (S::tap(k, a, b) != 0) s += T(S::tap(k, a, b)) * load<T, N>(rows[a] + j + b - 1);
    g[k] = s * scale[k];
  }
}

// penalty_value and penalty_grad of gradreg_math.h with eps2 = eps * eps.
template <typename T, int N, Penalty PEN>
PFO_ALWAYS_INLINE P<T, N> penalty_value_v(P<T, N> g, T eps2) {
  if constexpr (PEN == Penalty::kL1) return vabs<T, N>(g);
  if constexpr (PEN == Penalty::kCharbonnier) return vsqrt<T, N>(g * g + eps2);
  return g * g;
}

template <typename T, int N, Penalty PEN>
PFO_ALWAYS_INLINE P<T, N> penalty_grad_v(P<T, N> g, T eps2) {
  using V = P<T, N>;
  if constexpr (PEN == Penalty::kL1) {
    const V one = splat<T, N>(T(1)), zero = splat<T, N>(T(0));
    return (g > T(0) ? one : zero) - (g < T(0) ? one : zero);  // sign, 0 at 0 and NaN
  }
  if constexpr (PEN == Penalty::kCharbonnier) return g / vsqrt<T, N>(g * g + eps2);
  return T(2) * g;
}

// Edge strength e (edge_strength): the mean over C planes and (dx, dy) of |G|.
template <typename T, int N, Operator OP>
PFO_ALWAYS_INLINE P<T, N> edge_at(const T* const* rows, int64_t C, int64_t j, const T* scale) {
  P<T, N> sum = splat<T, N>(T(0));
  for (int64_t c = 0; c < C; ++c) {
    const T* const r[3] = {rows[3 * c], rows[3 * c + 1], rows[3 * c + 2]};
    P<T, N> g[2];
    stencil_at<T, N, OP, 1>(r, j, scale, g);
    sum += vabs<T, N>(g[0]) + vabs<T, N>(g[1]);
  }
  return sum / T(2 * C);
}

// Loss at the pixel without its weight: sum over both flow channels and all
// directions of rho(G); rows[3 * c + t] is row i + t - 1 of channel c.
template <typename T, int N, Operator OP, int ORDER, Penalty PEN>
PFO_ALWAYS_INLINE P<T, N> rho_sum_at(const T* const* rows, int64_t j, const T* scale, T eps2) {
  P<T, N> s = splat<T, N>(T(0));
  for (int c = 0; c < 2; ++c) {
    const T* const r[3] = {rows[3 * c], rows[3 * c + 1], rows[3 * c + 2]};
    P<T, N> g[Stencil<OP, ORDER>::kDirections];
    stencil_at<T, N, OP, ORDER>(r, j, scale, g);
    for (int k = 0; k < Stencil<OP, ORDER>::kDirections; ++k)
      s += penalty_value_v<T, N, PEN>(g[k], eps2);
  }
  return s;
}

// Backward gather (gather_3x3 in the interior, where exactly one tap of each
// neighbour lands): sum_k scale[k] * sum_ab tap_k(a, b) * coef_k[i - a + 1][j - b + 1],
// crow[t * K + k]: direction k's coefficients on row i + t - 1.
template <typename T, int N, Operator OP, int ORDER>
PFO_ALWAYS_INLINE P<T, N> gather_at(const T* const* crow, int64_t j, const T* scale) {
  using S = Stencil<OP, ORDER>;
  constexpr int K = S::kDirections;
  P<T, N> acc = splat<T, N>(T(0));
  for (int k = 0; k < K; ++k) {
    P<T, N> s = splat<T, N>(T(0));
    for (int a = 0; a < 3; ++a)
      for (int b = 0; b < 3; ++b)
        if (S::tap(k, a, b) != 0)
          s += T(S::tap(k, a, b)) * load<T, N>(crow[(2 - a) * K + k] + j + 1 - b);
    acc += s * scale[k];
  }
  return acc;
}

// ---- row kernels: interior columns [1, W-2], N lanes then a scalar tail -----------

// out[k][j] = G_k (spatial_gradient).
template <typename T, int N, Operator OP, int ORDER>
PFO_ALWAYS_INLINE void stencil_row_impl(Rows3<T> rows, int64_t W, const T* scale, T* const* out) {
  constexpr int K = Stencil<OP, ORDER>::kDirections;
  int64_t j = 1;
  for (; j + N <= W - 1; j += N) {
    P<T, N> g[K];
    stencil_at<T, N, OP, ORDER>(rows, j, scale, g);
    for (int k = 0; k < K; ++k) store<T, N>(out[k] + j, g[k]);
  }
  for (; j < W - 1; ++j) {
    T g[K];
    stencil_at<T, 1, OP, ORDER>(rows, j, scale, g);
    for (int k = 0; k < K; ++k) out[k][j] = g[k];
  }
}

// e[j]: rows[3 * c + t] is row i + t - 1 of image plane c.
template <typename T, int N, Operator OP>
PFO_ALWAYS_INLINE void edge_row_impl(const T* const* rows, int64_t C, int64_t W, T* e) {
  T scale[2];
  stencil_scales<OP, 1>(true, scale);
  int64_t j = 1;
  for (; j + N <= W - 1; j += N) store<T, N>(e + j, edge_at<T, N, OP>(rows, C, j, scale));
  for (; j < W - 1; ++j) e[j] = edge_at<T, 1, OP>(rows, C, j, scale);
}

// w[j] = pixel_weight(w[j], e[j]) (float; the mask comes in w). ew: -edge_weight.
template <int N>
PFO_ALWAYS_INLINE void weight_at(const float* e, int64_t j, const WeightParams& p, float ew,
                                 float thr, float* w) {
  const P<float, N> ej = load<float, N>(e + j);
  P<float, N> wj = load<float, N>(w + j);
  if (p.edge_weight != 0.0) wj = wj * vexp<N>(ew * ej);
  if (p.has_threshold) wj = ej < thr ? wj : splat<float, N>(0.0f);
  store<float, N>(w + j, wj);
}

// Every column: the weight is per pixel, no stencil.
template <int N>
PFO_ALWAYS_INLINE void weight_row_impl(const float* e, int64_t W, const WeightParams& p,
                                       float* w) {
  const float ew = -static_cast<float>(p.edge_weight), thr = static_cast<float>(p.threshold);
  int64_t j = 0;
  for (; j + N <= W; j += N) weight_at<N>(e, j, p, ew, thr, w);
  for (; j < W; ++j) weight_at<1>(e, j, p, ew, thr, w);
}

// Weighted loss w[j] * rho_sum: stored to out (reduction "none") when given, else
// summed (returned; lanes flushed to double every kFlush packs for accuracy).
template <typename T, int N, Operator OP, int ORDER, Penalty PEN>
PFO_ALWAYS_INLINE double loss_row_impl(const T* const* rows, int64_t W, const T* scale, T eps2,
                                       const T* w, T* out) {
  constexpr int kFlush = 64;
  double total = 0.0;
  P<T, N> acc = splat<T, N>(T(0));
  int n = 0;
  int64_t j = 1;
  for (; j + N <= W - 1; j += N) {
    const P<T, N> l = load<T, N>(w + j) * rho_sum_at<T, N, OP, ORDER, PEN>(rows, j, scale, eps2);
    if (out != nullptr) {
      store<T, N>(out + j, l);
    } else {
      acc += l;
      if (++n == kFlush) total += hsum<T, N>(acc), acc = splat<T, N>(T(0)), n = 0;
    }
  }
  total += hsum<T, N>(acc);
  for (; j < W - 1; ++j) {
    const T l = w[j] * rho_sum_at<T, 1, OP, ORDER, PEN>(rows, j, scale, eps2);
    if (out != nullptr) {
      out[j] = l;
    } else {
      total += l;
    }
  }
  return total;
}

// coef[c * K + k][j] = gw[j] * rho'(G_{c,k}) with gw = gl * w (the backward's d loss / d G).
template <typename T, int N, Operator OP, int ORDER, Penalty PEN>
PFO_ALWAYS_INLINE void coef_at(const T* const* rows, int64_t j, const T* scale, T eps2,
                               const T* gw, T* const* coef) {
  constexpr int K = Stencil<OP, ORDER>::kDirections;
  const P<T, N> gwj = load<T, N>(gw + j);
  for (int c = 0; c < 2; ++c) {
    const T* const r[3] = {rows[3 * c], rows[3 * c + 1], rows[3 * c + 2]};
    P<T, N> g[K];
    stencil_at<T, N, OP, ORDER>(r, j, scale, g);
    for (int k = 0; k < K; ++k)
      store<T, N>(coef[c * K + k] + j, gwj * penalty_grad_v<T, N, PEN>(g[k], eps2));
  }
}

template <typename T, int N, Operator OP, int ORDER, Penalty PEN>
PFO_ALWAYS_INLINE void coef_row_impl(const T* const* rows, int64_t W, const T* scale, T eps2,
                                     const T* gw, T* const* coef) {
  int64_t j = 1;
  for (; j + N <= W - 1; j += N) coef_at<T, N, OP, ORDER, PEN>(rows, j, scale, eps2, gw, coef);
  for (; j < W - 1; ++j) coef_at<T, 1, OP, ORDER, PEN>(rows, j, scale, eps2, gw, coef);
}

template <typename T, int N, Operator OP, int ORDER>
PFO_ALWAYS_INLINE void gather_row_impl(const T* const* crow, int64_t W, const T* scale, T* out) {
  int64_t j = 1;
  for (; j + N <= W - 1; j += N) store<T, N>(out + j, gather_at<T, N, OP, ORDER>(crow, j, scale));
  for (; j < W - 1; ++j) out[j] = gather_at<T, 1, OP, ORDER>(crow, j, scale);
}

// ---- one wrapper per instruction set, picked at run time --------------------------

template <typename T>
constexpr int lanes(int bytes) {
  return PFO_VEC_EXT ? bytes / static_cast<int>(sizeof(T)) : 1;
}

#define PFO_GRADREG_WRAPPERS(SUF, ATTR, BYTES)                                                  \
  template <typename T, Operator OP, int ORDER>                                                 \
  ATTR void stencil_row_##SUF(Rows3<T> rows, int64_t W, const T* scale, T* const* out) {       \
    stencil_row_impl<T, lanes<T>(BYTES), OP, ORDER>(rows, W, scale, out);                      \
  }                                                                                            \
  template <typename T, Operator OP>                                                           \
  ATTR void edge_row_##SUF(const T* const* rows, int64_t C, int64_t W, T* e) {                 \
    edge_row_impl<T, lanes<T>(BYTES), OP>(rows, C, W, e);                                      \
  }                                                                                            \
  ATTR inline void weight_row_##SUF(const float* e, int64_t W, const WeightParams& p,          \
                                    float* w) {                                                \
    weight_row_impl<lanes<float>(BYTES)>(e, W, p, w);                                          \
  }                                                                                            \
  template <typename T, Operator OP, int ORDER, Penalty PEN>                                   \
  ATTR double loss_row_##SUF(const T* const* rows, int64_t W, const T* scale, T eps2,          \
                             const T* w, T* out) {                                             \
    return loss_row_impl<T, lanes<T>(BYTES), OP, ORDER, PEN>(rows, W, scale, eps2, w, out);    \
  }                                                                                            \
  template <typename T, Operator OP, int ORDER, Penalty PEN>                                   \
  ATTR void coef_row_##SUF(const T* const* rows, int64_t W, const T* scale, T eps2,            \
                           const T* gw, T* const* coef) {                                      \
    coef_row_impl<T, lanes<T>(BYTES), OP, ORDER, PEN>(rows, W, scale, eps2, gw, coef);         \
  }                                                                                            \
  template <typename T, Operator OP, int ORDER>                                                \
  ATTR void gather_row_##SUF(const T* const* crow, int64_t W, const T* scale, T* out) {        \
    gather_row_impl<T, lanes<T>(BYTES), OP, ORDER>(crow, W, scale, out);                       \
  }

PFO_GRADREG_WRAPPERS(base, , 16)
#if PFO_X86_MULTIVERSION
PFO_GRADREG_WRAPPERS(avx2, __attribute__((target("avx2,fma"))), 32)
// AVX-512 CPUs run the AVX2 code (no AVX-512 kernels yet).
inline bool use_avx2() { return cpu::isa() != cpu::Isa::kBase; }
#define PFO_GRADREG_PICK(NAME, ...) (use_avx2() ? NAME##_avx2 __VA_ARGS__ : NAME##_base __VA_ARGS__)
#else
#define PFO_GRADREG_PICK(NAME, ...) (NAME##_base __VA_ARGS__)
#endif
#undef PFO_GRADREG_WRAPPERS

template <typename T, Operator OP, int ORDER>
inline void stencil_row(Rows3<T> rows, int64_t W, const T* scale, T* const* out) {
  PFO_GRADREG_PICK(stencil_row, <T, OP, ORDER>)(rows, W, scale, out);
}
template <typename T, Operator OP>
inline void edge_row(const T* const* rows, int64_t C, int64_t W, T* e) {
  PFO_GRADREG_PICK(edge_row, <T, OP>)(rows, C, W, e);
}
inline void weight_row(const float* e, int64_t W, const WeightParams& p, float* w) {
  PFO_GRADREG_PICK(weight_row, )(e, W, p, w);
}
template <typename T, Operator OP, int ORDER, Penalty PEN>
inline double loss_row(const T* const* rows, int64_t W, const T* scale, T eps2, const T* w,
                       T* out) {
  return PFO_GRADREG_PICK(loss_row, <T, OP, ORDER, PEN>)(rows, W, scale, eps2, w, out);
}
template <typename T, Operator OP, int ORDER, Penalty PEN>
inline void coef_row(const T* const* rows, int64_t W, const T* scale, T eps2, const T* gw,
                     T* const* coef) {
  PFO_GRADREG_PICK(coef_row, <T, OP, ORDER, PEN>)(rows, W, scale, eps2, gw, coef);
}
template <typename T, Operator OP, int ORDER>
inline void gather_row(const T* const* crow, int64_t W, const T* scale, T* out) {
  PFO_GRADREG_PICK(gather_row, <T, OP, ORDER>)(crow, W, scale, out);
}
#undef PFO_GRADREG_PICK

}  // namespace vec

// ---- opmath input rows of the row kernels ------------------------------------------

// (a - s)[plane p](r, c) in opmath, s optional: n consecutive [H, W] planes.
template <typename scalar_t>
struct PlaneDiff {
  using acc_t = at::opmath_type<scalar_t>;
  const scalar_t* a;
  const scalar_t* s;
  int64_t H, W;
  PFO_INLINE acc_t operator()(int64_t p, int64_t r, int64_t c) const {
    const int64_t idx = (p * H + r) * W + c;
    return s == nullptr ? static_cast<acc_t>(a[idx])
                        : static_cast<acc_t>(a[idx]) - static_cast<acc_t>(s[idx]);
  }
};

// Rows of n planes as opmath rows for the row kernels: the planes' own rows when
// they already are (float/double, no subtrahend), else converted into a ring of
// 3 rows (i-1, i, i+1 of a band) on first use.
template <typename scalar_t>
class PlaneRows {
 public:
  using acc_t = at::opmath_type<scalar_t>;
  PlaneRows(int64_t n, int64_t H, int64_t W) : n_(n), v_{nullptr, nullptr, H, W} {}

  void reset(const scalar_t* a, const scalar_t* s) {
    v_.a = a;
    v_.s = s;
    tag_[0] = tag_[1] = tag_[2] = -1;
    if (!direct() && ring_.empty()) ring_.resize(static_cast<size_t>(3 * n_ * v_.W));
  }
  bool direct() const { return std::is_same<scalar_t, acc_t>::value && v_.s == nullptr; }
  const PlaneDiff<scalar_t>& values() const { return v_; }

  const acc_t* row(int64_t p, int64_t r) {
    const int64_t W = v_.W;
    if (direct()) return reinterpret_cast<const acc_t*>(v_.a + (p * v_.H + r) * W);
    const int64_t slot = r % 3;
    acc_t* base = ring_.data() + slot * n_ * W;
    if (tag_[slot] != r) {
      for (int64_t q = 0; q < n_; ++q)
        for (int64_t c = 0; c < W; ++c) base[q * W + c] = v_(q, r, c);
      tag_[slot] = r;
    }
    return base + p * W;
  }

  // rows[3 * p + t] = row clamp(i + t - 1) of plane p, for every plane.
  void triplets(int64_t i, const acc_t** rows) {
    const int64_t H = v_.H;
    for (int64_t p = 0; p < n_; ++p)
      for (int t = 0; t < 3; ++t) rows[3 * p + t] = row(p, clamp_index(i + t - 1, H));
  }

 private:
  int64_t n_;
  PlaneDiff<scalar_t> v_;
  std::vector<acc_t> ring_;
  int64_t tag_[3] = {-1, -1, -1};
};
}  // namespace gradreg
}  // namespace pyflowops

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
