"""The ``pyflowops`` command: ``pyflowops info|synth|stats|train|eval|infer|mer|bench``.

``info`` (build, backends, models), ``synth`` (synthetic facial flow data; ``--mode micro``:
micro-expression clips, :mod:`.data.micro`), ``stats`` (a data set's flow statistics), ``train``
(:mod:`.train`), ``eval`` (metrics and classical baselines, :mod:`.cli_eval`), ``infer`` (flow for
images or a video, :mod:`.cli_infer`), ``mer`` (micro-expression recognition per flow method,
:mod:`.cli_mer`) and ``bench`` (the benchmarks and RESULTS.md, :mod:`.cli_bench`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

__all__ = ["main"]



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


def _synth(args: argparse.Namespace) -> int:
    if args.mode == "micro":
        return _synth_micro(args)
    if args.subjects is not None:
        args.synth_parser.error("--subjects is for --mode micro (macro sequences each show their own person)")
    from .data.sequence import MOTION_SCALES
    from .data.writer import synthesize

    split = args.split or "train"
    report = synthesize(args.out, args.sequences, size=512 if args.size is None else args.size,
                        workers=args.workers, seed=args.seed, split=split, first_index=args.first_index,
                        backgrounds=args.backgrounds, textures=args.textures, progress=not args.quiet,
                        motion_scales=args.motion_scales or MOTION_SCALES)
    print(f"pyflowops synth: {report.written_sequences} sequences ({report.written_pairs} pairs) written to "
          f"{args.out} in {report.seconds:.1f} s ({report.pairs_per_minute:.1f} pairs/min); "
          f"{report.skipped_sequences} already complete, skipped")
    if args.report:
        return _write_stats(args.out, Path(args.out) / "report", split, samples=8, quiet=args.quiet)
    return 0


def _synth_micro(args: argparse.Namespace) -> int:
    macro_only = ("textures", "motion_scales", "split", "report")
    given = [f"--{name.replace('_', '-')}" for name in macro_only if getattr(args, name) not in (None, False)]
    if given:
        args.synth_parser.error(f"{', '.join(given)}: only for --mode macro (micro clips have no textures, "
                                "motion scales, splits or stats report)")
    from .data.micro import synthesize_micro

    subjects = 12 if args.subjects is None else args.subjects
    try:
        report = synthesize_micro(args.out, args.sequences, subjects, size=256 if args.size is None else args.size,
                                  workers=args.workers, seed=args.seed, first_index=args.first_index,
                                  backgrounds=args.backgrounds, progress=not args.quiet)
    except ValueError as err:
        args.synth_parser.error(str(err))
    classes = json.loads((Path(args.out) / "meta.json").read_text())["classes"]
    per_clip = report.seconds / report.written_sequences if report.written_sequences else float("nan")
    print(f"pyflowops synth: {report.written_sequences} micro-expression clips ({report.written_pairs} frames) of "
          f"{subjects} subjects written to {args.out} in {report.seconds:.1f} s ({per_clip:.2f} s/clip); "
          f"{report.skipped_sequences} already complete, skipped; the set holds "
          + ", ".join(f"{name} {n}" for name, n in classes.items()))
    return 0


def _write_stats(data: str, out: Path, split: str, samples: int, quiet: bool) -> int:
    from .data.stats import write_report

    try:
        stats = write_report(data, out, split=split, samples=samples, progress=not quiet)
    except ValueError as err:
        print(f"pyflowops stats: {err}", file=sys.stderr)
        return 2
    facial = stats["all"].get("facial", {})
    print(f"pyflowops stats: {stats['all']['pairs']} pairs, facial flow in the mask mean "
          f"{facial.get('mean', float('nan')):.2f} px, p99 {facial.get('p99', float('nan')):.2f} px; "
          f"wrote {out}/flow_histograms.png, sample_panels.png, stats.json")
    return 0


def _stats(args: argparse.Namespace) -> int:
    return _write_stats(args.data, Path(args.out), args.split, args.samples, args.quiet)


def _add_stats(sub) -> None:
    p = sub.add_parser(
        "stats",
        help="flow statistics and sample pictures of a data set",
        description="Flow-magnitude histograms of facial, head and expression flow per motion scale, a grid of "
        "sample panels and the numbers (stats.json), for any FacialFlowNet-layout data set (ours or the real one).",
    )
    p.add_argument("--data", required=True, help="the data set root (holding image/, flow/, mask/)")
    p.add_argument("--out", required=True, help="folder for flow_histograms.png, sample_panels.png, stats.json")
    p.add_argument("--split", default="train", help="the split folder to read (default train)")
    p.add_argument("--samples", type=int, default=8, help="pairs shown in sample_panels.png (default 8)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=_stats)


def _lengths(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"lengths must be >= 1, got {text!r}")
    return values


def _add_synth(sub) -> None:
    p = sub.add_parser(
        "synth",
        help="generate synthetic facial flow data (Gaussian-splatting heads)",
        description="--mode macro (default): render FacialFlowNet-style sequences of procedural Gaussian heads "
        "going from a neutral face to an emotion and a head pose, with exact facial and head flow "
        "(expression = facial - head), masks, face-part labels, depth and occlusion, in the FacialFlowNet folder "
        "layout. --mode micro: micro-expression clips for recognition (MEGC 2019 classes negative, positive, "
        "surprise; AU intensity 5-20% of the preset; 7-13 frames; a small head drift all the time) of --subjects "
        "people, with the onset -> apex facial and head flow, in the pyflowops-micro/1 layout (labels.csv, "
        "<subject>/<sequence>/). Deterministic: (seed, sequence index) fixes a sequence. Resumable: complete "
        "sequences are skipped.",
    )
    p.add_argument("--mode", choices=("macro", "micro"), default="macro",
                   help="macro: FacialFlowNet-style sequences (default); micro: micro-expression clips")
    p.add_argument("--out", required=True, help="dataset root folder (created; an existing one is resumed)")
    p.add_argument("--sequences", type=int, required=True,
                   help="number of sequences to make; macro: each has 5, 10, 15 or 20 pairs (FacialFlowNet's motion "
                   "scales); micro: each is one clip of 7-13 frames")
    p.add_argument("--subjects", type=int, default=None,
                   help="micro only: the number of people; sequence i shows subject i %% SUBJECTS (default 12); "
                   "keep it the same in every run into one --out")
    p.add_argument("--size", type=int, default=None,
                   help="image width = height in pixels (default 512 for macro, 256 for micro)")
    p.add_argument("--workers", type=int, default=2, help="processes rendering in parallel (default 2)")
    p.add_argument("--seed", type=int, default=0,
                   help="the data set's seed; the same seed and indices give byte-identical files (default 0)")
    p.add_argument("--first-index", type=int, default=0,
                   help="index of the first sequence: give separate runs or machines disjoint ranges "
                   "(e.g. 0 and 1000 with --sequences 1000) to make disjoint shards of one set (default 0)")
    p.add_argument("--split", choices=("train", "val", "test"), default=None,
                   help="macro only: the split folder written (default train)")
    p.add_argument("--backgrounds", default=None,
                   help="folder of background images (default: scikit-image's bundled textures)")
    p.add_argument("--textures", default=None,
                   help="macro only: folder of frontal face photos projected onto the heads "
                   "(default: procedural skin)")
    p.add_argument("--motion-scales", type=_lengths, default=None,
                   help="macro only: comma-separated sequence lengths n to draw from (default 5,10,15,20 as "
                   "FacialFlowNet: a pair moves about 1/n of the way to the target)")
    p.add_argument("--report", action="store_true",
                   help="macro only: also write flow statistics and sample pictures into OUT/report "
                   "(see `pyflowops stats`)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=_synth, synth_parser=p)


def _add_train(sub) -> None:
    from .train.__main__ import add_arguments, run

    p = sub.add_parser(
        "train",
        help="train DecFlow / SRFlowNet / GMA / RAFT from a YAML config",
        description="Train a model from a bundled config (models/configs/NAME.yaml) or a YAML file: AdamW + "
        "OneCycleLR, mixed precision, validation, TensorBoard, resumable atomic checkpoints. The same arguments "
        "as `python -m pyflowops_models.train`, which torchrun launches for several processes or machines.",
    )
    add_arguments(p)
    p.set_defaults(run=run)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pyflowops", description="Facial optical flow: kernels, models, data.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="build, backends and models").set_defaults(run=_info)
    _add_synth(sub)
    _add_stats(sub)
    _add_train(sub)
    from . import cli_bench, cli_eval, cli_infer, cli_mer

    cli_eval.add_parser(sub)
    cli_infer.add_parser(sub)
    cli_mer.add_parser(sub)
    cli_bench.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``pyflowops`` console script; returns the exit status."""
    args = _parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
