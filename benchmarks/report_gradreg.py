"""The "Gradient regularization" section of benchmarks/RESULTS.md (called by ``benchmarks.report``).

Reads the ``family == "gradreg"`` cases of ``benchmarks/test_gradreg.py`` from the
pytest-benchmark JSON: one time table and one memory table per device and direction
(rows: image sizes; columns: ours per backend, the torch reference, the kornia
composition and that composition under torch.compile), the memory-bandwidth floor
of each case and each time as a multiple of it, the issue's targets checked
PASS / MISS, the issue's measured anchors next to this run's, and one plot
(``gradreg_time_vs_resolution.png``, next to RESULTS.md).

Standalone: ``python -m benchmarks.report_gradreg results.json --out /tmp/gradreg.md``.
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

from benchmarks.report import (  # noqa: E402
    CONTENDED,
    MeasuredRow,
    fmt_bytes,
    fmt_share,
    fmt_speed,
    fmt_time,
    save_figure,
)

FAMILY = "gradreg"
PLOT_NAME = "gradreg_time_vs_resolution.png"
OURS = ("cpu", "cuda", "triton")
PEERS = ("torch", "kornia", "kornia_compile")
LABELS = {
    "cpu": "ours cpu",
    "cuda": "ours cuda",
    "triton": "ours triton",
    "torch": "torch reference",
    "kornia": "kornia",
    "kornia_compile": "kornia + torch.compile",
}
DIRECTIONS = {"fwd": "forward (loss only, no grad)", "fwdbwd": "forward + backward (gradient to flow)"}
TARGET_SIZE, TARGET_BATCH = 1024, 4
# The measured anchors: sobel + charbonnier with image and mask, 1024^2, batch 4, forward+backward.
ANCHORS = {
    "cpu": {"kornia": "2.1-2.9 s, 1.88 GiB peak", "kornia_compile": "0.73 s",
            "floor": "≈ 10 ms (≈ 40 B/px at 17 GB/s)"},
    "cuda": {"kornia": "3.18 ms (336 MiB)", "kornia_compile": "2.32 ms (272 MiB)", "floor": "0.057 ms (2.97 TB/s)"},
}
_COLORS = {"cpu": "tab:blue", "cuda": "tab:green", "triton": "tab:purple", "torch": "tab:gray",
           "kornia": "tab:red", "kornia_compile": "tab:orange"}


@dataclass
class GRow(MeasuredRow):
    device: str
    size: int
    batch: int
    direction: str
    variant: str
    mean: float | None = None
    min: float | None = None
    stddev: float | None = None
    rounds: int | None = None
    peak: int | None = None
    floor_s: float | None = None
    bytes_moved: int | None = None
    bytes_per_pixel: int | None = None
    bandwidth: float | None = None
    input_bytes: int | None = None
    compile_s: float | None = None
    other_load: float | None = None
    skip_kind: str | None = None
    skip_reason: str | None = None
    estimate: int | None = None

    @property
    def multiple(self) -> float | None:
        return self.mean / self.floor_s if self.ran and self.floor_s else None


def load(data: dict[str, Any]) -> list[GRow]:
    rows = []
    for bench in data.get("benchmarks", []):
        info, stats = bench.get("extra_info", {}), bench["stats"]
        if info.get("family") != FAMILY:
            continue
        rows.append(GRow(
            device=info["device"], size=info["image_size"], batch=info["batch"], direction=info["direction"],
            variant=info["variant"], mean=stats["mean"], min=stats.get("min"), stddev=stats.get("stddev"),
            rounds=stats.get("rounds"), peak=info.get("peak_memory_bytes"), floor_s=info.get("floor_s"),
            bytes_moved=info.get("bytes_moved"), bytes_per_pixel=info.get("floor_bytes_per_pixel"),
            bandwidth=info.get("copy_bandwidth_bytes_per_s"), input_bytes=info.get("input_bytes"),
            compile_s=info.get("compile_s"), other_load=info.get("other_cpu_load"),
            estimate=info.get("memory_estimate_bytes"),
        ))  # fmt: skip
    for skip in (data.get("pyflowops") or {}).get("skipped", []):
        if skip.get("family") != FAMILY:
            continue
        rows.append(GRow(
            device=skip["device"], size=skip["image_size"], batch=skip["batch"], direction=skip["direction"],
            variant=skip["variant"], skip_kind=skip["kind"], skip_reason=skip["reason"],
            estimate=skip.get("estimate_bytes"),
        ))  # fmt: skip
    return rows


class Table:
    def __init__(self, rows: list[GRow]) -> None:
        self.rows = rows
        self.by_key = {(r.device, r.direction, r.size, r.batch, r.variant): r for r in rows}

    def get(self, device: str, direction: str, size: int, variant: str, batch: int = TARGET_BATCH) -> GRow | None:
        return self.by_key.get((device, direction, size, batch, variant))

    def measured(self, *key, **kw) -> GRow | None:
        row = self.get(*key, **kw)
        return row if row is not None and row.ran else None

    def variants(self, device: str) -> list[str]:
        present = {r.variant for r in self.rows if r.device == device}
        return [v for v in (*OURS, *PEERS) if v in present]

    def ours(self, device: str) -> list[str]:
        return [v for v in self.variants(device) if v in OURS]


def _ratio(num: float | None, den: float | None) -> float | None:
    return num / den if num is not None and den else None


def _time_cell(row: GRow | None) -> str:
    if row is None:
        return "—"
    if not row.ran:
        return f"not run: {row.skip_kind}"
    cell = fmt_time(row.mean)
    if row.rounds and row.rounds > 1 and row.stddev is not None:
        cell += f" ± {fmt_time(row.stddev)}"
    elif row.rounds == 1:
        cell += " (1 round)"
    if row.multiple is not None:
        cell += f", {row.multiple:.1f}× floor"
    return cell + (" ⚠" if row.contended else "")


def _floor_cell(rows: list[GRow]) -> str:
    ref = next((r for r in rows if r.floor_s), None)
    if ref is None:
        return "—"
    return f"{fmt_time(ref.floor_s)} ({fmt_bytes(ref.bytes_moved)}, {ref.bytes_per_pixel} B/px)"


def time_table(table: Table, device: str, direction: str) -> list[str]:
    variants, ours = table.variants(device), table.ours(device)
    sizes = sorted({r.size for r in table.rows if r.device == device and r.direction == direction})
    if not sizes:
        return []
    pairs = [(o, p) for o in ours for p in PEERS if p in variants]
    head = ["image", "bandwidth floor", *(LABELS[v] for v in variants), *(f"{o} vs {LABELS[p]}" for o, p in pairs)]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
    for size in sizes:
        rows = {v: table.get(device, direction, size, v) for v in variants}
        cells = [f"{size}²", _floor_cell([r for r in rows.values() if r is not None])]
        cells += [_time_cell(rows[v]) for v in variants]
        for o, p in pairs:
            mine, peer = rows[o], rows[p]
            ok = mine is not None and mine.ran and peer is not None and peer.ran
            cells.append(fmt_speed(_ratio(peer.mean, mine.mean)) if ok else "—")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def memory_table(table: Table, device: str, direction: str) -> list[str]:
    variants, ours = table.variants(device), table.ours(device)
    sizes = sorted({r.size for r in table.rows if r.device == device and r.direction == direction})
    if not sizes:
        return []
    pairs = [(o, p) for o in ours for p in PEERS if p in variants]
    head = ["image", "inputs", *(LABELS[v] for v in variants), *(f"{o} / {LABELS[p]}" for o, p in pairs)]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
    for size in sizes:
        rows = {v: table.get(device, direction, size, v) for v in variants}
        inputs = next((r.input_bytes for r in rows.values() if r is not None and r.input_bytes), None)
        cells = [f"{size}²", fmt_bytes(inputs)]
        cells += [fmt_bytes(r.peak) if r is not None and r.ran else "—" for r in rows.values()]
        for o, p in pairs:
            mine, peer = rows[o], rows[p]
            ok = mine is not None and mine.ran and peer is not None and peer.ran
            cells.append(fmt_share(_ratio(mine.peak, peer.peak)) if ok else "—")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def compile_line(table: Table, device: str, direction: str) -> list[str]:
    rows = sorted((r for r in table.rows if r.device == device and r.direction == direction
                   and r.variant == "kornia_compile" and r.compile_s is not None), key=lambda r: r.size)
    if not rows:
        return []
    return ["torch.compile's first call (compile + one run; excluded from the times; inductor's on-disk caches "
            "as found): " + ", ".join(f"{r.size}²: {fmt_time(r.compile_s)}" for r in rows) + ".", ""]


# ---------------------------------------------------------------------------
# targets
# ---------------------------------------------------------------------------


def _status(ok: bool | None, timed: tuple = ()) -> str:
    status = "**PASS**" if ok else ("**MISS**" if ok is not None else "**not measured**")
    if ok is not None and any(r is not None and r.contended for r in timed):
        status += " ⚠ timed while other processes loaded the CPU: re-run on an idle machine to confirm"
    return status


def _limit(row: GRow) -> str:
    """What limits a time that misses its target, from its multiple of the bandwidth floor."""
    mult = row.multiple
    if mult is None:
        return ""
    if mult <= 1.5:
        return f"; at {mult:.1f}× the copy-bandwidth floor: memory traffic limits it"
    if row.device == "cuda" and row.mean is not None and row.mean < 50e-6:
        return f"; {mult:.1f}× the floor at {fmt_time(row.mean)}: launch / synchronization overhead, not bandwidth"
    return (f"; {mult:.1f}× the floor: not bandwidth-bound "
            "(extra passes over memory, compute, or threading / launch overhead)")


def targets(table: Table) -> list[str]:
    size, batch = TARGET_SIZE, TARGET_BATCH
    where = f"{size}² batch {batch}"
    lines = ["| target | backend | measured | status |", "|---|---|---|---|"]

    def add(what: str, backend: str, measured: str, ok: bool | None, timed: tuple = ()) -> None:
        lines.append(f"| {what} | {backend} | {measured} | {_status(ok, timed)} |")

    def speed_target(device: str, o: str, peer: str, factor: float, strict: bool) -> None:
        mine = table.measured(device, "fwdbwd", size, o)
        other = table.measured(device, "fwdbwd", size, peer)
        sign = ">" if strict else "≥"
        what = f"fwd+bwd {sign} {factor:g}× faster than {LABELS[peer]}, {where}"
        if not (mine and other):
            missing = (f"{LABELS[peer]} {_not_run(table.get(device, 'fwdbwd', size, peer))}" if mine
                       else _not_run(table.get(device, "fwdbwd", size, o)))
            add(what, f"{o}@{device}", missing, None)
            return
        speed = other.mean / mine.mean
        ok = speed > factor if strict else speed >= factor
        add(what, f"{o}@{device}", f"{speed:.1f}× ({fmt_time(mine.mean)} vs {fmt_time(other.mean)})"
            + ("" if ok else _limit(mine)), ok, (mine, other))

    def time_target(device: str, o: str, limit: float) -> None:
        mine = table.measured(device, "fwdbwd", size, o)
        what = f"fwd+bwd ≤ {fmt_time(limit)}, {where}"
        if not mine:
            add(what, f"{o}@{device}", _not_run(table.get(device, "fwdbwd", size, o)), None)
            return
        ok = mine.mean <= limit
        add(what, f"{o}@{device}", f"{fmt_time(mine.mean)} ({_multiple(mine)})" + ("" if ok else _limit(mine)),
            ok, (mine,))

    for o in table.ours("cpu"):
        time_target("cpu", o, 60e-3)
        speed_target("cpu", o, "kornia_compile", 10, strict=True)
        speed_target("cpu", o, "kornia", 30, strict=True)
        mine = table.measured("cpu", "fwdbwd", size, o)
        peer = table.measured("cpu", "fwdbwd", size, "kornia")
        what = f"fwd+bwd peak memory ≤ 1/5 of kornia's, {where}"
        if mine and peer and mine.peak is not None and peer.peak:
            share = mine.peak / peer.peak
            add(what, f"{o}@cpu", f"{fmt_bytes(mine.peak)} vs {fmt_bytes(peer.peak)} = {fmt_share(share)}"
                + ("" if share <= 0.2 else f"; inputs alone are {fmt_bytes(mine.input_bytes)}"), share <= 0.2)
        else:
            add(what, f"{o}@cpu", _not_run(table.get("cpu", "fwdbwd", size, o)), None)
        fwd = table.measured("cpu", "fwd", size, o)
        what = f"forward ≤ 3× its bandwidth floor, {where}"
        if fwd and fwd.multiple is not None:
            ok = fwd.multiple <= 3
            add(what, f"{o}@cpu", f"{fmt_time(fwd.mean)} vs floor {fmt_time(fwd.floor_s)} = {fwd.multiple:.1f}×"
                + ("" if ok else _limit(fwd)), ok, (fwd,))
        else:
            add(what, f"{o}@cpu", _not_run(table.get("cpu", "fwd", size, o)), None)
    for o in table.ours("cuda"):
        time_target("cuda", o, 0.25e-3)
        speed_target("cuda", o, "kornia_compile", 9, strict=False)
    if len(lines) == 2:
        return ["No pyflowops gradreg kernel was measured (only the peers ran), so no target can be checked."]
    return lines


def _multiple(row: GRow) -> str:
    return f"{row.multiple:.1f}× its floor {fmt_time(row.floor_s)}" if row.multiple is not None else "no floor"


def _not_run(row: GRow | None) -> str:
    if row is None:
        return f"not measured ({TARGET_SIZE}² not in this run)"
    return f"not run: {row.skip_kind}"


def anchors(table: Table) -> list[str]:
    """The issue's measured anchors (1024² b4 fwd+bwd) next to this run's numbers, to judge the machine."""
    lines = ["| device | what | issue's anchor | this run |", "|---|---|---|---|"]
    for device, anchor in ANCHORS.items():
        if not any(r.device == device for r in table.rows):
            continue
        for variant in ("kornia", "kornia_compile"):
            row = table.measured(device, "fwdbwd", TARGET_SIZE, variant)
            now = f"{fmt_time(row.mean)} ({fmt_bytes(row.peak)})" if row else "not measured"
            lines.append(f"| {device} | {LABELS[variant]} | {anchor[variant]} | {now} |")
        ref = next((r for r in table.rows if r.device == device and r.direction == "fwdbwd"
                    and r.size == TARGET_SIZE and r.floor_s), None)
        now = (f"{fmt_time(ref.floor_s)} ({ref.bytes_per_pixel} B/px at {ref.bandwidth / 1e9:.1f} GB/s)"
               if ref else "not measured")
        lines.append(f"| {device} | bandwidth floor | {anchor['floor']} | {now} |")
    return lines if len(lines) > 2 else []


# ---------------------------------------------------------------------------
# plot
# ---------------------------------------------------------------------------


def plot(table: Table, path: Path) -> bool:
    devices = sorted({r.device for r in table.rows if r.ran}, key=lambda d: d != "cpu")
    if not devices:
        return False
    fig, axes = plt.subplots(len(devices), 2, figsize=(12, 4.8 * len(devices)), squeeze=False)
    for i, device in enumerate(devices):
        for j, direction in enumerate(DIRECTIONS):
            ax = axes[i][j]
            rows = [r for r in table.rows if r.device == device and r.direction == direction and r.ran]
            sizes = sorted({r.size for r in rows})
            for variant in table.variants(device):
                ran = sorted((r for r in rows if r.variant == variant), key=lambda r: r.size)
                if ran:
                    ax.plot([r.size for r in ran], [r.mean for r in ran], marker="o" if variant in OURS else "s",
                            color=_COLORS.get(variant, "black"), label=LABELS[variant])
            busy = [r for r in rows if r.contended]
            if busy:
                ax.plot([r.size for r in busy], [r.mean for r in busy], linestyle="none", marker="o", markersize=12,
                        markerfacecolor="none", markeredgecolor="black", label="⚠ timed under CPU contention")
            floors = {r.size: r.floor_s for r in rows if r.floor_s}
            if floors:
                xs = sorted(floors)
                ax.plot(xs, [floors[x] for x in xs], color="black", linestyle="--", linewidth=1,
                        label="bandwidth floor")
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            if sizes:
                ax.set_xticks(sizes, [f"{s}²" for s in sizes])
            ax.set_xlabel("image size (batch 4)")
            ax.set_ylabel("mean time (s, log)")
            ax.set_title(f"gradient regularization {DIRECTIONS[direction]} — {device}", fontsize=10)
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=8)
    return save_figure(fig, path)


# ---------------------------------------------------------------------------
# section
# ---------------------------------------------------------------------------


def section(data: dict[str, Any], out: Path) -> list[str]:
    """Markdown lines of the section (empty when the JSON holds no gradreg case); writes the plot next to ``out``."""
    rows = load(data)
    if not rows:
        return []
    table = Table(rows)
    extra = data.get("pyflowops") or {}
    bandwidth = extra.get("copy_bandwidth") or {}
    png = out.parent / PLOT_NAME
    have_plot = plot(table, png)
    contended = [r for r in rows if r.contended]
    doc = [
        "## Gradient regularization",
        "",
        "Configuration: `pyflowops.gradient_regularization(flow, image, mask, operator=\"sobel\", "
        "penalty=\"charbonnier\", eps=1e-3, edge_weight=10.0, reduction=\"mean\")`, flow [4, 2, S, S] float32 "
        "(random, 2 px), image [4, 3, S, S] float32 in [0, 1], mask [4, 1, S, S] bool (90 % True). "
        "*forward*: the loss only, flow not requiring grad; *forward + backward*: the loss and `loss.backward()` "
        "to flow. Peers: the pyflowops torch reference; *kornia*: the same loss composed from "
        "`kornia.filters.spatial_gradient` (flow and image) + `abs`/`mean`/`exp`/`sqrt`/mask as a user would "
        "write it (`benchmarks/test_gradreg.py: kornia_smoothness`); *kornia + torch.compile*: that function "
        "under `torch.compile` (default mode, compiled once per case; compile time excluded, listed below). "
        "Before the first case of each size the kornia loss is asserted equal to the reference's and every "
        "kernel's (float32 tolerance; the gradient to flow too up to 512²), and the compiled loss to the eager one.",
        "",
        "**Bandwidth floor** = bytes the op must move / the device's measured copy bandwidth (a `copy_` of a "
        "large float32 tensor, best of a few, read + write counted"
        + (": " + ", ".join(f"{d} {v['bytes_per_s'] / 1e9:.1f} GB/s" for d, v in bandwidth.items())
           if bandwidth else "")
        + "). Bytes per pixel (float32, 3 image channels): forward = flow 8 + image 12 + bool mask 1 = **21 B/px**; "
        "forward + backward = the forward's 21 + the saved per-pixel weight written 4 (the backward reads it "
        "instead of image + mask, 4 < 13 B) + backward: flow read again 8 + weight read 4 + grad_flow written 8 "
        "= **45 B/px** (autograd runs two passes: the backward needs grad_loss). "
        "Each time is given as a multiple of its floor (1× = as fast as a copy of the bytes the op must touch). "
        "Peak memory: the extra memory of one call above the inputs (CUDA: max_memory_allocated; CPU: peak RSS), "
        "taken on the first call after an untimed one. Speed ratios: peer time / our time (> 1× = ours faster); "
        "memory ratios: our peak / the peer's.",
        "",
    ]
    for device, bw in bandwidth.items():
        busy = bw.get("other_cpu_load")
        if busy is not None and busy > CONTENDED:
            doc += [f"⚠ The {device} copy bandwidth was measured while other processes used {busy:.0%} of the CPU: "
                    "its floors and multiples are unreliable in this run.", ""]
    if contended:
        doc += [f"⚠ = other processes used more than {CONTENDED:.0%} of the CPU while this case ran "
                f"({len(contended)} of {sum(r.ran for r in rows)} cases); its time is inflated.", ""]
    doc += ["### Targets (gradient regularization)", "", *targets(table), ""]
    anchor_lines = anchors(table)
    if anchor_lines:
        doc += ["The issue's measured anchors (1024² batch 4, forward + backward) next to this run's:", "",
                *anchor_lines, ""]
    devices = sorted({r.device for r in rows}, key=lambda d: d != "cpu")
    for device in devices:
        for direction, title in DIRECTIONS.items():
            times = time_table(table, device, direction)
            if not times:
                continue
            doc += [f"### Gradient regularization {title} — {device}: time", "", *times, "",
                    *compile_line(table, device, direction)]
            doc += [f"### Gradient regularization {title} — {device}: peak memory", "",
                    *memory_table(table, device, direction), ""]
    skipped = [r for r in rows if not r.ran]
    if skipped:
        doc += ["### Gradient regularization: not run", ""]
        for r in sorted(skipped, key=lambda r: (r.device != "cpu", r.size, r.direction, r.variant)):
            doc.append(f"* {r.size}² batch {r.batch}, {r.direction}, {LABELS.get(r.variant, r.variant)}@{r.device}: "
                       f"**{r.skip_kind}** — {r.skip_reason}")
        doc.append("")
    if have_plot:
        doc += [f"![gradient regularization: time vs size]({png.name})", "",
                "Dashed black: the bandwidth floor of each direction; black rings: cases timed while other "
                "processes loaded the CPU.", ""]
    return doc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.report_gradreg", description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="pytest-benchmark JSON (--benchmark-json)")
    parser.add_argument("--out", type=Path, required=True, help="markdown file to write (the PNG goes next to it)")
    args = parser.parse_args(argv)
    data = json.loads(args.results.read_text())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    lines = section(data, args.out)
    if not lines:
        parser.error(f"{args.results} holds no gradreg benchmark results")
    args.out.write_text("\n".join(lines))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

