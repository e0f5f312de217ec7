"""Statistics of a facial flow data set: flow magnitudes per motion scale, and sample pictures.

Works on any FacialFlowNet-layout set (``pyflowops synth`` output or the real
download). The motion scale n of a sequence is its ``meta/...json`` ``num_steps``
(ours) or, without meta, its number of pairs (the real download: n frames).
Files are streamed; only histogram counts and running sums are kept.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from pyflowops.flow import make_panel, read_flo

from .dataset import FacialFlowDataset

__all__ = ["FLOW_KINDS", "HIST_EDGES", "flow_statistics", "write_report"]

FLOW_KINDS = ("facial", "head", "expression")
HIST_EDGES = np.logspace(-2, 2, 41)  # px: 0.01 .. 100, 10 bins per decade (larger values go in the last bin)


def _scale_of(root: Path, rel: str, pairs_in_sequence: int) -> int:
    split, emotion, seq = rel.split("/")
    meta = root / "meta" / split / emotion / f"{seq}.json"
    if meta.is_file():
        return int(json.loads(meta.read_text())["num_steps"])
    return pairs_in_sequence


class _Accumulator:
    """Running statistics of one flow kind at one motion scale (magnitudes inside the mask)."""

    def __init__(self) -> None:
        self.counts = np.zeros(len(HIST_EDGES) - 1, np.int64)
        self.still = 0  # pixels under HIST_EDGES[0]: e.g. expression flow where the expression moves nothing
        self.total = 0.0
        self.pixels = 0
        self.max = 0.0

    def add(self, magnitude: np.ndarray) -> None:
        moving = magnitude[magnitude >= HIST_EDGES[0]]
        self.still += magnitude.size - moving.size
        self.counts += np.histogram(np.minimum(moving, HIST_EDGES[-1] * 0.999999), bins=HIST_EDGES)[0]
        self.total += float(magnitude.sum())
        self.pixels += magnitude.size
        self.max = max(self.max, float(magnitude.max(initial=0.0)))

    def percentile(self, q: float) -> float:
        """From the histogram (geometric bin centres): exact to one bin, 10 per decade."""
        if self.pixels == 0:
            return float("nan")
        rank = q / 100 * self.pixels - self.still
        if rank <= 0:
            return 0.0  # inside the still pixels (below 0.01 px)
        i = min(int(np.searchsorted(np.cumsum(self.counts), rank)), len(self.counts) - 1)
        return float(np.sqrt(HIST_EDGES[i] * HIST_EDGES[i + 1]))

    def summary(self) -> dict:
        return {
            "pixels": self.pixels,
            "still_share": self.still / self.pixels if self.pixels else float("nan"),
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

    Args:
        root: a FacialFlowNet-layout data set. split: its split folder.
        max_pairs: read at most this many pairs (None: all).
        progress: a tqdm bar.

    Returns:
        ``{"histogram_edges": [...], "scales": {n: {"pairs": int, kind: summary}}, "all": {...}}``
        with per kind: pixels, still_share (magnitude < 0.01 px, not in the histogram), mean, median, p95,
        p99 (from the histogram, one-bin exact), max, histogram (of the moving pixels).

    Raises:
        ValueError: ``root`` is not a data set with that split.
    """
    from tqdm import tqdm

    root = Path(root)
    data = FacialFlowDataset(root, split)  # validates the layout
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
        mask = np.load(mask_path).astype(bool)
        flows = {"facial": facial, "head": head, "expression": facial - head}
        for key in (scale, "all"):
            pairs[key] = pairs.get(key, 0) + 1
            for kind, flow in flows.items():
                acc.setdefault(key, {}).setdefault(kind, _Accumulator()).add(np.linalg.norm(flow[mask], axis=-1))
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

    edges = np.asarray(stats["histogram_edges"])
    centres = np.sqrt(edges[:-1] * edges[1:])
    fig, axes = plt.subplots(1, 3, figsize=(14, 4), sharey=True)
    for ax, kind in zip(axes, FLOW_KINDS):
        for scale, entry in list(stats["scales"].items()) + [("all", stats["all"])]:
            counts = np.asarray(entry[kind]["histogram"], float)
            if counts.sum() == 0:
                continue
            # share of ALL masked pixels per decade: the still ones (< 0.01 px) are the missing mass
            density = counts / entry[kind]["pixels"] / np.diff(np.log10(edges))
            style = dict(color="black", linewidth=2) if scale == "all" else {}
            label = "all" if scale == "all" else f"n = {scale} (1/{scale})"
            ax.plot(centres, density, label=f"{label}: {entry['pairs']} pairs", **style)
        ax.set_xscale("log")
        ax.set_xlabel("flow magnitude inside the mask (px)")
        still = stats["all"][kind]["still_share"]
        ax.set_title(f"{kind} flow\n{still:.0%} of masked pixels move < 0.01 px (not shown)", fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("share of pixels per decade")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _sample_panels(root: Path, split: str, samples: int, seed: int, path: Path) -> int:
    from pyflowops.flow import flow_to_color

    data = FacialFlowDataset(root, split)
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:samples].tolist()
    rows = []
    for i in sorted(order):
        s = data[i]
        image = s["image1"].permute(1, 2, 0).numpy().astype(np.uint8)
        facial, head = s["flow"].permute(1, 2, 0).numpy(), s["flow_head"].permute(1, 2, 0).numpy()
        flows = [facial, head, facial - head]
        # one colour scale per row: the 99.5th percentile of the facial magnitude, so a few fast silhouette
        # pixels do not wash the rest out (beyond it the wheel saturates)
        top = float(np.percentile(np.linalg.norm(facial, axis=-1)[s["mask"].numpy() > 0.5], 99.5)) if \
            s["mask"].any() else 1.0
        top = max(top, 1e-3)
        rows.append(make_panel([image] + [flow_to_color(f, max_flow=top) for f in flows],
                               [f"{s['sequence']} #{s['step']}", f"facial (scale {top:.1f} px)", "head", "expression"]))
    width = max(r.shape[1] for r in rows)
    grid = np.concatenate([np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0))) for r in rows], axis=0)
    from PIL import Image

    Image.fromarray(grid).save(path)
    return len(rows)


def write_report(root: str | Path, out_dir: str | Path, split: str = "train", samples: int = 8, seed: int = 0,
                 max_pairs: int | None = None, progress: bool = True) -> dict:
    """Write ``flow_histograms.png``, ``sample_panels.png`` and ``stats.json`` for a data set.

    ``flow_histograms.png``: per flow kind, the magnitude distribution of each motion scale
    (one line per n, and all). ``sample_panels.png``: ``samples`` random pairs, one row
    each: image 1, facial, head and expression flow (one colour scale per row).
    Returns the statistics of :func:`flow_statistics`.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stats = flow_statistics(root, split, max_pairs=max_pairs, progress=progress)
    _plot_histograms(stats, out / "flow_histograms.png")
    stats["sample_panels"] = _sample_panels(Path(root), split, samples, seed, out / "sample_panels.png")
    (out / "stats.json").write_text(json.dumps(stats, indent=1) + "\n")
    return stats
