"""``pyflowops infer``: flow for an image pair or a video, as .flo files, colour PNGs and panels.

Wired into :mod:`pyflowops_models.cli` with :func:`add_parser`. Every problem with the input
(a missing or unreadable file, two sizes, an image below 8x8, a missing video, a bad model
argument) prints one line ``pyflowops infer: ...`` to stderr and exits 2, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch.nn as nn

__all__ = ["add_parser", "check_device", "load_model", "positive_int"]

_PROG = "pyflowops infer"


def positive_int(text: str) -> int:
    """argparse type: an int >= 1 (shared by the eval and infer commands)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _model_name(spec: str) -> tuple[str, str] | None:
    """(name, size) when ``spec`` is ``raft|gma|decflow|srflownet[:small|:full]`` and not an existing file."""
    from .registry import MODEL_NAMES, SIZES

    if os.path.exists(spec):  # a checkpoint that happens to be called "raft" wins
        return None
    name, _, size = spec.lower().partition(":")
    if name in MODEL_NAMES and (size or "full") in SIZES:
        return name, size or "full"
    return None


def load_model(spec: str) -> tuple[nn.Module, str]:
    """The network named by ``--model``: (model, one line saying what it is).

    ``spec`` is a checkpoint file or run directory (read by ``pyflowops_models.load``), or a
    model name ``raft|gma|decflow|srflownet`` with an optional ``:small`` / ``:full``, which
    gives that network with random weights (for trying the pipeline).

    Raises:
        ValueError: the checkpoint is missing or cannot be read.
    """
    named = _model_name(spec)
    if named is not None:
        import warnings

        from .registry import create

        name, size = named
        with warnings.catch_warnings():  # DecFlow's "random semantic encoder" warning: the line below says it
            warnings.simplefilter("ignore", UserWarning)
            model = create(name, size=size)
        return model, f"model {name} ({size}) with RANDOM weights: the flow is meaningless, only the pipeline is tried"
    from . import load
    from .weights import resolve

    try:
        path = resolve(spec)  # bundled:<name> -> the shipped file
    except ValueError as err:
        raise ValueError(f"--model {spec}: {err}") from None
    if not path.exists():
        raise ValueError(
            f"--model {spec}: no such checkpoint file or run directory "
            "(or give a model name raft|gma|decflow|srflownet[:small] for random weights)"
        )

    try:
        model = load(path)
    except Exception as err:  # corrupt files surface as many types (RuntimeError, pickle, zip, KeyError, ...)
        raise ValueError(f"--model {spec}: cannot load the checkpoint ({type(err).__name__}: {err})") from None
    if not isinstance(model, nn.Module):
        raise ValueError(f"--model {spec}: pyflowops_models.load returned a {type(model).__name__}, not a model")
    return model, f"model from {spec}"


def check_device(device: str) -> str:
    """``device`` as torch spells it, or a ValueError naming what is wrong with it (eval, infer and mer share this)."""
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise ValueError(f"--device {device}: not a device name (cpu, cuda, cuda:1, ...)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: CUDA is not available on this machine; use --device cpu")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return str(dev)


def _run(args: argparse.Namespace) -> int:
    from .infer import (
        InputError,
        check_pair,
        flow_pair,
        infer_video,
        load_image,
        needs_onthefly,
        probe_video,
        write_outputs,
    )

    def fail(message: str) -> int:
        print(f"{_PROG}: {message}", file=sys.stderr)
        return 2

    images = list(args.images or [])
    if args.video is not None and images:
        return fail("give either two images or --video FILE, not both")
    if args.video is None and len(images) != 2:
        return fail(f"give two images (IMG1 IMG2) or --video FILE; got {len(images)} image(s)")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        return fail(f"--out {out}: exists and is not a folder")
    notes: list[str] = []
    try:
        device = check_device(args.device)
        # Read the inputs before the model: a typo in a file name fails in a fraction of a second.
        if args.video is None:
            image1 = load_image(images[0], notes)
            image2 = load_image(images[1], notes)
            check_pair(image1, image2)
            height, width = image1.shape[:2]
        else:
            height, width = probe_video(args.video, notes)
        model, what = load_model(args.model)
    except ValueError as err:  # InputError included
        return fail(str(err))
    print(f"{_PROG}: {what}", file=sys.stderr)
    for note in notes:
        print(f"{_PROG}: note: {note}", file=sys.stderr)
    start = time.perf_counter()
    try:
        if getattr(model, "corr", None) != "onthefly" and needs_onthefly(model, height, width):
            print(f"{_PROG}: {width}x{height} input: on-the-fly correlation (no all-pairs volume)", file=sys.stderr)
        if args.video is None:
            flows = flow_pair(model, image1, image2, iters=args.iters, device=device, amp=args.amp)
            written = write_outputs(out, args.name, flows, image1)
            print(f"{_PROG}: wrote {len(written)} files to {out}/ in {time.perf_counter() - start:.1f} s: "
                  + ", ".join(p.name for p in written))
        else:
            pairs = infer_video(model, args.video, out, every=args.every, iters=args.iters, device=device,
                                amp=args.amp, progress=not args.quiet)
            print(f"{_PROG}: wrote {pairs} pairs to {out}/ in {time.perf_counter() - start:.1f} s "
                  "(frame_NNNNNN_<kind>.flo and .png per flow kind, frame_NNNNNN_panel.png per pair)")
    except InputError as err:
        return fail(str(err))
    except OSError as err:  # the output folder: permissions, a full disk
        return fail(f"cannot write to {out}: {err}")
    return 0


def add_parser(subparsers) -> None:
    """Register ``infer`` on ``subparsers`` (the object ``add_subparsers`` returns)."""
    p = subparsers.add_parser(
        "infer",
        help="flow for an image pair or a video (.flo, colour PNGs, panels)",
        description="Facial flow (and, for DecFlow, head and expression flow) from IMG1 to IMG2, or between "
        "consecutive frames of a video, written as Middlebury .flo files, colour PNGs (Middlebury wheel) and a "
        "panel per pair (the image and the flows side by side). Any image size: grey images are copied to 3 "
        "channels, RGBA loses its alpha channel, 16-bit is scaled to 8 bits; high-resolution input uses "
        "on-the-fly correlation by itself.",
        epilog="Examples: pyflowops infer a.png b.png --model run/ --out flow/ ; "
        "pyflowops infer --video face.mp4 --model model.pt --out flow/ --every 2 ; "
        "pyflowops infer a.png b.png --model decflow:small --out /tmp/try (random weights)",
    )
    p.add_argument("images", nargs="*", metavar="IMG", help="two images IMG1 IMG2 (flow from IMG1 to IMG2)")
    p.add_argument("--video", default=None, metavar="FILE",
                   help="a video instead of two images (GIF always; MP4 etc. when imageio has a video backend)")
    p.add_argument("--model", required=True, metavar="CKPT",
                   help="checkpoint file or training run directory (read with pyflowops_models.load); or a model "
                   "name raft|gma|decflow|srflownet, optionally :small, which has RANDOM weights: its flow is "
                   "meaningless, it only tries the pipeline")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created)")
    p.add_argument("--every", type=positive_int, default=1, metavar="N",
                   help="video: use frames 0, N, 2N, ... and pair each with the next one used (default 1)")
    p.add_argument("--iters", type=positive_int, default=12, help="refinement iterations (default 12)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:K (default cpu)")
    p.add_argument("--amp", action="store_true",
                   help="mixed precision: bfloat16 on the CPU, float16 on CUDA (correlation stays float32)")
    p.add_argument("--name", default="pair", help="file name stem for an image pair (default pair)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=_run)
