// LevelPtrs (corr_math.h) from a list of level tensors, for the CUDA launchers of
// corr_cuda.cu and corr_onthefly_cuda.cu. Host code only.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <vector>

#include "corr/corr_math.h"

namespace pyflowops {
namespace corr {
namespace cuda {

// hdim, wdim: the dims of a level tensor holding the map height and width
// (3, 4 for pyramid levels [B, H, W, H_l, W_l]; 1, 2 for fmap2 levels [B, H_l, W_l, D]).
template <typename T>
inline LevelPtrs<T> level_ptrs(const std::vector<at::Tensor>& levels, int hdim, int wdim) {
  LevelPtrs<T> p{};
  TORCH_CHECK(levels.size() >= 1 && levels.size() <= static_cast<size_t>(kMaxLevels),
              "pyflowops: between 1 and ", kMaxLevels, " levels supported, got ", levels.size());
  p.num = static_cast<int>(levels.size());
  for (int l = 0; l < p.num; ++l) {
    p.data[l] = static_cast<T*>(levels[l].data_ptr());
    p.h[l] = levels[l].size(hdim);
    p.w[l] = levels[l].size(wdim);
  }
  return p;
}

}  // namespace cuda
}  // namespace corr
}  // namespace pyflowops
