"""Write benchmarks/RESULTS.md (tables, targets) and PNG plots from a pytest-benchmark JSON.

Usage::

    python -m pytest benchmarks -q --benchmark-json=benchmarks/.raw/results.json
    python -m benchmarks.report benchmarks/.raw/results.json [more.json ...] [--out benchmarks/RESULTS.md]

Several JSON files (e.g. the main sweep and ``benchmarks/test_models.py``'s run) are
merged: their benchmarks and skipped cases together, the first file's machine info.

Every ratio is computed from numbers measured in the same run. Times on a
shared 2-core CPU are indicative; the report marks cases during which other
processes used a noticeable share of the CPU.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

GIB = 1024**3
MIB = 1024**2
FAMILIES = {
    "lookup_fwd": "corr_lookup forward (pyramid built beforehand, not timed)",
    "lookup_fwdbwd": "corr_lookup forward + backward (gradients to pyramid and coords)",
    "raft_inference": "RAFT inference: all-pairs (pyramid + 12 lookups) vs on-the-fly (prep + 12 lookups)",
    "train_step": "Training step: one lookup forward + backward from the feature maps",
}
PAIRED = ("raft_inference", "train_step")  # families with an all-pairs and an on-the-fly mode
CONTENDED = 0.25  # other processes used more than this share of all cores during the case (as _measure)
DEFAULT_OUT = Path(__file__).resolve().parent / "RESULTS.md"


class MeasuredRow:
    """What every report row shares: ``mean`` (None when the case did not run) and ``other_load``
    (the share of the CPU other processes used during the case, None when unknown)."""

    mean: float | None
    other_load: float | None

    @property
    def ran(self) -> bool:
        return self.mean is not None

    @property
    def contended(self) -> bool:
        return self.ran and self.other_load is not None and self.other_load > CONTENDED


@dataclass
class Row(MeasuredRow):
    family: str
    mode: str
    backend: str
    device: str
    size: int
    batch: int
    mean: float | None = None  # seconds
    min: float | None = None
    stddev: float | None = None
    rounds: int | None = None
    peak: int | None = None  # bytes
    estimate: int | None = None
    other_load: float | None = None
    skip_kind: str | None = None  # "does not fit", "too slow"
    skip_reason: str | None = None

    @property
    def key(self) -> tuple:
        return (self.family, self.device, self.size, self.batch, self.mode, self.backend)


# ---------------------------------------------------------------------------
# loading
# ---------------------------------------------------------------------------


def merge(datas: list[dict[str, Any]]) -> dict[str, Any]:
    """One pytest-benchmark JSON from several runs: their ``benchmarks`` and skipped cases concatenated.

    A case measured in several files (same pytest ``fullname``) is taken from the last of them,
    so passing the files oldest first lets a re-run replace older numbers. Everything else
    (machine, date, budgets, bandwidth, session time) comes from the first file; a key only a
    later file has is taken from the first file that has it.
    """
    if not datas:
        raise ValueError("merge: no results")
    merged = dict(datas[0])
    by_name = {b.get("fullname", id(b)): b for d in datas for b in d.get("benchmarks", [])}
    merged["benchmarks"] = list(by_name.values())
    extras = [d.get("pyflowops") for d in datas if d.get("pyflowops")]
    if extras:
        extra: dict[str, Any] = {}
        for e in extras:
            for key, value in e.items():
                extra.setdefault(key, value)
        extra["skipped"] = [s for e in extras for s in e.get("skipped", [])]
        merged["pyflowops"] = extra
    return merged


def load(source: Path | list[Path]) -> tuple[list[Row], dict[str, Any], dict[str, Any]]:
    """Rows of the correlation families, the ``pyflowops`` extras and the whole JSON (several files: merged)."""
    paths = [source] if isinstance(source, Path) else list(source)
    data = merge([json.loads(p.read_text()) for p in paths])
    extra = data.get("pyflowops", {})
    rows = []
    for bench in data.get("benchmarks", []):
        info, stats = bench.get("extra_info", {}), bench["stats"]
        if info.get("family") not in FAMILIES:  # other families (gradreg) have their own report module
            continue
        rows.append(
            Row(
                family=info["family"],
                mode=info.get("mode", "allpairs"),
                backend=info["backend"],
                device=info["device"],
                size=info["image_size"],
                batch=info["batch"],
                mean=stats["mean"],
                min=stats.get("min"),
                stddev=stats.get("stddev"),
                rounds=stats.get("rounds"),
                peak=info.get("peak_memory_bytes"),
                estimate=info.get("memory_estimate_bytes"),
                other_load=info.get("other_cpu_load"),
            )
        )
    for skip in extra.get("skipped", []):
        if skip.get("family") not in FAMILIES:
            continue
        rows.append(
            Row(
                family=skip["family"],
                mode=skip.get("mode", "allpairs"),
                backend=skip["backend"],
                device=skip["device"],
                size=skip["image_size"],
                batch=skip["batch"],
                estimate=skip.get("estimate_bytes"),
                skip_kind=skip["kind"],
                skip_reason=skip["reason"],
            )
        )
    rows.sort(key=_order)
    return rows, extra, data


def _order(row: Row) -> tuple:
    backends = ["torch", "cpu", "cuda", "triton"]
    return (
        list(FAMILIES).index(row.family) if row.family in FAMILIES else 99,
        row.device != "cpu",
        row.size,
        row.batch,
        row.mode != "allpairs",
        backends.index(row.backend) if row.backend in backends else 99,
    )


# ---------------------------------------------------------------------------
# formatting
# ---------------------------------------------------------------------------


def fmt_time(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds:.2f} s"


def fmt_bytes(nbytes: float | None) -> str:
    if nbytes is None:
        return "—"
    if nbytes >= GIB:
        return f"{nbytes / GIB:.2f} GiB"
    if nbytes >= MIB:
        return f"{nbytes / MIB:.1f} MiB"
    return f"{nbytes / 1024:.0f} KiB"


def fmt_speed(ratio: float | None) -> str:
    """``ratio`` = other time / this time: >1 means this row is faster."""
    if ratio is None or not math.isfinite(ratio):
        return "—"
    return f"{ratio:.2f}×"


def fmt_share(ratio: float | None) -> str:
    """``ratio`` = this memory / other memory, e.g. 1/40."""
    if ratio is None or not math.isfinite(ratio) or ratio <= 0:
        return "—"
    if ratio >= 1:
        return f"{ratio:.2f}×"
    return f"1/{1 / ratio:.0f}" if ratio < 0.5 else f"{ratio:.2f}×"


def _ratio(num: float | None, den: float | None) -> float | None:
    if num is None or den is None or den == 0:
        return None
    return num / den


def _label(row: Row) -> str:
    mode = {"allpairs": "all-pairs", "onthefly": "on-the-fly"}[row.mode]
    return f"{mode} {row.backend}" if row.family in PAIRED else row.backend


# ---------------------------------------------------------------------------
# tables
# ---------------------------------------------------------------------------


class Index:
    def __init__(self, rows: list[Row]) -> None:
        self.rows = rows
        self.by_key = {r.key: r for r in rows}

    def get(self, family: str, device: str, size: int, batch: int, mode: str, backend: str) -> Row | None:
        return self.by_key.get((family, device, size, batch, mode, backend))

    def measured(self, *key) -> Row | None:
        row = self.get(*key)
        return row if row is not None and row.ran else None


def _time_cell(row: Row) -> str:
    if not row.ran:
        return "—"
    cell = fmt_time(row.mean)
    if row.rounds and row.rounds > 1 and row.stddev is not None:
        cell += f" ± {fmt_time(row.stddev)} (min {fmt_time(row.min)}, {row.rounds}×)"
    elif row.rounds:
        cell += f" ({row.rounds}×)"
    if row.contended:
        cell += " ⚠"
    return cell


def family_table(index: Index, family: str, device: str) -> list[str]:
    rows = [r for r in index.rows if r.family == family and r.device == device]
    if not rows:
        return []
    paired = family in PAIRED
    head = ["image", "batch", "implementation" if paired else "backend", "mean time (rounds)", "peak memory"]
    if paired:
        head += [
            "speed vs torch (same mode)",
            "speed vs RAFT (all-pairs torch)",
            "memory vs RAFT (all-pairs torch)",
            "speed vs all-pairs (same backend)",
            "memory vs all-pairs (same backend)",
        ]
    else:
        head += ["speed vs torch", "memory vs torch"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
    for r in rows:
        if not r.ran:
            note = f"**{r.skip_kind}**: {r.skip_reason}"
            cells = [f"{r.size}²", str(r.batch), _label(r), "not run", note] + ["—"] * (len(head) - 5)
            lines.append("| " + " | ".join(cells) + " |")
            continue
        cells = [f"{r.size}²", str(r.batch), _label(r), _time_cell(r), fmt_bytes(r.peak)]
        ref = index.measured(family, device, r.size, r.batch, r.mode, "torch")
        is_ref = r.backend == "torch"
        cells.append("ref." if is_ref else fmt_speed(_ratio(ref.mean, r.mean) if ref else None))
        if not paired:
            cells.append("ref." if is_ref else fmt_share(_ratio(r.peak, ref.peak) if ref else None))
            lines.append("| " + " | ".join(cells) + " |")
            continue
        for other_backend in ("torch", r.backend):
            if r.mode == "allpairs" and other_backend == r.backend:
                cells += ["1×", "1×"] if r.backend != "torch" else ["ref.", "ref."]
                continue
            if r.mode == "allpairs" and r.backend == "torch":
                cells += ["ref.", "ref."]
                continue
            ap = index.get(family, device, r.size, r.batch, "allpairs", other_backend)
            if ap is not None and ap.ran:
                cells += [fmt_speed(_ratio(ap.mean, r.mean)), fmt_share(_ratio(r.peak, ap.peak))]
            elif ap is not None:
                cells += [f"all-pairs {ap.skip_kind}", f"all-pairs needs ~{fmt_bytes(ap.estimate)}"]
            else:
                cells += ["—", "—"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


# ---------------------------------------------------------------------------
# targets
# ---------------------------------------------------------------------------


def _status(ok: bool | None) -> str:
    return "**PASS**" if ok else ("**MISS**" if ok is not None else "**not measured**")


def targets(index: Index, ram: int) -> list[str]:
    kernels = sorted(
        {(r.backend, r.device) for r in index.rows if r.backend != "torch" and r.ran},
        key=lambda bd: ["cpu", "cuda", "triton"].index(bd[0]) if bd[0] in ("cpu", "cuda", "triton") else 9,
    )
    if not kernels:
        return [
            "No compiled backend was measured (only the torch reference is available: build "
            "`pyflowops._C` with `make build`), so no target can be checked.",
        ]
    lines = ["| target | backend | measured | status |", "|---|---|---|---|"]

    def add(target: str, backend: str, measured: str, ok: bool | None, timed: tuple = ()) -> None:
        status = _status(ok)
        if ok is not None and any(r.contended for r in timed if r is not None):
            status += " ⚠ timed while other processes loaded the CPU: re-run on an idle machine to confirm"
        lines.append(f"| {target} | {backend} | {measured} | {status} |")

    for backend, device in kernels:
        label = f"{backend}@{device}"
        for family, what in (("lookup_fwd", "forward"), ("lookup_fwdbwd", "forward+backward")):
            ref = index.measured(family, device, 512, 2, "allpairs", "torch")
            row = index.measured(family, device, 512, 2, "allpairs", backend)
            speed = _ratio(ref.mean, row.mean) if ref and row else None
            measured = (
                f"{speed:.2f}× ({fmt_time(row.mean)} vs reference {fmt_time(ref.mean)})" if speed else "not measured"
            )
            add(f"corr_lookup {what} ≥ 4× faster than the reference, 512² batch 2", label, measured,
                None if speed is None else speed >= 4, (ref, row))
        for batch in (1, 2):
            ap = index.measured("raft_inference", device, 1024, batch, "allpairs", backend)
            otf = index.measured("raft_inference", device, 1024, batch, "onthefly", backend)
            if ap and otf and ap.peak and otf.peak:
                share = otf.peak / ap.peak
                add(f"on-the-fly peak memory ≤ 1/8 of all-pairs (pyramid + 12 lookups), 1024² batch {batch}", label,
                    f"{fmt_bytes(otf.peak)} vs {fmt_bytes(ap.peak)} = {fmt_share(share)}", share <= 1 / 8)
            else:
                add(f"on-the-fly peak memory ≤ 1/8 of all-pairs, 1024² batch {batch}", label, "not measured", None)
            if ap and otf:
                add(f"on-the-fly 12 lookups ≤ all-pairs pyramid build + 12 lookups (time), 1024² batch {batch}",
                    label, f"{fmt_time(otf.mean)} vs {fmt_time(ap.mean)} ({fmt_speed(ap.mean / otf.mean)} faster)",
                    otf.mean <= ap.mean, (ap, otf))
            else:
                add(f"on-the-fly 12 lookups ≤ all-pairs time, 1024² batch {batch}", label, "not measured", None)
        otf = index.measured("raft_inference", device, 2048, 1, "onthefly", backend)
        limit = 4 * GIB
        add("2048² batch 1: on-the-fly 12 lookups peak < 4 GiB", label,
            f"{fmt_bytes(otf.peak)} in {fmt_time(otf.mean)}" if otf and otf.peak is not None else "not measured",
            None if otf is None or otf.peak is None else otf.peak < limit)
        ap = index.get("raft_inference", device, 2048, 1, "allpairs", backend)
        if device == "cpu":
            if ap is not None and not ap.ran:
                add(f"2048² batch 1: all-pairs cannot run in {ram / GIB:.1f} GiB RAM", label,
                    f"{ap.skip_kind}, estimated ~{fmt_bytes(ap.estimate)} (pyramid alone "
                    f"{fmt_bytes(_pyramid_2048())}) > RAM {fmt_bytes(ram)}; not attempted",
                    ap.estimate is not None and ap.estimate > ram)
            elif ap is not None:
                add("2048² batch 1: all-pairs cannot run", label, f"it ran: peak {fmt_bytes(ap.peak)}", False)
    return lines


def _pyramid_2048() -> int:
    side = 2048 // 8
    return sum(side * side * (side >> lvl) ** 2 * 4 for lvl in range(4))


# ---------------------------------------------------------------------------
# plots
# ---------------------------------------------------------------------------

_COLORS = {
    ("allpairs", "torch"): "tab:gray",
    ("allpairs", "cpu"): "tab:blue",
    ("allpairs", "cuda"): "tab:green",
    ("allpairs", "triton"): "tab:purple",
    ("onthefly", "torch"): "tab:brown",
    ("onthefly", "cpu"): "tab:orange",
    ("onthefly", "cuda"): "tab:olive",
    ("onthefly", "triton"): "tab:pink",
}


def _series(index: Index, family: str) -> dict[tuple, list[Row]]:
    series: dict[tuple, list[Row]] = defaultdict(list)
    for r in index.rows:
        if r.family == family:
            series[(r.device, r.mode, r.backend, r.batch)].append(r)
    return series


def _style(device: str, mode: str, backend: str, batch: int) -> dict:
    return {
        "color": _COLORS.get((mode, backend), "black"),
        "linestyle": "-" if batch == 1 else "--",
        "marker": "o" if mode == "allpairs" else "s",
        "alpha": 1.0 if batch == 1 else 0.6,
    }


def _series_label(device: str, mode: str, backend: str, batch: int, multi_device: bool) -> str:
    name = {"allpairs": "all-pairs", "onthefly": "on-the-fly"}[mode]
    return f"{name} {backend}{'@' + device if multi_device else ''} b{batch}"


def save_figure(fig, path: Path) -> bool:
    """Lay out, write (110 dpi) and close a report figure; True for the callers' ``have_plot``."""
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plot_memory(index: Index, ram: int, path: Path) -> bool:
    series = _series(index, "raft_inference")
    if not series:
        return False
    multi = len({k[0] for k in series}) > 1
    sizes = sorted({r.size for r in index.rows})
    fig, ax = plt.subplots(figsize=(10, 5.5))
    for (device, mode, backend, batch), rows in sorted(series.items()):
        style = _style(device, mode, backend, batch)
        ran = [r for r in rows if r.ran and r.peak]
        if ran:
            ax.plot([r.size for r in ran], [r.peak / GIB for r in ran], label=_series_label(device, mode, backend,
                    batch, multi), **style)
        est = [r for r in rows if r.skip_kind == "does not fit" and r.estimate]
        if est:
            # dotted continuation from the last measured size when the estimates follow it directly
            points = {r.size: r.peak for r in ran}
            points.update({r.size: r.estimate for r in est})
            chain = [z for z in sizes if z in points]
            first = sizes.index(est[0].size)
            if ran and first > 0 and sizes[first - 1] == ran[-1].size:
                xs = [z for z in chain if z >= ran[-1].size]
                ax.plot(xs, [points[z] / GIB for z in xs], color=style["color"], linestyle=":", alpha=style["alpha"])
            ax.plot([r.size for r in est], [r.estimate / GIB for r in est], linestyle="none", marker=style["marker"],
                    markerfacecolor="none", markeredgecolor=style["color"], markersize=9, alpha=style["alpha"])
    if ram:
        ax.axhline(ram / GIB, color="tab:red", linewidth=1.5)
        ax.text(sizes[0], ram / GIB * 1.12, f"RAM {ram / GIB:.1f} GiB", color="tab:red")
    ax.plot([], [], linestyle="none", marker="o", markerfacecolor="none", markeredgecolor="black",
            label="estimate: does not fit, not run")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(sizes, [f"{s}²" for s in sizes])
    ax.set_xlabel("image size (features at 1/8, D=256, 4 levels, r=4)")
    ax.set_ylabel("peak memory (GiB, log)")
    ax.set_title("RAFT inference (12 lookups): peak memory vs resolution")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return save_figure(fig, path)


