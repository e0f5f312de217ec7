"""Load weights written by the official RAFT / GMA / FacialFlowNet code, or by us.

The official training scripts save ``model.state_dict()`` of an ``nn.DataParallel``
wrapper, so every key starts with ``module.``; our module names follow theirs, so
stripping that prefix is the mapping (DecFlow also renames the official semantic
encoder's keys, see ``DecFlow.translate_official_state``). Our own files are plain state
dicts too, read with ``torch.load(weights_only=True)`` (no pickled code runs).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

__all__ = ["LoadReport", "load_checkpoint", "strip_prefix"]


@dataclass
class LoadReport:
    """What a load matched: keys the model expected but the file lacks, and keys the model does not know."""

    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)  # known official keys that nothing reads (DecFlow's stage 3)

    @property
    def ok(self) -> bool:
        return not self.missing and not self.unexpected

    def __str__(self) -> str:
        if self.ok and not self.ignored:
            return "all keys matched"
        parts = ["all keys matched"] if self.ok else []
        for title, keys in (("missing", self.missing), ("unexpected", self.unexpected), ("ignored", self.ignored)):
            if keys:
                shown = ", ".join(keys[:8]) + (f", ... ({len(keys) - 8} more)" if len(keys) > 8 else "")
                parts.append(f"{len(keys)} {title}: {shown}")
        return "; ".join(parts)


def strip_prefix(state: dict[str, torch.Tensor], prefix: str = "module.") -> dict[str, torch.Tensor]:
    """The state dict with ``prefix`` removed from every key that has it (DataParallel's ``module.``)."""
    return {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in state.items()}


def load_checkpoint(model: nn.Module, path: str | Path, *, strict: bool = True) -> LoadReport:
    """Load an official or pyflowops checkpoint into ``model`` (in place).

    Args:
        model: e.g. ``pyflowops_models.create("raft")``.
        path: a ``.pth`` holding a state dict, or a dict with it under ``"model"`` /
            ``"state_dict"`` (as training checkpoints keep it).
        strict: raise when keys are missing or unexpected (the report says which);
            False loads what matches and returns the report.

    Returns:
        The :class:`LoadReport` of the load.

    Raises:
        FileNotFoundError: no such file. ValueError: not a state dict, or (strict)
        keys that do not match, or shapes that differ.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"load_checkpoint: no checkpoint at {path}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict):
        for key in ("model", "state_dict"):
            if isinstance(state.get(key), dict):
                state = state[key]
                break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"load_checkpoint: {path} does not hold a state dict of tensors")
    state = strip_prefix(state)
    ignored: list[str] = []
    if hasattr(model, "translate_official_state"):  # DecFlow: the official semantic encoder's names
        state, ignored = model.translate_official_state(state)
    expected = model.state_dict()
    report = LoadReport(
        missing=sorted(set(expected) - set(state)), unexpected=sorted(set(state) - set(expected)), ignored=ignored
    )
    if strict and not report.ok:
        raise ValueError(f"load_checkpoint: {path} does not fit {type(model).__name__}: {report}")
    shapes = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(v.shape)}"
              for k, v in expected.items() if k in state and state[k].shape != v.shape]
    if shapes:
        raise ValueError(f"load_checkpoint: {path}: shapes differ: " + "; ".join(shapes[:8]))
    model.load_state_dict(state, strict=False)
    return report
