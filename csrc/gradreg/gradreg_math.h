// Per-pixel math of the gradient-regularization family, shared by the CPU
// kernels (gradreg_cpu.cpp) and the CUDA kernels (gradreg_cuda.cu).
// Semantics: docs/gradreg_kernel_contract.md.
//
// Every derivative is a 3x3 correlation with replicate padding (kornia's
// spatial_gradient): for direction k,
//   G_k(i, j) = scale_k * sum_{a,b in 0..2} tap_k(a, b) * x[clamp(i + a - 1), clamp(j + b - 1)]
// with integer taps (Stencil<OP, ORDER>::tap) and scale_k = 1 / (the stencil's
// response to a unit derivative) when normalized, else 1.
//
// Backward passes are gathers: the gradient at pixel p sums, over the pixels q
// of p's clamped 3x3 neighbourhood, the taps of q's stencil that land on p after
// clamping (tap_weight). Near the border several taps of one q can land on the
// same p; in the interior exactly one does.
#pragma once

#include <cmath>
#include <cstdint>

#include "common/host_device.h"
#include "common/scalar_math.h"

namespace pyflowops {
namespace gradreg {

enum class Operator : int { kSobel = 0, kDiff = 1 };
enum class Penalty : int { kL1 = 0, kCharbonnier = 1, kL2 = 2 };
enum class Reduction : int { kNone = 0, kMean = 1, kSum = 2 };

constexpr int kMaxDirections = 3;  // order 2: dxx, dxy, dyy

// ---- stencils -----------------------------------------------------------------
// tap(k, a, b): row offset a - 1, column offset b - 1. Same kernels as kornia's
// get_spatial_gradient_kernel2d (correlation, x = column is direction 0).

template <Operator OP, int ORDER>
struct Stencil;

// Sobel: dx = [-1 0 1; -2 0 2; -1 0 1], dy its transpose; normalized /8.
template <>
struct Stencil<Operator::kSobel, 1> {
  static constexpr int kDirections = 2;
  PFO_HOST_DEVICE static constexpr int tap(int k, int a, int b) {
    return (k == 0 ? (a == 1 ? 2 : 1) * (b - 1) : (b == 1 ? 2 : 1) * (a - 1));
  }
  PFO_HOST_DEVICE static constexpr int norm(int /*k*/) { return 8; }
};

// Central difference: dx = [0 0 0; -1 0 1; 0 0 0], dy its transpose; normalized /2.
template <>
struct Stencil<Operator::kDiff, 1> {
  static constexpr int kDirections = 2;
  PFO_HOST_DEVICE static constexpr int tap(int k, int a, int b) {
    return k == 0 ? (a == 1 ? b - 1 : 0) : (b == 1 ? a - 1 : 0);
  }
  PFO_HOST_DEVICE static constexpr int norm(int /*k*/) { return 2; }
};

// Second differences: dxx = [1 -2 1] in the middle row, dxy = [1 0 -1; 0 0 0; -1 0 1],
// dyy = [1 -2 1] in the middle column. Normalized as kornia does for order 2 (the
// response to x^2/2, xy, y^2/2): 1, 4, 1.
template <>
struct Stencil<Operator::kDiff, 2> {
  static constexpr int kDirections = 3;
  PFO_HOST_DEVICE static constexpr int tap(int k, int a, int b) {
    return k == 0   ? (a == 1 ? (b == 1 ? -2 : 1) : 0)
           : k == 1 ? (a - 1) * (b - 1)
                    : (b == 1 ? (a == 1 ? -2 : 1) : 0);
  }
  PFO_HOST_DEVICE static constexpr int norm(int k) { return k == 1 ? 4 : 1; }
};

// scale_k of direction k: 1/norm(k) when normalized, else 1.
template <Operator OP, int ORDER, typename acc_t>
PFO_INLINE void stencil_scales(bool normalized, acc_t* scale) {
  for (int k = 0; k < Stencil<OP, ORDER>::kDirections; ++k)
    scale[k] = normalized ? acc_t(1) / acc_t(Stencil<OP, ORDER>::norm(k)) : acc_t(1);
}

// ---- small helpers that compile for host and device ----------------------------

PFO_INLINE int64_t clamp_index(int64_t i, int64_t n) { return i < 0 ? 0 : (i >= n ? n - 1 : i); }

// pfo_sqrt, pfo_exp, pfo_abs: common/scalar_math.h.

// ---- forward pieces -------------------------------------------------------------

// n[a][b] = get(clamp(i + a - 1), clamp(j + b - 1)): the replicate-padded 3x3
// neighbourhood. get(row, col) returns acc_t (a global or shared-memory read).
template <typename acc_t, typename Get>
PFO_INLINE void load_3x3(const Get& get, int64_t i, int64_t j, int64_t H, int64_t W,
                         acc_t (&n)[3][3]) {
  const int64_t rows[3] = {clamp_index(i - 1, H), i, clamp_index(i + 1, H)};
  const int64_t cols[3] = {clamp_index(j - 1, W), j, clamp_index(j + 1, W)};
  for (int a = 0; a < 3; ++a)
    for (int b = 0; b < 3; ++b) n[a][b] = get(rows[a], cols[b]);
}

// g[k] = scale[k] * sum_ab tap_k(a, b) * n[a][b] for every direction k.
template <Operator OP, int ORDER, typename acc_t>
PFO_INLINE void apply_stencil(const acc_t (&n)[3][3], const acc_t* scale, acc_t* g) {
  using S = Stencil<OP, ORDER>;
  for (int k = 0; k < S::kDirections; ++k) {
    acc_t s = acc_t(0);
    for (int a = 0; a < 3; ++a)
      for (int b = 0; b < 3; ++b)
        if (S::tap(k, a, b) != 0) s += acc_t(S::tap(k, a, b)) * n[a][b];
    g[k] = s * scale[k];
  }
}

// rho(g): |g| (l1), sqrt(g^2 + eps^2) (charbonnier), g^2 (l2).
template <typename acc_t>
PFO_INLINE acc_t penalty_value(Penalty p, acc_t g, acc_t eps) {
  if (p == Penalty::kL1) return pfo_abs(g);
  if (p == Penalty::kCharbonnier) return pfo_sqrt(g * g + eps * eps);
  return g * g;
}

// rho'(g): sign(g) with sign(0) = 0 (as torch.abs's gradient), g / sqrt(g^2 + eps^2), 2g.
template <typename acc_t>
PFO_INLINE acc_t penalty_grad(Penalty p, acc_t g, acc_t eps) {
  if (p == Penalty::kL1) return acc_t((g > acc_t(0)) - (g < acc_t(0)));
  if (p == Penalty::kCharbonnier) return g / pfo_sqrt(g * g + eps * eps);
  return acc_t(2) * g;
}

// Edge strength e at (i, j): the mean over C channels and both directions of
// |first-order normalized gradient| of the image; plane(c) points at channel c [H, W].
template <Operator OP, typename acc_t, typename scalar_t>
PFO_INLINE acc_t edge_strength(const scalar_t* image, int64_t C, int64_t i, int64_t j, int64_t H,
                               int64_t W) {
  acc_t scale[2];
  stencil_scales<OP, 1>(true, scale);
  acc_t sum = acc_t(0);
  for (int64_t c = 0; c < C; ++c) {
    const scalar_t* plane = image + c * H * W;
    acc_t n[3][3];
    load_3x3(
        [&](int64_t r, int64_t s) { return static_cast<acc_t>(plane[r * W + s]); }, i, j, H, W, n);
    acc_t g[2];
    apply_stencil<OP, 1>(n, scale, g);
    sum += pfo_abs(g[0]) + pfo_abs(g[1]);
  }
  return sum / acc_t(2 * C);
}

// Per-pixel weight w = mask * exp(-edge_weight * e) * [e < threshold]. The exp
// factor is exactly 1 when edge_weight == 0, and the threshold factor 1 when
// has_threshold is false (then e is not needed at all).
struct WeightParams {
  double edge_weight;
  double threshold;
  bool has_threshold;
};

template <typename acc_t>
PFO_INLINE acc_t pixel_weight(acc_t mask, acc_t e, const WeightParams& p) {
  acc_t w = mask;
  if (p.edge_weight != 0.0) w *= pfo_exp(-acc_t(p.edge_weight) * e);
  if (p.has_threshold && !(e < acc_t(p.threshold))) w = acc_t(0);
  return w;
}

// ---- backward pieces ------------------------------------------------------------

// Along one axis: hit[t] = (clamp(q + t - 1) == p), which of q's three taps land on p.
PFO_INLINE void clamp_hits(int64_t q, int64_t p, int64_t n, bool (&hit)[3]) {
  for (int t = 0; t < 3; ++t) hit[t] = clamp_index(q + t - 1, n) == p;
}

// Sum of direction k's taps of neighbour q that land on p (hy: rows, hx: columns).
template <Operator OP, int ORDER>
PFO_INLINE int tap_weight(int k, const bool (&hy)[3], const bool (&hx)[3]) {
  int s = 0;
  for (int a = 0; a < 3; ++a)
    for (int b = 0; b < 3; ++b)
      if (hy[a] && hx[b]) s += Stencil<OP, ORDER>::tap(k, a, b);
  return s;
}

// Gradient at pixel p = (i, j) of a stencil output's loss: the sum over q in p's
// clamped 3x3 neighbourhood and directions k of scale[k] * tap_weight * coef_k(q),
// where coef(qi, qj, c) fills c[k] = d loss / d G_k(q) for every direction.
template <Operator OP, int ORDER, typename acc_t, typename Coef>
PFO_INLINE acc_t gather_3x3(int64_t i, int64_t j, int64_t H, int64_t W, const acc_t* scale,
                            const Coef& coef) {
  using S = Stencil<OP, ORDER>;
  acc_t acc = acc_t(0);
  const int64_t i_lo = i > 0 ? i - 1 : 0, i_hi = i + 1 < H ? i + 1 : H - 1;
  const int64_t j_lo = j > 0 ? j - 1 : 0, j_hi = j + 1 < W ? j + 1 : W - 1;
  for (int64_t qi = i_lo; qi <= i_hi; ++qi) {
    bool hy[3];
    clamp_hits(qi, i, H, hy);
    for (int64_t qj = j_lo; qj <= j_hi; ++qj) {
      bool hx[3];
      clamp_hits(qj, j, W, hx);
      acc_t c[kMaxDirections];
      coef(qi, qj, c);
      for (int k = 0; k < S::kDirections; ++k) {
        const int t = tap_weight<OP, ORDER>(k, hy, hx);
        if (t != 0) acc += acc_t(t) * scale[k] * c[k];
      }
    }
  }
  return acc;
}

}  // namespace gradreg
}  // namespace pyflowops