def plot_time(index: Index, path: Path) -> bool:
    families = [f for f in ("lookup_fwd", "raft_inference", "train_step") if any(r.family == f for r in index.rows)]
    if not families:
        return False
    multi = len({r.device for r in index.rows}) > 1
    fig, axes = plt.subplots(1, len(families), figsize=(5.5 * len(families), 5), squeeze=False)
    sizes = sorted({r.size for r in index.rows})
    titles = {"lookup_fwd": "corr_lookup forward", "raft_inference": "RAFT inference (12 lookups)",
              "train_step": "training step (1 lookup fwd+bwd)"}
    for ax, family in zip(axes[0], families):
        for (device, mode, backend, batch), rows in sorted(_series(index, family).items()):
            ran = [r for r in rows if r.ran]
            if ran:
                label = _series_label(device, mode, backend, batch, multi)
                if family == "lookup_fwd":
                    label = f"{backend}{'@' + device if multi else ''} b{batch}"
                ax.plot([r.size for r in ran], [r.mean for r in ran], label=label,
                        **_style(device, mode, backend, batch))
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(sizes, [f"{s}²" for s in sizes])
        ax.set_xlabel("image size")
        ax.set_ylabel("mean time (s, log)")
        ax.set_title(titles[family])
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    return save_figure(fig, path)


