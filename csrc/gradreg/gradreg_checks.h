// Argument parsing and last-line-of-defence checks of the gradient-regularization
// ops, shared by the CPU and CUDA op wrappers (gradreg_cpu.cpp, gradreg_cuda_ops.cpp).
// pyflowops/ops/gradreg.py validates first with friendly Python errors.
//
// Declarations only: defined once, in gradreg_checks.cpp (g++, never nvcc); see
// common/checks.h. The CUDA side includes gradreg_stencil.h, not this header.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>  // TORCH_CHECK for the files that include this one
#include <c10/util/Optional.h>
#include <c10/util/string_view.h>

#include <cstdint>

#include "common/checks.h"
#include "gradreg/gradreg_math.h"
#include "gradreg/gradreg_stencil.h"  // StencilKind, num_directions, PFO_DISPATCH_STENCIL

namespace pyflowops {
namespace gradreg {

// operator "sobel" (order 1) or "diff" (order 1 or 2).
StencilKind parse_stencil(c10::string_view name, int64_t order, const char* op);

// penalty "l1", "charbonnier" or "l2".
Penalty parse_penalty(c10::string_view name, const char* op);

// reduction "none", "mean" or "sum".
Reduction parse_reduction(c10::string_view name, const char* op);

// x: [B, C, H, W] floating.
void check_image_like(const at::Tensor& x, const char* op, const char* name);

// flow [B, 2, H, W]; image [B, C, H, W]; mask [B, 1, H, W] bool or flow's dtype;
// target [B, 2, H, W]; all on flow's device, image/target in flow's dtype.
void check_regularization_inputs(const at::Tensor& flow, const c10::optional<at::Tensor>& image,
                                 const c10::optional<at::Tensor>& mask,
                                 const c10::optional<at::Tensor>& target, double eps,
                                 const char* op);

// grad_out [B, C, K, H, W] of spatial_gradient_backward, K the directions of `kind`.
void check_gradient_grad_out(const at::Tensor& grad_out, const StencilKind& kind, const char* op);

// gradient_regularization_backward's grad_loss ([B, H, W] for "none", else one value,
// flow's dtype) and weight ([B, H, W] in flow's opmath dtype); flow already checked.
void check_regularization_backward_inputs(const at::Tensor& grad_loss, const at::Tensor& flow,
                                          const c10::optional<at::Tensor>& weight,
                                          Reduction reduction, const char* op);

}  // namespace gradreg
}  // namespace pyflowops
