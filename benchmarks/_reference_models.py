"""The reference configuration of the flow networks, for ``benchmarks/test_models.py``.

What the official implementations run: RAFT's ``CorrBlock`` (the all-pairs pyramid
materialized with a matmul, lookups with ``grid_sample``; the pure-PyTorch
``pyflowops.reference.corr``) and GMA's explicit attention (the (HW)^2 softmax
matrix, ``softmax="explicit"``). Plugged into the same ``pyflowops_models``
networks through their ``corr_block=`` option, so a model built with the same
seed has the same weights either way and only the operators differ.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn as nn

import pyflowops_models
from pyflowops.reference.corr import corr_lookup, corr_pyramid

__all__ = ["ReferenceCorrBlock", "create_model", "reference_corr_block", "reference_model"]


class ReferenceCorrBlock:
    """RAFT's CorrBlock: the all-pairs pyramid built once per pair, a ``grid_sample`` window lookup per call.

    coords [B, 2, H, W] (x, y) -> [B, L*(2r+1)^2, H, W], RAFT's channel order.
    """

    def __init__(self, fmap1: torch.Tensor, fmap2: torch.Tensor, num_levels: int = 4, radius: int = 4) -> None:
        self.radius = radius
        self.pyramid = corr_pyramid(fmap1, fmap2, num_levels)

    def __call__(self, coords: torch.Tensor) -> torch.Tensor:
        return corr_lookup(self.pyramid, coords, self.radius)


def reference_corr_block(
    fmap1: torch.Tensor,
    fmap2: torch.Tensor,
    mode: str = "allpairs",
    num_levels: int = 4,
    radius: int = 4,
    memory_budget_bytes: int | None = None,
) -> ReferenceCorrBlock:
    """A ``corr_block=`` factory (the signature of ``pyflowops_models.correlation.make_corr_block``).

    ``mode`` and ``memory_budget_bytes`` are ignored: the reference always builds the all-pairs pyramid.
    """
    del mode, memory_budget_bytes
    return ReferenceCorrBlock(fmap1, fmap2, num_levels, radius)


def create_model(name: str, size: str = "full", corr: str = "auto", **options) -> nn.Module:
    """``pyflowops_models.create`` without DecFlow's one-time "untrained semantic encoder" warning."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"DecFlow: the .* semantic encoder has random weights")
        return pyflowops_models.create(name, size=size, corr=corr, **options)


def reference_model(name: str, size: str = "full", **options) -> nn.Module:
    """The network ``name`` on the reference operators: RAFT's CorrBlock and GMA's explicit softmax.

    raft has no attention, so it takes no ``softmax`` option.
    """
    if name != "raft":
        options.setdefault("softmax", "explicit")
    return create_model(name, size=size, corr="allpairs", corr_block=reference_corr_block, **options)
