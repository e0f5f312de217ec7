"""The "Synthetic data" section of benchmarks/RESULTS.md (called by ``benchmarks.report``):
pairs per minute of ``synthesize`` with 2 workers per image size, against the issue's targets."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def section(data: dict[str, Any], out: Path) -> list[str]:
    """Markdown lines (empty when the JSON holds no synth case)."""
    rows = sorted((b["extra_info"] for b in data.get("benchmarks", [])
                   if (b.get("extra_info") or {}).get("family") == "synth"), key=lambda e: e["size"])
    if not rows:
        return []
    doc = [
        "## Synthetic data",
        "",
        "`pyflowops_models.data.writer.synthesize` (what `pyflowops synth` runs) writing a fresh data set with "
        "2 worker processes: procedural Gaussian heads, both parts (facial and head), both flows, the backward "
        "flow for the occlusion mask, labels, depth, PNG / .flo / .npy files, process start-up included. "
        "Seed 0, FacialFlowNet's motion scales (5, 10, 15, 20 pairs per sequence).",
        "",
        "| size | sequences | pairs | seconds | pairs/min | target | |",
        "|---|---|---|---|---|---|---|",
    ]
    for e in rows:
        ok = e["pairs_per_min"] >= e["target_pairs_per_min"]
        doc.append(f"| {e['size']}² | {e['sequences']} | {e['pairs']} | {e['seconds']:.1f} | "
                   f"{e['pairs_per_min']:.1f} | ≥ {e['target_pairs_per_min']:.0f} | {'met' if ok else 'MISSED'} |")
    return doc + [""]
