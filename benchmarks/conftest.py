"""pytest glue for the benchmarks: output folder, skipped cases and machine info in the JSON."""

from __future__ import annotations

import os
import time
from pathlib import Path

from benchmarks import _measure

RAW_DIR = Path(__file__).resolve().parent / ".raw"
RAW_DIR.mkdir(exist_ok=True)  # `make bench` writes benchmarks/.raw/results.json; pytest-benchmark won't mkdir

_START = time.time()
_LOAD_AT_START = os.getloadavg()


def pytest_configure(config):
    global _START, _LOAD_AT_START
    _START = time.time()
    _LOAD_AT_START = os.getloadavg()  # other work on the machine skews timings: the report says so
    path = config.getoption("benchmark_json", default=None)
    path = getattr(path, "name", path)  # pytest-benchmark < 5.3 gives an open file, 5.3 its path
    if isinstance(path, (str, os.PathLike)):  # any other --benchmark-json folder too
        Path(path).parent.mkdir(parents=True, exist_ok=True)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """Say (even with -q) how long the sweep took and whether other processes skewed it."""
    ran = _measure.CONTENTION
    if not ran:
        return
    busy = [name for name, load in ran if load is not None and load > _measure.CONTENDED]
    terminalreporter.write_line(
        f"pyflowops benchmarks: {len(ran)} cases in {(time.time() - _START) / 60:.1f} min; "
        + (
            f"{len(busy)} ran while other processes used >{_measure.CONTENDED:.0%} of the CPU "
            "(their times are inflated; RESULTS.md marks them)"
            if busy
            else "the machine was otherwise idle"
        )
    )


def pytest_benchmark_update_json(config, benchmarks, output_json):
    output_json["pyflowops"] = {
        "machine": _measure.machine_info(),
        "skipped": list(_measure.SKIPPED),
        "quick": _measure.quick_mode(),
        "full": _measure.full_mode(),
        "memory_budget_bytes": {
            t.device: _measure.memory_budget_bytes(t.device) for t in _measure.bench_targets()
        },
        "ram_bytes": _measure.total_memory_bytes("cpu"),
        "copy_bandwidth": dict(_measure.BANDWIDTH),  # device -> copy_ bandwidth (test_gradreg's floors)
        "session_wall_s": time.time() - _START,
        "load_average_start": list(_LOAD_AT_START),
        "load_average_end": list(os.getloadavg()),
    }
