// Last-line-of-defence input checks shared by the CPU and CUDA kernels.
//
// The Python layer (pyflowops/ops/*.py) validates arguments and raises
// ValueError/TypeError with friendly messages; these TORCH_CHECKs only make sure
// a direct torch.ops call can never read out of bounds.
//
// Declarations only: the checks are defined once, in checks.cpp (g++). Every
// family's *_checks.h follows the same rule (definitions in *_checks.cpp), so the
// error formatting (c10::str, iostreams) is compiled in exactly one translation
// unit and never by nvcc: no weak copies from different compilers for the linker
// to choose between (issue 9, item 5). Keep it so: no inline TORCH_CHECK here.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>  // TORCH_CHECK for the files that include this one

#include <cstdint>

namespace pyflowops {

void check_defined(const at::Tensor& t, const char* op, const char* name);

void check_dim(const at::Tensor& t, int64_t dim, const char* op, const char* name);

void check_floating(const at::Tensor& t, const char* op, const char* name);

// `t` must live on the same device and have the same dtype as `ref`.
void check_same_device_dtype(const at::Tensor& ref, const char* ref_name, const at::Tensor& t,
                             const char* name, const char* op);

// t.size(dim) == expected
void check_size(const at::Tensor& t, int64_t dim, int64_t expected, const char* op,
                const char* name);

void check_shape(const at::Tensor& t, at::IntArrayRef expected, const char* op, const char* name);

}  // namespace pyflowops
