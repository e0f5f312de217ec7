"""The ``pyflowops`` command: ``pyflowops info|synth|train|eval|infer|bench``.

``info`` works now (build, backends, models). The others are the jobs of the
data, training and evaluation issues; until they land each says so and exits 2.
"""

from __future__ import annotations

import argparse
import json
import sys

__all__ = ["main"]

# subcommand -> what it will do, and the issue that builds it
_PLANNED = {
    "synth": ("generate synthetic facial flow data (Gaussian-splatting heads)", 8),
    "train": ("train DecFlow / SRFlowNet", 10),
    "eval": ("evaluate a checkpoint (EPE, 1/3/5 px)", 11),
    "infer": ("flow for an image pair or a video", 11),
    "bench": ("model and kernel benchmarks", 11),
}


def _info(_: argparse.Namespace) -> int:
    import pyflowops

    from .registry import MODEL_NAMES, SIZES

    print(json.dumps({
        "pyflowops": pyflowops.__version__,
        "backends": pyflowops.available_backends(),
        "build": pyflowops.build_info(),
        "models": list(MODEL_NAMES),
        "sizes": list(SIZES),
    }, indent=2, default=str))
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pyflowops", description="Facial optical flow: kernels, models, data.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="build, backends and models").set_defaults(run=_info)
    for name, (what, issue) in _PLANNED.items():
        def planned(_: argparse.Namespace, name=name, issue=issue) -> int:
            print(f"pyflowops {name}: not available in this version yet (planned: issue {issue})", file=sys.stderr)
            return 2

        sub.add_parser(name, help=f"{what} (not yet available)").set_defaults(run=planned)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``pyflowops`` console script; returns the exit status."""
    args = _parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
