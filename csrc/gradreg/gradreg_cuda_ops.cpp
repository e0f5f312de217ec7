// CUDA op wrappers of the gradient-regularization family: checks, contiguous inputs,
// output allocation (outputs in the input dtype, the weight and the partial sums in
// the opmath dtype), device guard; the kernels are in gradreg_cuda.cu.
// Compiled by the host compiler (only when the CUDA kernels are built), so nvcc
// never sees the ATen operator headers.
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/util/Optional.h>
#include <c10/util/string_view.h>
#include <torch/library.h>

#include <cstdint>
#include <tuple>

#include "common/checks.h"
#include "gradreg/gradreg_checks.h"
#include "gradreg/gradreg_cuda.h"

namespace pyflowops {
namespace gradreg {
namespace {

// The contiguous tensor of an optional input, or an undefined tensor when absent.
at::Tensor contiguous_or_undefined(const c10::optional<at::Tensor>& t) {
  return t.has_value() ? t->contiguous() : at::Tensor();
}

at::Tensor spatial_gradient_cuda(const at::Tensor& x_in, c10::string_view operator_name,
                                 int64_t order, bool normalized) {
  constexpr const char* op = "spatial_gradient";
  check_image_like(x_in, op, "x");
  const StencilKind kind = parse_stencil(operator_name, order, op);
  const c10::cuda::CUDAGuard guard(x_in.device());
  const at::Tensor x = x_in.contiguous();
  at::Tensor out = at::empty({x.size(0), x.size(1), num_directions(kind), x.size(2), x.size(3)},
                             x.options());
  cuda::spatial_gradient_forward(x, kind, normalized, out);
  return out;
}

at::Tensor spatial_gradient_backward_cuda(const at::Tensor& grad_out_in,
                                          c10::string_view operator_name, int64_t order,
                                          bool normalized) {
  constexpr const char* op = "spatial_gradient_backward";
  const StencilKind kind = parse_stencil(operator_name, order, op);
  check_gradient_grad_out(grad_out_in, kind, op);
  const c10::cuda::CUDAGuard guard(grad_out_in.device());
  const at::Tensor grad_out = grad_out_in.contiguous();
  at::Tensor grad_x = at::empty(
      {grad_out.size(0), grad_out.size(1), grad_out.size(3), grad_out.size(4)}, grad_out.options());
  cuda::spatial_gradient_backward(grad_out, kind, normalized, grad_x);
  return grad_x;
}

std::tuple<at::Tensor, at::Tensor> gradient_regularization_cuda(
    const at::Tensor& flow_in, const c10::optional<at::Tensor>& image_in,
    const c10::optional<at::Tensor>& mask_in, const c10::optional<at::Tensor>& target_in,
    c10::string_view operator_name, int64_t order, c10::string_view penalty, double eps,
    double edge_weight, c10::optional<double> threshold, c10::string_view reduction,
    bool save_weight) {
  constexpr const char* op = "gradient_regularization";
  check_regularization_inputs(flow_in, image_in, mask_in, target_in, eps, op);
  cuda::RegularizationParams p;
  p.kind = parse_stencil(operator_name, order, op);
  p.penalty = parse_penalty(penalty, op);
  p.reduction = parse_reduction(reduction, op);
  p.eps = eps;
  p.weight = WeightParams{edge_weight, threshold.value_or(0.0), threshold.has_value()};
  const c10::cuda::CUDAGuard guard(flow_in.device());
  const at::Tensor flow = flow_in.contiguous();
  const at::Tensor image = contiguous_or_undefined(image_in);
  const at::Tensor mask = contiguous_or_undefined(mask_in);
  const at::Tensor target = contiguous_or_undefined(target_in);
  const int64_t B = flow.size(0), H = flow.size(2), W = flow.size(3);
  const auto acc_options = flow.options().dtype(at::toOpMathType(flow.scalar_type()));
  const bool per_pixel = p.reduction == Reduction::kNone;
  at::Tensor loss = per_pixel ? at::empty({B, H, W}, flow.options()) : at::empty({}, flow.options());
  at::Tensor weight = save_weight && image.defined() ? at::empty({B, H, W}, acc_options)
                                                     : at::empty({0}, acc_options);
  // One partial sum per block, summed in a fixed order by a second kernel: reproducible.
  at::Tensor partials =
      at::empty({per_pixel ? 0 : cuda::regularization_num_partials(B, H, W)}, acc_options);
  cuda::regularization_forward(flow, image, mask, target, p, loss, weight, partials);
  return {loss, weight};
}

at::Tensor gradient_regularization_backward_cuda(
    const at::Tensor& grad_loss_in, const at::Tensor& flow_in,
    const c10::optional<at::Tensor>& target_in, const c10::optional<at::Tensor>& weight_in,
    const c10::optional<at::Tensor>& mask_in, c10::string_view operator_name, int64_t order,
    c10::string_view penalty, double eps, c10::string_view reduction) {
  constexpr const char* op = "gradient_regularization_backward";
  check_regularization_inputs(flow_in, c10::nullopt, mask_in, target_in, eps, op);
  cuda::RegularizationParams p;
  p.kind = parse_stencil(operator_name, order, op);
  p.penalty = parse_penalty(penalty, op);
  p.reduction = parse_reduction(reduction, op);
  p.eps = eps;
  p.weight = WeightParams{0.0, 0.0, false};  // the backward reads w, never the image
  check_regularization_backward_inputs(grad_loss_in, flow_in, weight_in, p.reduction, op);
  const c10::cuda::CUDAGuard guard(flow_in.device());
  const at::Tensor grad_loss = grad_loss_in.contiguous();
  const at::Tensor flow = flow_in.contiguous();
  const at::Tensor target = contiguous_or_undefined(target_in);
  const at::Tensor weight = contiguous_or_undefined(weight_in);
  const at::Tensor mask = contiguous_or_undefined(mask_in);
  at::Tensor grad_flow = at::empty(flow.sizes(), flow.options());
  cuda::regularization_backward(grad_loss, flow, target, weight, mask, p, grad_flow);
  return grad_flow;
}

at::Tensor textureless_mask_cuda(const at::Tensor& image_in, double threshold,
                                 c10::string_view operator_name) {
  constexpr const char* op = "textureless_mask";
  check_image_like(image_in, op, "image");
  const StencilKind kind = parse_stencil(operator_name, 1, op);
  const c10::cuda::CUDAGuard guard(image_in.device());
  const at::Tensor image = image_in.contiguous();
  at::Tensor out = at::empty({image.size(0), 1, image.size(2), image.size(3)},
                             image.options().dtype(at::kBool));
  cuda::textureless_mask(image, threshold, kind, out);
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(pyflowops, CUDA, m) {
  m.impl("spatial_gradient", &spatial_gradient_cuda);
  m.impl("spatial_gradient_backward", &spatial_gradient_backward_cuda);
  m.impl("gradient_regularization", &gradient_regularization_cuda);
  m.impl("gradient_regularization_backward", &gradient_regularization_backward_cuda);
  m.impl("textureless_mask", &textureless_mask_cuda);
}

}  // namespace gradreg
}  // namespace pyflowops
