#include "common/build_info.h"

// setup.py passes these; defaults keep a hand-rolled build compiling.
#ifndef PFO_WITH_CUDA
#define PFO_WITH_CUDA 0
#endif
#ifndef PFO_CUDA_ARCHS
#define PFO_CUDA_ARCHS ""
#endif
#ifndef PFO_CUDA_VERSION
#define PFO_CUDA_VERSION ""
#endif
#ifndef PFO_TORCH_VERSION
#define PFO_TORCH_VERSION "unknown"
#endif

namespace pyflowops {

pybind11::dict build_info_dict() {
  pybind11::dict info;
  info["cuda_compiled"] = static_cast<bool>(PFO_WITH_CUDA);
  info["cuda_archs"] = std::string(PFO_CUDA_ARCHS);
  info["cuda_version"] = std::string(PFO_CUDA_VERSION);
  info["torch_version"] = std::string(PFO_TORCH_VERSION);
#if defined(_OPENMP)
  info["openmp"] = true;
#else
  info["openmp"] = false;
#endif
#if defined(__clang__) || defined(__INTEL_LLVM_COMPILER)
  info["compiler"] = std::string(__VERSION__);  // already names the compiler
#elif defined(__GNUC__)
  info["compiler"] = std::string("GCC ") + __VERSION__;
#elif defined(_MSC_FULL_VER)
  info["compiler"] = std::string("MSVC ") + std::to_string(_MSC_FULL_VER);
#else
  info["compiler"] = std::string("unknown");
#endif
  return info;
}

}  // namespace pyflowops
