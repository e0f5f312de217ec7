// Definitions of common/checks.h: the one translation unit (g++, never nvcc)
// that formats these error messages.
#include "common/checks.h"

#include <c10/util/Exception.h>

namespace pyflowops {

void check_defined(const at::Tensor& t, const char* op, const char* name) {
  TORCH_CHECK(t.defined(), op, ": ", name, " is an undefined tensor");
}

void check_dim(const at::Tensor& t, int64_t dim, const char* op, const char* name) {
  check_defined(t, op, name);
  TORCH_CHECK(t.dim() == dim, op, ": ", name, " must have ", dim, " dimensions, got shape ",
              t.sizes());
}

void check_floating(const at::Tensor& t, const char* op, const char* name) {
  const auto st = t.scalar_type();
  TORCH_CHECK(st == at::kFloat || st == at::kDouble || st == at::kHalf || st == at::kBFloat16, op,
              ": ", name, " must be float32, float64, float16 or bfloat16, got ", st);
}

void check_same_device_dtype(const at::Tensor& ref, const char* ref_name, const at::Tensor& t,
                             const char* name, const char* op) {
  TORCH_CHECK(t.device() == ref.device(), op, ": ", name, " is on ", t.device(), " but ",
              ref_name, " is on ", ref.device());
  TORCH_CHECK(t.scalar_type() == ref.scalar_type(), op, ": ", name, " has dtype ",
              t.scalar_type(), " but ", ref_name, " has dtype ", ref.scalar_type());
}

void check_size(const at::Tensor& t, int64_t dim, int64_t expected, const char* op,
                const char* name) {
  TORCH_CHECK(t.size(dim) == expected, op, ": ", name, " must have size ", expected,
              " in dimension ", dim, ", got shape ", t.sizes());
}

void check_shape(const at::Tensor& t, at::IntArrayRef expected, const char* op, const char* name) {
  TORCH_CHECK(t.sizes() == expected, op, ": ", name, " must have shape ", expected, ", got ",
              t.sizes());
}

}  // namespace pyflowops
