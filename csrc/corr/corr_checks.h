// Argument checks of the correlation ops, shared by the CPU and CUDA op wrappers
// (corr_cpu.cpp, corr_cuda_ops.cpp). pyflowops/ops/corr.py validates first with
// friendly Python errors.
//
// Declarations only: defined once, in corr_checks.cpp (g++, never nvcc); see
// common/checks.h. The .cu files include corr_dispatch.h, not this header.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>  // TORCH_CHECK for the files that include this one

#include <cstddef>
#include <cstdint>

#include "common/checks.h"
#include "corr/corr_dispatch.h"  // dispatch_coords, for the op wrappers
#include "corr/corr_math.h"

namespace pyflowops {
namespace corr {

// radius in [0, kMaxRadius].
void check_radius(int64_t radius, const char* op);

// 1 <= num_levels <= kMaxLevels; `name` is the list's argument name.
void check_num_levels(size_t num_levels, const char* op, const char* name);

// coords: [B, 2, H, W], floating.
void check_coords(const at::Tensor& coords, const char* op);

// coords: the maps' dtype, or float32 with float16/bfloat16 maps (mixed precision keeps the
// positions exact: bfloat16 has a 0.25 px step at x = 32, float16 0.03 px at x = 64).
void check_coords_dtype(const at::Tensor& coords, const at::Tensor& maps, const char* maps_name,
                        const char* op);

// pyramid[l]: [B, H, W, H_l, W_l] matching coords [B, 2, H, W].
void check_lookup_inputs(at::TensorList pyramid, const at::Tensor& coords, int64_t radius,
                         const char* op);

// fmap1: [B, H, W, D]; fmap2_levels[l]: [B, H_l, W_l, D]; coords [B, 2, H, W].
void check_onthefly_inputs(const at::Tensor& fmap1, at::TensorList fmap2_levels,
                           const at::Tensor& coords, int64_t radius, const char* op);

// grad_out: [B, L*(2r+1)^2, H, W], the device and dtype of the maps (the forward's output).
void check_grad_out(const at::Tensor& grad_out, const at::Tensor& coords, const at::Tensor& maps,
                    int64_t num_levels, int64_t radius, const char* op);

}  // namespace corr
}  // namespace pyflowops
