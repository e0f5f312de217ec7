// Definitions of gradreg_checks.h: the one translation unit (g++, never nvcc) that
// formats the gradient-regularization ops' argument errors.
#include "gradreg/gradreg_checks.h"

#include <ATen/OpMathType.h>

#include <cmath>
#include <string>

namespace pyflowops {
namespace gradreg {

StencilKind parse_stencil(c10::string_view name, int64_t order, const char* op) {
  TORCH_CHECK(order == 1 || order == 2, op, ": order must be 1 or 2, got ", order);
  if (name == "sobel") {
    TORCH_CHECK(order == 1, op,
                ": operator 'sobel' supports order 1 only (its second-order stencil is 5x5)");
    return {Operator::kSobel, 1};
  }
  TORCH_CHECK(name == "diff", op, ": operator must be 'sobel' or 'diff', got '",
              std::string(name), "'");
  return {Operator::kDiff, static_cast<int>(order)};
}

Penalty parse_penalty(c10::string_view name, const char* op) {
  if (name == "l1") return Penalty::kL1;
  if (name == "charbonnier") return Penalty::kCharbonnier;
  TORCH_CHECK(name == "l2", op, ": penalty must be 'l1', 'charbonnier' or 'l2', got '",
              std::string(name), "'");
  return Penalty::kL2;
}

Reduction parse_reduction(c10::string_view name, const char* op) {
  if (name == "none") return Reduction::kNone;
  if (name == "mean") return Reduction::kMean;
  TORCH_CHECK(name == "sum", op, ": reduction must be 'mean', 'sum' or 'none', got '",
              std::string(name), "'");
  return Reduction::kSum;
}

// x: [B, C, H, W] floating.
void check_image_like(const at::Tensor& x, const char* op, const char* name) {
  check_dim(x, 4, op, name);
  check_floating(x, op, name);
}

// flow [B, 2, H, W]; image [B, C, H, W]; mask [B, 1, H, W] bool or flow's dtype;
// target [B, 2, H, W]; all on flow's device, image/target in flow's dtype.
void check_regularization_inputs(const at::Tensor& flow,
                                 const c10::optional<at::Tensor>& image,
                                 const c10::optional<at::Tensor>& mask,
                                 const c10::optional<at::Tensor>& target, double eps,
                                 const char* op) {
  check_image_like(flow, op, "flow");
  check_size(flow, 1, 2, op, "flow");
  const int64_t B = flow.size(0), H = flow.size(2), W = flow.size(3);
  TORCH_CHECK(eps >= 0.0 && std::isfinite(eps), op, ": eps must be finite and >= 0, got ", eps);
  if (image.has_value()) {
    check_image_like(*image, op, "image");
    check_same_device_dtype(flow, "flow", *image, "image", op);
    TORCH_CHECK(image->size(0) == B && image->size(2) == H && image->size(3) == W, op,
                ": image must be [B, C, H, W] with B, H, W of flow ", flow.sizes(), ", got ",
                image->sizes());
  }
  if (mask.has_value()) {
    check_dim(*mask, 4, op, "mask");
    TORCH_CHECK(mask->device() == flow.device(), op, ": mask is on ", mask->device(),
                " but flow is on ", flow.device());
    TORCH_CHECK(mask->scalar_type() == at::kBool || mask->scalar_type() == flow.scalar_type(), op,
                ": mask must be bool or flow's dtype ", flow.scalar_type(), ", got ",
                mask->scalar_type());
    check_shape(*mask, {B, 1, H, W}, op, "mask");
  }
  if (target.has_value()) {
    check_same_device_dtype(flow, "flow", *target, "target", op);
    check_shape(*target, flow.sizes(), op, "target");
  }
}

// grad_out [B, C, K, H, W] of spatial_gradient_backward, K the directions of `kind`.
void check_gradient_grad_out(const at::Tensor& grad_out, const StencilKind& kind,
                             const char* op) {
  check_dim(grad_out, 5, op, "grad_out");
  check_floating(grad_out, op, "grad_out");
  check_size(grad_out, 2, num_directions(kind), op, "grad_out");
}

// gradient_regularization_backward's grad_loss ([B, H, W] for "none", else one value,
// flow's dtype) and weight ([B, H, W] in flow's opmath dtype); flow already checked.
void check_regularization_backward_inputs(const at::Tensor& grad_loss,
                                          const at::Tensor& flow,
                                          const c10::optional<at::Tensor>& weight,
                                          Reduction reduction, const char* op) {
  check_defined(grad_loss, op, "grad_loss");
  check_same_device_dtype(flow, "flow", grad_loss, "grad_loss", op);
  const int64_t B = flow.size(0), H = flow.size(2), W = flow.size(3);
  if (reduction == Reduction::kNone) {
    check_shape(grad_loss, {B, H, W}, op, "grad_loss");
  } else {
    TORCH_CHECK(grad_loss.numel() == 1, op,
                ": grad_loss must hold one value for a reduced loss, got shape ",
                grad_loss.sizes());
  }
  if (weight.has_value()) {
    check_defined(*weight, op, "weight");
    TORCH_CHECK(weight->device() == flow.device(), op, ": weight is on ", weight->device(),
                " but flow is on ", flow.device());
    TORCH_CHECK(weight->scalar_type() == at::toOpMathType(flow.scalar_type()), op,
                ": weight must have flow's opmath dtype ", at::toOpMathType(flow.scalar_type()),
                ", got ", weight->scalar_type());
    check_shape(*weight, {B, H, W}, op, "weight");
  }
}

}  // namespace gradreg
}  // namespace pyflowops
