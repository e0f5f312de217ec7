// N-lane packs of the CPU vector kernels, shared by every family's *_cpu_vec.h.
//
// GCC/Clang vector extensions, compiled for baseline x86-64 (SSE2) and for AVX2
// (common/cpu_isa.h picks at run time). T is the opmath type (float or double);
// N == 1 is plain scalar code (row tails, and compilers without the extension).
// vexp is a ~1-ulp expf on N float lanes.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

#include "common/cpu_isa.h"
#include "common/scalar_math.h"

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpsabi"  // vectors only pass between inlined functions
#endif

namespace pyflowops {
namespace vec {

// ---- N-lane packs ---------------------------------------------------------------

template <typename T, int N>
struct Pack;

template <typename T>
struct Pack<T, 1> {
  using type = T;
  using itype = std::conditional_t<sizeof(T) == 4, int32_t, int64_t>;
};

#if PFO_VEC_EXT
template <typename T, int N>
struct Pack {
  using int_t = std::conditional_t<sizeof(T) == 4, int32_t, int64_t>;
  typedef T type __attribute__((vector_size(N * sizeof(T))));
  typedef int_t itype __attribute__((vector_size(N * sizeof(T))));
};
#endif

template <typename T, int N>
using P = typename Pack<T, N>::type;

template <typename T, int N>
PFO_ALWAYS_INLINE P<T, N> load(const T* p) {
  P<T, N> v;
  std::memcpy(&v, p, sizeof(v));  // unaligned
  return v;
}

template <typename T, int N>
PFO_ALWAYS_INLINE void store(T* p, P<T, N> v) {
  std::memcpy(p, &v, sizeof(v));
}

template <typename T, int N>
PFO_ALWAYS_INLINE P<T, N> splat(T x) {
  if constexpr (N == 1) {
    return x;
  } else {
    return x - P<T, N>{};  // not 0 + x: that turns -0 into +0
  }
}

template <typename T, int N>
PFO_ALWAYS_INLINE T hsum(P<T, N> v) {
  if constexpr (N == 1) {
    return v;
  } else {
    T s = T(0);
    for (int l = 0; l < N; ++l) s += v[l];
    return s;
  }
}

template <typename To, typename From>
PFO_ALWAYS_INLINE To bitcast(From v) {
  static_assert(sizeof(To) == sizeof(From), "bitcast between different sizes");
  To r;
  std::memcpy(&r, &v, sizeof(r));
  return r;
}

// Value conversion lane by lane (float <-> int truncates toward zero).
template <typename To, typename From>
PFO_ALWAYS_INLINE To convert(From v) {
  if constexpr (std::is_arithmetic<From>::value) {
    return static_cast<To>(v);
  } else {
#if PFO_VEC_EXT
    return __builtin_convertvector(v, To);
#endif
  }
}

// |x| (pfo_abs; the sign bit cleared on vectors: only -0 differs, as +0).
template <typename T, int N>
PFO_ALWAYS_INLINE P<T, N> vabs(P<T, N> x) {
  if constexpr (N == 1) {
    return pfo_abs(x);
  } else {
    using I = typename Pack<T, N>::itype;
    return (P<T, N>)((I)x & ~(I)splat<T, N>(T(-0.0)));
  }
}

// Correctly rounded square root. GCC has no generic vector sqrt, and the
// target-specific builtins are rejected outside target functions, so the x86
// instruction is written out; these bodies only ever run inlined into wrappers of
// their instruction set (256-bit packs only into AVX2 ones).
template <typename T, int N>
PFO_ALWAYS_INLINE P<T, N> vsqrt(P<T, N> x) {
  if constexpr (N == 1) {
    return pfo_sqrt(x);
  } else {
#if PFO_X86_MULTIVERSION
    P<T, N> r;
    if constexpr (sizeof(r) == 32 && sizeof(T) == 4) {
      asm("vsqrtps %1, %0" : "=x"(r) : "x"(x));
    } else if constexpr (sizeof(r) == 32) {
      asm("vsqrtpd %1, %0" : "=x"(r) : "x"(x));
    } else if constexpr (sizeof(r) == 16 && sizeof(T) == 4) {
      asm("sqrtps %1, %0" : "=x"(r) : "x"(x));
    } else {
      static_assert(sizeof(r) == 16 && sizeof(T) == 8, "unsupported pack");
      asm("sqrtpd %1, %0" : "=x"(r) : "x"(x));
    }
    return r;
#else
    for (int l = 0; l < N; ++l) x[l] = pfo_sqrt(x[l]);
    return x;
#endif
  }
}

// expf (Cephes' range reduction and polynomial, ~1 ulp): exp(x) = 2^n * exp(r),
// |r| <= ln2/2. 2^n is applied in two halves so that denormal results and
// results near FLT_MAX stay exact. NaN -> NaN, > 88.72 -> inf, < -103.97 -> 0.
template <int N>
PFO_ALWAYS_INLINE P<float, N> vexp(P<float, N> x) {
  using V = P<float, N>;
  using I = typename Pack<float, N>::itype;
  const V lo = splat<float, N>(-103.972084f), hi = splat<float, N>(88.7228394f);
  V xc = x > lo ? x : lo;  // NaN -> lo, fixed below
  xc = xc < hi ? xc : hi;
  const V t = xc * 1.44269504088896341f + 0.5f;
  V f = convert<V>(convert<I>(t));
  f = f > t ? f - 1.0f : f;  // floor(t)
  V r = xc - f * 0.693359375f;
  r = r - f * -2.12194440e-4f;
  V p = splat<float, N>(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  V y = p * (r * r) + r + 1.0f;
  const I n = convert<I>(f);
  const I n1 = n >> 1, n2 = n - n1;
  y = y * bitcast<V>((n1 + 127) << 23) * bitcast<V>((n2 + 127) << 23);
  y = x > hi ? splat<float, N>(std::numeric_limits<float>::infinity()) : y;
  y = x < lo ? splat<float, N>(0.0f) : y;
  return x != x ? x : y;
}

}  // namespace vec
}  // namespace pyflowops

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
