"""Weights that ship with pyflowops_models, named ``bundled:<name>`` wherever a checkpoint path is taken.

``decflow_small_generic``: DecFlow size small after generic-motion pretraining, our stand-in for the
GMA FlyingChairs/Things weights FacialFlowNet's stage 1 starts from (those data sets cannot be downloaded
here). Made with ``pyflowops train --config decflow_pretrain_cpu_small`` in four runs, each from the last
(``--set train.init=<last run>``): 400 steps; 4000 steps with ``--set data.length=2000``; 2500 steps
with ``--set optim.lr=3e-4 --set data.length=2000 --set data.seed=3``; 4500 steps with ``--set
optim.lr=3e-4 --set data.length=2000 --set data.seed=7``. 11400 steps, about 3 hours on this 2-core CPU.
Validation EPE on the recipe's 16 held-out generic pairs: 4.95 px after 400 steps, 1.72 after 4400, 1.31
after 6900, 1.02 after 11400 (zero flow 7.61). Only the facial decoder is trained (the head decoder is as
initialised, as in GMA weights); stored as float16 (6.7 MB) and loaded into float32 models.

Example:
    >>> from pyflowops_models.weights import resolve
    >>> resolve("bundled:decflow_small_generic").name
    'decflow_small_generic.pt'
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["BUNDLED", "PREFIX", "resolve"]

PREFIX = "bundled:"
BUNDLED = {"decflow_small_generic": "decflow_small_generic.pt"}


def resolve(spec: str | Path) -> Path:
    """``bundled:<name>`` -> the shipped file's path; any other path is returned as a Path unchanged.

    Raises:
        ValueError: an unknown bundled name (the message lists the known ones).
    """
    text = str(spec)
    if not text.startswith(PREFIX):
        return Path(spec)
    name = text[len(PREFIX):]
    if name not in BUNDLED:
        raise ValueError(f"unknown bundled weights {name!r}; bundled are: {', '.join(sorted(BUNDLED))}")
    return Path(__file__).with_name(BUNDLED[name])
