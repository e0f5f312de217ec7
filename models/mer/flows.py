"""Flow methods for micro-expression recognition: onset -> apex flow of a clip from any method.

A method is named by a spec string (``pyflowops mer --flow``):

* ``farneback``, ``dis``, ``tvl1``: the classical baselines of :mod:`pyflowops_models.baselines`
  (facial flow: everything that moves, head motion included);
* ``decflow:CKPT``: DecFlow's **expression** flow (facial - head), what FacialFlowNet feeds to its
  recogniser; ``decflow-facial:CKPT`` and ``decflow-head:CKPT`` are the same network's other
  outputs (the ablation: what the decomposition adds); ``model:CKPT`` is any checkpoint's facial flow;
* ``gt-expression``, ``gt-facial``: the ground truth of a synthetic set (``flow_facial.flo`` and
  ``flow_head.flo``): the ceiling a perfect flow method would reach with this recogniser.

``CKPT`` is a checkpoint file or run directory (``pyflowops_models.load``). Every method is called
as ``method(sample, onset_image, apex_image) -> flow [H, W, 2]`` float32 (u = x, v = y pixels).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

__all__ = ["CLASSICAL", "GROUND_TRUTH", "NETWORK_OUTPUTS", "FlowMethod", "parse_flow_method"]

CLASSICAL = ("farneback", "dis", "tvl1")
GROUND_TRUTH = {"gt-expression": "expression", "gt-facial": "facial"}
NETWORK_OUTPUTS = {"decflow": "expression", "decflow-facial": "facial", "decflow-head": "head", "model": "facial"}


@dataclass
class FlowMethod:
    """One row of the MER table: a name and how it makes onset -> apex flow.

    ``compute(sample, onset [H, W, 3] uint8, apex [H, W, 3] uint8) -> [H, W, 2] float32``.
    ``needs_ground_truth``: only synthetic sets (with ``flow_facial``/``flow_head``) can run it.
    """

    name: str
    compute: Callable[..., np.ndarray]
    needs_ground_truth: bool = False
    description: str = ""


def _ground_truth(kind: str) -> Callable[..., np.ndarray]:
    from pyflowops.flow import read_flo

    def compute(sample, onset: np.ndarray, apex: np.ndarray) -> np.ndarray:
        if sample.flow_facial is None or sample.flow_head is None:
            raise ValueError(f"{sample.dataset}/{sample.sequence}: no ground-truth flow (only synthetic sets have it)")
        facial = read_flo(sample.flow_facial)
        return facial if kind == "facial" else facial - read_flo(sample.flow_head)

    return compute


class _Network:
    """A loaded network; one forward per clip serves every output asked of it (facial, head, expression)."""

    _loaded: ClassVar[dict[str, _Network]] = {}

    def __init__(self, checkpoint: str, iters: int, device: str) -> None:
        from ..cli_infer import load_model

        self.model, self.what = load_model(checkpoint)
        self.iters, self.device = iters, device
        self.last: tuple[str, dict] | None = None

    @classmethod
    def get(cls, checkpoint: str, iters: int, device: str) -> _Network:
        key = f"{checkpoint}|{iters}|{device}"
        if key not in cls._loaded:
            cls._loaded[key] = cls(checkpoint, iters, device)
        return cls._loaded[key]

    def flows(self, sample, onset: np.ndarray, apex: np.ndarray) -> dict[str, np.ndarray]:
        from ..infer import flow_pair

        key = f"{sample.subject}/{sample.sequence}"
        if self.last is None or self.last[0] != key:
            self.last = (key, flow_pair(self.model, onset, apex, iters=self.iters, device=self.device))
        return self.last[1]


def parse_flow_method(spec: str, iters: int = 12, device: str = "cpu") -> FlowMethod:
    """The :class:`FlowMethod` of a ``--flow`` spec (see the module docstring).

    Raises:
        ValueError: an unknown name, a network spec without ``:CKPT``, an unreadable checkpoint, or
            ``decflow``/``decflow-head`` on a network that has no expression/head output.
    """
    from ..baselines import BASELINES

    name, _, checkpoint = spec.partition(":")
    name = name.strip().lower()
    if name in CLASSICAL and not checkpoint:
        baseline = BASELINES[name]
        return FlowMethod(name, lambda sample, onset, apex: baseline(onset, apex), description=f"{name} (facial flow)")
    if name in GROUND_TRUTH and not checkpoint:
        kind = GROUND_TRUTH[name]
        return FlowMethod(name, _ground_truth(kind), needs_ground_truth=True,
                          description=f"ground-truth {kind} flow (synthetic sets only)")
    if name in NETWORK_OUTPUTS:
        if not checkpoint:
            raise ValueError(f"--flow {spec}: give the checkpoint as {name}:CKPT (a file or run directory)")
        output = NETWORK_OUTPUTS[name]
        network = _Network.get(checkpoint, iters, device)
        from ..decflow import DecFlow

        if output != "facial" and not isinstance(network.model, DecFlow):
            raise ValueError(f"--flow {spec}: the checkpoint is a {type(network.model).__name__}, which has no "
                             f"{output} flow; use model:{checkpoint} for its facial flow")
        return FlowMethod(name, lambda sample, onset, apex: network.flows(sample, onset, apex)[output],
                          description=f"{network.what}: {output} flow, {iters} iterations")
    choices = [*CLASSICAL, *GROUND_TRUTH, *(f"{n}:CKPT" for n in NETWORK_OUTPUTS)]
    raise ValueError(f"--flow {spec}: unknown flow method; choose from {', '.join(choices)}")
