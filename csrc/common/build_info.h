// build_info(): how this extension was compiled (exposed as pyflowops._C.build_info).
#pragma once

#include <pybind11/pybind11.h>

namespace pyflowops {

// Keys: cuda_compiled (bool), cuda_archs (str), cuda_version (str),
// torch_version (str, the torch it was built against), openmp (bool),
// compiler (str).
pybind11::dict build_info_dict();

}  // namespace pyflowops
