// Launchers of the CUDA gradient-regularization kernels (gradreg_cuda.cu), called
// by the op wrappers in gradreg_cuda_ops.cpp. Inputs are contiguous, on one CUDA
// device, checked and allocated by the caller; launches go on the current stream.
// Semantics: docs/gradreg_kernel_contract.md.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

#include "gradreg/gradreg_math.h"
#include "gradreg/gradreg_stencil.h"  // StencilKind; gradreg_cuda.cu includes this header

namespace pyflowops {
namespace gradreg {
namespace cuda {

// x: [B, C, H, W] -> out: [B, C, K, H, W].
void spatial_gradient_forward(const at::Tensor& x, StencilKind kind, bool normalized,
                              const at::Tensor& out);

// grad_out: [B, C, K, H, W] -> grad_x: [B, C, H, W].
void spatial_gradient_backward(const at::Tensor& grad_out, StencilKind kind, bool normalized,
                               const at::Tensor& grad_x);

// Everything of gradient_regularization but its tensors.
struct RegularizationParams {
  StencilKind kind;
  Penalty penalty;
  Reduction reduction;
  double eps;
  WeightParams weight;  // edge_weight/threshold (ignored without an image)
};

// Number of per-block partial sums the forward writes for B x H x W pixels (0 when
// there are none): the size of the `partials` buffer of regularization_forward.
int64_t regularization_num_partials(int64_t B, int64_t H, int64_t W);

// flow/target: [B, 2, H, W]; image: [B, C, H, W]; mask: [B, 1, H, W] bool or flow's
// dtype (each of image/target/mask undefined when absent). loss: [B, H, W] (reduction
// "none") or 0-dim, flow's dtype. weight: [B, H, W] in the opmath dtype, or undefined /
// empty (not saved). partials: regularization_num_partials(B, H, W) opmath scalars of
// scratch, used for "sum"/"mean" only.
void regularization_forward(const at::Tensor& flow, const at::Tensor& image,
                            const at::Tensor& mask, const at::Tensor& target,
                            const RegularizationParams& p, const at::Tensor& loss,
                            const at::Tensor& weight, const at::Tensor& partials);

// grad_loss: [B, H, W] ("none") or one element; weight: [B, H, W] opmath (or
// undefined), else mask (or undefined: w = 1). grad_flow: [B, 2, H, W].
void regularization_backward(const at::Tensor& grad_loss, const at::Tensor& flow,
                             const at::Tensor& target, const at::Tensor& weight,
                             const at::Tensor& mask, const RegularizationParams& p,
                             const at::Tensor& grad_flow);

// image: [B, C, H, W] -> out: [B, 1, H, W] bool, e < threshold (kind.order is 1).
void textureless_mask(const at::Tensor& image, double threshold, StencilKind kind,
                      const at::Tensor& out);

}  // namespace cuda
}  // namespace gradreg
}  // namespace pyflowops
