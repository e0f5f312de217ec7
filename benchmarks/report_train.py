"""The "Training recipe" section of benchmarks/RESULTS.md (called by ``benchmarks.report``):
steps/s of ``decflow_cpu_small`` through the trainer, pyflowops ops against the reference ops."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def section(data: dict[str, Any], out: Path) -> list[str]:
    """Markdown lines (empty when the JSON holds no train_recipe case)."""
    del out
    rows = {e["variant"]: e for e in (b.get("extra_info") or {} for b in data.get("benchmarks", []))
            if e.get("family") == "train_recipe"}
    if not rows:
        return []
    any_row = next(iter(rows.values()))
    doc = [
        "## Training recipe",
        "",
        f"`pyflowops train` on the bundled `{any_row['recipe']}` recipe (DecFlow small, {any_row['image_size']}² pairs, "
        f"crops {'x'.join(map(str, any_row.get('crop') or [any_row['image_size']] * 2))}, "
        f"batch {any_row['batch']}, {any_row['iters']} iterations, {any_row['amp']} autocast, "
        f"AdamW + OneCycleLR + clipping), {any_row['steps']} steps per variant, the trainer's steps/s "
        "(data loading from a small pre-written synthetic set included, checkpoint writing not). Reference = the same network and weights on RAFT's "
        "grid_sample CorrBlock and GMA's explicit softmax.",
        "",
        "| variant | steps/s | loss after the run | speed-up vs reference | CPU used by other processes |",
        "|---|---|---|---|---|",
    ]
    reference = rows.get("reference", {}).get("steps_per_s")
    for variant in ("reference", "pyflowops"):
        e = rows.get(variant)
        if e is None:
            continue
        ratio = f"{e['steps_per_s'] / reference:.2f}x" if reference else "n/a"
        load = e.get("other_cpu_load")
        doc.append(f"| {variant} | {e['steps_per_s']:.3f} | {e['loss']:.3f} | {ratio} | "
                   f"{'n/a' if load is None else f'{load:.0%}'} |")
    doc += ["", "At 128² crops the features are 16x16 (256 positions): the correlation and the attention are a "
            "small share of a step (convolutions, the GRUs and the optimizer dominate), so faster operators "
            "cannot speed this recipe up; the Models section's full-image step is where they matter.",
            "",
            "The recipe's learning curves (`pyflowops train` writes them as `curves.png`): "
            "![decflow_cpu_small curves](train_decflow_cpu_small_curves.png)"]
    return doc + [""]
