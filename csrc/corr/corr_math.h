// Per-element math of the 4D-correlation lookups, shared by corr_cpu.cpp and
// corr_cuda.cu (and mirrored by pyflowops/triton/corr.py).
//
// docs/corr_kernel_contract.md is the specification. For one query pixel and
// one pyramid level:
//   1. bilinear_setup: level coordinates, floor, fractions, finiteness;
//   2. patch_range + fill_patch / fill_patch_dot: the (2r+2)^2 integer corners
//      P[u][v] around the window (zero outside the map);
//   3. window_forward: the (2r+1)^2 bilinear samples from P;
//   4. window_coef (the VJP w.r.t. the corners, a gather over the samples that
//      touch each corner) and window_grad_coords (the VJP w.r.t. cx, cy).
// Every helper works on one query, so kernels are plain loops over queries.
//
// Patch layout: the contract's P[u][v] (corner X = x0 - r + u, Y = y0 - r + v)
// is stored at P[v * S + u], i.e. row by row of the map, so that filling a patch
// row is a contiguous copy of a map row (and, on the fly, one [n, D] block of
// dot products). coef uses the same layout.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>

#include "common/host_device.h"

#define PFO_CORR_MAX_RADIUS 8
#define PFO_CORR_MAX_LEVELS 8

namespace pyflowops {
namespace corr {

constexpr int kMaxRadius = PFO_CORR_MAX_RADIUS;
constexpr int kMaxLevels = PFO_CORR_MAX_LEVELS;
// Patch side S = 2r + 2: the 2r+1 window samples need one extra corner per axis.
constexpr int kMaxSide = 2 * kMaxRadius + 2;
// A fixed local array of this many acc values holds a patch (324 for r = 8):
// no allocation per query, and on the GPU it lives in registers/local memory.
constexpr int kMaxPatch = kMaxSide * kMaxSide;
// Coordinates are clamped to +-2^30 before floor() so the int64 conversion is
// defined; any such window is far outside every map (sizes are < 2^30).
constexpr double kCoordClamp = 1073741824.0;

template <typename T>
PFO_INLINE bool is_finite(T v) {
#if defined(__CUDA_ARCH__)
  return isfinite(v);
#else
  return std::isfinite(v);
#endif
}

template <typename T>
PFO_INLINE T floor_value(T v) {
#if defined(__CUDA_ARCH__)
  return floor(v);
#else
  return std::floor(v);
#endif
}

template <typename T>
PFO_INLINE T quiet_nan() {
  return std::numeric_limits<T>::quiet_NaN();
}

// Scale of level l: coordinates are level-0 pixels, level l is 2^l times smaller.
// A power of two, so x * level_scale(l) == x / 2^l exactly.
template <typename acc_t>
PFO_INLINE acc_t level_scale(int level) {
  return acc_t(1) / acc_t(int64_t(1) << level);
}

// The levels of a pyramid (or of fmap2) as raw pointers and map sizes, small
// enough to pass to a CUDA kernel by value. Level l of query q starts at
// data[l] + q * h[l] * w[l] (pyramid) or batch b at data[l] + b * h[l] * w[l] * D (fmap2).
template <typename T>
struct LevelPtrs {
  T* data[kMaxLevels];
  int64_t h[kMaxLevels];
  int64_t w[kMaxLevels];
  int num;
};

// Where one query's window lies on one level.
template <typename acc_t>
struct Bilinear {
  int64_t x0;     // floor(cx): patch corner u sits at column X = x0 - r + u
  int64_t y0;     // floor(cy): patch corner v sits at row    Y = y0 - r + v
  acc_t fx, fy;   // cx - x0, cy - y0, in [0, 1)
  bool finite;    // false for NaN/inf coords: samples are NaN, map gradients 0
};

// x, y: level-0 coordinates of the query; scale = 2^-l.
template <typename acc_t>
PFO_INLINE Bilinear<acc_t> bilinear_setup(acc_t x, acc_t y, acc_t scale) {
  Bilinear<acc_t> s;
  acc_t cx = x * scale;
  acc_t cy = y * scale;
  s.finite = is_finite(cx) && is_finite(cy);
  if (!s.finite) {
    s.x0 = 0;
    s.y0 = 0;
    s.fx = acc_t(0);
    s.fy = acc_t(0);
    return s;
  }
  const acc_t lim = acc_t(kCoordClamp);
  cx = cx < -lim ? -lim : (cx > lim ? lim : cx);
  cy = cy < -lim ? -lim : (cy > lim ? lim : cy);
  const acc_t xf = floor_value(cx);
  const acc_t yf = floor_value(cy);
  s.x0 = static_cast<int64_t>(xf);
  s.y0 = static_cast<int64_t>(yf);
  s.fx = cx - xf;
  s.fy = cy - yf;
  return s;
}

// The in-bounds part of a patch: corners u in [u_lo, u_hi), v in [v_lo, v_hi)
// lie inside the h x w map, at X = X0 + u, Y = Y0 + v. Empty for non-finite
// coords, so no helper below ever reads or writes the map for such a query.
struct PatchRange {
  int64_t X0, Y0;
  int u_lo, u_hi, v_lo, v_hi;
};

PFO_INLINE int clamp_to_side(int64_t v, int side) {
  return v < 0 ? 0 : (v > side ? side : static_cast<int>(v));
}

template <typename acc_t>
PFO_INLINE PatchRange patch_range(const Bilinear<acc_t>& s, int r, int64_t h, int64_t w) {
  const int S = 2 * r + 2;
  PatchRange p;
  p.X0 = s.x0 - r;
  p.Y0 = s.y0 - r;
  if (!s.finite) {
    p.u_lo = p.u_hi = p.v_lo = p.v_hi = 0;
    return p;
  }
  p.u_lo = clamp_to_side(-p.X0, S);
  p.u_hi = clamp_to_side(w - p.X0, S);
  p.v_lo = clamp_to_side(-p.Y0, S);
  p.v_hi = clamp_to_side(h - p.Y0, S);
  if (p.u_hi < p.u_lo) p.u_hi = p.u_lo;
  if (p.v_hi < p.v_lo) p.v_hi = p.v_lo;
  return p;
}

template <typename acc_t>
PFO_INLINE void zero_patch(acc_t* P, int r) {
  const int S = 2 * r + 2;
  for (int k = 0; k < S * S; ++k) P[k] = acc_t(0);
}

// ---- forward ---------------------------------------------------------------

// P[v * S + u] = map[Y, X] (map: one query's h x w correlation map, row-major),
// zero outside the map.
template <typename scalar_t, typename acc_t>
PFO_INLINE void fill_patch(const scalar_t* map, int64_t h, int64_t w, const Bilinear<acc_t>& s,
                           int r, acc_t* P) {
  const int S = 2 * r + 2;
  const PatchRange p = patch_range(s, r, h, w);
  if (p.u_lo == 0 && p.u_hi == S && p.v_lo == 0 && p.v_hi == S) {
    // Whole patch inside the map (the common case): a plain copy of S rows.
    const scalar_t* row = map + p.Y0 * w + p.X0;
    for (int v = 0; v < S; ++v, row += w) {
      for (int u = 0; u < S; ++u) P[v * S + u] = static_cast<acc_t>(row[u]);
    }
    return;
  }
  zero_patch(P, r);
  for (int v = p.v_lo; v < p.v_hi; ++v) {
    const int64_t base = (p.Y0 + v) * w + p.X0;  // index of (Y, X0); base + u is in bounds
    for (int u = p.u_lo; u < p.u_hi; ++u) P[v * S + u] = static_cast<acc_t>(map[base + u]);
  }
}

// Plain dot product in acc_t (the on-the-fly corner value). The CPU kernel
// replaces it by a vectorized version with the same meaning.
template <typename scalar_t, typename acc_t>
PFO_INLINE acc_t dot(const scalar_t* a, const scalar_t* b, int64_t n) {
  acc_t sum = acc_t(0);
  for (int64_t d = 0; d < n; ++d) sum += static_cast<acc_t>(a[d]) * static_cast<acc_t>(b[d]);
  return sum;
}

// On-the-fly patch: P[v * S + u] = <f1, fmap2[Y, X, :]> for in-bounds corners.
// f1: the query's D features; fmap2: one level of one batch item, [h, w, D].
template <typename scalar_t, typename acc_t>
PFO_INLINE void fill_patch_dot(const scalar_t* f1, const scalar_t* fmap2, int64_t h, int64_t w,
                               int64_t D, const Bilinear<acc_t>& s, int r, acc_t* P) {
  const int S = 2 * r + 2;
  const PatchRange p = patch_range(s, r, h, w);
  zero_patch(P, r);
  for (int v = p.v_lo; v < p.v_hi; ++v) {
    for (int u = p.u_lo; u < p.u_hi; ++u) {
      const scalar_t* f2 = fmap2 + ((p.Y0 + v) * w + (p.X0 + u)) * D;
      P[v * S + u] = dot<scalar_t, acc_t>(f1, f2, D);
    }
  }
}

// out[(a * (2r+1) + c) * stride] = bilinear sample (a, c) of the patch
// (x-offset a is the slow index, RAFT's channel order). NaN for non-finite coords.
template <typename acc_t, typename out_t>
PFO_INLINE void window_forward(const Bilinear<acc_t>& s, const acc_t* P, int r, out_t* out,
                               int64_t stride) {
  const int S = 2 * r + 2;
  const int n = 2 * r + 1;
  if (!s.finite) {
    for (int k = 0; k < n * n; ++k) out[k * stride] = static_cast<out_t>(quiet_nan<acc_t>());
    return;
  }
  const acc_t gx = acc_t(1) - s.fx, gy = acc_t(1) - s.fy;
  const acc_t w00 = gx * gy, w10 = s.fx * gy, w01 = gx * s.fy, w11 = s.fx * s.fy;
  for (int a = 0; a < n; ++a) {
    for (int c = 0; c < n; ++c) {
      // p[0] = P[a][c], p[1] = P[a+1][c], p[S] = P[a][c+1], p[S+1] = P[a+1][c+1]
      const acc_t* p = P + c * S + a;
      const acc_t val = w00 * p[0] + w10 * p[1] + w01 * p[S] + w11 * p[S + 1];
      out[(a * n + c) * stride] = static_cast<out_t>(val);
    }
  }
}

// ---- backward (vector-Jacobian products) -------------------------------------

// Corner coefficients: coef[v * S + u] = d(sum_{a,c} g(a,c) sample(a,c)) / dP[u][v],
// a gather over the (up to 4) samples that use corner (u, v):
//   coef(u, v) = w00 g(u, v) + w10 g(u-1, v) + w01 g(u, v-1) + w11 g(u-1, v-1)
// with g(a, c) = g[(a * (2r+1) + c) * gstride] inside the window and 0 outside
// (the zero border of G). All zero for non-finite coords (NaN must not leak
// into the map gradients). The caller stores coef: no read-modify-write.
template <typename acc_t, typename g_t>
PFO_INLINE void window_coef(const Bilinear<acc_t>& s, int r, const g_t* g, int64_t gstride,
                            acc_t* coef) {
  const int S = 2 * r + 2;
  const int n = 2 * r + 1;
  if (!s.finite) {
    zero_patch(coef, r);
    return;
  }
  const int Sp = S + 1;  // G[(c + 1) * Sp + (a + 1)] = g(a, c), one zero row/column each side
  acc_t G[(kMaxSide + 1) * (kMaxSide + 1)];
  for (int k = 0; k < Sp * Sp; ++k) G[k] = acc_t(0);
  for (int a = 0; a < n; ++a) {
    for (int c = 0; c < n; ++c) G[(c + 1) * Sp + a + 1] = static_cast<acc_t>(g[(a * n + c) * gstride]);
  }
  const acc_t gx = acc_t(1) - s.fx, gy = acc_t(1) - s.fy;
  const acc_t w00 = gx * gy, w10 = s.fx * gy, w01 = gx * s.fy, w11 = s.fx * s.fy;
  for (int v = 0; v < S; ++v) {
    for (int u = 0; u < S; ++u) {
      // t[Sp + 1] = g(u, v), t[Sp] = g(u-1, v), t[1] = g(u, v-1), t[0] = g(u-1, v-1)
      const acc_t* t = G + v * Sp + u;
      coef[v * S + u] = w00 * t[Sp + 1] + w10 * t[Sp] + w01 * t[1] + w11 * t[0];
    }
  }
}

// d(sum_{a,c} g(a,c) sample(a,c)) / d(cx, cy) in level units (the caller
// multiplies by 2^-l to get level-0 units). NaN for non-finite coords.
template <typename acc_t, typename g_t>
PFO_INLINE void window_grad_coords(const Bilinear<acc_t>& s, const acc_t* P, int r, const g_t* g,
                                   int64_t gstride, acc_t* dcx, acc_t* dcy) {
  const int S = 2 * r + 2;
  const int n = 2 * r + 1;
  if (!s.finite) {
    *dcx = quiet_nan<acc_t>();
    *dcy = quiet_nan<acc_t>();
    return;
  }
  const acc_t gx = acc_t(1) - s.fx, gy = acc_t(1) - s.fy;
  acc_t sx = acc_t(0), sy = acc_t(0);
  for (int a = 0; a < n; ++a) {
    for (int c = 0; c < n; ++c) {
      const acc_t gv = static_cast<acc_t>(g[(a * n + c) * gstride]);
      const acc_t* p = P + c * S + a;  // p[0] = P[a][c], p[1] = P[a+1][c], p[S] = P[a][c+1]
      // d/dcx = (1-fy)(P[a+1][c] - P[a][c]) + fy (P[a+1][c+1] - P[a][c+1])
      sx += gv * (gy * (p[1] - p[0]) + s.fy * (p[S + 1] - p[S]));
      // d/dcy = (1-fx)(P[a][c+1] - P[a][c]) + fx (P[a+1][c+1] - P[a+1][c])
      sy += gv * (gx * (p[S] - p[0]) + s.fx * (p[S + 1] - p[1]));
    }
  }
  *dcx = sx;
  *dcy = sy;
}

// Writes coef into the in-bounds corners of one query's h x w gradient map
// (pure stores: each query owns its map). The caller zeroes the map first.
template <typename acc_t, typename scalar_t>
PFO_INLINE void store_patch(const Bilinear<acc_t>& s, int r, const acc_t* coef, scalar_t* map,
                            int64_t h, int64_t w) {
  const int S = 2 * r + 2;
  const PatchRange p = patch_range(s, r, h, w);
  for (int v = p.v_lo; v < p.v_hi; ++v) {
    const int64_t base = (p.Y0 + v) * w + p.X0;
    for (int u = p.u_lo; u < p.u_hi; ++u) map[base + u] = static_cast<scalar_t>(coef[v * S + u]);
  }
}

}  // namespace corr
}  // namespace pyflowops
