"""Helpers shared by the Triton kernel modules: Python floats passed to kernels at full precision.

Triton passes a Python float argument as float32. ``_split`` (host) sends a float as a
float32 hi + lo pair; ``_scalar`` (device) adds them back in float64 kernels (about 48
bits) and uses hi alone in float32 kernels, which is what the C++ kernels do.
"""

import math
import struct

import triton
import triton.language as tl

__all__ = ["_scalar", "_split"]


@triton.jit
def _scalar(hi, lo, FP64: tl.constexpr):
    """A Python float passed as float32 hi + lo (Triton passes floats as fp32); float64 adds both."""
    if FP64:
        x = tl.cast(hi, tl.float64) + tl.cast(lo, tl.float64)
    else:
        x = tl.cast(hi, tl.float32)
    return x


def _split(x: float) -> tuple[float, float]:
    """x as float32 hi + lo (Triton passes Python floats as float32): the float64 kernels add
    the two back up (about 48 bits); float32 kernels use hi = float32(x), as the C++."""
    if not math.isfinite(x):
        return x, 0.0
    try:
        hi = struct.unpack("f", struct.pack("f", x))[0]
    except OverflowError:  # beyond float32's range
        return math.copysign(math.inf, x), 0.0
    return hi, x - hi
