"""Argument checks shared by every op family.

Each raises ``TypeError`` or ``ValueError`` with a message that names the
argument, what was expected and what was given, so users can fix the call
without reading kernel code.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

_FLOATS = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def check_tensor(name: str, value: object, ndim: int) -> torch.Tensor:
    """``value`` is a floating-point tensor of rank ``ndim``."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if value.dim() != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {tuple(value.shape)}")
    if value.dtype not in _FLOATS:
        raise TypeError(f"{name} must be float32, float64, float16 or bfloat16, got {value.dtype}")
    return value


def check_shape(name: str, value: torch.Tensor, expected: Sequence[int], meaning: str) -> None:
    """``value.shape == expected``; ``meaning`` spells the expected layout, e.g. ``"[B, 2, H, W]"``."""
    if tuple(value.shape) != tuple(expected):
        raise ValueError(f"{name} must have shape {meaning} = {tuple(expected)}, got {tuple(value.shape)}")


def check_same_device_dtype(named: Sequence[tuple[str, torch.Tensor]]) -> None:
    """All tensors share the first one's device and dtype."""
    first_name, first = named[0]
    for name, value in named[1:]:
        if value.device != first.device:
            raise ValueError(f"{name} is on {value.device} but {first_name} is on {first.device}")
        if value.dtype != first.dtype:
            raise TypeError(f"{name} has dtype {value.dtype} but {first_name} has {first.dtype}")


def check_int(name: str, value: object, low: int, high: int | None = None) -> int:
    """``value`` is an int in ``[low, high]`` (no upper bound when ``high`` is None)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < low or (high is not None and value > high):
        bound = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{name} must be {bound}, got {value}")
    return value


def check_choice(name: str, value: object, choices: Sequence[str]) -> str:
    """``value`` is one of the strings ``choices``."""
    if not isinstance(value, str) or value not in choices:
        options = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{name} must be one of {options}, got {value!r}")
    return value


def check_float(name: str, value: object, low: float | None = None) -> float:
    """``value`` is a finite real number (int or float), at least ``low`` when given."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a float, got {type(value).__name__}")
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"{name} must be finite, got {value}")
    if low is not None and value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    return float(value)
