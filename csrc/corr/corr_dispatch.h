// dispatch_coords: the coords dtype dispatch of the correlation lookups, for the CPU
// kernels and the CUDA launchers (corr_cuda.cu, corr_onthefly_cuda.cu). No checks and
// no error formatting here, so the .cu files include this instead of corr_checks.h.
#pragma once

#include <ATen/core/Tensor.h>

#include <type_traits>

namespace pyflowops {
namespace corr {

// Calls f(coord_t{}) with coord_t the C++ type of coords: float for float32 coords with
// float16/bfloat16 maps (scalar_t), else scalar_t. Only those pairs are instantiated.
template <typename scalar_t, typename F>
void dispatch_coords(const at::Tensor& coords, F&& f) {
  if constexpr (std::is_same_v<scalar_t, at::Half> || std::is_same_v<scalar_t, at::BFloat16>) {
    if (coords.scalar_type() == at::kFloat) {
      f(float{});
      return;
    }
  }
  f(scalar_t{});
}

}  // namespace corr
}  // namespace pyflowops