# ---------------------------------------------------------------------------
# document
# ---------------------------------------------------------------------------


def machine_lines(extra: dict[str, Any], data: dict[str, Any]) -> list[str]:
    mach = extra.get("machine") or {}
    if not mach:  # a JSON written without benchmarks/conftest.py: describe this machine
        from benchmarks import _measure

        mach = _measure.machine_info()
    build = mach.get("build_info", {})
    build_text = (
        f"not built: {build['error']}" if "error" in build else ", ".join(f"{k}={v}" for k, v in build.items())
    )
    lines = [
        f"* date: {data.get('datetime', mach.get('date', '?'))}",
        f"* CPU: {mach.get('cpu_model', '?')}, {mach.get('cpu_cores', '?')} cores "
        f"(torch threads: {mach.get('torch_threads', '?')}), RAM {fmt_bytes(mach.get('ram_bytes'))}",
    ]
    if mach.get("gpu"):
        lines.append(f"* GPU: {mach['gpu']} ({fmt_bytes(mach.get('gpu_memory_bytes'))})")
    lines += [
        f"* Python {mach.get('python', '?')}, torch {mach.get('torch_version', '?')}, "
        f"pyflowops {mach.get('pyflowops_version', '?')}",
        f"* pyflowops.build_info(): {build_text}",
        f"* backends available: {', '.join(mach.get('available_backends', []))}",
    ]
    budgets = extra.get("memory_budget_bytes", {})
    if budgets:
        lines.append("* memory budget per case: " + ", ".join(f"{d} {fmt_bytes(b)}" for d, b in budgets.items())
                     + " (cases estimated above it are skipped, never attempted)")
    if extra.get("session_wall_s") is not None:
        lines.append(f"* benchmark session wall time: {extra['session_wall_s'] / 60:.1f} min"
                     + (" (quick sweep: PYFLOWOPS_BENCH_QUICK=1)" if extra.get("quick") else ""))
    return lines


