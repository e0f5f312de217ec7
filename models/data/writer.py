"""Write synthetic sequences in the FacialFlowNet layout, resumably, with several workers.

Layout under ``root`` (the official FacialFlowNet loader's, plus our extras)::

    image/facial/<split>/<emotion>/<seq>/<t>.png     frames t = 0..n (pair t = frames t, t+1)
    image/head/<split>/<emotion>/<seq>/<t>.png       M^h_{t+1} (t+1's pose, t's expression), t = 0..n-1
    flow/facial/<split>/<emotion>/<seq>/<t>.flo      facial flow of pair t (Middlebury .flo)
    flow/head/<split>/<emotion>/<seq>/<t>.flo        head flow of pair t
    mask/<split>/<emotion>/<seq>/<t>.npy             uint8 [H, W], 1 on the head at frame t
    extra/labels/<split>/<emotion>/<seq>/<t>.png     face-part ids (pyflowops_models.data.head.PARTS)
    extra/occlusion/<split>/<emotion>/<seq>/<t>.png  255 where frame t's pixel is hidden at t+1
    extra/depth/<split>/<emotion>/<seq>/<t>.npy      float32 depth at frame t (0 = background)
    meta/<split>/<emotion>/<seq>.json                the sequence's parameters; written last
    meta.json                                        what generated the set, the layout, the counts

``<t>`` is 4 digits, ``<seq>`` the sequence index (7 digits). A sequence whose
``meta/...json`` exists is complete and is skipped on a rerun; every file is written
to a temporary name and renamed, so a killed run leaves no half-written file.
"""

from __future__ import annotations

import io
import json
import multiprocessing
import os
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from pyflowops.flow import write_flo

from .backgrounds import Backgrounds
from .sequence import MOTION_SCALES, FramePair, SequenceSpec, render_sequence, sequence_spec

__all__ = ["FILES", "LAYOUT", "SynthReport", "synthesize", "write_sequence", "sequence_marker"]

LAYOUT = "facialflownet+pyflowops-extras/1"
FILES = {  # meta.json repeats this, so a data set explains itself
    "image/facial/<split>/<emotion>/<seq>/<t>.png": "frames t = 0..n; pair t = (frame t, frame t+1)",
    "image/head/<split>/<emotion>/<seq>/<t>.png": "M^h_{t+1}: frame t+1's head pose with frame t's expression",
    "flow/facial/<split>/<emotion>/<seq>/<t>.flo": "facial flow of pair t (Middlebury .flo, pixels)",
    "flow/head/<split>/<emotion>/<seq>/<t>.flo": "head flow of pair t; expression flow = facial - head",
    "mask/<split>/<emotion>/<seq>/<t>.npy": "uint8 [H, W], 1 on the head at frame t",
    "extra/labels/<split>/<emotion>/<seq>/<t>.png": "face-part ids at frame t (pyflowops_models.data.head.PARTS)",
    "extra/occlusion/<split>/<emotion>/<seq>/<t>.png": "255 where frame t's pixel is hidden at frame t+1",
    "extra/depth/<split>/<emotion>/<seq>/<t>.npy": "float32 depth at frame t (0 on the background)",
    "meta/<split>/<emotion>/<seq>.json": "the sequence's parameters; its presence marks the sequence complete",
}


