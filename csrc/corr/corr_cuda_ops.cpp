// CUDA op wrappers of the correlation lookups: checks, contiguous inputs,
// output allocation, device guard; the kernels are in corr_cuda.cu.
// Compiled by the host compiler (only when the CUDA kernels are built), so nvcc
// never sees the ATen operator headers.
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <tuple>
#include <vector>

#include "corr/corr_checks.h"
#include "corr/corr_cuda.h"

namespace pyflowops {
namespace corr {
namespace {

std::vector<at::Tensor> contiguous_all(at::TensorList list) {
  std::vector<at::Tensor> out;
  out.reserve(list.size());
  for (const auto& t : list) out.push_back(t.contiguous());
  return out;
}

at::Tensor corr_lookup_cuda(at::TensorList pyramid, const at::Tensor& coords_in, int64_t radius) {
  check_lookup_inputs(pyramid, coords_in, radius, "corr_lookup");
  const c10::cuda::CUDAGuard guard(coords_in.device());
  const auto levels = contiguous_all(pyramid);
  const at::Tensor coords = coords_in.contiguous();
  const int64_t L = static_cast<int64_t>(levels.size());
  const int64_t K = (2 * radius + 1) * (2 * radius + 1);
  at::Tensor out =
      at::empty({coords.size(0), L * K, coords.size(2), coords.size(3)}, levels[0].options());  // maps' dtype
  cuda::lookup_forward(levels, coords, radius, out);
  return out;
}

std::tuple<std::vector<at::Tensor>, at::Tensor> corr_lookup_backward_cuda(
    const at::Tensor& grad_out_in, at::TensorList pyramid, const at::Tensor& coords_in,
    int64_t radius, bool pyramid_grad) {
  constexpr const char* op = "corr_lookup_backward";
  check_lookup_inputs(pyramid, coords_in, radius, op);
  check_grad_out(grad_out_in, coords_in, pyramid[0], static_cast<int64_t>(pyramid.size()), radius, op);
  const c10::cuda::CUDAGuard guard(coords_in.device());
  const auto levels = contiguous_all(pyramid);
  const at::Tensor coords = coords_in.contiguous();
  const at::Tensor grad_out = grad_out_in.contiguous();
  at::Tensor grad_coords = at::empty_like(coords);
  std::vector<at::Tensor> grad_levels;
  if (pyramid_grad) {
    for (const auto& level : levels) grad_levels.push_back(at::zeros(level.sizes(), level.options()));
  }
  cuda::lookup_backward(grad_out, levels, coords, radius, grad_levels, grad_coords);
  return {grad_levels, grad_coords};
}

at::Tensor corr_lookup_onthefly_cuda(const at::Tensor& fmap1_in, at::TensorList fmap2_levels,
                                     const at::Tensor& coords_in, int64_t radius) {
  check_onthefly_inputs(fmap1_in, fmap2_levels, coords_in, radius, "corr_lookup_onthefly");
  const c10::cuda::CUDAGuard guard(coords_in.device());
  const auto levels = contiguous_all(fmap2_levels);
  const at::Tensor fmap1 = fmap1_in.contiguous();
  const at::Tensor coords = coords_in.contiguous();
  const int64_t L = static_cast<int64_t>(levels.size());
  const int64_t K = (2 * radius + 1) * (2 * radius + 1);
  at::Tensor out =
      at::empty({coords.size(0), L * K, coords.size(2), coords.size(3)}, fmap1.options());  // maps' dtype
  cuda::onthefly_forward(fmap1, levels, coords, radius, out);
  return out;
}

std::tuple<at::Tensor, std::vector<at::Tensor>, at::Tensor> corr_lookup_onthefly_backward_cuda(
    const at::Tensor& grad_out_in, const at::Tensor& fmap1_in, at::TensorList fmap2_levels,
    const at::Tensor& coords_in, int64_t radius) {
  constexpr const char* op = "corr_lookup_onthefly_backward";
  check_onthefly_inputs(fmap1_in, fmap2_levels, coords_in, radius, op);
  check_grad_out(grad_out_in, coords_in, fmap1_in, static_cast<int64_t>(fmap2_levels.size()), radius, op);
  const c10::cuda::CUDAGuard guard(coords_in.device());
  const auto levels = contiguous_all(fmap2_levels);
  const at::Tensor fmap1 = fmap1_in.contiguous();
  const at::Tensor coords = coords_in.contiguous();
  const at::Tensor grad_out = grad_out_in.contiguous();
  const auto dtype = fmap1.scalar_type();
  const auto acc_type = at::toOpMathType(dtype);  // accumulate in float for half/bf16
  at::Tensor grad_fmap1 = at::zeros(fmap1.sizes(), fmap1.options().dtype(acc_type));
  std::vector<at::Tensor> grad_levels;
  for (const auto& level : levels)
    grad_levels.push_back(at::zeros(level.sizes(), level.options().dtype(acc_type)));
  at::Tensor grad_coords = at::empty_like(coords);
  cuda::onthefly_backward(grad_out, fmap1, levels, coords, radius, grad_fmap1, grad_levels,
                          grad_coords);
  if (acc_type != dtype) {
    grad_fmap1 = grad_fmap1.to(dtype);
    for (auto& g : grad_levels) g = g.to(dtype);
  }
  return {grad_fmap1, grad_levels, grad_coords};
}

}  // namespace

TORCH_LIBRARY_IMPL(pyflowops, CUDA, m) {
  m.impl("corr_lookup", &corr_lookup_cuda);
  m.impl("corr_lookup_backward", &corr_lookup_backward_cuda);
  m.impl("corr_lookup_onthefly", &corr_lookup_onthefly_cuda);
  m.impl("corr_lookup_onthefly_backward", &corr_lookup_onthefly_backward_cuda);
}

}  // namespace corr
}  // namespace pyflowops
