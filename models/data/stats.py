"""Statistics of a facial flow data set: flow magnitudes per motion scale, and sample pictures.

Works on any FacialFlowNet-layout set (``pyflowops synth`` output or the real
download). The motion scale n of a sequence is its ``meta/...json`` ``num_steps``
(ours) or, without meta, its number of pairs (the real download: n + 1 frames, n pairs).
Files are streamed one pair at a time; only histogram counts and running sums are kept.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from pyflowops.flow import flow_to_color, make_panel, read_flo

from .dataset import FacialFlowDataset

__all__ = ["FLOW_KINDS", "HIST_EDGES", "flow_statistics", "write_report"]

FLOW_KINDS = ("facial", "head", "expression")
# px: an underflow bin [0, 0.01) for pixels that do not move (most of the expression flow: the
# expression moves only parts of the face), then 0.01 .. 100 log-spaced, 10 bins per decade;
# magnitudes over 100 px are counted in the last bin, so every masked pixel is in exactly one bin.
HIST_EDGES = np.concatenate([[0.0], np.logspace(-2, 2, 41)])
# Percentiles come from a finer histogram (100 bins per decade, interpolated in log space: within
# about 1 % of the exact value) because holding every magnitude for np.percentile does not stream.
_FINE_EDGES = np.logspace(-2, 2, 401)


def _scale_of(root: Path, rel: str, pairs_in_sequence: int) -> int:
    split, emotion, seq = rel.split("/")
    meta = root / "meta" / split / emotion / f"{seq}.json"
    if meta.is_file():
        return int(json.loads(meta.read_text())["num_steps"])
    return pairs_in_sequence  # the real download has no meta: a sequence of n pairs has motion scale n


def _binned(magnitude: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts on ``edges`` with values under edges[0] dropped and over edges[-1] put in the last bin."""
    return np.histogram(np.minimum(magnitude, edges[-1]), bins=edges)[0]  # np.histogram's last bin is closed


class _Accumulator:
    """Running statistics of one flow kind at one motion scale (magnitudes inside the mask)."""

    def __init__(self) -> None:
        self.counts = np.zeros(len(HIST_EDGES) - 1, np.int64)
        self.fine = np.zeros(len(_FINE_EDGES) - 1, np.int64)
        self.total = 0.0
        self.pixels = 0
        self.max = 0.0

    def add(self, magnitude: np.ndarray) -> None:
        self.counts += _binned(magnitude, HIST_EDGES)
        self.fine += _binned(magnitude, _FINE_EDGES)
        self.total += float(magnitude.sum(dtype=np.float64))
        self.pixels += magnitude.size
        self.max = max(self.max, float(magnitude.max(initial=0.0)))

    def percentile(self, q: float) -> float:
        """The q-th percentile; 0.0 when it falls among the pixels under 0.01 px."""
        if self.pixels == 0:
            return float("nan")
        rank = q / 100 * self.pixels - int(self.counts[0])  # counts[0]: the still pixels, not in self.fine
        if rank <= 0:
            return 0.0
        cumulative = np.cumsum(self.fine)
        i = min(int(np.searchsorted(cumulative, rank)), len(self.fine) - 1)
        below = cumulative[i - 1] if i else 0
        share = (rank - below) / max(int(self.fine[i]), 1)
        lo, hi = np.log10(_FINE_EDGES[i]), np.log10(_FINE_EDGES[i + 1])
        return float(min(10 ** (lo + share * (hi - lo)), self.max))

    def summary(self) -> dict:
        return {
            "pixels": self.pixels,
            "still_share": int(self.counts[0]) / self.pixels if self.pixels else float("nan"),
            "mean": self.total / self.pixels if self.pixels else float("nan"),
            "median": self.percentile(50),
            "p95": self.percentile(95),
            "p99": self.percentile(99),
            "max": self.max,
            "histogram": self.counts.tolist(),
        }


