// Launchers of the CUDA correlation kernels (corr_cuda.cu: lookups over a pyramid;
// corr_onthefly_cuda.cu: the tiled on-the-fly kernels), called by the op
// wrappers in corr_cuda_ops.cpp. Inputs are contiguous, on one CUDA device,
// checked and allocated by the caller; launches go on the current stream.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

namespace pyflowops {
namespace corr {
namespace cuda {

// out: [B, L*K, H, W].
void lookup_forward(const std::vector<at::Tensor>& pyramid, const at::Tensor& coords,
                    int64_t radius, const at::Tensor& out);

// grad_pyramid: zero-filled tensors shaped like the levels, or empty (not requested).
void lookup_backward(const at::Tensor& grad_out, const std::vector<at::Tensor>& pyramid,
                     const at::Tensor& coords, int64_t radius,
                     const std::vector<at::Tensor>& grad_pyramid, const at::Tensor& grad_coords);

void onthefly_forward(const at::Tensor& fmap1, const std::vector<at::Tensor>& fmap2_levels,
                      const at::Tensor& coords, int64_t radius, const at::Tensor& out);

// grad_fmap1_acc and grad_fmap2_acc: zero-filled, in the opmath dtype (float for
// half/bfloat16): both are accumulated into.
void onthefly_backward(const at::Tensor& grad_out, const at::Tensor& fmap1,
                       const std::vector<at::Tensor>& fmap2_levels, const at::Tensor& coords,
                       int64_t radius, const at::Tensor& grad_fmap1_acc,
                       const std::vector<at::Tensor>& grad_fmap2_acc,
                       const at::Tensor& grad_coords);

}  // namespace cuda
}  // namespace corr
}  // namespace pyflowops