def render(rows: list[Row], extra: dict[str, Any], data: dict[str, Any], out: Path) -> str:
    index = Index(rows)
    ram = extra.get("ram_bytes") or (extra.get("machine") or {}).get("ram_bytes") or 0
    mem_png, time_png = out.parent / "memory_vs_resolution.png", out.parent / "time_vs_resolution.png"
    have_mem, have_time = plot_memory(index, ram, mem_png), plot_time(index, time_png)
    contended = [r for r in rows if r.contended]

    doc = [
        "# pyflowops benchmark results",
        "",
        "Generated by `python -m benchmarks.report` from the pytest-benchmark JSON of "
        "`make bench` (`python -m pytest benchmarks`). Do not edit by hand.",
        "",
        "## Machine",
        "",
        *machine_lines(extra, data),
        "",
    ]
    if rows:
        doc += _corr_sections(index, rows, extra, ram, mem_png, time_png, have_mem, have_time, contended)
    from benchmarks import report_gradreg  # imported here: it imports this module's formatting helpers

    doc += report_gradreg.section(data, out)
    from benchmarks import report_splat

    doc += report_splat.section(data, out)
    from benchmarks import report_corr_gpu, report_mer, report_models, report_synth, report_train

    doc += report_corr_gpu.section(data, out)
    doc += report_models.section(data, out)
    doc += report_train.section(data, out)
    doc += report_synth.section(data, out)
    doc += report_mer.section(data, out)
    text = "\n".join(doc)
    out.write_text(text)
    return text