def flow_statistics(root: str | Path, split: str = "train", max_pairs: int | None = None,
                    progress: bool = True) -> dict:
    """Facial, head and expression (= facial - head) flow magnitudes inside the mask, per motion scale.

    Reads each pair's ``flow/facial``, ``flow/head`` ``.flo`` ([H, W, 2] px) and ``mask`` ``.npy``
    ([H, W]) one at a time; magnitudes are ``|flow|`` over the pixels where the mask is nonzero.
    Nothing is written.

    Args:
        root: a FacialFlowNet-layout data set. split: its split folder.
        max_pairs: read at most this many pairs, the first in sorted order (None: all).
        progress: a tqdm bar.

    Returns:
        ``{"histogram_edges": [42 floats], "scales": {"<n>": entry, ...}, "all": entry}`` with the
        scales ordered n descending (as FacialFlowNet's table) and ``entry = {"pairs": int, "facial": s,
        "head": s, "expression": s}``, each ``s``: ``pixels`` (masked pixels over all pairs), ``mean``,
        ``median``, ``p95``, ``p99`` (from a 100-per-decade histogram: within about 1 %; 0.0 when among
        the pixels under 0.01 px), ``max``, ``still_share`` (share under 0.01 px) and ``histogram``
        (41 counts on ``histogram_edges``: [0, 0.01), then 0.01 .. 100 px log-spaced with values over
        100 px in the last bin; they sum to ``pixels``).

    Raises:
        ValueError: ``root`` is not a data set with that split.
    """
    from tqdm import tqdm

    root = Path(root)
    data = FacialFlowDataset(root, split)  # validates the layout (and lists the pairs)
    per_sequence: dict[str, int] = {}
    for rel, *_ in data.pairs:
        per_sequence[rel] = per_sequence.get(rel, 0) + 1
    acc: dict[str, dict[str, _Accumulator]] = {}
    pairs: dict[str, int] = {}
    todo = data.pairs if max_pairs is None else data.pairs[:max_pairs]
    for rel, _t, _i1, _i2, flow_path, head_path, mask_path in tqdm(todo, desc="flow statistics", unit="pair",
                                                                    disable=not progress):
        scale = str(_scale_of(root, rel, per_sequence[rel]))
        facial, head = read_flo(flow_path), read_flo(head_path)
        mask = np.load(mask_path) != 0
        magnitudes = {kind: np.linalg.norm(flow[mask], axis=-1)
                      for kind, flow in (("facial", facial), ("head", head), ("expression", facial - head))}
        for key in (scale, "all"):
            pairs[key] = pairs.get(key, 0) + 1
            for kind, magnitude in magnitudes.items():
                acc.setdefault(key, {}).setdefault(kind, _Accumulator()).add(magnitude)
    ordered = sorted((k for k in acc if k != "all"), key=int, reverse=True)  # 20, 15, 10, 5 as the paper's table
    return {
        "histogram_edges": HIST_EDGES.tolist(),
        "scales": {k: {"pairs": pairs[k], **{kind: acc[k][kind].summary() for kind in FLOW_KINDS}} for k in ordered},
        "all": {"pairs": pairs.get("all", 0), **{kind: acc["all"][kind].summary() for kind in FLOW_KINDS}}
        if "all" in acc else {"pairs": 0},
    }


