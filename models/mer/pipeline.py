"""Micro-expression recognition from any flow method: representations, LOSO, the table (``pyflowops mer``).

For every clip and flow method: the onset -> apex flow, cropped to the face (the head mask of a
synthetic clip, else a face detector on the onset frame; one box per clip, shared by every method)
and turned into the (u, v, optical strain) maps of :mod:`.representation`. Each method's maps then
go through the same leave-one-subject-out protocol with the same recogniser and seeds
(:func:`.protocol.loso_evaluate`), so the rows of the table differ only in the flow.

Written into ``out``: ``results.md`` (the table), ``results.json`` (numbers, confusion matrices,
per-subject counts, the options), ``confusion_<method>.png``, ``representation_<method>.png`` (what
the recogniser sees for one clip) and ``cache/<method>.npz`` + ``.json`` (the maps and their LOSO
scores, so a rerun skips every finished method; the maps are written once the pass over the clips
ends, the scores after each method).

Example:
    >>> from pyflowops_models.mer.datasets import load_mer_dataset
    >>> from pyflowops_models.mer.flows import parse_flow_method
    >>> samples = load_mer_dataset("micro")                                  # doctest: +SKIP
    >>> result = run_mer(samples, [parse_flow_method("dis")], "mer_out")     # doctest: +SKIP
    >>> print(markdown(result))                                              # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from .datasets import CLASSES, MERSample
from .flows import FlowMethod
from .plots import plot_confusion, plot_representation
from .protocol import TrainOptions, loso_evaluate
from .representation import face_box, flow_representation

__all__ = ["REPRESENTATION_SIZE", "clip_box", "markdown", "representations", "run_mer", "write_results"]

REPRESENTATION_SIZE = 48  # side of the (u, v, strain) maps the recogniser sees


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "method"


def _key(sample: MERSample) -> str:
    return f"{sample.subject}/{sample.sequence}"


def _images(sample: MERSample) -> tuple[np.ndarray, np.ndarray]:
    from ..infer import check_pair, load_image

    onset, apex = load_image(sample.onset_frame), load_image(sample.apex_frame)
    check_pair(onset, apex)
    return onset, apex


def clip_box(sample: MERSample, onset: np.ndarray) -> tuple[int, int, int, int]:
    """The face box (y0, y1, x0, x1) of a clip: its head mask when it has one, else a detector on ``onset``."""
    from ..infer import load_image

    mask = None if sample.mask is None else load_image(sample.mask)[..., 0] > 127
    return face_box(onset, mask)


def _save_npz(path: Path, **arrays: np.ndarray) -> None:
    from pyflowops.flow.io import atomic_write_bytes

    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buffer.getvalue())


def _cached(cache: Path | None, keys: np.ndarray, size: int, method: FlowMethod) -> tuple[np.ndarray, float] | None:
    """The maps in ``cache`` when they are of exactly these clips, this size and this method's description."""
    if cache is None or not cache.exists():
        return None
    with np.load(cache) as stored:
        same = (stored["keys"].shape == keys.shape and (stored["keys"] == keys).all()
                and stored["x"].shape[-1] == size and str(stored["description"]) == method.description)
        return (stored["x"], float(stored["seconds"])) if same else None


def representations(samples: Sequence[MERSample], methods: Sequence[FlowMethod], size: int = REPRESENTATION_SIZE,
                    caches: Sequence[Path | None] | None = None,
                    progress: bool = True) -> list[tuple[np.ndarray, float]]:
    """Per method: (maps [N, 3, size, size] float32, flow seconds per clip) on every clip.

    One pass over the clips serves every method (each clip's frames are read once, its face box found
    once, and a network's outputs come from one forward: its second row costs no flow time). With
    ``caches`` (an ``.npz`` path per method) a method's maps are read from its file when it holds exactly
    these clips at this size from a method with this description (checkpoint, iterations), and written to
    it after computing (atomically).
    """
    from tqdm import tqdm

    caches = [None] * len(methods) if caches is None else list(caches)
    keys = np.array([_key(s) for s in samples])
    results = [_cached(c, keys, size, m) for m, c in zip(methods, caches)]
    todo = [j for j, r in enumerate(results) if r is None]
    if not todo:
        return results  # type: ignore[return-value]
    maps = {j: np.empty((len(samples), 3, size, size), np.float32) for j in todo}
    seconds = dict.fromkeys(todo, 0.0)
    bar = tqdm(samples, desc=f"flows ({', '.join(methods[j].name for j in todo)})", unit="clip", disable=not progress)
    for i, sample in enumerate(bar):
        onset, apex = _images(sample)
        box = clip_box(sample, onset)
        for j in todo:
            start = time.perf_counter()
            flow = methods[j].compute(sample, onset, apex)
            seconds[j] += time.perf_counter() - start
            maps[j][i] = flow_representation(flow, box, size)
    for j in todo:
        results[j] = (maps[j], seconds[j] / len(samples))
        if caches[j] is not None:
            _save_npz(caches[j], keys=keys, x=maps[j], seconds=np.float64(results[j][1]),
                      description=np.array(methods[j].description))
    return results  # type: ignore[return-value]


