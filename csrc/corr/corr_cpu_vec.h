// CPU-only inner loops of the on-the-fly correlation (included by corr_cpu.cpp only).
//
// The on-the-fly ops spend nearly all their time in three loops over the
// channel dimension D, which is contiguous in the channels-last layout:
//   rows_dot:     out[k] = <x, rows[k]>           (patch corners, forward and backward)
//   rows_axpy:    acc += sum_k coef[k] * rows[k]  (grad_fmap1)
//   rows_scatter: dst[k] += coef[k] * src         (grad_fmap2 scatter, rows of a D-slice)
// The corners u of one patch row are consecutive pixels, so `rows` is one
// contiguous [n, D] block.
//
// Float reductions do not auto-vectorize without -ffast-math, so rows_dot uses
// GCC/Clang vector extensions with independent accumulators (4 rows share each
// load of x, 2 accumulators per row hide the add latency). The extension is
// built for baseline x86-64 (SSE2); each loop is also compiled for AVX2 and
// AVX-512 via __attribute__((target)) and picked at run time (common/cpu_isa.h).
// Half/bfloat16 (and non-GNU compilers) use the plain helpers of corr_math.h.
#pragma once

#include <cstdint>
#include <cstring>

#include "common/cpu_isa.h"
#include "corr/corr_math.h"

