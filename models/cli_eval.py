"""``pyflowops eval``: EPE tables of flow networks and classical baselines on the same pairs.

Wired into :mod:`pyflowops_models.cli` with :func:`add_parser`. Problems with the arguments, the
data or a checkpoint print one line ``pyflowops eval: ...`` to stderr and exit 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .cli_infer import check_device, positive_int

__all__ = ["add_parser"]

_PROG = "pyflowops eval"


def _baselines(text: str) -> list[str]:
    from .baselines import BASELINES

    names = [n.strip().lower() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in BASELINES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown baseline(s) {unknown or text!r}; choose from {','.join(BASELINES)}")
    return names


def _unique(name: str, taken: dict) -> str:
    """``name``, or ``name-2``, ``name-3``, ... when a method of that name is already in the table."""
    candidate, k = name, 2
    while candidate in taken:
        candidate, k = f"{name}-{k}", k + 1
    return candidate


def _run(args: argparse.Namespace) -> int:
    def fail(message: str) -> int:
        print(f"{_PROG}: {message}", file=sys.stderr)
        return 2

    if not args.model and not args.baselines:
        return fail("nothing to evaluate: give --model CKPT and/or --baselines zero,farneback,dis,tvl1")
    from .baselines import BASELINES
    from .cli_infer import load_model
    from .evaluate import evaluate, load_pairs, markdown

    try:
        device = check_device(args.device)
        pairs = load_pairs(args.data, split=args.split, pairs=args.pairs, size=args.size, seed=args.seed,
                           first_index=args.first_index)
    except ValueError as err:
        return fail(str(err))
    methods: dict = {}
    for spec in args.model or []:
        try:
            model, what = load_model(spec)
        except ValueError as err:
            return fail(str(err))
        print(f"{_PROG}: {what}", file=sys.stderr)
        methods[_unique(Path(spec).stem if Path(spec).suffix else Path(spec).name, methods)] = model
    for name in args.baselines or []:
        methods[_unique(name, methods)] = BASELINES[name]
    print(f"{_PROG}: {', '.join(methods)} on {pairs.description}", file=sys.stderr)
    try:
        result = evaluate(methods, pairs, iters=args.iters, device=device, worst=args.worst, out_dir=args.out,
                          progress=not args.quiet)
    except ValueError as err:  # a broken pair (sizes that disagree, an unreadable file)
        return fail(str(err))
    print(markdown(result), end="")
    if args.out:
        print(f"{_PROG}: wrote {Path(args.out) / 'results.md'}, results.json and the worst-pair panels",
              file=sys.stderr)
    return 0


def add_parser(subparsers) -> None:
    """Register the ``eval`` subcommand on an ``argparse`` subparsers object (``set_defaults(run=...)``)."""
    p = subparsers.add_parser(
        "eval",
        help="evaluate checkpoints and classical baselines (EPE, 1/3/5 px, masked, per motion scale)",
        description="Run flow networks and classical baselines on the same pairs and print one markdown table: "
        "facial flow EPE and 1/3/5 px accuracy over all pixels, masked EPE over the moving-region mask, the "
        "official FacialFlowNet number (EPE summed over all pixels / mask area, labelled official-style), head "
        "and expression EPE for DecFlow, EPE at point tracks when given, and masked EPE per motion scale "
        "(FacialFlowNet Table 2: sequences of 20, 15, 10, 5 pairs, and all).",
    )
    p.add_argument("--model", action="append", metavar="CKPT",
                   help="a checkpoint file or run directory (read with pyflowops_models.load); repeat for several "
                   "models. A name raft|gma|decflow|srflownet[:small] gives that network with random weights")
    p.add_argument("--baselines", type=_baselines, default=None, metavar="LIST",
                   help="comma-separated classical methods on the same pairs: zero (no motion), farneback (OpenCV), "
                   "dis (OpenCV DIS medium), tvl1 (scikit-image TV-L1)")
    p.add_argument("--data", required=True, metavar="DIR|synthetic",
                   help="a FacialFlowNet-layout data set (pyflowops synth output or the real download), a folder of "
                   "<name>_1.png, <name>_2.png, <name>.flo (optional <name>_mask.png, <name>_points.txt), or "
                   "'synthetic' for held-out pairs rendered on the fly")
    p.add_argument("--split", default="test", help="split folder of a FacialFlowNet-layout set (default test)")
    p.add_argument("--pairs", type=positive_int, default=None, metavar="N",
                   help="evaluate N pairs spread evenly over the set (default: all; synthetic: 32)")
    p.add_argument("--size", type=positive_int, default=256, help="image side of synthetic pairs (default 256)")
    p.add_argument("--seed", type=int, default=0, help="data set seed of synthetic pairs (default 0)")
    p.add_argument("--first-index", type=int, default=1_000_000,
                   help="first sequence index of synthetic pairs; the default 1000000 keeps them apart from "
                   "training sequences")
    p.add_argument("--iters", type=positive_int, default=12, help="refinement iterations of the networks (default 12)")
    p.add_argument("--worst", type=int, default=4, metavar="K",
                   help="write panels of the K worst pairs per method into --out (default 4; 0: none)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="folder for results.json, results.md and worst_<method>_<k>.png (default: print only)")
    p.add_argument("--device", default="cpu", help="device of the networks: cpu, cuda, cuda:1 (default cpu)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=_run)