def _scores(maps: np.ndarray, labels: np.ndarray, subjects: list[str], options: TrainOptions, name: str,
            cache: Path | None, progress: bool) -> dict[str, Any]:
    """LOSO scores of one method's maps; read from ``cache`` (JSON) when it holds the scores of exactly these
    maps, labels, subjects and options (training is deterministic, so they would come out the same)."""
    from pyflowops.flow.io import atomic_write_bytes

    digest = hashlib.sha256(np.ascontiguousarray(maps).tobytes())
    digest.update(json.dumps([labels.tolist(), subjects, asdict(options)]).encode())
    key = digest.hexdigest()
    if cache is not None and cache.exists():
        stored = json.loads(cache.read_text())
        if stored.get("key") == key:
            return stored["scores"]
    scores = loso_evaluate(maps, labels, subjects, len(CLASSES), options, progress=progress,
                           description=f"LOSO {name}")
    if cache is not None:
        atomic_write_bytes(cache, json.dumps({"key": key, "scores": scores}).encode())
    return scores


def _unique_names(methods: Sequence[FlowMethod]) -> list[str]:
    names: list[str] = []
    for m in methods:
        name, k = m.name, 2
        while name in names:
            name, k = f"{m.name}-{k}", k + 1
        names.append(name)
    return names


def run_mer(samples: Sequence[MERSample], methods: Sequence[FlowMethod], out: str | Path | None = None,
            size: int = REPRESENTATION_SIZE, options: TrainOptions | None = None,
            progress: bool = True) -> dict[str, Any]:
    """Recognition scores of every flow method on the same clips, splits and recogniser.

    Args:
        samples: clips from :mod:`.datasets` (at least two subjects).
        methods: from :func:`.flows.parse_flow_method`.
        out: folder for the files listed in the module docstring (None: nothing written, no cache).
        size: side of the (u, v, strain) maps. options: the recogniser's training, the same for every
            method (None: ``TrainOptions()``).

    Returns:
        ``{"clips", "subjects", "classes", "class_counts", "options", "size", "methods": {name: {"uf1",
        "uar", "accuracy", "confusion", "seconds_per_clip", "description", "per_subject", "predictions"}}}``.

    Raises:
        ValueError: no clips, fewer than two subjects, or a ground-truth method on clips without ground truth.
    """
    if not samples:
        raise ValueError("run_mer: no clips (the data set has no clip of the composite classes)")
    subjects = [s.subject for s in samples]
    if len(set(subjects)) < 2:
        raise ValueError(f"run_mer: leave-one-subject-out needs at least 2 subjects, got {len(set(subjects))}")
    for m in methods:
        if m.needs_ground_truth and any(s.flow_facial is None or s.flow_head is None for s in samples):
            raise ValueError(f"run_mer: {m.name} needs ground-truth flow, which only synthetic sets have")
    out = None if out is None else Path(out)
    options = TrainOptions() if options is None else options
    labels = np.array([s.label for s in samples], np.int64)
    result: dict[str, Any] = {
        "clips": len(samples), "subjects": len(set(subjects)), "classes": list(CLASSES),
        "class_counts": {CLASSES[k]: int(v) for k, v in sorted(Counter(labels.tolist()).items())},
        "datasets": sorted({s.dataset for s in samples}), "size": size, "options": asdict(options), "methods": {},
    }
    names = _unique_names(methods)
    caches = [None if out is None else out / "cache" / f"{_safe(name)}.npz" for name in names]
    computed = representations(samples, methods, size, caches, progress)
    for name, method, cache, (maps, seconds) in zip(names, methods, caches, computed):
        scores = _scores(maps, labels, subjects, options, name, None if cache is None else cache.with_suffix(".json"),
                         progress)
        result["methods"][name] = {**scores, "seconds_per_clip": seconds, "description": method.description}
        if out is not None:
            plot_confusion(np.array(scores["confusion"]), CLASSES, out / f"confusion_{_safe(name)}.png",
                           f"{name}: UF1 {scores['uf1']:.3f}, UAR {scores['uar']:.3f}")
            plot_representation(maps[0], out / f"representation_{_safe(name)}.png",
                                f"{name}: {samples[0].sequence} ({samples[0].class_name})")
            write_results(result, out)  # after every method: a crash keeps the rows already done
    return result


def markdown(result: dict[str, Any]) -> str:
    """The MER table: one row per flow method (UF1, UAR, accuracy, flow seconds per clip), best UF1 first."""
    counts = ", ".join(f"{k} {v}" for k, v in result["class_counts"].items())
    lines = [
        (f"Leave-one-subject-out micro-expression recognition: {result['clips']} clips, {result['subjects']} "
         f"subjects ({counts}); the same recogniser, splits and seeds for every flow method."),
        "",
        "| flow method | UF1 | UAR | accuracy | flow s/clip |",
        "|---|---|---|---|---|",
    ]
    rows = sorted(result["methods"].items(), key=lambda kv: -kv[1]["uf1"])
    for name, m in rows:
        lines.append(f"| {name} | {m['uf1']:.3f} | {m['uar']:.3f} | {m['accuracy']:.3f} | {m['seconds_per_clip']:.3f} |")
    lines += ["", ("UF1: mean over classes of 2TP / (2TP + FP + FN), UAR: mean per-class recall, both over the "
                   "predictions of all folds pooled (the MEGC 2019 composite benchmark's definitions). flow s/clip: "
                   "the method's time per clip; a network's outputs share one forward pass, timed on its first row "
                   "computed."), ""]
    for name, m in result["methods"].items():
        lines.append(f"- {name}: {m['description']}")
    return "\n".join(lines) + "\n"


def write_results(result: dict[str, Any], out: str | Path) -> None:
    """``results.json`` and ``results.md`` in ``out`` (atomically: a crash never leaves half a file)."""
    from pyflowops.flow.io import atomic_write_bytes

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / "results.json", (json.dumps(result, indent=1) + "\n").encode())
    atomic_write_bytes(out / "results.md", markdown(result).encode())
