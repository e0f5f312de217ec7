// StencilKind (operator + derivative order of an op call) and PFO_DISPATCH_STENCIL,
// shared by the op wrappers and the CUDA launchers (gradreg_cuda.h / gradreg_cuda.cu).
// No checks and no error formatting here (those are gradreg_checks.h/.cpp, g++ only).
#pragma once

#include <cstdint>

#include "gradreg/gradreg_math.h"

namespace pyflowops {
namespace gradreg {

// The stencil family of an op call: operator and derivative order.
struct StencilKind {
  Operator op;
  int order;
};

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

}  // namespace gradreg
}  // namespace pyflowops
