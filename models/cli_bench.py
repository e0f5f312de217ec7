"""``pyflowops bench``: run the kernel and model benchmarks (``benchmarks/``) and write ``RESULTS.md`` with plots.

The suites live in the source checkout's ``benchmarks/`` folder (pytest-benchmark files, not an
installed package): ``pyflowops bench`` finds it next to the installed ``pyflowops`` (an editable
install, ``pip install -e .``) or at ``--repo``, runs the chosen suites with pytest into one JSON
file per suite under ``benchmarks/.raw/``, then ``benchmarks.report`` merges every JSON there into
``RESULTS.md`` and its PNG plots. Suites: ``corr``, ``gradreg``, ``splat`` (kernels), ``models``
(networks on our ops vs the reference ops), ``train`` (a training recipe's steps/s), ``synth``
(synthetic data throughput). ``--quick`` sets ``PYFLOWOPS_BENCH_QUICK=1`` (the reduced sweep).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

__all__ = ["SUITES", "find_repo", "add_parser"]

_PROG = "pyflowops bench"
SUITES = ("corr", "corr_gpu", "gradreg", "splat", "models", "train", "synth")  # benchmarks/test_<suite>.py


def find_repo(explicit: str | None = None) -> Path:
    """The source checkout holding ``benchmarks/test_*.py``.

    Raises:
        ValueError: not found (the message says how to get one).
    """
    import pyflowops

    candidates = [Path(explicit)] if explicit else [Path(pyflowops.__file__).resolve().parent.parent, Path.cwd()]
    for root in candidates:
        if (root / "benchmarks" / "report.py").is_file() and (root / "benchmarks" / "test_corr.py").is_file():
            return root
    where = explicit or " or ".join(str(c) for c in candidates)
    raise ValueError(f"no benchmarks/ folder at {where}: the benchmarks ship with the source checkout "
                     "(git clone, then `pip install -e .` or pass --repo PATH)")


def _suites(text: str) -> list[str]:
    names = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in names if s not in SUITES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown suite(s) {', '.join(unknown) or '(none given)'}; "
                                         f"choose from {', '.join(SUITES)}")
    return names


def _run(args: argparse.Namespace) -> int:
    try:
        repo = find_repo(args.repo)
    except ValueError as err:
        print(f"{_PROG}: {err}", file=sys.stderr)
        return 2
    env = dict(os.environ)
    if args.quick:
        env["PYFLOWOPS_BENCH_QUICK"] = "1"
    raw = repo / "benchmarks" / ".raw"
    raw.mkdir(parents=True, exist_ok=True)
    failed = []
    for suite in args.suites:
        print(f"{_PROG}: {suite} ...", file=sys.stderr, flush=True)
        cmd = [sys.executable, "-m", "pytest", f"benchmarks/test_{suite}.py", "-q", "-p", "no:cacheprovider",
               f"--benchmark-json={raw / f'{suite}.json'}"]
        if subprocess.run(cmd, cwd=repo, env=env).returncode != 0:
            failed.append(suite)
    jsons = [str(p) for p in sorted(raw.glob("*.json"), key=lambda p: p.stat().st_mtime)]  # newest wins
    out = Path(args.out) if args.out else repo / "benchmarks" / "RESULTS.md"
    report = subprocess.run([sys.executable, "-m", "benchmarks.report", *jsons, "--out", str(out)], cwd=repo, env=env)
    if report.returncode != 0:
        print(f"{_PROG}: the report failed (see above)", file=sys.stderr)
        return 1
    print(f"{_PROG}: wrote {out} from {len(jsons)} result file(s) in {raw}"
          + (f"; these suites had failures: {', '.join(failed)}" if failed else ""), file=sys.stderr)
    return 1 if failed else 0


def add_parser(subparsers) -> None:
    """Register ``bench`` on the ``pyflowops`` subparsers."""
    p = subparsers.add_parser(
        "bench",
        help="kernel and model benchmarks -> benchmarks/RESULTS.md with plots",
        description=__doc__.split("\n\n")[0] + " Needs the source checkout (benchmarks/ is not installed).",
    )
    p.add_argument("--suites", type=_suites, default=list(SUITES), metavar="LIST",
                   help=f"comma-separated suites to run (default all: {','.join(SUITES)}); the report also "
                   "includes earlier results of the others from benchmarks/.raw/")
    p.add_argument("--quick", action="store_true", help="the reduced sweep (PYFLOWOPS_BENCH_QUICK=1)")
    p.add_argument("--repo", default=None, help="the source checkout (default: found from the installed pyflowops)")
    p.add_argument("--out", default=None, help="the markdown file (default benchmarks/RESULTS.md)")
    p.set_defaults(run=_run)