def _corr_sections(index: Index, rows: list[Row], extra: dict[str, Any], ram: int, mem_png: Path, time_png: Path,
                   have_mem: bool, have_time: bool, contended: list[Row]) -> list[str]:
    doc = [
        "Setup: features [B, 256, H/8, W/8] float32 (random), 4 pyramid levels, radius 4, lookup coords = "
        "pixel grid + random flow of a few pixels (moving slightly at each of RAFT's 12 iterations). "
        "Peak memory is the extra memory of one call above what was allocated before it "
        f"({(extra.get('machine') or {}).get('gpu') and 'CUDA: max_memory_allocated; ' or ''}"
        "CPU: peak RSS via /proc/self/clear_refs + VmHWM, heap trimmed first), taken on the first call. "
        "Times are the mean over the timed rounds (± standard deviation, min, rounds); fast cases get an "
        "untimed warmup call first, slow ones (CPU: ≥ 1024², and the torch on-the-fly reference) run once. "
        "Ratios use the means and compare "
        "numbers measured in the same run; absolute times on this CPU are indicative only.",
        "",
    ]
    if contended:
        doc += [
            f"⚠ = other processes used more than {CONTENDED:.0%} of the CPU while this case ran "
            f"({len(contended)} of {sum(r.ran for r in rows)} cases); its time is inflated.",
            "",
        ]
    doc += ["## Targets", "", *targets(index, ram), ""]
    devices = sorted({r.device for r in rows}, key=lambda d: d != "cpu")
    for family, title in FAMILIES.items():
        for device in devices:
            table = family_table(index, family, device)
            if table:
                doc += [f"## {title}" + (f" — {device}" if len(devices) > 1 else ""), "", *table, ""]
                if family in PAIRED:
                    doc += [
                        "Speed ratios are other time / this time (> 1× = faster); memory ratios are this peak / "
                        "other peak (1/8 = eight times less).",
                        "",
                    ]
    skipped = [r for r in rows if not r.ran]
    if skipped:
        doc += ["## Not run", ""]
        for r in skipped:
            doc.append(f"* {FAMILIES.get(r.family, r.family).split(':')[0].split(' (')[0]}, {r.size}² batch "
                       f"{r.batch}, {_label(r) if r.family in PAIRED else r.backend}@{r.device}: "
                       f"**{r.skip_kind}** — {r.skip_reason}")
        doc.append("")
    if have_mem or have_time:
        doc += ["## Plots", ""]
        if have_mem:
            doc += [
                f"![peak memory vs resolution]({mem_png.name})",
                "",
                "Hollow markers: estimated footprint of configurations that do not fit (not run); red line: RAM.",
                "",
            ]
        if have_time:
            doc += [f"![time vs resolution]({time_png.name})", ""]
    return doc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.report", description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, nargs="+",
                        help="pytest-benchmark JSON (--benchmark-json); several are merged (the first one's "
                             "machine description is used)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="markdown file to write (PNGs go next to it)")
    args = parser.parse_args(argv)
    for path in args.results:
        if not path.exists():
            parser.error(f"{path} does not exist: run `python -m pytest benchmarks "
                         f"--benchmark-json={path}` first")
    rows, extra, data = load(args.results)
    from benchmarks import report_gradreg, report_models, report_splat

    gradreg_rows, splat_rows, model_rows = report_gradreg.load(data), report_splat.load(data), report_models.load(data)
    if not rows and not gradreg_rows and not splat_rows and not model_rows:
        parser.error(f"{' '.join(map(str, args.results))} holds no pyflowops benchmark results")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    render(rows, extra, data, args.out)
    everything = [*rows, *gradreg_rows, *splat_rows, *model_rows]
    print(f"wrote {args.out} ({sum(r.ran for r in everything)} measured, {sum(not r.ran for r in everything)} not run)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