def _plot_histograms(stats: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # bin 0 is [0, 0.01): no place on a log axis, so it is left out of the curves and named in the titles
    edges = np.asarray(stats["histogram_edges"])[1:]
    centres = np.sqrt(edges[:-1] * edges[1:])
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2), sharey=True)
    for ax, kind in zip(axes, FLOW_KINDS):
        for scale, entry in list(stats["scales"].items()) + [("all", stats["all"])]:
            if kind not in entry or entry[kind]["pixels"] == 0:
                continue
            counts = np.asarray(entry[kind]["histogram"][1:], float)
            # share of ALL masked pixels per decade, so curves of different n and sizes compare
            density = counts / entry[kind]["pixels"] / np.diff(np.log10(edges))
            style = dict(color="black", linewidth=2) if scale == "all" else {}
            label = "all" if scale == "all" else f"n = {scale}"
            ax.plot(centres, density, label=f"{label}: {entry['pairs']} pairs", **style)
        ax.set_xscale("log")
        ax.set_xlabel("flow magnitude inside the mask (px)")
        still = stats["all"][kind]["still_share"] if kind in stats["all"] else float("nan")
        ax.set_title(f"{kind} flow\n{still:.0%} of masked pixels move < 0.01 px (not drawn)", fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("share of masked pixels per decade")
    axes[0].legend(fontsize=8, title="motion scale", title_fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _sample_panels(data: FacialFlowDataset, samples: int, seed: int, path: Path) -> int:
    from PIL import Image

    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:samples].tolist()
    rows = []
    for i in sorted(order):
        s = data[i]
        image = s["image1"].permute(1, 2, 0).numpy().astype(np.uint8)
        facial, head = s["flow"].permute(1, 2, 0).numpy(), s["flow_head"].permute(1, 2, 0).numpy()
        flows = {"facial": facial, "head": head, "expression": facial - head}
        inside = s["mask"].numpy() > 0.5
        peak = {k: float(np.linalg.norm(f, axis=-1)[inside].max(initial=0.0)) for k, f in flows.items()}
        # One colour scale per row, shared by the three flows so equal colours mean equal motion: the 99.5th
        # percentile of the facial magnitude in the mask, not its max, so a few fast silhouette pixels do not
        # wash the rest out (beyond it the wheel saturates and darkens). Each title gives that flow's own max.
        top = float(np.percentile(np.linalg.norm(facial, axis=-1)[inside], 99.5)) if inside.any() else 1.0
        top = max(top, 1e-3)
        rows.append(make_panel(
            [image] + [flow_to_color(f, max_flow=top) for f in flows.values()],
            [f"{s['sequence']} #{s['step']}", f"facial (scale {top:.1f} px)"]
            + [f"{k} (max {peak[k]:.1f})" for k in ("head", "expression")],
        ))
    width = max(r.shape[1] for r in rows)
    grid = np.concatenate([np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0))) for r in rows], axis=0)
    Image.fromarray(grid).save(path)
    return len(rows)


def write_report(root: str | Path, out_dir: str | Path, split: str = "train", samples: int = 8, seed: int = 0,
                 max_pairs: int | None = None, progress: bool = True) -> dict:
    """Write ``flow_histograms.png``, ``sample_panels.png`` and ``stats.json`` for a data set.

    Files written into ``out_dir`` (created):

    * ``flow_histograms.png``: one plot per flow kind (facial, head, expression), one line per motion
      scale n and one for all pairs: share of the masked pixels per decade against magnitude (log x).
    * ``sample_panels.png``: ``samples`` pairs drawn at random (``seed``), one row each: image 1,
      facial, head and expression flow in the Middlebury colours of one shared scale per row.
    * ``stats.json``: the dict returned.

    Args:
        root: a FacialFlowNet-layout data set. out_dir: the folder for the three files.
        split: its split folder. samples: rows of ``sample_panels.png`` (>= 1). seed: which pairs.
        max_pairs: statistics over at most this many pairs (None: all). progress: a tqdm bar.

    Returns:
        :func:`flow_statistics`'s dict plus ``"sample_panels"``: the rows drawn.

    Raises:
        ValueError: ``root`` is not a data set with that split (nothing is written), or ``samples < 1``.
    """
    if samples < 1:
        raise ValueError(f"write_report: samples must be >= 1, got {samples}")
    data = FacialFlowDataset(root, split)  # fails before out_dir is created when root is not a data set
    stats = flow_statistics(root, split, max_pairs=max_pairs, progress=progress)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _plot_histograms(stats, out / "flow_histograms.png")
    stats["sample_panels"] = _sample_panels(data, samples, seed, out / "sample_panels.png")
    (out / "stats.json").write_text(json.dumps(stats, indent=1) + "\n")
    return stats
