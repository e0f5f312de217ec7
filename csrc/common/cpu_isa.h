// Which x86 vector instruction set the CPU kernels run (corr, gradreg).
//
// Hot loops are written once with GCC/Clang vector extensions, compiled for
// baseline x86-64 (SSE2) and again for AVX2 (+FMA) inside functions marked
// __attribute__((target)), and picked at run time. The choice follows torch's own
// CPU capability (so ATEN_CPU_CAPABILITY=default also applies here), confirmed
// by the CPU itself. Other compilers and CPUs use the baseline (or scalar) code.
#pragma once

#include <ATen/Version.h>

#include <string>

#if defined(__GNUC__) || defined(__clang__)
#define PFO_VEC_EXT 1
#define PFO_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define PFO_VEC_EXT 0
#define PFO_ALWAYS_INLINE inline
#endif

#if PFO_VEC_EXT && (defined(__x86_64__) || defined(__i386__))
#define PFO_X86_MULTIVERSION 1
#else
#define PFO_X86_MULTIVERSION 0
#endif

namespace pyflowops {
namespace cpu {

enum class Isa { kBase = 0, kAvx2 = 1, kAvx512 = 2 };

inline Isa detect_isa() {
#if PFO_X86_MULTIVERSION
  const std::string cap = at::get_cpu_capability();
  __builtin_cpu_init();
  if (cap == "AVX512" && __builtin_cpu_supports("avx512f")) return Isa::kAvx512;
  if ((cap == "AVX512" || cap == "AVX2") && __builtin_cpu_supports("avx2") &&
      __builtin_cpu_supports("fma"))
    return Isa::kAvx2;
#endif
  return Isa::kBase;
}

// Chosen once per process.
inline Isa isa() {
  static const Isa value = detect_isa();
  return value;
}

}  // namespace cpu
}  // namespace pyflowops