namespace pyflowops {
namespace corr {
namespace vec {

// ---- generic versions (any dtype; acc_t = opmath type) ----------------------

template <typename scalar_t, typename acc_t>
inline void rows_dot(const scalar_t* rows, int n, int64_t D, const scalar_t* x, acc_t* out) {
  for (int k = 0; k < n; ++k) out[k] = dot<scalar_t, acc_t>(x, rows + k * D, D);
}

template <typename scalar_t, typename acc_t>
inline void rows_axpy(const scalar_t* rows, int n, int64_t D, const acc_t* coef, acc_t* acc) {
  for (int k = 0; k < n; ++k) {
    const acc_t c = coef[k];
    const scalar_t* row = rows + k * D;
    for (int64_t d = 0; d < D; ++d) acc[d] += c * static_cast<acc_t>(row[d]);
  }
}

// dst + k * dstride: n rows of dn values each.
template <typename acc_t, typename scalar_t>
inline void rows_scatter(acc_t* dst, int n, int64_t dstride, const acc_t* coef,
                         const scalar_t* src, int64_t dn) {
  for (int k = 0; k < n; ++k) {
    const acc_t c = coef[k];
    acc_t* row = dst + k * dstride;
    for (int64_t d = 0; d < dn; ++d) row[d] += c * static_cast<acc_t>(src[d]);
  }
}

#if PFO_VEC_EXT

// ---- vectorized bodies, instantiated per instruction set --------------------

template <typename T, int N>
struct Vec {
  typedef T type __attribute__((vector_size(N * sizeof(T))));
};

template <typename T, int N>
PFO_ALWAYS_INLINE void vload(typename Vec<T, N>::type& v, const T* p) {
  std::memcpy(&v, p, sizeof(v));  // unaligned load
}

template <typename T, int N>
PFO_ALWAYS_INLINE void vstore(T* p, const typename Vec<T, N>::type& v) {
  std::memcpy(p, &v, sizeof(v));
}

template <typename T, int N>
PFO_ALWAYS_INLINE T hsum(const typename Vec<T, N>::type& v) {
  T s = T(0);
  for (int i = 0; i < N; ++i) s += v[i];
  return s;
}

template <typename T, int N>
PFO_ALWAYS_INLINE void rows_dot_impl(const T* rows, int n, int64_t D, const T* x, T* out) {
  using V = typename Vec<T, N>::type;
  const int64_t Dv = D - D % (2 * N);
  int k = 0;
  for (; k + 4 <= n; k += 4) {
    const T* r0 = rows + k * D;
    const T* r1 = r0 + D;
    const T* r2 = r1 + D;
    const T* r3 = r2 + D;
    V a0 = {}, a1 = {}, a2 = {}, a3 = {}, b0 = {}, b1 = {}, b2 = {}, b3 = {};
    for (int64_t d = 0; d < Dv; d += 2 * N) {
      V x0, x1, t;
      vload<T, N>(x0, x + d);
      vload<T, N>(x1, x + d + N);
      vload<T, N>(t, r0 + d), a0 += t * x0;
      vload<T, N>(t, r0 + d + N), b0 += t * x1;
      vload<T, N>(t, r1 + d), a1 += t * x0;
      vload<T, N>(t, r1 + d + N), b1 += t * x1;
      vload<T, N>(t, r2 + d), a2 += t * x0;
      vload<T, N>(t, r2 + d + N), b2 += t * x1;
      vload<T, N>(t, r3 + d), a3 += t * x0;
      vload<T, N>(t, r3 + d + N), b3 += t * x1;
    }
    T s0 = hsum<T, N>(a0 + b0), s1 = hsum<T, N>(a1 + b1);
    T s2 = hsum<T, N>(a2 + b2), s3 = hsum<T, N>(a3 + b3);
    for (int64_t d = Dv; d < D; ++d) {
      s0 += r0[d] * x[d];
      s1 += r1[d] * x[d];
      s2 += r2[d] * x[d];
      s3 += r3[d] * x[d];
    }
    out[k + 0] = s0;
    out[k + 1] = s1;
    out[k + 2] = s2;
    out[k + 3] = s3;
  }
  for (; k < n; ++k) {
    const T* r0 = rows + k * D;
    V a0 = {}, b0 = {};
    for (int64_t d = 0; d < Dv; d += 2 * N) {
      V x0, x1, t;
      vload<T, N>(x0, x + d);
      vload<T, N>(x1, x + d + N);
      vload<T, N>(t, r0 + d), a0 += t * x0;
      vload<T, N>(t, r0 + d + N), b0 += t * x1;
    }
    T s0 = hsum<T, N>(a0 + b0);
    for (int64_t d = Dv; d < D; ++d) s0 += r0[d] * x[d];
    out[k] = s0;
  }
}

// Element-wise in d (no reduction), so the compiler vectorizes these for the
// target of the wrapper they are inlined into.
template <typename T>
PFO_ALWAYS_INLINE void rows_axpy_impl(const T* rows, int n, int64_t D, const T* coef,
                                      T* __restrict acc) {
  int k = 0;
  for (; k + 4 <= n; k += 4) {
    const T c0 = coef[k + 0], c1 = coef[k + 1], c2 = coef[k + 2], c3 = coef[k + 3];
    const T* __restrict r0 = rows + k * D;
    const T* __restrict r1 = r0 + D;
    const T* __restrict r2 = r1 + D;
    const T* __restrict r3 = r2 + D;
    for (int64_t d = 0; d < D; ++d) acc[d] += (c0 * r0[d] + c1 * r1[d]) + (c2 * r2[d] + c3 * r3[d]);
  }
  for (; k < n; ++k) {
    const T c0 = coef[k];
    const T* __restrict r0 = rows + k * D;
    for (int64_t d = 0; d < D; ++d) acc[d] += c0 * r0[d];
  }
}

template <typename T>
PFO_ALWAYS_INLINE void rows_scatter_impl(T* dst, int n, int64_t dstride, const T* coef,
                                         const T* __restrict src, int64_t dn) {
  for (int k = 0; k < n; ++k) {
    const T c = coef[k];
    T* __restrict row = dst + k * dstride;
    for (int64_t d = 0; d < dn; ++d) row[d] += c * src[d];
  }
}

using cpu::Isa;
using cpu::isa;

// One wrapper per (type, instruction set); the *_impl bodies are inlined into each.
// Lanes per vector: 128-bit base (SSE2/NEON), 256-bit AVX2, 512-bit AVX-512.
#define PFO_CORR_VEC_WRAPPERS(T, SUFFIX, ATTR, LANES)                                          \
  ATTR inline void rows_dot_##SUFFIX(const T* rows, int n, int64_t D, const T* x, T* out) {    \
    rows_dot_impl<T, LANES>(rows, n, D, x, out);                                               \
  }                                                                                            \
  ATTR inline void rows_axpy_##SUFFIX(const T* rows, int n, int64_t D, const T* coef, T* acc) { \
    rows_axpy_impl<T>(rows, n, D, coef, acc);                                                  \
  }                                                                                            \
  ATTR inline void rows_scatter_##SUFFIX(T* dst, int n, int64_t dstride, const T* coef,        \
                                         const T* src, int64_t dn) {                           \
    rows_scatter_impl<T>(dst, n, dstride, coef, src, dn);                                      \
  }

