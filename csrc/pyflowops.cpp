// pyflowops._C: the pybind11 module whose import registers every op schema.
//
// Schemas live here, grouped by family; kernels register themselves from
// csrc/<family>/<family>_{cpu,cuda}.* with TORCH_LIBRARY_IMPL. Fake (meta)
// kernels and autograd are registered in Python (pyflowops/ops/<family>.py).
#include <torch/library.h>
#include <pybind11/pybind11.h>

#include "common/build_info.h"

TORCH_LIBRARY(pyflowops, m) {
  // ---- 4D correlation (csrc/corr) ------------------------------------------
  // pyramid[l]: [B, H, W, H_l, W_l]; level 0 = <fmap1, fmap2> / sqrt(D),
  // level l+1 = level l average-pooled 2x2 (stride 2, floor) over its last two dims.
  m.def("corr_pyramid(Tensor fmap1, Tensor fmap2, int num_levels) -> Tensor[]");
  // out: [B, L*(2r+1)^2, H, W], bilinear window samples of every level.
  m.def("corr_lookup(Tensor[] pyramid, Tensor coords, int radius) -> Tensor");
  // Returns (grad_pyramid, grad_coords); grad_pyramid is [] when not requested.
  m.def(
      "corr_lookup_backward(Tensor grad_out, Tensor[] pyramid, Tensor coords, "
      "int radius, bool pyramid_grad) -> (Tensor[], Tensor)");
  // fmap1: [B, H, W, D] (channels last, pre-scaled); fmap2_levels[l]: [B, H_l, W_l, D].
  // Same output as corr_lookup on the all-pairs pyramid of raw dot products.
  m.def(
      "corr_lookup_onthefly(Tensor fmap1, Tensor[] fmap2_levels, Tensor coords, "
      "int radius) -> Tensor");
  // Returns (grad_fmap1, grad_fmap2_levels, grad_coords).
  m.def(
      "corr_lookup_onthefly_backward(Tensor grad_out, Tensor fmap1, "
      "Tensor[] fmap2_levels, Tensor coords, int radius) -> (Tensor, Tensor[], Tensor)");
}

PYBIND11_MODULE(_C, module) {
  module.doc() = "pyflowops compiled kernels; importing registers the torch.library ops";
  module.def("build_info", &pyflowops::build_info_dict,
             "How this extension was built: CUDA compiled or not, archs, torch version");
}
