// Last-line-of-defence input checks of the Gaussian-splatting ops, shared by the
// CPU and CUDA op wrappers (splat_cpu.cpp, splat_cuda_ops.cpp). pyflowops/ops/splat.py
// validates first with friendly Python errors and passes contiguous tensors; these
// TORCH_CHECKs only make sure a direct torch.ops call can never read out of bounds.
//
// Declarations only: defined once, in splat_checks.cpp (g++, never nvcc); see
// common/checks.h. num_tiles (arithmetic, no errors) stays inline.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>  // TORCH_CHECK for the files that include this one
#include <c10/util/Optional.h>

#include <cstdint>

#include "common/checks.h"

namespace pyflowops {
namespace splat {

// A contiguous floating tensor of exactly `shape`, on ref's device with ref's dtype.
void check_float_input(const at::Tensor& ref, const char* ref_name, const at::Tensor& t,
                       at::IntArrayRef shape, const char* op, const char* name);

// A contiguous int32 tensor of exactly `shape` on ref's device.
void check_int_input(const at::Tensor& ref, const char* ref_name, const at::Tensor& t,
                     at::IntArrayRef shape, const char* op, const char* name);

void check_image_size(int64_t width, int64_t height, const char* op);

void check_tile_size(int64_t tile_size, const char* op);

// Number of tiles T of the binning.
inline int64_t num_tiles(int64_t width, int64_t height, int64_t tile_size) {
  return ((width + tile_size - 1) / tile_size) * ((height + tile_size - 1) / tile_size);
}

// project_gaussians(_backward)'s inputs: means [N,3], quats [N,4], scales [N,3],
// viewmat [4,4], K [3,3], all in means' dtype and device.
int64_t check_project_inputs(const at::Tensor& means, const at::Tensor& quats,
                             const at::Tensor& scales, const at::Tensor& viewmat,
                             const at::Tensor& K, const char* op);

// project_gaussians_backward's extra inputs: radii [N] int32 and the cotangents.
void check_project_backward_inputs(const at::Tensor& means, const at::Tensor& radii,
                                   const at::Tensor& grad_means2d,
                                   const at::Tensor& grad_conics,
                                   const at::Tensor& grad_depths, const char* op);

// rasterize_gaussians(_backward)'s Gaussians: means2d [N,2], conics [N,3],
// opacities [N], features [N,C] (C >= 1), depths [N], radii [N] int32,
// background [C] or None. Returns C.
int64_t check_rasterize_inputs(const at::Tensor& means2d, const at::Tensor& conics,
                               const at::Tensor& opacities, const at::Tensor& features,
                               const at::Tensor& depths, const at::Tensor& radii,
                               const c10::optional<at::Tensor>& background,
                               int64_t width, int64_t height, int64_t tile_size,
                               const char* op);

// rasterize_gaussians_backward's cotangents, saved alpha and binning: grad_image
// [H,W,C], grad_alpha / grad_depth / alpha [H,W,1], tile_offsets [T+1] int32,
// gaussian_ids [M] int32, last [H,W] int32.
void check_rasterize_backward_inputs(const at::Tensor& means2d,
                                     const at::Tensor& grad_image,
                                     const at::Tensor& grad_alpha,
                                     const at::Tensor& grad_depth, const at::Tensor& alpha,
                                     const at::Tensor& tile_offsets,
                                     const at::Tensor& gaussian_ids, const at::Tensor& last,
                                     int64_t channels, int64_t width, int64_t height,
                                     int64_t tile_size, const char* op);

}  // namespace splat
}  // namespace pyflowops
