"""Backend selection: argument, context, environment, auto, and the errors."""

from __future__ import annotations

import pytest
import torch

import pyflowops
from pyflowops import _backend


@pytest.fixture
def x():
    return torch.zeros(1)


def test_available_backends_here():
    names = pyflowops.available_backends()
    assert names[-1] == "torch" and "cpu" in names
    assert ("cuda" in names) == (torch.cuda.is_available() and pyflowops.build_info()["cuda_compiled"])


def test_build_info_reports_the_build():
    info = pyflowops.build_info()
    assert set(info) >= {"cuda_compiled", "cuda_archs", "cuda_version", "torch_version", "openmp"}
    assert info["torch_version"] == torch.__version__
    assert info["openmp"] is True  # without -fopenmp at::parallel_for runs on one thread
    assert isinstance(info["cuda_compiled"], bool)


def test_auto_picks_cpu_for_cpu_tensors(x, monkeypatch):
    monkeypatch.delenv("PYFLOWOPS_BACKEND", raising=False)
    assert _backend.select_backend("op", [x]) == "cpu"


def test_argument_beats_context_beats_environment(x, monkeypatch):
    monkeypatch.setenv("PYFLOWOPS_BACKEND", "torch")
    assert _backend.select_backend("op", [x]) == "torch"
    with pyflowops.use_backend("cpu"):
        assert _backend.select_backend("op", [x]) == "cpu"
        with pyflowops.use_backend("torch"):
            assert _backend.select_backend("op", [x]) == "torch"
        assert _backend.select_backend("op", [x]) == "cpu"
        assert _backend.select_backend("op", [x], backend="torch") == "torch"
    assert _backend.select_backend("op", [x]) == "torch"


def test_bad_environment_names_the_variable(x, monkeypatch):
    monkeypatch.setenv("PYFLOWOPS_BACKEND", "fastest")
    with pytest.raises(ValueError, match=r"PYFLOWOPS_BACKEND: backend must be one of .*'fastest'"):
        _backend.select_backend("op", [x])


def test_context_rejects_unknown_name():
    with pytest.raises(ValueError, match="backend must be one of"):
        with pyflowops.use_backend("gpu"):
            pass
    assert _backend._CONTEXT_STACK == []


def test_context_is_popped_on_error(x):
    with pytest.raises(KeyError):
        with pyflowops.use_backend("torch"):
            raise KeyError
    assert _backend._CONTEXT_STACK == []


def test_explicit_backend_that_cannot_run_says_why(x):
    with pytest.raises(pyflowops.BackendUnavailableError, match=r"backend 'cuda' cannot run: .*"):
        _backend.select_backend("my_op", [x], backend="cuda")
    with pytest.raises(pyflowops.BackendUnavailableError, match=r"cpu/cuda tensors, got meta|runs on cpu tensors, got meta"):
        _backend.select_backend("my_op", [torch.zeros(1, device="meta")], backend="cpu")


def test_no_backend_fits_lists_every_reason(x, monkeypatch):
    monkeypatch.setattr(_backend._Backend, "reject", lambda self, device, dtype: f"{self.name} says no")
    with pytest.raises(pyflowops.BackendUnavailableError) as info:
        _backend.select_backend("my_op", [x])
    message = str(info.value)
    assert message.startswith("my_op: no backend can run on cpu torch.float32")
    for name in _backend.BACKEND_NAMES:
        assert f"{name}: {name} says no" in message


def test_triton_needs_gpu_or_interpreter(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    reason = _backend._BACKENDS["triton"].unavailable()
    assert (reason is None) == torch.cuda.is_available()
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert _backend._BACKENDS["triton"].unavailable() is None
    assert _backend._BACKENDS["triton"].reject("cpu", torch.float32) is None


def test_non_float_tensors_are_rejected_with_the_dtype():
    with pytest.raises(pyflowops.BackendUnavailableError, match=r"floating-point tensors only, got torch.int32"):
        _backend.select_backend("my_op", [torch.zeros(1, dtype=torch.int32)], backend="cpu")


def test_nn_is_reachable_after_import_pyflowops():
    """`import pyflowops` then `pyflowops.nn.CorrBlock`, as torch users expect (a fresh interpreter)."""
    import subprocess
    import sys

    code = "import pyflowops; print(pyflowops.nn.CorrBlock.__name__, pyflowops.nn.GradientRegularization.__name__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["CorrBlock", "GradientRegularization"]


def test_auto_follows_the_measured_order_per_op_and_device(monkeypatch):
    """On CUDA tensors the on-the-fly lookup goes to Triton first (measured faster), the window lookup to cuda."""
    monkeypatch.delenv("PYFLOWOPS_BACKEND", raising=False)
    assert _backend.auto_order("corr_lookup_onthefly", "cuda")[0] == "triton"
    assert _backend.auto_order("corr_lookup", "cuda")[0] == "cuda"
    assert _backend.auto_order("corr_lookup_onthefly", "cpu") == ("cpu", "torch")
    for op in ("corr_lookup", "corr_lookup_onthefly", "rasterize_gaussians", "gradient_regularization"):
        for device in ("cpu", "cuda"):
            order = _backend.auto_order(op, device)
            assert order[-1] == "torch" and set(order) <= set(_backend.BACKEND_NAMES)
    # select_backend walks that order: with every backend accepting, the first of the op's order wins.
    monkeypatch.setattr(_backend._Backend, "reject", lambda self, device, dtype: None)
    cuda_like = torch.zeros(1, device="meta")
    monkeypatch.setitem(_backend._DEFAULT_ORDER, "meta", ("cuda", "triton", "torch"))
    monkeypatch.setitem(_backend._AUTO_ORDER, ("corr_lookup_onthefly", "meta"), ("triton", "cuda", "torch"))
    assert _backend.select_backend("corr_lookup_onthefly", [cuda_like]) == "triton"
    assert _backend.select_backend("corr_lookup", [cuda_like]) == "cuda"
    # and a backend that cannot run is skipped for the next one
    monkeypatch.setattr(_backend._Backend, "reject",
                        lambda self, device, dtype: "no" if self.name == "triton" else None)
    assert _backend.select_backend("corr_lookup_onthefly", [cuda_like]) == "cuda"
