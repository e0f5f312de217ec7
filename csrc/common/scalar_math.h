// Scalar math that compiles for host and device, overloaded on float / double so
// the opmath type picks the single- or double-precision function (the device has no
// std:: overloads). Shared by every <family>_math.h.
#pragma once

#include <cmath>

#include "common/host_device.h"

namespace pyflowops {

PFO_INLINE float pfo_sqrt(float x) { return ::sqrtf(x); }
PFO_INLINE double pfo_sqrt(double x) { return ::sqrt(x); }
PFO_INLINE float pfo_exp(float x) { return ::expf(x); }
PFO_INLINE double pfo_exp(double x) { return ::exp(x); }
PFO_INLINE float pfo_ceil(float x) { return ::ceilf(x); }
PFO_INLINE double pfo_ceil(double x) { return ::ceil(x); }
PFO_INLINE float pfo_floor(float x) { return ::floorf(x); }
PFO_INLINE double pfo_floor(double x) { return ::floor(x); }
// |x| as x < 0 ? -x : x (NaN stays NaN, -0 stays -0).
template <typename T>
PFO_INLINE T pfo_abs(T x) {
  return x < T(0) ? -x : x;
}

}  // namespace pyflowops
