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

  // ---- Sobel-gradient regularization (csrc/gradreg) ------------------------------
  // Semantics: docs/gradreg_kernel_contract.md. operator: "sobel" | "diff"; order 1
  // (dx, dy) or 2 (dxx, dxy, dyy; "diff" only); replicate padding throughout.
  // x: [B, C, H, W] -> [B, C, K, H, W], K = 2 (order 1) or 3 (order 2).
  m.def("spatial_gradient(Tensor x, str operator, int order, bool normalized) -> Tensor");
  // grad_out: [B, C, K, H, W] -> grad_x [B, C, H, W] (the op is linear: x is not needed).
  m.def(
      "spatial_gradient_backward(Tensor grad_out, str operator, int order, bool normalized) "
      "-> Tensor");
  // flow [B, 2, H, W], image [B, C, H, W], mask [B, 1, H, W] (bool or flow's dtype),
  // target [B, 2, H, W]. Returns (loss, weight): loss is [B, H, W] for reduction "none",
  // else a 0-dim tensor; weight is the per-pixel w [B, H, W] in the opmath dtype when
  // save_weight and an image is given (the backward reads it), else an empty [0] tensor.
  m.def(
      "gradient_regularization(Tensor flow, Tensor? image, Tensor? mask, Tensor? target, "
      "str operator, int order, str penalty, float eps, float edge_weight, "
      "float? textureless_threshold, str reduction, bool save_weight) -> (Tensor, Tensor)");
  // grad_loss: [B, H, W] ("none") or 0-dim. weight: the forward's weight (image given),
  // else None and mask (or None: w = 1). Returns grad_flow [B, 2, H, W]
  // (grad_target = -grad_flow).
  m.def(
      "gradient_regularization_backward(Tensor grad_loss, Tensor flow, Tensor? target, "
      "Tensor? weight, Tensor? mask, str operator, int order, str penalty, float eps, "
      "str reduction) -> Tensor");
  // image [B, C, H, W] -> [B, 1, H, W] bool: edge strength e < threshold.
  m.def("textureless_mask(Tensor image, float threshold, str operator) -> Tensor");

  // ---- Gaussian splatting (csrc/splat) -------------------------------------------
  // Semantics: docs/splat_kernel_contract.md. One camera; N Gaussians, C channels.
  // means [N,3], quats [N,4] (w,x,y,z), scales [N,3], viewmat [4,4], K [3,3] ->
  // (means2d [N,2], conics [N,3], depths [N], radii [N] int32); radius 0 = culled.
  m.def(
      "project_gaussians(Tensor means, Tensor quats, Tensor scales, Tensor viewmat, Tensor K, "
      "int width, int height, float near, float far) -> (Tensor, Tensor, Tensor, Tensor)");
  // Returns (grad_means [N,3], grad_quats [N,4], grad_scales [N,3]).
  m.def(
      "project_gaussians_backward(Tensor means, Tensor quats, Tensor scales, Tensor viewmat, "
      "Tensor K, Tensor radii, Tensor grad_means2d, Tensor grad_conics, Tensor grad_depths) "
      "-> (Tensor, Tensor, Tensor)");
  // -> (image [H,W,C], alpha [H,W,1], depth [H,W,1], tile_offsets [T+1] int32,
  //     gaussian_ids [M] int32, last [H,W] int32); the last three are the binning the
  //     backward replays.
  m.def(
      "rasterize_gaussians(Tensor means2d, Tensor conics, Tensor opacities, Tensor features, "
      "Tensor depths, Tensor radii, int width, int height, Tensor? background, int tile_size) "
      "-> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)");
  // Returns (grad_means2d [N,2], grad_conics [N,3], grad_opacities [N], grad_features [N,C],
  // grad_depths [N]); the background's gradient is formed in Python.
  m.def(
      "rasterize_gaussians_backward(Tensor grad_image, Tensor grad_alpha, Tensor grad_depth, "
      "Tensor means2d, Tensor conics, Tensor opacities, Tensor features, Tensor depths, "
      "Tensor radii, Tensor? background, Tensor alpha, Tensor tile_offsets, Tensor gaussian_ids, "
      "Tensor last, int width, int height, int tile_size) "
      "-> (Tensor, Tensor, Tensor, Tensor, Tensor)");
}

PYBIND11_MODULE(_C, module) {
  module.doc() = "pyflowops compiled kernels; importing registers the torch.library ops";
  module.def("build_info", &pyflowops::build_info_dict,
             "How this extension was built: CUDA compiled or not, archs, torch version");
}
