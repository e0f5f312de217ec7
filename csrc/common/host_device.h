// Host/device qualifiers shared by the per-element math headers (<family>_math.h).
//
// The same inline functions are compiled by the host compiler for the CPU
// kernels and by nvcc for the CUDA kernels, so the CPU tests exercise the exact
// math the GPU runs.
#pragma once

#if defined(__CUDACC__) || defined(__HIPCC__)
#define PFO_HOST_DEVICE __host__ __device__
#else
#define PFO_HOST_DEVICE
#endif

// Small per-element helpers: always inlined so that the fixed-size local
// arrays they work on stay in registers / L1 and the loops can be unrolled.
#if defined(__CUDACC__) || defined(__HIPCC__)
#define PFO_INLINE __host__ __device__ __forceinline__
#elif defined(__GNUC__)
#define PFO_INLINE inline __attribute__((always_inline))
#elif defined(_MSC_VER)
#define PFO_INLINE __forceinline
#else
#define PFO_INLINE inline
#endif
