"""The "Models" section of benchmarks/RESULTS.md (called by ``benchmarks.report``).

Reads the ``model_train_step``, ``model_highres`` and ``model_memory`` cases of
``benchmarks/test_models.py``: the training-step table (pyflowops ops vs the reference
ops, same weights, losses), the 2048^2 high-resolution row with what the reference
configuration would need there, the memory-vs-resolution table, the issue's targets
checked PASS / MISS, and one plot (``models_memory_vs_resolution.png``, next to RESULTS.md).

Standalone: ``python -m benchmarks.report_models models.json --out /tmp/models.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from benchmarks.report import CONTENDED, GIB, MeasuredRow, fmt_bytes, fmt_speed, fmt_time, save_figure  # noqa: E402

FAMILIES = ("model_train_step", "model_highres", "model_memory")
PLOT_NAME = "models_memory_vs_resolution.png"
SPEEDUP_TARGET = 1.3
HIGHRES_TARGET = 8 * GIB
VARIANT_LABELS = {
    "reference": "reference ops (RAFT grid_sample CorrBlock + explicit softmax)",
    "allpairs": "pyflowops all-pairs + fused softmax",
    "onthefly": "pyflowops on-the-fly + fused softmax",
    "auto": "pyflowops corr=auto + fused softmax",
}
_COLORS = {("gma", "allpairs"): "tab:blue", ("gma", "onthefly"): "tab:orange",
           ("decflow", "allpairs"): "tab:green", ("decflow", "onthefly"): "tab:red"}


@dataclass
class MRow(MeasuredRow):
    family: str
    model: str
    model_size: str
    image: int
    batch: int
    variant: str
    iters: int
    mean: float | None = None
    stddev: float | None = None
    min: float | None = None
    rounds: int | None = None
    peak: int | None = None
    other_load: float | None = None
    info: dict | None = None
    skip_kind: str | None = None
    skip_reason: str | None = None
    estimate: int | None = None


def _row(info: dict[str, Any], **kw) -> MRow:
    return MRow(info["family"], info["model"], info["model_size"], info["image_size"], info["batch"],
                info["variant"], info["iters"], info=info, **kw)


def load(data: dict[str, Any]) -> list[MRow]:
    rows = []
    for bench in data.get("benchmarks", []):
        info, stats = bench.get("extra_info", {}), bench["stats"]
        if info.get("family") in FAMILIES:
            rows.append(_row(info, mean=stats["mean"], stddev=stats.get("stddev"), min=stats.get("min"),
                             rounds=stats.get("rounds"), peak=info.get("peak_memory_bytes"),
                             other_load=info.get("other_cpu_load")))
    for skip in (data.get("pyflowops") or {}).get("skipped", []):
        if skip.get("family") in FAMILIES:
            rows.append(_row(skip, skip_kind=skip["kind"], skip_reason=skip["reason"],
                             estimate=skip.get("estimate_bytes")))
    return rows


def _get(rows: list[MRow], **key) -> MRow | None:
    for r in rows:
        if all(getattr(r, k) == v for k, v in key.items()):
            return r
    return None


def _status(ok: bool | None, timed: tuple = ()) -> str:
    status = "**PASS**" if ok else ("**MISS**" if ok is not None else "**not measured**")
    if ok is not None and any(r is not None and r.contended for r in timed):
        status += " ⚠ timed while other processes loaded the CPU"
    return status


def _time(row: MRow | None) -> str:
    if row is None:
        return "—"
    if not row.ran:
        return f"not run ({row.skip_kind})"
    spread = f" ± {fmt_time(row.stddev)}" if row.stddev and (row.rounds or 0) > 1 else ""
    rounds = f" ({row.rounds} rounds)" if (row.rounds or 0) > 1 else " (1 round)"
    return f"{fmt_time(row.mean)}{spread}{rounds}" + (" ⚠" if row.contended else "")


def reference_need(image: int, batch: int = 1) -> tuple[int, int]:
    """(all-pairs pyramid, explicit attention matrix) bytes of a square image (features at 1/8, 4 levels)."""
    side = image // 8
    pyramid = sum(batch * side * side * (side >> lvl) ** 2 * 4 for lvl in range(4))
    return pyramid, batch * (side * side) ** 2 * 4


# ---------------------------------------------------------------------------
# tables
# ---------------------------------------------------------------------------


def train_table(rows: list[MRow]) -> tuple[list[str], list[str]]:
    """(table lines, target lines)."""
    mine = [r for r in rows if r.family == "model_train_step"]
    if not mine:
        return [], []
    ref = _get(mine, variant="reference")
    lines = ["| variant | time per step (mean) | vs reference (means) | fastest step (vs reference) | loss | "
             "peak extra memory |", "|---|---|---|---|---|---|"]
    for variant in ("reference", "allpairs", "onthefly"):
        r = _get(mine, variant=variant)
        if r is None:
            continue
        ratio = ref.mean / r.mean if r.ran and ref is not None and ref.ran and variant != "reference" else None
        loss = f"{r.info['loss']:.6g}" if r.ran and r.info.get("loss") is not None else "—"
        if r.ran and variant != "reference" and r.info.get("loss_rel_diff") is not None:
            loss += f" (rel. diff {r.info['loss_rel_diff']:.1e})"
        fastest = fmt_time(r.min) if r.ran else "—"
        if ratio and r.min and ref.min:
            fastest += f" ({fmt_speed(ref.min / r.min)})"
        lines.append(f"| {VARIANT_LABELS[variant]} | {_time(r)} | "
                     f"{fmt_speed(ratio) + ' faster' if ratio else ''} | {fastest} | {loss} | {fmt_bytes(r.peak)} |")
    targets = []
    ours = _get(mine, variant="allpairs")
    first = mine[0]
    what = (f"{first.model} {first.model_size} training step ({first.image}², batch {first.batch}, "
            f"{first.iters} iterations, fwd + bwd): pyflowops ≥ {SPEEDUP_TARGET}× the reference ops")
    if ours is not None and ref is not None and ours.ran and ref.ran:
        ratio = ref.mean / ours.mean
        targets.append(f"| {what} | {fmt_time(ours.mean)} vs {fmt_time(ref.mean)}: {fmt_speed(ratio)} | "
                       f"{_status(ratio >= SPEEDUP_TARGET, (ours, ref))} |")
    else:
        targets.append(f"| {what} | — | {_status(None)} |")
    return lines, targets


def highres_lines(rows: list[MRow]) -> tuple[list[str], list[str]]:
    r = _get(rows, family="model_highres")
    if r is None:
        return [], []
    info = r.info or {}
    pyramid, attention = reference_need(r.image, r.batch)
    pyramid = info.get("reference_pyramid_bytes", pyramid)
    attention = info.get("reference_attention_bytes", attention)
    need = pyramid + attention
    lines = ["| network | image | iterations | corr block | time | peak extra memory | target peak | "
             "reference ops would need |", "|---|---|---|---|---|---|---|---|"]
    picked = info.get("corr_block_picked") or "—"
    target = info.get("target_peak_bytes", HIGHRES_TARGET)
    if r.ran:
        status = _status(r.peak <= target if r.peak is not None else None, (r,))
    elif r.skip_kind == "does not fit" and r.estimate is not None and r.estimate > target:
        status = f"**MISS** (cannot run: needs at least {fmt_bytes(r.estimate)})"
    else:
        status = _status(None)
    lines.append(f"| {r.model} {r.model_size}, eval, no_grad | {r.image}² batch {r.batch} | {r.iters} | "
                 f"corr=auto → {picked} | {_time(r) if r.ran else 'not run: ' + (r.skip_reason or '')} | "
                 f"{fmt_bytes(r.peak)} | ≤ {fmt_bytes(target)}: {status} | "
                 f"{fmt_bytes(need)} (pyramid {fmt_bytes(pyramid)} + attention matrix {fmt_bytes(attention)}) |")
    targets = [f"| {r.model} {r.model_size} eval {r.image}², {r.iters} iterations: peak ≤ {fmt_bytes(target)} | "
               + (f"{fmt_bytes(r.peak)} in {fmt_time(r.mean)}" if r.ran else f"not run: {r.skip_reason}")
               + f" | {status} |"]
    return lines, targets


def memory_table(rows: list[MRow]) -> list[str]:
    mine = [r for r in rows if r.family == "model_memory"]
    if not mine:
        return []
    sizes = sorted({r.image for r in mine})
    series = sorted({(r.model, r.variant) for r in mine}, key=lambda k: (k[0] != "gma", k[1] != "allpairs"))
    lines = ["| image | " + " | ".join(f"{name} {mode}: peak / time" for name, mode in series)
             + " | reference need (pyramid + attention matrix) |",
             "|---|" + "---|" * len(series) + "---|"]
    for size in sizes:
        cells = []
        for name, mode in series:
            r = _get(mine, model=name, variant=mode, image=size)
            if r is None:
                cells.append("—")
            elif not r.ran:
                cells.append(f"not run ({r.skip_kind}: needs ≥ {fmt_bytes(r.estimate)})")
            else:
                cells.append(f"{fmt_bytes(r.peak)} / {fmt_time(r.mean)}" + (" ⚠" if r.contended else ""))
        pyramid, attention = reference_need(size)
        lines.append(f"| {size}² | " + " | ".join(cells) + f" | {fmt_bytes(pyramid + attention)} |")
    return lines


# ---------------------------------------------------------------------------
# plot
# ---------------------------------------------------------------------------


def plot(rows: list[MRow], path: Path) -> bool:
    mine = [r for r in rows if r.family == "model_memory"]
    ran = [r for r in mine if r.ran and r.peak]
    if not ran:
        return False
    sizes = sorted({r.image for r in mine})
    fig, ax = plt.subplots(figsize=(8, 5))
    for (name, mode) in sorted({(r.model, r.variant) for r in mine}):
        pts = sorted((r.image, r.peak / GIB) for r in ran if (r.model, r.variant) == (name, mode))
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o" if mode == "allpairs" else "s",
                    color=_COLORS.get((name, mode)), label=f"{name} full, {mode.replace('onthefly', 'on-the-fly')}")
    need = [sum(reference_need(s)) / GIB for s in sizes]
    ax.plot(sizes, need, linestyle="--", color="black", label="computed reference need: pyramid + attention matrix")
    ax.axhline(HIGHRES_TARGET / GIB, color="tab:purple", linewidth=1.2, label="8 GiB (2048² target)")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(sizes, [f"{s}²" for s in sizes])
    ax.set_xlabel("image size (batch 1)")
    ax.set_ylabel("peak extra memory (GiB, log)")
    ax.set_title("Eval forward (no_grad, 2 iterations): peak memory vs resolution")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


# ---------------------------------------------------------------------------
# section
# ---------------------------------------------------------------------------


def section(data: dict[str, Any], out: Path) -> list[str]:
    """Markdown lines of the section (empty without model cases); writes the plot next to ``out``."""
    rows = load(data)
    if not rows:
        return []
    png = out.parent / PLOT_NAME
    have_plot = plot(rows, png)
    train, train_targets = train_table(rows)
    highres, highres_targets = highres_lines(rows)
    memory = memory_table(rows)
    contended = [r for r in rows if r.contended]
    doc = [
        "## Models",
        "",
        "The `pyflowops_models` networks (`benchmarks/test_models.py`), on pyflowops ops (`corr=\"allpairs\"` "
        "/ `\"onthefly\"` correlation blocks, `softmax=\"fused\"` attention) against the same networks on the "
        "reference ops (`benchmarks/_reference_models.py`: RAFT's CorrBlock — all-pairs pyramid + `grid_sample` "
        "lookups, `pyflowops.reference.corr` — and GMA's explicit (HW)² softmax). Each variant is built with the "
        "same seed (same weights); every GMA aggregator's `gamma` is set to 0.5 so the attention is used. "
        "DecFlow's semantic encoder has random weights (speed and memory do not depend on them). Inputs: random "
        "images 0..255. Peak memory: extra peak RSS (VmHWM) of one call, heap trimmed first. CPU times on this "
        "machine are indicative; ratios compare numbers from the same run.",
        "",
    ]
    if contended:
        doc += [f"⚠ = other processes used more than {CONTENDED:.0%} of the CPU while this case ran "
                f"({len(contended)} of {sum(r.ran for r in rows)} cases); its time is inflated.", ""]
    fallback = sorted({r.model for r in rows if (r.info or {}).get("fused_attention_math_fallback")})
    if fallback:
        doc += [f"**Note:** in this run the `softmax=\"fused\"` attention of {', '.join(fallback)} ran PyTorch's "
                "*math* `scaled_dot_product_attention` path on CPU (found by profiling a tiny forward), which "
                "stores the (HW)² score matrix and its softmax just as the explicit attention does — 2 × 16 GiB "
                "at 2048². The fused CPU (flash) kernel needs q / k / v with a contiguous last dimension; "
                "`pyflowops_models.attention` hands it transposed views. Cases whose pyramid and/or these two "
                "matrices alone exceed the memory budget are not run (listed below).", ""]
    targets = [*train_targets, *highres_targets]
    if targets:
        doc += ["### Targets (models)", "", "| target | measured | status |", "|---|---|---|", *targets, ""]
    if train:
        first = next(r for r in rows if r.family == "model_train_step")
        doc += [
            "### Training step: pyflowops ops vs reference ops",
            "",
            f"{first.model} size {first.model_size}, batch {first.batch}, {first.image}² random images, "
            f"{first.iters} iterations, train mode, "
            + ("`decflow_loss` (facial + head + expression terms)" if first.model == "decflow"
               else "`sequence_loss`")
            + " against fixed random ground-truth flows, `loss.backward()`, no optimizer step. An untimed warmup "
            "step, then the timed rounds. Each variant's loss is asserted equal to the reference's (rtol 1e-4).",
            "",
            *train,
            "",
        ]
    if highres:
        doc += [
            "### High resolution: 2048²",
            "",
            "One call (no warmup), eval mode under `torch.no_grad`. The reference configuration is not run: its "
            "all-pairs pyramid (`allpairs_bytes(1, 256, 256, 4)`) and GMA's explicit attention matrix "
            "(B·(HW/64)²·4 bytes) alone are computed below.",
            "",
            *highres,
            "",
        ]
    if memory:
        doc += [
            "### Memory vs resolution",
            "",
            "gma and decflow, size full, eval, `torch.no_grad`, 2 iterations (eval memory does not grow with "
            "the iterations), batch 1, fused softmax. Cells: peak extra memory / time of one call (sizes < 1024²: "
            "peak of the untimed warmup call, mean of the timed rounds; ≥ 1024²: one call). All-pairs is not run "
            "where its pyramid alone exceeds the memory budget per case. Last column: what the reference "
            "configuration's two (HW)² tensors alone would take.",
            "",
            *memory,
            "",
        ]
        if have_plot:
            doc += [f"![models: peak memory vs resolution]({png.name})", "",
                    "Dashed: the computed reference need (pyramid + attention matrix); purple: 8 GiB.", ""]
    skipped = [r for r in rows if not r.ran]
    if skipped:
        doc += ["### Models: not run", ""]
        for r in skipped:
            doc.append(f"* {r.family}: {r.model} {r.model_size} {r.image}² batch {r.batch}, {r.variant}: "
                       f"**{r.skip_kind}** — {r.skip_reason}")
        doc.append("")
    return doc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.report_models", description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="pytest-benchmark JSON (--benchmark-json)")
    parser.add_argument("--out", type=Path, required=True, help="markdown file to write (the PNG goes next to it)")
    args = parser.parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    lines = section(json.loads(args.results.read_text()), args.out)
    if not lines:
        parser.error(f"{args.results} holds no model benchmark results")
    args.out.write_text("\n".join(lines))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
