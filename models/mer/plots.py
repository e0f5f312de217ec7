"""Pictures of a MER run: the confusion matrix, and the (u, v, strain) maps the network sees.

Both draw on a bare :class:`matplotlib.figure.Figure` with the Agg canvas (no pyplot, no global
backend switch, no display needed) and write the PNG atomically (temporary file + ``os.replace``).
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["plot_confusion", "plot_representation"]


def _save(fig, path) -> Path:
    """Render ``fig`` to PNG and write it to ``path`` atomically (parent folders created)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from pyflowops.flow.io import atomic_write_bytes

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    atomic_write_bytes(os.fspath(out), buffer.getvalue())
    return out


def plot_confusion(confusion, classes: Sequence[str], path, title: str) -> Path:
    """Save the confusion matrix ``[C, C]`` (rows = true, columns = predicted counts) as a PNG at ``path``.

    Cell colour = the row-normalised fraction (the recall of the row's class on the diagonal); each cell
    shows its count and row percentage. ``classes``: the C names. Returns ``path`` as a Path.
    """
    from matplotlib.figure import Figure

    cm = np.asarray(confusion)
    names = [str(c) for c in classes]
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or cm.shape[0] != len(names):
        raise ValueError(f"confusion must be [C, C] with C = len(classes) = {len(names)}, got shape {cm.shape}")
    totals = cm.sum(axis=1, keepdims=True).astype(np.float64)
    frac = np.divide(cm, totals, out=np.zeros(cm.shape), where=totals > 0)
    size = 1.2 + 1.1 * len(names)
    fig = Figure(figsize=(size + 1.2, size))
    ax = fig.add_subplot()
    image = ax.imshow(frac, cmap="Blues", vmin=0.0, vmax=1.0)
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            text = f"{int(cm[i, j])}\n{100 * frac[i, j]:.0f}%" if totals[i, 0] > 0 else "0"
            ax.text(j, i, text, ha="center", va="center", fontsize=9, color="white" if frac[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    return _save(fig, path)


def plot_representation(rep: np.ndarray, path, title: str) -> Path:
    """Save the maps ``rep [3, S, S]`` = (u, v, strain) side by side as a PNG at ``path``; returns it.

    u and v share a diverging colour map with symmetric limits (±max |u|, |v|; red = positive, i.e.
    rightwards / downwards); the strain has a sequential one from 0. NaNs are drawn blank.
    """
    from matplotlib.figure import Figure

    arr = np.asarray(rep, dtype=np.float64)
    if arr.ndim != 3 or arr.shape[0] != 3:
        raise ValueError(f"rep must have shape [3, S, S] (u, v, strain), got {arr.shape}")
    finite_uv = np.abs(arr[:2][np.isfinite(arr[:2])])
    lim = float(finite_uv.max()) if finite_uv.size and finite_uv.max() > 0 else 1.0
    finite_s = arr[2][np.isfinite(arr[2])]
    smax = float(finite_s.max()) if finite_s.size and finite_s.max() > 0 else 1.0
    fig = Figure(figsize=(11.0, 3.6))
    axes = fig.subplots(1, 3)
    panels = [("u (horizontal, px)", "RdBu_r", -lim, lim), ("v (vertical, px)", "RdBu_r", -lim, lim),
              ("optical strain", "magma", 0.0, smax)]
    for ax, channel, (name, cmap, lo, hi) in zip(axes, arr, panels):
        image = ax.imshow(channel, cmap=cmap, vmin=lo, vmax=hi)
        ax.set_title(name)
        ax.set_xticks([])
        ax.set_yticks([])
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    fig.suptitle(title)
    return _save(fig, path)
