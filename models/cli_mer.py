"""``pyflowops mer``: micro-expression recognition scores of flow methods (:mod:`pyflowops_models.mer`).

Wired into :mod:`pyflowops_models.cli` with :func:`add_parser`. Problems with the arguments, the
data or a checkpoint print one line ``pyflowops mer: ...`` to stderr and exit 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .cli_infer import check_device, positive_int

__all__ = ["add_parser"]

_PROG = "pyflowops mer"


def _run(args: argparse.Namespace) -> int:
    def fail(message: str) -> int:
        print(f"{_PROG}: {message}", file=sys.stderr)
        return 2

    from .infer import InputError
    from .mer.datasets import load_mer_dataset
    from .mer.flows import parse_flow_method
    from .mer.pipeline import markdown, run_mer
    from .mer.protocol import TrainOptions

    try:
        device = check_device(args.device)
        samples = load_mer_dataset(args.data, kind=args.kind, labels=args.labels)
        if args.limit:
            samples = samples[: args.limit]
        methods = [parse_flow_method(spec, iters=args.iters, device=device) for spec in args.flow]
    except (ValueError, OSError) as err:
        return fail(str(err))
    for m in methods:
        print(f"{_PROG}: {m.name}: {m.description}", file=sys.stderr)
    options = TrainOptions(epochs=args.epochs, seed=args.seed, device=device)
    try:
        result = run_mer(samples, methods, args.out, size=args.size, options=options, progress=not args.quiet)
    except (InputError, ValueError) as err:  # an unreadable frame, a ground-truth row on real data
        return fail(str(err))
    print(markdown(result), end="")
    print(f"{_PROG}: wrote {Path(args.out) / 'results.md'}, results.json, confusion_<method>.png, "
          "representation_<method>.png", file=sys.stderr)
    return 0


def add_parser(subparsers) -> None:
    """Register the ``mer`` subcommand on an ``argparse`` subparsers object (``set_defaults(run=...)``)."""
    from .mer.protocol import TrainOptions

    p = subparsers.add_parser(
        "mer",
        help="micro-expression recognition (UF1/UAR, leave-one-subject-out) from flow methods",
        description="For every clip: the onset -> apex flow of each method, cropped to the face, as horizontal "
        "and vertical flow plus optical strain; a small CNN trained leave-one-subject-out on the three classes "
        "of the MEGC 2019 composite benchmark (negative, positive, surprise); UF1 and UAR per flow method with "
        "the same recogniser, splits and seeds. Data: `pyflowops synth --mode micro` output, or CASME II, SAMM "
        "or SMIC in their release layouts.",
    )
    p.add_argument("--flow", action="append", required=True, metavar="METHOD",
                   help="a flow method; repeat for several rows: farneback, dis, tvl1 (classical, facial flow), "
                   "decflow:CKPT (DecFlow's expression flow), decflow-facial:CKPT, decflow-head:CKPT, model:CKPT "
                   "(any network's facial flow), gt-expression, gt-facial (synthetic ground truth: the ceiling)")
    p.add_argument("--data", required=True, metavar="DIR",
                   help="a micro-expression set: pyflowops synth --mode micro output, CASME II (sub01/EP02_01f/...), "
                   "SAMM (006/006_1_2/...) or SMIC (HS/s1/micro/negative/...)")
    p.add_argument("--kind", default="auto", choices=("auto", "synthetic", "casme2", "samm", "smic"),
                   help="the layout of --data (default: detected)")
    p.add_argument("--labels", default=None, metavar="FILE",
                   help="the label sheet (.xlsx or .csv) of CASME II or SAMM when it is not in DIR or its parent")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="folder for results.md, results.json, the confusion matrices and cache/ (a rerun reuses it)")
    p.add_argument("--size", type=positive_int, default=48, help="side of the flow/strain maps (default 48)")
    p.add_argument("--epochs", type=positive_int, default=TrainOptions.epochs,
                   help=f"recogniser training epochs per fold (default {TrainOptions.epochs})")
    p.add_argument("--seed", type=int, default=0, help="seed of the recogniser (fold k uses seed + k; default 0)")
    p.add_argument("--iters", type=positive_int, default=12, help="refinement iterations of networks (default 12)")
    p.add_argument("--limit", type=positive_int, default=None, metavar="N", help="use only the first N clips")
    p.add_argument("--device", default="cpu", help="device of the networks: cpu, cuda, cuda:1 (default cpu)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(run=_run)
