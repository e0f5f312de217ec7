"""Registration shared by every op family: fake kernels, autograd, and the lazy Triton twins.

A family registers each C++ op's fake (shape) kernel, and for each differentiable
op ``name`` one backward formula built around its backward op
``pyflowops::<name>_backward``. The same formulas serve the Triton twins
(``<name>_triton`` and ``<name>_backward_triton``) once their module is imported.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Mapping

import torch

from pyflowops import _backend

__all__ = ["register_family"]

# name -> (make_backward(backward_op) -> backward(ctx, *grads), setup_context)
Autograd = Mapping[str, tuple[Callable[[Callable], Callable], Callable]]


def register_family(fakes: Mapping[str, Callable], autograd: Autograd, triton_module: str) -> Callable[[], object]:
    """Register a family's fake kernels and autograd; returns a cached loader of its Triton ops.

    Args:
        fakes: op name -> fake kernel, for every C++ op of the family.
        autograd: differentiable op name -> (backward factory, setup_context).
        triton_module: the module that defines the family's ``*_triton`` ops.

    Returns:
        ``triton_ops()``: imports ``triton_module`` on first use (importing triton
        costs seconds), registers the same autograd for the ``*_triton`` ops and
        returns the ``torch.ops.pyflowops`` namespace.
    """

    def register_autograd(suffix: str) -> None:
        ops = torch.ops.pyflowops
        for name, (make_backward, setup_context) in autograd.items():
            torch.library.register_autograd(
                f"pyflowops::{name}{suffix}",
                make_backward(getattr(ops, f"{name}_backward{suffix}")),
                setup_context=setup_context,
            )

    if _backend._C is not None:  # without _C only the torch backend exists
        for name, fake in fakes.items():
            torch.library.register_fake(f"pyflowops::{name}", fake)
        register_autograd("")

    @functools.cache
    def triton_ops():
        importlib.import_module(triton_module)  # defines the *_triton ops
        register_autograd("_triton")
        return torch.ops.pyflowops

    return triton_ops
