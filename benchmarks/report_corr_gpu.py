"""The "Correlation on the GPU" section of benchmarks/RESULTS.md (called by ``benchmarks.report``):
``benchmarks/test_corr_gpu.py``'s table, our blocks in every backend against RAFT's, and issue 9's targets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

SIZES = ((512, 2), (1024, 2), (2048, 1))
LABELS = {
    "raft-corrblock": "RAFT CorrBlock",
    "raft-alternate": "RAFT AlternateCorrBlock (alt_cuda_corr)",
    **{f"ours-{b}-{k}": f"ours {'CorrBlock' if b == 'corrblock' else 'AlternateCorrBlock'}, {k}"
       for b in ("corrblock", "alternate") for k in ("auto", "cuda", "triton")},
}


def _cell(row: dict | None) -> str:
    if row is None:
        return "not run"
    if "failed" in row:
        return f"fails: {row['failed']}"
    return f"{row['mean'] * 1e3:.1f} ({row['peak'] / 2**20:.0f})"


def _targets(cells: dict) -> list[str]:
    """Issue 9's targets from the measured cells (None where a case did not run)."""
    def t(variant, mode, size, batch):
        row = cells.get((variant, mode, size, batch))
        return None if row is None or "failed" in row else row

    lines = ["| target | measured | status |", "|---|---|---|"]

    def add(name, ok, measured):
        lines.append(f"| {name} | {measured} | {'n/a' if ok is None else '**PASS**' if ok else '**MISS**'} |")

    for size, batch, limit in ((1024, 2, 8e-3), (2048, 1, 20e-3)):
        ours = t("ours-alternate-auto", "inference", size, batch)
        add(f"AlternateCorrBlock (auto) 12-iteration inference at {size}² B{batch} ≤ {limit * 1e3:.0f} ms",
            None if ours is None else ours["mean"] <= limit, _cell(ours))
    ours, raft = t("ours-alternate-auto", "train", 1024, 2), t("raft-corrblock", "train", 1024, 2)
    ok = None if ours is None or raft is None else ours["mean"] <= raft["mean"] and ours["peak"] * 8 < raft["peak"]
    add("AlternateCorrBlock training step at 1024² B2 no slower than RAFT's CorrBlock, under 1/8 of its memory",
        ok, f"{_cell(ours)} vs {_cell(raft)}")
    for mode in ("inference", "train"):
        cuda, triton = t("ours-alternate-cuda", mode, 1024, 2), t("ours-alternate-triton", mode, 1024, 2)
        add(f"on-the-fly cuda at least as fast as triton ({mode}, 1024² B2)",
            None if cuda is None or triton is None else cuda["mean"] <= triton["mean"],
            f"{_cell(cuda)} vs {_cell(triton)}")
    worst = None
    for (variant, mode, size, batch), row in cells.items():
        if not variant.endswith("-auto") or "failed" in row:
            continue
        block = variant.split("-")[1]
        best = min((r["mean"] for (v, mo, s, b), r in cells.items() if v.startswith(f"ours-{block}-")
                    and (mo, s, b) == (mode, size, batch) and "failed" not in r), default=None)
        if best:
            worst = max(worst or 0.0, row["mean"] / best)
    add("`auto` never more than 10% slower than the best backend", None if worst is None else worst <= 1.10,
        "n/a" if worst is None else f"worst auto / best = {worst:.2f}")
    runs = t("ours-corrblock-auto", "train", 2048, 1)
    add("CorrBlock training step at 2048² B1 runs", None if runs is None else True, _cell(runs))
    return lines


def section(data: dict[str, Any], out: Path) -> list[str]:
    """Markdown lines (empty when the JSON holds no corr_gpu case)."""
    del out
    cells: dict[tuple, dict] = {}
    for b in data.get("benchmarks", []):
        e = b.get("extra_info") or {}
        if e.get("family") == "corr_gpu":
            cells[(e["variant"], e["mode"], e["size"], e["batch"])] = {
                "mean": b["stats"]["mean"], "peak": e["peak_memory_bytes"], "gpu": e.get("gpu")}
    for s in (data.get("pyflowops") or {}).get("skipped", []):
        if s.get("family") == "corr_gpu" and s.get("kind") == "failed":
            cells[(s["variant"], s["mode"], s["size"], s["batch"])] = {"failed": s["reason"], "gpu": s.get("gpu")}
    if not cells:
        return []
    gpu = next((c["gpu"] for c in cells.values() if c.get("gpu")), "unknown GPU")
    doc = ["## Correlation on the GPU against RAFT", "",
           f"Device: {gpu}. Features [B, 256, H/8, W/8], 4 levels, radius 4, 12 lookups (RAFT's iterations) "
           "with coordinates moving a little each time; the block is built inside the timed call. Inference: "
           "under `torch.no_grad`; training step: the same with fmaps that need gradients plus one backward. "
           "Cells: ms per call (peak MiB above what was allocated). RAFT = `../shared/peers/raft/core/corr.py` "
           "and its `alt_cuda_corr` extension (`benchmarks/test_corr_gpu.py`).", "",
           "| 12 iterations, ms (peak MiB) | " + " | ".join(f"{s}² B{b}" for s, b in SIZES) + " |",
           "|---|" + "---|" * len(SIZES)]
    for mode, title in (("inference", "inference"), ("train", "training step")):
        for variant, label in LABELS.items():
            doc.append(f"| {label}, {title} | "
                       + " | ".join(_cell(cells.get((variant, mode, s, b))) for s, b in SIZES) + " |")
    return doc + ["", "### Targets (GPU correlation)", "", *_targets(cells), ""]
