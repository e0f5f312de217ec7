"""Training curves as a PNG: loss, validation EPE and learning rate of one run or of chained stages.

``plot_curves(["runs/stage1", "runs/stage2"], "curves.png", references={"Farneback": 1.9})`` reads
each run's ``metrics.jsonl`` (what the trainer writes), places the runs one after another on the
step axis (stage 2 continues where stage 1 stopped) and draws three panels::

    training loss (raw and a moving average) | validation masked EPE (facial, head, expression;
    zero flow dashed; optional reference lines) | learning rate

The trainer calls it at the end of every run for ``out_dir/curves.png``.
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["read_metrics", "plot_curves"]

_VAL_SERIES = (("masked_epe", "facial"), ("head_masked_epe", "head"), ("expression_masked_epe", "expression"))


def read_metrics(run_dir: str | Path) -> tuple[list[dict], list[dict]]:
    """(train records, validation records) of ``run_dir/metrics.jsonl``, one per step, sorted by step.

    A resumed run logs the steps after its last checkpoint twice; the later record wins.

    Raises:
        FileNotFoundError: the run directory has no ``metrics.jsonl``.
    """
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"curves: no metrics.jsonl in {run_dir} (is it a pyflowops train run directory?)")
    by_split: dict[str, dict[int, dict]] = {"train": {}, "val": {}}
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # a line cut short by a killed process
            continue
        if record.get("split") in by_split:
            by_split[record["split"]][int(record["step"])] = record
    return tuple(sorted(records.values(), key=lambda r: r["step"]) for records in by_split.values())  # type: ignore


def _moving_average(values: list[float], window: int) -> list[float]:
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def plot_curves(run_dirs: list[str | Path] | str | Path, out_png: str | Path, labels: list[str] | None = None,
                references: dict[str, float] | None = None, title: str | None = None) -> Path:
    """Draw the curves of one run, or of several runs chained on one step axis, into ``out_png``.

    Args:
        run_dirs: a run directory or a list of them (e.g. DecFlow stage 1 then stage 2).
        out_png: the PNG to write (its folder is created).
        labels: one name per run, written at its start (default: the folder names).
        references: horizontal lines on the EPE panel, ``{"Farneback": 1.93}`` (same pairs, same metric).
        title: the figure title.

    Returns:
        The path written.
    """
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    runs = [Path(run_dirs)] if isinstance(run_dirs, (str, Path)) else [Path(r) for r in run_dirs]
    labels = labels or [r.name for r in runs]
    fig, (ax_loss, ax_epe, ax_lr) = plt.subplots(1, 3, figsize=(15, 4.2))
    offset = 0
    for index, (run, label) in enumerate(zip(runs, labels)):
        train, val = read_metrics(run)
        steps = [offset + r["step"] for r in train]
        loss = [r["loss"] for r in train]
        colour = f"C{index}"
        ax_loss.plot(steps, loss, color=colour, alpha=0.25, linewidth=0.8)
        ax_loss.plot(steps, _moving_average(loss, 10), color=colour, label=f"{label} (moving average)")
        ax_lr.plot(steps, [r["lr"] for r in train], color=colour, label=label)
        val_steps = [offset + r["step"] for r in val]
        for style, (key, name) in zip(("-", "--", ":"), _VAL_SERIES):
            if val and key in val[0]:
                ax_epe.plot(val_steps, [r[key] for r in val], style, color=colour, marker="o", markersize=3,
                            label=f"{label}: {name}")
        if val and "zero_masked_epe" in val[0]:
            ax_epe.axhline(val[0]["zero_masked_epe"], color="grey", linestyle="--", linewidth=1,
                           label="zero flow (facial)" if index == 0 else None)
        for ax in (ax_loss, ax_epe, ax_lr):
            if index:
                ax.axvline(offset, color="black", linewidth=0.6, alpha=0.5)
        last = max([r["step"] for r in train] + [r["step"] for r in val] + [0])
        offset += last
    for (name, value), style in zip((references or {}).items(), ("-.", (0, (1, 1)), (0, (5, 1)))):
        ax_epe.axhline(value, color="black", linestyle=style, linewidth=1, label=f"{name} (facial)")
    ax_loss.set(title="training loss", xlabel="step", yscale="log")
    ax_epe.set(title="validation masked EPE (px)", xlabel="step", ylim=(0, None))
    ax_lr.set(title="learning rate", xlabel="step")
    for ax in (ax_loss, ax_epe, ax_lr):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return out_png