PFO_CORR_VEC_WRAPPERS(float, f32_base, , 16 / sizeof(float))
PFO_CORR_VEC_WRAPPERS(double, f64_base, , 16 / sizeof(double))
#if PFO_X86_MULTIVERSION
PFO_CORR_VEC_WRAPPERS(float, f32_avx2, __attribute__((target("avx2,fma"))), 32 / sizeof(float))
PFO_CORR_VEC_WRAPPERS(double, f64_avx2, __attribute__((target("avx2,fma"))), 32 / sizeof(double))
PFO_CORR_VEC_WRAPPERS(float, f32_avx512, __attribute__((target("avx512f"))), 64 / sizeof(float))
PFO_CORR_VEC_WRAPPERS(double, f64_avx512, __attribute__((target("avx512f"))), 64 / sizeof(double))
#define PFO_CORR_VEC_DISPATCH(NAME, TSUF, ...)        \
  switch (isa()) {                                    \
    case Isa::kAvx512:                                \
      return NAME##_##TSUF##_avx512(__VA_ARGS__);     \
    case Isa::kAvx2:                                  \
      return NAME##_##TSUF##_avx2(__VA_ARGS__);       \
    default:                                          \
      return NAME##_##TSUF##_base(__VA_ARGS__);       \
  }
#else
#define PFO_CORR_VEC_DISPATCH(NAME, TSUF, ...) return NAME##_##TSUF##_base(__VA_ARGS__);
#endif

// ---- float / double overloads (preferred over the generic templates) --------

inline void rows_dot(const float* rows, int n, int64_t D, const float* x, float* out) {
  PFO_CORR_VEC_DISPATCH(rows_dot, f32, rows, n, D, x, out)
}
inline void rows_dot(const double* rows, int n, int64_t D, const double* x, double* out) {
  PFO_CORR_VEC_DISPATCH(rows_dot, f64, rows, n, D, x, out)
}
inline void rows_axpy(const float* rows, int n, int64_t D, const float* coef, float* acc) {
  PFO_CORR_VEC_DISPATCH(rows_axpy, f32, rows, n, D, coef, acc)
}
inline void rows_axpy(const double* rows, int n, int64_t D, const double* coef, double* acc) {
  PFO_CORR_VEC_DISPATCH(rows_axpy, f64, rows, n, D, coef, acc)
}
inline void rows_scatter(float* dst, int n, int64_t dstride, const float* coef, const float* src,
                         int64_t dn) {
  PFO_CORR_VEC_DISPATCH(rows_scatter, f32, dst, n, dstride, coef, src, dn)
}
inline void rows_scatter(double* dst, int n, int64_t dstride, const double* coef,
                         const double* src, int64_t dn) {
  PFO_CORR_VEC_DISPATCH(rows_scatter, f64, dst, n, dstride, coef, src, dn)
}

#undef PFO_CORR_VEC_DISPATCH
#undef PFO_CORR_VEC_WRAPPERS

#endif  // PFO_VEC_EXT

}  // namespace vec
}  // namespace corr
}  // namespace pyflowops
