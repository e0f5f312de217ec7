"""Training checkpoints: atomic writes, the last K kept, the newest readable one found, RNG states.

A run directory holds ``config.yaml``, ``tb/`` and ``checkpoints/step_000100.pt`` ... Each checkpoint
is a dict of tensors and plain Python types (``torch.load(weights_only=True)`` reads it, no pickled
code runs)::

    {"model": state_dict, "optimizer": ..., "scheduler": ..., "scaler": ..., "step": int,
     "config": nested dict, "rng": rng_state(), "data": {"epoch", "batch", "seed", "batches_per_epoch"},
     "world_size": int, "format": 1}
"""

from __future__ import annotations

import os
import random
import re
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

__all__ = ["save", "latest", "load_latest", "checkpoints", "prune", "rng_state", "set_rng_state",
           "checkpoint_path", "CHECKPOINT_DIR"]

CHECKPOINT_DIR = "checkpoints"
_NAME = re.compile(r"^step_(\d+)\.pt$")


def checkpoint_path(run_dir: str | Path, step: int) -> Path:
    """``run_dir/checkpoints/step_{step:06d}.pt``."""
    return Path(run_dir) / CHECKPOINT_DIR / f"step_{step:06d}.pt"


def save(path: str | Path, state: dict) -> Path:
    """Write ``state`` to ``path`` atomically: a temporary file in the same folder, flushed and
    fsynced, then renamed over ``path`` (a crash at any moment leaves either the old file or the
    new one, never a partial one under the final name).

    Returns:
        The path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:  # the rename itself is durable only once the directory entry is synced
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass
    return path


def checkpoints(run_dir: str | Path) -> list[tuple[int, Path]]:
    """(step, path) of every ``step_*.pt`` in ``run_dir/checkpoints`` (or ``run_dir`` itself), oldest first."""
    run_dir = Path(run_dir)
    folder = run_dir / CHECKPOINT_DIR if (run_dir / CHECKPOINT_DIR).is_dir() else run_dir
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return sorted(found)


def prune(run_dir: str | Path, keep_last: int) -> list[Path]:
    """Delete all but the newest ``keep_last`` checkpoints and stale temporary files; returns the deleted paths."""
    found = checkpoints(run_dir)
    doomed = [p for _, p in found[:-keep_last]] if keep_last > 0 else []
    folder = Path(run_dir) / CHECKPOINT_DIR
    if folder.is_dir():
        doomed += [p for p in folder.glob(".step_*.tmp")]  # left by a process killed while writing
    for p in doomed:
        p.unlink(missing_ok=True)
    return doomed


def _read(path: Path) -> dict:
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or "model" not in state or "step" not in state:
        raise ValueError("not a pyflowops training checkpoint (no 'model' and 'step' entries)")
    return state


def load_latest(run_dir: str | Path) -> tuple[Path, dict] | None:
    """The newest checkpoint of ``run_dir`` that reads, and its state; None when there is none.

    A truncated or corrupt file is skipped with a ``UserWarning`` naming the file and the reason,
    and the previous one is tried.
    """
    for step, path in reversed(checkpoints(run_dir)):
        try:
            return path, _read(path)
        except Exception as err:  # noqa: BLE001 - any failure to read means "unusable", reported below
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            warnings.warn(f"checkpoint {path} (step {step}) is unreadable, truncated or corrupt "
                          f"({type(err).__name__}: {reason}); using the previous one", UserWarning, stacklevel=2)
    return None


def latest(run_dir: str | Path) -> Path | None:
    """Path of the newest readable checkpoint of ``run_dir`` (see :func:`load_latest`), or None."""
    found = load_latest(run_dir)
    return None if found is None else found[0]


def rng_state() -> dict:
    """The state of every generator, as tensors and plain types (``weights_only`` loadable):
    python ``random``, numpy's global generator, torch's CPU generator and each CUDA device's."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": {"version": version, "state": torch.tensor(internal, dtype=torch.int64), "gauss": gauss},
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "torch": torch.random.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` returned."""
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss"]))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    torch.random.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        states = state["cuda"]
        if len(states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(states)


def load(path: str | Path, device: str | torch.device = "cpu"):
    """A ready model (eval mode) from a training checkpoint file, a run directory (its newest readable one)
    or shipped weights (``bundled:<name>``, see :mod:`pyflowops_models.weights`).

    The checkpoint's config says which model to build (``create(name, size, corr, **options)``;
    a stage-0 run gives its ``FacePartsEncoder``); its weights are then loaded strictly.

    Example:
        >>> model = pyflowops_models.load("runs/decflow")     # or runs/decflow/checkpoints/step_010000.pt
        >>> out = model(image1, image2, iters=12)             # images [B, 3, H, W] 0..255

    Raises:
        FileNotFoundError: no such file, or a run directory without a readable checkpoint.
        ValueError: the file is not a pyflowops training checkpoint.
    """
    from ..weights import resolve
    from .config import config_from_dict
    from .trainer import build_model

    path = resolve(path)
    if path.is_dir():
        found = load_latest(path)
        if found is None:
            raise FileNotFoundError(f"load: no readable checkpoint in the run directory {path}")
        path, state = found
    elif path.is_file():
        try:
            state = _read(path)
        except Exception as err:  # noqa: BLE001
            raise ValueError(f"load: {path} is not a readable pyflowops training checkpoint ({err})") from err
    else:
        raise FileNotFoundError(f"load: no checkpoint file or run directory at {path}")
    cfg = config_from_dict(state["config"])
    # The checkpoint holds every weight (the semantic encoder's too): do not read the init files again.
    cfg.model.options = {k: v for k, v in cfg.model.options.items() if k != "semantic_weights"}
    cfg.train.init = "checkpoint"  # silences the untrained-semantic-encoder warning in build_model
    model = build_model(cfg)
    model.load_state_dict(state["model"])
    model.requires_grad_(False)
    return model.to(device).eval()
