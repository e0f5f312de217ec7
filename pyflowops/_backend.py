"""Loading ``pyflowops._C`` and choosing a backend for each op call.

Backends: ``cpu`` (C++ kernels), ``cuda`` (CUDA kernels), ``triton`` (Triton
kernels) and ``torch`` (the pure PyTorch reference). The choice comes from,
in order: the op's ``backend=`` argument, the innermost :func:`use_backend`
context, the ``PYFLOWOPS_BACKEND`` environment variable, else ``auto``: the
first backend that can run in the op's measured order (``_AUTO_ORDER`` below).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

__all__ = [
    "BACKEND_NAMES",
    "BackendUnavailableError",
    "available_backends",
    "build_info",
    "check_backend_name",
    "select_backend",
    "use_backend",
]

BACKEND_NAMES = ("cpu", "cuda", "triton", "torch")
# ``auto``: per device, the default order, and per op the measured exceptions (fastest first).
# CPU: the C++ kernels beat the reference for every op (benchmarks/RESULTS.md). CUDA, one H100,
# torch 2.11 + triton 3.6, D=256, 4 levels, r=4 (issue 9's table):
#   corr_lookup            cuda 0.22 ms forward at 1024^2 B2 (RAFT's grid_sample 1.28 ms): cuda first.
#   corr_lookup_onthefly   forward cuda 21.4 ms vs triton 1.72 ms; forward + backward 78.6 vs 14.5 ms
#                          (AlternateCorrBlock, 12 iterations: cuda 250 ms vs triton 17.7 ms): triton
#                          first until the tiled CUDA kernel (csrc/corr/corr_onthefly_cuda.cu) is
#                          measured faster on a GPU.
#   splat, gradreg         not yet measured on a GPU: the C++ kernels first, as on the CPU.
_DEFAULT_ORDER = {"cuda": ("cuda", "triton", "torch"), "cpu": ("cpu", "torch")}
_AUTO_ORDER = {
    ("corr_lookup_onthefly", "cuda"): ("triton", "cuda", "torch"),
}
_ALL_FLOATS = frozenset({torch.float32, torch.float64, torch.float16, torch.bfloat16})

try:  # importing _C registers the C++ ops with torch.library
    from pyflowops import _C  # type: ignore[attr-defined]

    _C_ERROR: str | None = None
    _BUILD_INFO: dict = dict(_C.build_info())  # read once: torch.compile cannot trace into pybind11
except ImportError as exc:  # a broken or missing build must not hide the torch backend
    _C = None
    _C_ERROR = f"pyflowops._C failed to import ({exc}); reinstall with `pip install --no-build-isolation .`"
    _BUILD_INFO = {"error": _C_ERROR}


class BackendUnavailableError(RuntimeError):
    """No backend (or not the requested one) can run an op on the given tensors."""


def build_info() -> dict:
    """How ``pyflowops._C`` was built.

    Returns:
        dict with ``cuda_compiled``, ``cuda_archs``, ``cuda_version``, ``torch_version``
        (the torch it was compiled against), ``openmp`` and ``compiler``; or
        ``{"error": reason}`` when the extension could not be imported.

    Example:
        >>> import pyflowops
        >>> sorted(pyflowops.build_info())[:2]
        ['compiler', 'cuda_archs']
    """
    return dict(_BUILD_INFO)


def _triton_interpreted() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


@functools.cache
def _triton_missing() -> str | None:
    if importlib.util.find_spec("triton") is None:
        return "the triton package is not installed"
    return None


@dataclass(frozen=True)
class _Backend:
    name: str

    def unavailable(self) -> str | None:
        """Why this install cannot run the backend at all, or None."""
        if self.name == "cpu":
            return _C_ERROR
        if self.name == "cuda":
            if _C_ERROR:
                return _C_ERROR
            if not _BUILD_INFO["cuda_compiled"]:
                return "pyflowops._C was built without CUDA (rebuild with FORCE_CUDA=1 where nvcc is present)"
            if not torch.cuda.is_available():
                return "torch.cuda.is_available() is False"
            return None
        if self.name == "triton":
            if _triton_missing():
                return _triton_missing()
            if not torch.cuda.is_available() and not _triton_interpreted():
                return "Triton needs a CUDA GPU (or TRITON_INTERPRET=1 for the CPU interpreter)"
            return None
        return None  # torch: always there

    def devices(self) -> tuple[str, ...]:
        if self.name == "cpu":
            return ("cpu",)
        if self.name == "cuda":
            return ("cuda",)
        if self.name == "triton":
            return ("cuda", "cpu") if _triton_interpreted() else ("cuda",)
        return ("any",)

    def reject(self, device: str, dtype: torch.dtype) -> str | None:
        """Why this backend cannot run on tensors of this device and dtype, or None."""
        reason = self.unavailable()
        if reason or self.name == "torch":  # the reference runs wherever torch does
            return reason
        if device not in self.devices():
            return f"runs on {'/'.join(self.devices())} tensors, got {device}"
        if dtype not in _ALL_FLOATS:  # every backend runs float32/64, float16 and bfloat16
            return f"supports floating-point tensors only, got {dtype}"
        return None


_BACKENDS = {name: _Backend(name) for name in BACKEND_NAMES}
_CONTEXT_STACK: list[str] = []  # a plain list (not a ContextVar) so torch.compile can read it


def check_backend_name(name: str) -> str:
    """``name`` is ``"auto"`` or a backend name (else ValueError listing them)."""
    if name != "auto" and name not in _BACKENDS:
        raise ValueError(f"backend must be one of {('auto', *BACKEND_NAMES)}, got {name!r}")
    return name


def available_backends() -> list[str]:
    """Backends this install can run (on some device), in priority order.

    Example:
        >>> import pyflowops
        >>> "torch" in pyflowops.available_backends()
        True
    """
    return [name for name, b in _BACKENDS.items() if b.unavailable() is None]


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[None]:
    """Run the ops called inside the ``with`` block on backend ``name`` (or ``"auto"``).

    An op's own ``backend=`` argument still wins. Contexts nest.

    Example:
        >>> import pyflowops
        >>> with pyflowops.use_backend("torch"):
        ...     pass
    """
    _CONTEXT_STACK.append(check_backend_name(name))
    try:
        yield
    finally:
        _CONTEXT_STACK.pop()


def _requested(backend: str | None) -> str:
    if backend is not None:
        return check_backend_name(backend)
    if _CONTEXT_STACK:
        return _CONTEXT_STACK[-1]
    env = os.environ.get("PYFLOWOPS_BACKEND")
    if env:
        try:
            return check_backend_name(env)
        except ValueError as exc:
            raise ValueError(f"PYFLOWOPS_BACKEND: {exc}") from None
    return "auto"


def auto_order(op: str, device: str) -> tuple[str, ...]:
    """The backends ``auto`` tries for ``op`` on ``device`` tensors, fastest (measured) first."""
    return _AUTO_ORDER.get((op, device), _DEFAULT_ORDER.get(device, ("torch",)))


def select_backend(op: str, tensors: Sequence[torch.Tensor], backend: str | None = None) -> str:
    """Pick the backend that runs ``op`` on ``tensors`` (already validated to share device and dtype).

    Raises:
        ValueError: ``backend`` is not a backend name.
        BackendUnavailableError: the requested backend, or with ``auto`` every
            candidate, cannot run; the message gives each backend's reason.
    """
    device, dtype = tensors[0].device.type, tensors[0].dtype
    requested = _requested(backend)
    if requested != "auto":
        reason = _BACKENDS[requested].reject(device, dtype)
        if reason is None:
            return requested
        raise BackendUnavailableError(f"{op}: backend {requested!r} cannot run: {reason}")
    candidates = auto_order(op, device)
    reasons = {}
    for name in candidates:
        reason = _BACKENDS[name].reject(device, dtype)
        if reason is None:
            return name
        reasons[name] = reason
    for name in BACKEND_NAMES:
        reasons.setdefault(name, _BACKENDS[name].reject(device, dtype) or "not tried for this device")
    detail = "; ".join(f"{name}: {why}" for name, why in reasons.items())
    raise BackendUnavailableError(f"{op}: no backend can run on {device} {dtype}: {detail}")