def _atomic_write(path: Path, write: Callable[[io.BufferedWriter], None]) -> None:
    """Write through ``write(fh)`` to a temporary file next to ``path``, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _png(path: Path, array: np.ndarray) -> None:
    _atomic_write(path, lambda fh: Image.fromarray(array).save(fh, format="PNG"))


def _npy(path: Path, array: np.ndarray) -> None:
    _atomic_write(path, lambda fh: np.save(fh, array))


def _flo(path: Path, flow: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_flo(path, flow)  # atomic itself


def _json(path: Path, record: dict) -> None:
    _atomic_write(path, lambda fh: fh.write((json.dumps(record, indent=1, default=str) + "\n").encode()))


def _where(root: Path, spec: SequenceSpec) -> Callable[..., Path]:
    """``at(kind..., t, suffix)`` -> the file of step t of the sequence in folder ``kind``."""
    def at(*kind: str, t: int, suffix: str) -> Path:
        return root.joinpath(*kind, spec.split, spec.emotion, spec.name, f"{t:04d}{suffix}")
    return at


def sequence_marker(root: Path, spec: SequenceSpec) -> Path:
    """The meta/...json that marks a complete sequence."""
    return Path(root) / "meta" / spec.split / spec.emotion / f"{spec.name}.json"


def write_sequence(root: str | Path, spec: SequenceSpec, backgrounds: Backgrounds | None = None) -> int:
    """Render and write one sequence; returns the pairs written (0 when it was complete already)."""
    root = Path(root)
    marker = sequence_marker(root, spec)
    if marker.exists():
        return 0
    at = _where(root, spec)
    pair: FramePair | None = None
    count = 0
    for pair in render_sequence(spec, backgrounds):
        t = pair.step
        _png(at("image", "facial", t=t, suffix=".png"), pair.image1)
        _png(at("image", "head", t=t, suffix=".png"), pair.image2_head)
        _flo(at("flow", "facial", t=t, suffix=".flo"), pair.flow)
        _flo(at("flow", "head", t=t, suffix=".flo"), pair.flow_head)
        _npy(at("mask", t=t, suffix=".npy"), pair.mask.astype(np.uint8))
        _png(at("extra", "labels", t=t, suffix=".png"), pair.labels)
        _png(at("extra", "occlusion", t=t, suffix=".png"), pair.occlusion.astype(np.uint8) * 255)
        _npy(at("extra", "depth", t=t, suffix=".npy"), pair.depth)
        count += 1
    if pair is not None:  # the last frame closes the facial sequence
        _png(at("image", "facial", t=spec.num_steps, suffix=".png"), pair.image2)
    _json(marker, spec.to_json())
    return count


@dataclass
class SynthReport:
    """What :func:`synthesize` did: sequences and pairs written now, sequences skipped (done before), seconds."""

    written_sequences: int
    written_pairs: int
    skipped_sequences: int
    seconds: float

    @property
    def pairs_per_minute(self) -> float:
        return 60.0 * self.written_pairs / self.seconds if self.seconds > 0 else float("nan")


# Per-process state of a worker: the options every task shares.
_WORKER: dict = {}


def _init_worker(root: str, backgrounds: str | None, threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    _WORKER.update(root=root, backgrounds=Backgrounds(backgrounds))


def _work(spec: SequenceSpec) -> tuple[int, int]:
    return spec.index, write_sequence(_WORKER["root"], spec, _WORKER["backgrounds"])


def synthesize(
    out: str | Path,
    sequences: int,
    size: int = 512,
    workers: int = 2,
    seed: int = 0,
    split: str = "train",
    first_index: int = 0,
    backgrounds: str | Path | None = None,
    textures: str | Path | None = None,
    progress: bool = True,
    motion_scales: tuple[int, ...] = MOTION_SCALES,
) -> SynthReport:
    """Generate sequences ``first_index .. first_index + sequences - 1`` of the set ``seed`` into ``out``.

    Args:
        out: the dataset root (created). Sequences already complete there are skipped.
        sequences: how many sequences (each 5, 10, 15 or 20 pairs).
        size: image size in pixels (square). workers: processes rendering in parallel.
        seed: the data set; (seed, index) fixes a sequence, so disjoint index ranges
            written by separate runs or machines are disjoint shards of one set.
        split: ``train``, ``val`` or ``test`` (the layout's split folder).
        backgrounds: a folder of background images (None: scikit-image's textures).
        textures: a folder of frontal face photos projected onto the heads (None: procedural skin).
        progress: show a progress bar (tqdm).
        motion_scales: the sequence lengths n drawn from (default FacialFlowNet's 5, 10, 15, 20).
    """
    if sequences < 1 or size < 16 or workers < 1 or first_index < 0:
        raise ValueError(f"synthesize: need sequences >= 1, size >= 16, workers >= 1, first_index >= 0; got "
                         f"{sequences}, {size}, {workers}, {first_index}")
    if split not in ("train", "val", "test"):
        raise ValueError(f"synthesize: split must be train, val or test, got {split!r}")
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.rglob(".*.tmp"):  # a killed run's unfinished file (never under a final name)
        stale.unlink(missing_ok=True)
    photos = _photos(textures)
    specs = [sequence_spec(seed, i, size, split, texture=photos[i % len(photos)] if photos else None,
                           motion_scales=tuple(motion_scales))
             for i in range(first_index, first_index + sequences)]
    todo = [s for s in specs if not sequence_marker(root, s).exists()]
    start = time.perf_counter()
    written = _run(root, todo, workers, None if backgrounds is None else str(backgrounds), progress)
    report = SynthReport(len([n for n in written if n]), sum(written), len(specs) - len(todo),
                         time.perf_counter() - start)
    _update_meta(root, seed, size)
    return report


def _photos(folder: str | Path | None) -> list[str]:
    if folder is None:
        return []
    folder = Path(folder)
    files = sorted(str(p) for p in folder.glob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    if not files:
        raise ValueError(f"synthesize: no face photos (.png, .jpg) in {folder}")
    return files


def _run(root: Path, todo: list, workers: int, backgrounds: str | None, progress: bool,
         work: Callable = _work, units: Callable = lambda spec: spec.num_steps, unit: str = "pair") -> list[int]:
    """Run ``work(task) -> (key, units written)`` over ``todo`` in ``workers`` processes (``_WORKER`` holds
    root and backgrounds there); the bar counts ``units(task)`` per task. Returns the units written per task."""
    from tqdm import tqdm

    bar = tqdm(total=sum(units(s) for s in todo), unit=unit, desc="pyflowops synth", disable=not progress)
    written = []
    try:
        if workers == 1:
            import torch

            # this process's thread count (OMP_NUM_THREADS when set): more threads than free cores stalls torch
            _init_worker(str(root), backgrounds, threads=torch.get_num_threads())
            results: Iterable[tuple[int, int]] = map(work, todo)
            for _, n in results:
                written.append(n)
                bar.update(n)
        else:
            ctx = multiprocessing.get_context("spawn")  # no fork of a process that may hold OpenMP threads
            threads = max(1, (os.cpu_count() or 1) // workers)
            with ctx.Pool(workers, _init_worker, (str(root), backgrounds, threads)) as pool:
                for _, n in pool.imap_unordered(work, todo):
                    written.append(n)
                    bar.update(n)
    finally:
        bar.close()
    return written


def _update_meta(root: Path, seed: int, size: int) -> None:
    """Rewrite meta.json from the sequence markers on disk (so it is right after any mix of runs)."""
    markers = sorted((root / "meta").glob("*/*/*.json"))
    counts: dict[str, dict[str, int]] = {}
    pairs = 0
    for m in markers:
        split, emotion = m.parent.parent.name, m.parent.name
        counts.setdefault(split, {}).setdefault(emotion, 0)
        counts[split][emotion] += 1
        pairs += json.loads(m.read_text())["num_steps"]
    _json(root / "meta.json", {
        "generator": "pyflowops_models.data (procedural Gaussian heads, render_flow order 1)",
        "layout": LAYOUT,
        "seed": seed,
        "size": size,
        "sequences": len(markers),
        "pairs": pairs,
        "sequences_per_split_and_emotion": counts,
        "files": FILES,
    })
