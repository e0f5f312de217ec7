"""Correlation demo: speed and peak memory of RAFT's two correlation paths, reference vs kernels.

``python -m benchmarks.demo`` (``make demo``) times, at a few image sizes (batch 1,
features [1, 256, H/8, W/8], 4 levels, radius 4):

* ``CorrBlock``: the all-pairs pyramid + 12 lookups, with the torch reference
  (RAFT's grid_sample code) and with the best compiled backend;
* ``AlternateCorrBlock``: the on-the-fly lookup (no all-pairs volume), 12 lookups;

and checks at the smallest size that both lookups agree with the reference.
Takes about a minute on a 2-core CPU. The full sweep is ``make bench``.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

import pyflowops
from benchmarks import _measure as m
from pyflowops.nn import AlternateCorrBlock, CorrBlock

SIZES = (256, 512, 1024)


def best_backend(device: str) -> str | None:
    """The compiled backend ``auto`` would pick for tensors on ``device`` (None: only the reference)."""
    order = ("cuda", "triton") if device == "cuda" else ("cpu",)
    available = pyflowops.available_backends()
    return next((b for b in order if b in available), None)


def _run_block(block_cls, fmap1, fmap2, coords_seq, backend: str):
    with torch.no_grad():
        block = block_cls(fmap1, fmap2, m.NUM_LEVELS, m.RADIUS, backend=backend)
        out = None
        for coords in coords_seq:
            out = block(coords)
    return out


def _fmt_ratio(ref: float | None, value: float | None) -> str:
    if ref is None or value is None or value == 0:
        return "—"
    return f"{ref / value:.2f}x"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES), help="image sides (default 256 512 1024)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=("cpu", "cuda"))
    args = parser.parse_args(argv)
    device = args.device
    kernel = best_backend(device)
    info = m.machine_info()
    start = time.perf_counter()
    contention = m.CpuContention()
    contention.start()

    print("pyflowops correlation demo")
    print(f"  machine : {info['cpu_model']}, {info['cpu_cores']} cores, RAM {info['ram_bytes'] / m.GIB:.1f} GiB"
          + (f", GPU {info['gpu']}" if info["gpu"] else ""))
    print(f"  torch {info['torch_version']}, pyflowops {info['pyflowops_version']}, "
          f"backends: {', '.join(info['available_backends'])}")
    if kernel is None:
        print(f"  NOTE: the compiled kernels are not built ({info['build_info'].get('error', 'no kernel backend for ')}"
              f"{'' if 'error' in info['build_info'] else device}).")
        print("        Showing the torch reference only; run `make build` "
              "(or `pip install --no-build-isolation -e .`).")
    print(f"  setup   : batch 1, features [1, {m.FEATURE_DIM}, H/8, W/8], {m.NUM_LEVELS} levels, radius {m.RADIUS}, "
          f"{m.ITERATIONS} lookups per image pair (RAFT inference), device {device}")
    print()

    # One untimed call of each implementation on a small input: first-call costs (thread pools,
    # dispatcher caches) are not what the table is about.
    warm1, warm2 = m.make_fmaps(128, 1, device=device)
    warm_coords = [m.make_coords(1, 16, 16, device=device)]
    for backend in ["torch"] + ([kernel] if kernel else []):
        for block_cls in (CorrBlock, AlternateCorrBlock):
            _run_block(block_cls, warm1, warm2, warm_coords, backend)

    rows = []  # (size, label, seconds, peak bytes, ref seconds, ref peak)
    check = None
    for index, size in enumerate(args.sizes):
        fmap1, fmap2 = m.make_fmaps(size, 1, device=device)
        coords_seq = m.coords_sequence(m.make_coords(1, size // m.STRIDE, size // m.STRIDE, device=device))
        plan = [("CorrBlock (all-pairs)", CorrBlock, "torch")]
        if kernel is not None:
            plan += [
                ("CorrBlock (all-pairs)", CorrBlock, kernel),
                ("AlternateCorrBlock (on-the-fly)", AlternateCorrBlock, kernel),
            ]
        elif index == 0:  # the torch on-the-fly reference is slow (seconds per lookup): smallest size only
            plan += [("AlternateCorrBlock (on-the-fly)", AlternateCorrBlock, "torch")]
        outs = {}
        ref_time = ref_peak = None
        for label, block_cls, backend in plan:
            fits, estimate, budget = m.fits(
                m.Case(size, 1, backend, device, "allpairs" if block_cls is CorrBlock else "onthefly"), "raft_inference"
            )
            name = f"{label} [{backend}]"
            if not fits:
                print(f"  {size:>5}²  {name:<42} skipped: needs ~{m.gib(estimate):.1f} GiB > budget "
                      f"{m.gib(budget):.1f} GiB", flush=True)
                rows.append((size, name, None, None, ref_time, ref_peak))
                continue
            def run(block_cls=block_cls, backend=backend):
                return _run_block(block_cls, fmap1, fmap2, coords_seq, backend)

            if device == "cpu":
                m.wait_for_idle(max_wait_s=5.0)  # a busy neighbour skews one-shot timings
            out, seconds, peak = m.measure(run, device)
            if seconds < 0.3:  # cheap rows: best of 3
                seconds = min([seconds] + [m.measure(run, device)[1] for _ in range(2)])
            if backend == "torch" and block_cls is CorrBlock:
                ref_time, ref_peak = seconds, peak
            if index == 0:
                outs[name] = out
            else:
                del out
            peak_text = f"{peak / m.MIB:8.1f} MiB" if peak is not None else "n/a"
            print(f"  {size:>5}²  {name:<42} {seconds:8.3f} s  {peak_text}", flush=True)
            rows.append((size, name, seconds, peak, ref_time, ref_peak))
        if index == 0 and len(outs) > 1:
            ref_name, *others = outs
            check = [(other, (outs[other] - outs[ref_name]).abs().max().item()) for other in others]
            check_ref = ref_name
        del fmap1, fmap2, outs

    print()
    header = (f"{'image':>7}  {'implementation':<42} {'time':>10} {'peak memory':>12} "
              f"{'speed vs ref':>13} {'memory vs ref':>14}")
    print(header)
    print("-" * len(header))
    for size, name, seconds, peak, ref_time, ref_peak in rows:
        if seconds is None:
            print(f"{size:>6}²  {name:<42} {'does not fit':>10}")
            continue
        mem = "—" if peak is None or ref_peak is None or not peak else (
            f"1/{ref_peak / peak:.0f}" if peak < ref_peak / 2 else f"{peak / ref_peak:.2f}x")
        peak_text = f"{peak / m.MIB:.1f} MiB" if peak is not None else "n/a"
        is_ref = name.startswith("CorrBlock") and name.endswith("[torch]")
        print(f"{size:>6}²  {name:<42} {seconds:>8.3f} s {peak_text:>12} "
              f"{'reference' if is_ref else _fmt_ratio(ref_time, seconds):>13} {'reference' if is_ref else mem:>14}")
    print()
    print("speed vs ref: reference time / this time (>1 = faster); memory vs ref: this peak / reference peak "
          "(reference = CorrBlock with the torch backend, i.e. RAFT's code).")
    if check:
        worst = max(diff for _, diff in check)
        status = "OK" if worst < 1e-3 else "MISMATCH"
        details = ", ".join(f"{name}: {diff:.2e}" for name, diff in check)
        print(f"check ({args.sizes[0]}² image, last of {m.ITERATIONS} lookups vs {check_ref}): max |diff| {details}"
              f"  -> {status}")
    busy = contention.stop() if device == "cpu" else None
    if busy is not None and busy > 0.25:
        print(f"note: other processes used {busy:.0%} of the CPU during the demo; its times are inflated.")
    print(f"done in {time.perf_counter() - start:.0f} s")
    return 0 if not check or max(d for _, d in check) < 1e-3 else 1


if __name__ == "__main__":
    sys.exit(main())
