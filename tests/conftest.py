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
    pytest.param(("triton", "cuda"), id="triton-cuda", marks=pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")),
]


@pytest.fixture(params=KERNEL_CASES)
def kernel_case(request):
    """(backend, device) of a kernel backend; fails loudly if this install cannot run it."""
    backend, device = request.param
    assert backend in pyflowops.available_backends(), (backend, pyflowops.build_info())
    return backend, device


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
