"""``python -m pyflowops_models.train --config NAME --out DIR [...]`` (what torchrun launches).

Multi-process on one machine: ``torchrun --nproc_per_node K -m pyflowops_models.train --config ... --out ...``;
several machines: ``torchrun --nnodes N --nproc_per_node K --rdzv-backend c10d --rdzv-endpoint HOST:PORT
-m pyflowops_models.train ...`` on each (the run directory must be on a shared file system for --resume).
"""

from __future__ import annotations

import argparse
import json
import sys

__all__ = ["add_arguments", "run", "main"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The training arguments (shared with ``pyflowops train``)."""
    from .config import config_names

    p.add_argument("--config", required=True,
                   help=f"a bundled config ({', '.join(config_names())}) or a YAML file")
    p.add_argument("--out", required=True, help="the run directory (checkpoints/, tb/, config.yaml, metrics.jsonl)")
    p.add_argument("--steps", type=int, default=None, help="override optim.steps")
    p.add_argument("--checkpoint-every", type=int, default=None, help="override train.checkpoint_every")
    p.add_argument("--resume", action="store_true", help="continue from the newest readable checkpoint in --out")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config field, e.g. --set optim.lr=1e-4 --set data.crop=[256,256] (repeatable)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Run training for parsed arguments; prints the final metrics as JSON (rank 0). Returns the exit status."""
    import os

    from .config import load_config
    from .trainer import train

    overrides = list(args.overrides)
    if args.steps is not None:
        overrides.append(f"optim.steps={args.steps}")
    if args.checkpoint_every is not None:
        overrides.append(f"train.checkpoint_every={args.checkpoint_every}")
    try:
        cfg = load_config(args.config, overrides)
    except (FileNotFoundError, ValueError) as err:
        print(f"pyflowops train: {err}", file=sys.stderr)
        return 2
    result = train(cfg, args.out, resume=args.resume, progress=not args.quiet)
    if int(os.environ.get("RANK", "0")) == 0:
        result.pop("losses", None)
        print(json.dumps(result, indent=2, default=str))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pyflowops_models.train",
                                     description="Train a pyflowops_models network from a YAML config.")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
