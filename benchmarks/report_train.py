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
            "The recipe end to end (measured 2026-12-07 on this 2-core CPU, mostly idle, one run of the README's three "
            "commands on pairs rendered on the fly): `decflow_pretrain_cpu_small` 400 steps (317 s), "
            "`decflow_cpu_small` 1600 steps from it (1321 s), `decflow_stage2_cpu_small` 200 steps (395 s): "
            "**33.9 minutes** (target 45). Validation (16 held-out rendered pairs, 8 iterations): masked facial "
            "EPE **1.198 px** against 2.761 px for zero flow (target: below half, 1.381). `pyflowops eval` of the "
            "final model on those 16 pairs (12 iterations, pooled over pixels): masked facial EPE 1.285 px; "
            "zero 2.798, OpenCV Farneback 1.417, DIS 0.582, TV-L1 0.881 (target: below Farneback, met; DIS and "
            "TV-L1 are still better). On 16 other held-out pairs (the test split): 1.366 against zero 2.676, "
            "Farneback 1.367, DIS 0.544, TV-L1 0.962. Without the pretraining the flow heads' ReLUs die and "
            "validation stays above zero flow (3.33 px at step 300, 1.25e-4; at 4e-4 0.2% of conv1 outputs live "
            "at step 100).",
            "",
            "Pretraining length, measured 2026-12-07 with the demo's data (274 pairs of 32 sequences) and its 24 "
            "held-out pairs (`make demo`'s table; DIS 0.517, TV-L1 0.769, Farneback 1.242, zero 2.490 px masked "
            'facial EPE): 600 + 100 face steps after the old 400 generic-motion steps give **1.305 px**; the same'
            ' steps after 4400 generic steps **0.832 px**; 1000 + 100 face steps after 6900 generic steps '
            '**0.728 px**; the same after the 11400 of the shipped `bundled:decflow_small_generic` (validation EPE'
            ' on generic pairs 4.95 / 1.72 / 1.31 / 1.02 px after 400 / 4400 / 6900 / 11400 steps) **0.676 px** '
            '(n = 20 / 15 / 10 / 5: 0.431 / 0.474 / 0.675 / 1.034; DIS 0.352 / 0.283 / 0.503 / 0.876), better '
            'than TV-L1 and Farneback, not yet DIS (`make demo`: 15.1 min with its data already on disk, measured'
            ' 2026-12-08). Stage-1 settings, each 1000 steps on the same data after 6900 generic steps (recipe: '
            '0.728): `optim.lr` 2.5e-4 0.734; `data.crop_shift` 2 0.783, 16 0.763 (recipe 8); 8 / 16 / 24 test '
            'iterations 0.726 / 0.731 / 0.739 (recipe 12); inputs upscaled 1.5x / 2x at test time 0.806 / 1.307.'
            " Where the error is (8 pairs): inside the face (mask eroded 6 px) 0.767 px against DIS's 0.518, at "
            "the outline 1.015 against 0.989: what is missing is sub-pixel precision on skin, not boundaries, and"
            ' the model underestimates the motion (least-squares gain 0.77-0.94; DIS 0.83-0.92). Longer face '
            'training is worth less: 3500 more face steps at 1.25e-4'
            " on 1200 pairs after the recipe's 1600 + 200 took validation (16 pairs) from 1.198 only to 0.868 px,"
            " where 600 face steps after 4400 generic ones reach 0.894 and 1000 after 6900 reach 0.73 (the demo's"
            ' stage 1 validation, 0.802 at step 600).',
            "",
            "The recipe's learning curves (`pyflowops train` writes them as `curves.png`; the lines are the "
            "baselines on the same validation pairs): "
            "![decflow_cpu_small curves](train_decflow_cpu_small_curves.png)",
            "",
            "The pretraining on generic motion (validation on generic pairs, whose flows are larger): "
            "![decflow_pretrain_cpu_small curves](train_decflow_pretrain_cpu_small_curves.png)"]
    return doc + [""]
