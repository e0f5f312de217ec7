"""The "Gaussian splatting" section of benchmarks/RESULTS.md (called by ``benchmarks.report``).

Reads the ``family == "splat"`` cases of ``benchmarks/test_splat.py``: the sweep against
the dense reference, the throughput table (megapixels/s and Gaussians/s), the flow case,
the issue's targets checked PASS / MISS, what did not run, and one plot
(``splat_time_vs_gaussians.png``, next to RESULTS.md).

Standalone: ``python -m benchmarks.report_splat results.json --out /tmp/splat.md``.
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

from benchmarks.report import MeasuredRow, fmt_time, save_figure  # noqa: E402

FAMILY = "splat"
PLOT_NAME = "splat_time_vs_gaussians.png"
ORDER = ("cpu", "cuda", "triton", "gsplat", "torch")
LABELS = {"cpu": "ours cpu", "cuda": "ours cuda", "triton": "ours triton", "gsplat": "gsplat",
          "torch": "dense torch reference"}
DIRECTIONS = {"fwd": "forward", "fwdbwd": "forward + backward"}
# The targets: CPU forward 512^2 x 50k C=3 >= 50x the dense reference; CPU 1024^2 x 100k image + alpha +
# depth + order-1 flow < 1 s median; GPU: at most gsplat's time (C = 3), faster than gsplat for C >= 32.
SPEEDUP_TARGET = 50.0
FLOW_TARGET_S = 1.0
# gsplat 1.5.3 on one H100, as measured for the issue (C = 3): (size, N, direction) -> seconds.
GSPLAT_ANCHORS = {(1024, 100_000, "fwd"): 0.89e-3, (1024, 100_000, "fwdbwd"): 2.46e-3,
                  (2048, 1_000_000, "fwd"): 3.48e-3, (2048, 1_000_000, "fwdbwd"): 9.6e-3}


@dataclass
class SRow(MeasuredRow):
    kind: str
    device: str
    size: int
    n: int
    channels: int
    direction: str
    variant: str
    mean: float | None = None
    median: float | None = None
    stddev: float | None = None
    rounds: int | None = None
    mpx: float | None = None
    gps: float | None = None
    other_load: float | None = None
    skip_kind: str | None = None
    skip_reason: str | None = None


def load(data: dict[str, Any]) -> list[SRow]:
    rows = []
    for bench in data.get("benchmarks", []):
        info, stats = bench.get("extra_info", {}), bench["stats"]
        if info.get("family") == FAMILY:
            rows.append(SRow(
                info["kind"], info["device"], info["image_size"], info["gaussians"], info["channels"],
                info["direction"], info["variant"], mean=stats["mean"], median=stats.get("median"),
                stddev=stats.get("stddev"), rounds=stats.get("rounds"), mpx=info.get("megapixels_per_s"),
                gps=info.get("gaussians_per_s"), other_load=info.get("other_cpu_load"),
            ))  # fmt: skip
    for skip in (data.get("pyflowops") or {}).get("skipped", []):
        if skip.get("family") == FAMILY:
            rows.append(SRow(
                skip["bench_kind"],
                skip["device"], skip["image_size"], skip["gaussians"], skip["channels"], skip["direction"],
                skip["variant"], skip_kind=skip["kind"], skip_reason=skip["reason"],
            ))  # fmt: skip
    return rows


def _get(rows: list[SRow], **key) -> SRow | None:
    for r in rows:
        if all(getattr(r, k) == v for k, v in key.items()):
            return r
    return None


def _cell(row: SRow | None) -> str:
    if row is None:
        return "—"
    if not row.ran:
        return f"not run ({row.skip_kind})"
    spread = f" ± {fmt_time(row.stddev)}" if row.stddev and (row.rounds or 0) > 1 else ""
    return f"{fmt_time(row.mean)}{spread}" + (" ⚠" if row.contended else "")


def _speedup(row: SRow | None, ref: SRow | None) -> str:
    if row is None or ref is None or not row.ran or not ref.ran:
        return ""
    return f" ({ref.mean / row.mean:,.0f}×)"


def sweep_table(rows: list[SRow], device: str) -> list[str]:
    mine = [r for r in rows if r.kind == "sweep" and r.device == device]
    variants = [v for v in ORDER if any(r.variant == v for r in mine)]
    if not mine:
        return []
    lines = ["| size | Gaussians | direction | " + " | ".join(LABELS[v] for v in variants) + " |",
             "|---|---|---|" + "---|" * len(variants)]
    for size, n in sorted({(r.size, r.n) for r in mine}):
        for direction in DIRECTIONS:
            ref = _get(mine, size=size, n=n, direction="fwd", variant="torch")
            cells = []
            for v in variants:
                row = _get(mine, size=size, n=n, direction=direction, variant=v)
                cells.append(_cell(row) + ("" if v == "torch" or direction != "fwd" else _speedup(row, ref)))
            lines.append(f"| {size}² | {n:,} | {DIRECTIONS[direction]} | " + " | ".join(cells) + " |")
    return lines


def throughput_table(rows: list[SRow], device: str) -> list[str]:
    mine = [r for r in rows if r.kind in ("throughput", "flow") and r.device == device]
    if not mine:
        return []
    lines = ["| case | size | Gaussians | C | direction | variant | time | megapixels/s | Gaussians/s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(mine, key=lambda r: (r.kind, r.size, r.channels, r.direction, ORDER.index(r.variant))):
        what = "image + alpha + depth + order-1 flow" if r.kind == "flow" else "render"
        rate = (f"{r.mpx:,.1f}", f"{r.gps / 1e6:,.2f} M") if r.ran and r.mpx else ("", "")
        lines.append(f"| {what} | {r.size}² | {r.n:,} | {r.channels} | {DIRECTIONS[r.direction]} | "
                     f"{LABELS[r.variant]} | {_cell(r)} | {rate[0]} | {rate[1]} |")  # fmt: skip
    return lines


def _status(ok: bool | None) -> str:
    return "not measured" if ok is None else ("**PASS**" if ok else "**MISS**")


def targets(rows: list[SRow]) -> list[str]:
    lines = ["| target | measured | status |", "|---|---|---|"]
    ours = _get(rows, kind="sweep", device="cpu", size=512, n=50_000, direction="fwd", variant="cpu")
    ref = _get(rows, kind="sweep", device="cpu", size=512, n=50_000, direction="fwd", variant="torch")
    if ours and ref and ours.ran and ref.ran:
        ratio = ref.mean / ours.mean
        lines.append(f"| CPU forward 512², 50k Gaussians, C=3: ≥ {SPEEDUP_TARGET:.0f}× the dense reference | "
                     f"{fmt_time(ours.mean)} vs {fmt_time(ref.mean)}: {ratio:,.0f}× | {_status(ratio >= SPEEDUP_TARGET)} |")
    else:
        lines.append(f"| CPU forward 512², 50k: ≥ {SPEEDUP_TARGET:.0f}× the dense reference | — | not measured |")
    flow = _get(rows, kind="flow", device="cpu", variant="cpu")
    if flow and flow.ran:
        med = flow.median or flow.mean
        lines.append(f"| CPU {flow.size}², {flow.n:,} Gaussians, image + alpha + depth + order-1 flow: < "
                     f"{FLOW_TARGET_S:.0f} s median | {fmt_time(med)} median | {_status(med < FLOW_TARGET_S)} |")
    else:
        lines.append("| CPU 1024², 100k, image + alpha + depth + order-1 flow: < 1 s median | — | not measured |")
    for (size, n, direction), anchor in GSPLAT_ANCHORS.items():
        ours = _get(rows, kind="throughput", device="cuda", size=size, n=n, channels=3, direction=direction,
                    variant="cuda")
        peer = _get(rows, kind="throughput", device="cuda", size=size, n=n, channels=3, direction=direction,
                    variant="gsplat")
        ok = ours.mean <= peer.mean if ours and peer and ours.ran and peer.ran else None
        measured = f"{fmt_time(ours.mean)} vs gsplat {fmt_time(peer.mean)}" if ok is not None else "no GPU run"
        lines.append(f"| GPU {size}², {n:,}, C=3, {DIRECTIONS[direction]}: ≤ gsplat (H100 anchor "
                     f"{fmt_time(anchor)}) | {measured} | {_status(ok)} |")
    for channels in (32, 64):
        ours = _get(rows, kind="throughput", device="cuda", channels=channels, direction="fwd", variant="cuda")
        peer = _get(rows, kind="throughput", device="cuda", channels=channels, direction="fwd", variant="gsplat")
        ok = ours.mean < peer.mean if ours and peer and ours.ran and peer.ran else None
        lines.append(f"| GPU C={channels}: faster than gsplat | "
                     f"{f'{fmt_time(ours.mean)} vs {fmt_time(peer.mean)}' if ok is not None else 'no GPU run'} | "
                     f"{_status(ok)} |")
    return lines


def plot(rows: list[SRow], path: Path) -> bool:
    sweep = [r for r in rows if r.kind == "sweep" and r.ran and r.direction == "fwd"]
    if not sweep:
        return False
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for (device, variant, size) in sorted({(r.device, r.variant, r.size) for r in sweep}):
        pts = sorted((r.n, r.mean) for r in sweep if (r.device, r.variant, r.size) == (device, variant, size))
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o",
                linestyle="-" if size == 512 else "--", label=f"{LABELS[variant]}@{device}, {size}²")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("Gaussians")
    ax.set_ylabel("forward time (s)")
    ax.set_title("render (projection + rasterization), C = 3")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def section(data: dict[str, Any], out: Path) -> list[str]:
    """Markdown lines of the section (empty without splat cases); writes the plot next to ``out``."""
    rows = load(data)
    if not rows:
        return []
    png = out.parent / PLOT_NAME
    have_plot = plot(rows, png)
    doc = [
        "## Gaussian splatting",
        "",
        "Scene: `benchmarks/_splat_scene.py::random_scene` — N Gaussians uniform in a box in front of the camera, "
        "random orientations, scales log-uniform in [0.004, 0.03], opacities in [0.1, 0.9], focal length = width; "
        "float32, one camera. Timed: `pyflowops.render` (projection + binning + rasterization; image, alpha, depth), "
        "forward under `no_grad`, forward + backward = `(image.sum() + alpha.sum()).backward()` to means, quats, "
        "scales, opacities and features. The dense torch reference evaluates every (pixel, Gaussian) pair; its "
        "speed-ups (in parentheses: reference time / this time) are measured in the same run. The flow case "
        "renders colours and order-1 flow features in one rasterization of 3 + 6 channels. "
        "Speed-ups are given for the forward only (the reference's backward does not fit in memory).",
        "",
        "### Targets (Gaussian splatting)",
        "",
        *targets(rows),
        "",
    ]
    devices = sorted({r.device for r in rows}, key=lambda d: d != "cpu")
    for device in devices:
        table = sweep_table(rows, device)
        if table:
            doc += [f"### Splatting against the dense reference — {device}", "", *table, ""]
        table = throughput_table(rows, device)
        if table:
            doc += [f"### Splatting throughput — {device}", "", *table, ""]
    skipped = [r for r in rows if not r.ran]
    if skipped:
        doc += ["### Gaussian splatting: not run", ""]
        for r in skipped:
            doc.append(f"* {r.kind} {r.size}², {r.n:,} Gaussians, C={r.channels}, {DIRECTIONS[r.direction]}, "
                       f"{LABELS.get(r.variant, r.variant)}@{r.device}: **{r.skip_kind}** — {r.skip_reason}")
        doc.append("")
    if have_plot:
        doc += [f"![splatting: time vs Gaussians]({png.name})", ""]
    return doc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.report_splat", description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="pytest-benchmark JSON (--benchmark-json)")
    parser.add_argument("--out", type=Path, required=True, help="markdown file to write (the PNG goes next to it)")
    args = parser.parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    lines = section(json.loads(args.results.read_text()), args.out)
    if not lines:
        parser.error(f"{args.results} holds no splat benchmark results")
    args.out.write_text("\n".join(lines))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
