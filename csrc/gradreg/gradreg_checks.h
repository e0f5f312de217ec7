// Argument parsing and last-line-of-defence checks of the gradient-regularization
// ops, shared by the CPU and CUDA op wrappers. pyflowops/ops/gradreg.py
// validates first with friendly Python errors.
#pragma once

#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>
#include <c10/util/Optional.h>
#include <c10/util/string_view.h>

#include <cmath>
#include <cstdint>
#include <string>

#include "common/checks.h"
#include "gradreg/gradreg_math.h"

namespace pyflowops {
namespace gradreg {

// The stencil family of an op call: operator and derivative order.
struct StencilKind {
  Operator op;
  int order;
};

inline StencilKind parse_stencil(c10::string_view name, int64_t order, const char* op) {
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

inline Penalty parse_penalty(c10::string_view name, const char* op) {
  if (name == "l1") return Penalty::kL1;
  if (name == "charbonnier") return Penalty::kCharbonnier;
  TORCH_CHECK(name == "l2", op, ": penalty must be 'l1', 'charbonnier' or 'l2', got '",
              std::string(name), "'");
  return Penalty::kL2;
}

inline Reduction parse_reduction(c10::string_view name, const char* op) {
  if (name == "none") return Reduction::kNone;
  if (name == "mean") return Reduction::kMean;
  TORCH_CHECK(name == "sum", op, ": reduction must be 'mean', 'sum' or 'none', got '",
              std::string(name), "'");
  return Reduction::kSum;
}

// Number of stencil directions K of a kind: 2 (order 1) or 3 (order 2).
inline int64_t num_directions(const StencilKind& kind) { return kind.order == 1 ? 2 : 3; }

// Runs the lambda body __VA_ARGS__ with `constexpr Operator OP` and `constexpr int
// ORDER` set from the runtime StencilKind (as AT_DISPATCH_* does for dtypes), so the
// kernels are templates over the stencil and its zero taps vanish at compile time.
#define PFO_DISPATCH_STENCIL(KIND, ...)                                              \
  [&] {                                                                              \
    const ::pyflowops::gradreg::StencilKind pfo_kind_ = (KIND);                      \
    if (pfo_kind_.op == ::pyflowops::gradreg::Operator::kSobel) {                    \
      constexpr ::pyflowops::gradreg::Operator OP = ::pyflowops::gradreg::Operator::kSobel; \
      constexpr int ORDER = 1;                                                       \
      return __VA_ARGS__();                                                          \
    } else if (pfo_kind_.order == 1) {                                               \
      constexpr ::pyflowops::gradreg::Operator OP = ::pyflowops::gradreg::Operator::kDiff; \
      constexpr int ORDER = 1;                                                       \
      return __VA_ARGS__();                                                          \
    } else {                                                                         \
      constexpr ::pyflowops::gradreg::Operator OP = ::pyflowops::gradreg::Operator::kDiff; \
      constexpr int ORDER = 2;                                                       \
      return __VA_ARGS__();                                                          \
    }                                                                                \
  }()

// x: [B, C, H, W] floating.
inline void check_image_like(const at::Tensor& x, const char* op, const char* name) {
  check_dim(x, 4, op, name);
  check_floating(x, op, name);
}

// flow [B, 2, H, W]; image [B, C, H, W]; mask [B, 1, H, W] bool or flow's dtype;
// target [B, 2, H, W]; all on flow's device, image/target in flow's dtype.
inline void check_regularization_inputs(const at::Tensor& flow,
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
inline void check_gradient_grad_out(const at::Tensor& grad_out, const StencilKind& kind,
                                    const char* op) {
  check_dim(grad_out, 5, op, "grad_out");
  check_floating(grad_out, op, "grad_out");
  check_size(grad_out, 2, num_directions(kind), op, "grad_out");
}

// gradient_regularization_backward's grad_loss ([B, H, W] for "none", else one value,
// flow's dtype) and weight ([B, H, W] in flow's opmath dtype); flow already checked.
inline void check_regularization_backward_inputs(const at::Tensor& grad_loss,
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
