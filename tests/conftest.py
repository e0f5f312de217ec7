"""Shared fixtures: which (backend, device) pairs this machine can test.

Triton runs on the CPU only under its interpreter, which must be switched on
before triton is first imported, so it is set here, at collection time.
"""

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402

import pyflowops  # noqa: E402

HAS_CUDA = torch.cuda.is_available()

# (backend, device) pairs that run a hand-written kernel; the torch backend is the reference.
KERNEL_CASES = [
    pytest.param(("cpu", "cpu"), id="cpu"),
    pytest.param(("triton", "cpu"), id="triton-interp", marks=pytest.mark.skipif(HAS_CUDA, reason="GPU present")),
    pytest.param(("cuda", "cuda"), id="cuda", marks=pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")),
    pytest.param(
        ("triton", "cuda"), id="triton-cuda", marks=pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")
    ),
]


def available(case: tuple[str, str]) -> tuple[str, str]:
    """``case`` = (backend, device), after asserting this install can run the backend (fails loudly otherwise)."""
    backend, device = case
    assert backend in pyflowops.available_backends(), (backend, pyflowops.build_info())
    return backend, device


@pytest.fixture(params=KERNEL_CASES)
def kernel_case(request):
    """(backend, device) of a kernel backend."""
    return available(request.param)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# The kernel backends plus the reference itself (for hand-checked values).
ALL_CASES = [pytest.param(("torch", "cpu"), id="torch"), *KERNEL_CASES]
# Kernel backends fast enough for the full option product: all but the Triton interpreter.
FAST_CASES = [p for p in KERNEL_CASES if p.id != "triton-interp"]


@pytest.fixture(params=ALL_CASES)
def any_case(request):
    """(backend, device) of the reference or of a kernel backend."""
    return available(request.param)


@pytest.fixture(params=FAST_CASES)
def fast_case(request):
    """(backend, device) of a kernel backend other than the (slow) Triton interpreter."""
    return available(request.param)


@pytest.fixture
def one_thread():
    """Run on one intra-op thread: the many tiny calls of the option product and of gradcheck gain nothing from
    the pool, and on a loaded 2-core machine each wake-up of it costs ~10 ms (test_large_cpu and test_sizes keep
    the default threads, so the kernels' parallel split is still tested)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
