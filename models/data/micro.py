"""Synthetic micro-expression clips for micro-expression recognition (MER), with exact flow.

A clip shows one subject (a Gaussian head) making a brief, faint expression while the head
drifts a little all the time (recognisers must see through the head motion):

* classes of the composite MER benchmark (MEGC 2019): ``negative``, ``positive``, ``surprise``
  (:data:`MICRO_EMOTIONS` maps them to our ``EMOTIONS``); the class is drawn uniformly;
* the apex expression is the emotion's preset times an intensity s ~ U(0.05, 0.20), the
  "5-20% of the full range" of a micro-expression, with :func:`~.expression.sample_expression`'s
  per-AU jitter scaled the same way;
* frames t = 0 .. num_frames-1: neutral up to the onset frame, a smoothstep rise to the apex
  (2-4 frames), a smoothstep fall to the offset (2-4 frames), 1-2 neutral frames after;
* the head drifts linearly from a start pose (angles up to ~3 degrees) by up to ~2 degrees and
  0.02 head units over the clip.

Everything about subject k (identity, skin noise, light, background) comes from a generator
seeded by (seed, k) (:func:`subject_generator`), so every clip of a subject shows the same person
in the same session; everything about clip i (class, emotion, intensity, timing, head motion)
from one seeded by (seed, i) (:func:`micro_generator`); clip i belongs to subject i % subjects.
The ground truth is the onset -> apex flow, facial (everything) and head-only (the apex pose with
the onset's expression), so expression flow = facial - head.

Layout ``pyflowops-micro/1`` written by :func:`synthesize_micro` under ``root`` (see :data:`FILES`)::

    meta.json                              what generated the set, the layout, the counts per class, FILES
    labels.csv                             subject,sequence,onset,apex,offset,num_frames,emotion,class
    <subject>/<sequence>/<t>.png           frames t = 0 .. num_frames-1 (4 digits), uint8 RGB
    <subject>/<sequence>/flow_facial.flo   onset -> apex flow (Middlebury .flo, pixels)
    <subject>/<sequence>/flow_head.flo     onset -> apex head-only flow
    <subject>/<sequence>/mask.png          uint8, 255 on the head at the onset frame
    <subject>/<sequence>/meta.json         the clip's spec; written last: it marks the clip complete

``<subject>`` is ``s`` + 3 digits, ``<sequence>`` the clip index in 6 digits; labels.csv holds these
folder names and frame indices, one row per complete clip, sorted by subject then index.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from .backgrounds import Backgrounds
from .expression import ACTION_UNITS, EMOTIONS, HeadPose, sample_expression
from .head import Head, HeadIdentity, build_head
from .sequence import _ease, _hashed_generator, _sample_light, _setup, _texture_stream, _uint8
from .writer import _WORKER, SynthReport, _atomic_write, _flo, _json, _png, _run

__all__ = [
    "FILES",
    "INTENSITY_RANGE",
    "LABEL_COLUMNS",
    "LAYOUT",
    "MICRO_CLASSES",
    "MICRO_EMOTIONS",
    "MicroClip",
    "MicroSpec",
    "intensity_profile",
    "micro_generator",
    "micro_marker",
    "micro_spec",
    "render_micro",
    "subject_generator",
    "subject_head",
    "subject_traits",
    "synthesize_micro",
    "write_micro",
]

MICRO_CLASSES = ("negative", "positive", "surprise")  # MEGC 2019 composite benchmark
MICRO_EMOTIONS: dict[str, tuple[str, ...]] = {
    "negative": ("sad", "fear", "disgust", "anger", "contempt"),
    "positive": ("happy",),
    "surprise": ("surprise",),
}
INTENSITY_RANGE = (0.05, 0.20)  # apex AU intensity as a fraction of the emotion's preset
START_ANGLE_DEG, START_TRANSLATION = 3.0, 0.02  # the start pose (HeadPose.sample: roll gets half the angle)
DRIFT_ANGLE_DEG, DRIFT_TRANSLATION = 2.0, 0.02  # the start -> end pose drift over the clip
ONSETS, RISES, FALLS, TAILS = (1, 2), (2, 3, 4), (2, 3, 4), (1, 2)  # frame counts drawn uniformly


def subject_generator(seed: int, subject: int) -> torch.Generator:
    """The generator of subject ``subject`` of the set ``seed`` (identity, texture noise, light, background)."""
    return _hashed_generator(f"pyflowops-micro-subject:{seed}:{subject}")


def micro_generator(seed: int, index: int) -> torch.Generator:
    """The generator of clip ``index`` of the set ``seed`` (class, emotion, intensity, timing, head motion)."""
    return _hashed_generator(f"pyflowops-micro:{seed}:{index}")


def subject_traits(seed: int, subject: int) -> tuple[HeadIdentity, tuple[float, float, float], int]:
    """(identity, light direction [3], background key) of a subject: the same in every clip of it."""
    g = subject_generator(seed, subject)
    identity = HeadIdentity.sample(g)
    light = _sample_light(g)
    return identity, light, int(torch.randint(1 << 30, (1,), generator=g))


def subject_head(seed: int, subject: int, size: int) -> Head:
    """The neutral head of a subject for ``size`` x ``size`` images (its texture noise from the subject's
    second stream); every clip of the subject at that size renders this head. About 0.4 s at 256^2."""
    identity = subject_traits(seed, subject)[0]
    return build_head(identity, resolution=size, generator=_texture_stream(subject_generator(seed, subject)))


def intensity_profile(onset: int, apex: int, offset: int, num_frames: int) -> tuple[float, ...]:
    """Expression intensity [num_frames] of each frame, in [0, 1]: 0 up to ``onset``, a smoothstep up to 1
    at ``apex``, a smoothstep down to 0 at ``offset``, 0 after."""
    if not 0 <= onset < apex < offset < num_frames:
        raise ValueError(f"intensity_profile: need 0 <= onset < apex < offset < num_frames, got "
                         f"{onset}, {apex}, {offset}, {num_frames}")
    def at(t: int) -> float:
        if onset < t <= apex:
            return _ease((t - onset) / (apex - onset))
        if apex < t < offset:
            return _ease((offset - t) / (offset - apex))
        return 0.0
    return tuple(at(t) for t in range(num_frames))


@dataclass(frozen=True)
class MicroSpec:
    """Everything that defines one clip (its meta.json record; ``micro_class`` is written as ``class``).

    ``expression`` [A] (``ACTION_UNITS`` order) is the emotion's AU pattern at unit intensity: the preset
    with :func:`~.expression.sample_expression`'s per-AU jitter, scaled so that its least-squares factor
    on the preset is exactly 1; the apex AUs are ``intensity * expression``. Frame indices ``onset``,
    ``apex``, ``offset`` lie in 0 .. ``num_frames`` - 1. Poses: (yaw, pitch, roll) radians and a
    translation in head units; frame t has ``HeadPose.interpolate(pose_start, pose_end, t / (num_frames - 1))``.
    ``identity``, ``light`` and ``background`` are the subject's (:func:`subject_traits`).
    """

    seed: int
    index: int
    subject: int
    subjects: int
    size: int
    micro_class: str
    emotion: str
    intensity: float
    onset: int
    apex: int
    offset: int
    num_frames: int
    expression: tuple[float, ...]
    pose_start: HeadPose
    pose_end: HeadPose
    identity: HeadIdentity
    light: tuple[float, float, float]
    background: int
    texture: str | None = None  # no face photos in micro sets (sequence._setup reads it)

    @property
    def name(self) -> str:
        """The clip's folder name: its index, 6 digits."""
        return f"{self.index:06d}"

    @property
    def subject_name(self) -> str:
        """The subject's folder name: ``s`` and 3 digits."""
        return f"s{self.subject:03d}"

    def profile(self) -> tuple[float, ...]:
        """Expression intensity per frame [num_frames] (:func:`intensity_profile`), 1 at the apex."""
        return intensity_profile(self.onset, self.apex, self.offset, self.num_frames)

    def weights(self, t: int) -> torch.Tensor:
        """[A] AU intensities of frame t: profile[t] * intensity * expression."""
        return torch.tensor(self.expression) * (self.profile()[t] * self.intensity)

    def pose(self, t: int) -> HeadPose:
        """The head pose of frame t (a linear drift from ``pose_start`` at 0 to ``pose_end`` at the last frame)."""
        return HeadPose.interpolate(self.pose_start, self.pose_end, t / (self.num_frames - 1))

    def to_json(self) -> dict:
        """The JSON record: the fields (``class`` for ``micro_class``), ``action_units``, ``apex_expression``
        (the apex AUs), ``profile`` (per frame) and ``folder`` (``<subject>/<sequence>``)."""
        record = asdict(self)
        record["class"] = record.pop("micro_class")
        record["action_units"] = list(ACTION_UNITS)
        record["apex_expression"] = [float(v) * self.intensity for v in self.expression]
        record["profile"] = list(self.profile())
        record["folder"] = f"{self.subject_name}/{self.name}"
        return record


def _unit_expression(emotion: str, generator: torch.Generator) -> tuple[float, ...]:
    """:func:`sample_expression`'s draw, rescaled to unit intensity along the emotion's preset."""
    drawn = sample_expression(emotion, generator)
    preset = torch.tensor([EMOTIONS[emotion].get(a, 0.0) for a in ACTION_UNITS])
    factor = float((drawn * preset).sum() / (preset * preset).sum())  # ~ sample_expression's U(0.5, 1)
    return tuple(float(v) for v in drawn / factor)


def micro_spec(seed: int, index: int, subjects: int, size: int = 256) -> MicroSpec:
    """Draw clip ``index`` of the set ``seed`` with ``subjects`` subjects: it belongs to subject index % subjects.

    Args:
        seed, index: the clip's identity; the same pair (and ``subjects``) gives the same clip.
        subjects: the number of subjects of the set (>= 1).
        size: image size in pixels (square, >= 32); the head spans ~60% of it.

    Returns:
        :class:`MicroSpec` (num_frames = onset + rise + fall + tail + 1, between 7 and 13).
    """
    if subjects < 1 or index < 0 or size < 32:
        raise ValueError(f"micro_spec: need subjects >= 1, index >= 0, size >= 32; got {subjects}, {index}, {size}")
    subject = index % subjects
    identity, light, background = subject_traits(seed, subject)
    g = micro_generator(seed, index)
    pick = lambda options: options[int(torch.randint(len(options), (1,), generator=g))]
    micro_class = pick(MICRO_CLASSES)
    negative = pick(MICRO_EMOTIONS["negative"])  # drawn for every class: the later draws stay put
    emotion = negative if micro_class == "negative" else MICRO_EMOTIONS[micro_class][0]
    lo, hi = INTENSITY_RANGE
    intensity = lo + (hi - lo) * float(torch.rand((), generator=g))
    expression = _unit_expression(emotion, g)
    onset = pick(ONSETS)
    apex = onset + pick(RISES)
    offset = apex + pick(FALLS)
    num_frames = offset + pick(TAILS) + 1
    start = HeadPose.sample(g, max_angle_deg=START_ANGLE_DEG, max_translation=START_TRANSLATION)
    drift = HeadPose.sample(g, max_angle_deg=DRIFT_ANGLE_DEG, max_translation=DRIFT_TRANSLATION)
    end = HeadPose(start.yaw + drift.yaw, start.pitch + drift.pitch, start.roll + drift.roll,
                   tuple(a + b for a, b in zip(start.translation, drift.translation)))
    return MicroSpec(seed, index, subject, subjects, size, micro_class, emotion, intensity, onset, apex, offset,
                     num_frames, expression, start, end, identity, light, background)


@dataclass
class MicroClip:
    """One rendered clip, numpy, H = W = spec.size.

    frames: num_frames x [H, W, 3] uint8; flow_facial: [H, W, 2] float32 pixels (x = column), onset frame ->
    apex frame; flow_head: [H, W, 2] float32, onset -> the apex pose with the onset's expression (expression
    flow = flow_facial - flow_head); mask: [H, W] bool, the head at the onset frame (alpha >= 0.5).
    """

    spec: MicroSpec
    frames: list[np.ndarray]
    flow_facial: np.ndarray
    flow_head: np.ndarray
    mask: np.ndarray


def render_micro(spec: MicroSpec, backgrounds: Backgrounds | None = None, head: Head | None = None) -> MicroClip:
    """Render a clip's frames and its onset -> apex ground truth.

    Args:
        spec: from :func:`micro_spec` (or a ``dataclasses.replace`` of one).
        backgrounds: the background set (None: scikit-image's bundled textures).
        head: the subject's head at ``spec.size`` (None: :func:`subject_head`, built here); pass it to
            render several clips of one subject.

    Returns:
        :class:`MicroClip` (frames [H, W, 3] uint8, flows [H, W, 2] float32, mask [H, W] bool).
    """
    head = subject_head(spec.seed, spec.subject, spec.size) if head is None else head
    renderer = _setup(spec, backgrounds, head)
    frames, states, mask = [], {}, None
    for t in range(spec.num_frames):
        state = renderer.state_at(spec.weights(t), spec.pose(t))
        rgb, alpha = renderer.image(state)[:2]
        frames.append(_uint8(rgb))
        if t == spec.onset:
            mask = (alpha >= 0.5).numpy()
        if t in (spec.onset, spec.apex):
            states[t] = state
    head_only = renderer.state_at(spec.weights(spec.onset), spec.pose(spec.apex))
    onset = states[spec.onset]
    return MicroClip(spec, frames, renderer.flow(onset, states[spec.apex]).float().numpy(),
                     renderer.flow(onset, head_only).float().numpy(), mask)


# ---------------------------------------------------------------------------------------------- writing

LAYOUT = "pyflowops-micro/1"
LABEL_COLUMNS = ("subject", "sequence", "onset", "apex", "offset", "num_frames", "emotion", "class")
FILES = {  # meta.json repeats this, so a data set explains itself
    "labels.csv": "one row per complete clip, sorted by subject then sequence: " + ",".join(LABEL_COLUMNS)
    + " (subject and sequence are the folder names; onset, apex, offset are frame indices t)",
    "<subject>/<sequence>/<t>.png": "frames t = 0..num_frames-1 (4-digit t), uint8 RGB; <subject> = s + 3 digits, "
    "<sequence> = the clip index, 6 digits",
    "<subject>/<sequence>/flow_facial.flo": "ground-truth flow onset frame -> apex frame (Middlebury .flo, pixels)",
    "<subject>/<sequence>/flow_head.flo": "head-only flow onset -> apex (the apex head pose with the onset "
    "expression); expression flow = facial - head",
    "<subject>/<sequence>/mask.png": "uint8, 255 on the head at the onset frame (alpha >= 0.5)",
    "<subject>/<sequence>/meta.json": "the clip's spec (onset, apex, offset, num_frames, emotion, class, intensity, "
    "subject, ...); written last: its presence marks the clip complete",
}
GROUP = 8  # clips of one subject per worker task (the head is built once per task)


def micro_marker(root: str | Path, spec: MicroSpec) -> Path:
    """The <subject>/<sequence>/meta.json that marks a complete clip."""
    return Path(root) / spec.subject_name / spec.name / "meta.json"


def write_micro(root: str | Path, spec: MicroSpec, backgrounds: Backgrounds | None = None,
                head: Head | None = None) -> int:
    """Render and write one clip (every file atomically, meta.json last); returns the frames written
    (0 when the clip was complete already). ``head``: the subject's, as :func:`render_micro` takes it."""
    marker = micro_marker(root, spec)
    if marker.exists():
        return 0
    clip = render_micro(spec, backgrounds, head)
    folder = marker.parent
    for t, frame in enumerate(clip.frames):
        _png(folder / f"{t:04d}.png", frame)
    _flo(folder / "flow_facial.flo", clip.flow_facial)
    _flo(folder / "flow_head.flo", clip.flow_head)
    _png(folder / "mask.png", clip.mask.astype(np.uint8) * 255)
    _json(marker, spec.to_json())
    return len(clip.frames)


def _work_micro(group: list[MicroSpec]) -> tuple[int, int]:
    """A worker's task (writer._run): clips of one subject, its head built once; returns (subject, frames)."""
    first = group[0]
    head = subject_head(first.seed, first.subject, first.size)
    return first.subject, sum(write_micro(_WORKER["root"], s, _WORKER["backgrounds"], head) for s in group)


def _check_settings(root: Path, settings: dict) -> None:
    """Refuse to mix sets: a clip's folder depends on seed and subjects, its files on size."""
    found = root / "meta.json" if (root / "meta.json").exists() else next(root.glob("s*/*/meta.json"), None)
    if found is None:
        return
    record = json.loads(found.read_text())
    if record.get("layout", LAYOUT) != LAYOUT:
        raise ValueError(f"synthesize_micro: {root} holds a {record.get('layout')!r} set, not {LAYOUT!r}")
    have = {k: record.get(k) for k in settings}
    if have != settings:
        raise ValueError(f"synthesize_micro: {root} holds a set made with {have}, not {settings}; "
                         "use the same settings to resume it, or another folder")


def synthesize_micro(
    out: str | Path,
    sequences: int,
    subjects: int,
    size: int = 256,
    workers: int = 2,
    seed: int = 0,
    first_index: int = 0,
    backgrounds: str | Path | None = None,
    progress: bool = True,
) -> SynthReport:
    """Write clips ``first_index .. first_index + sequences - 1`` of the micro set ``seed`` into ``out``.

    Args:
        out: the set's root (created). Complete clips there are skipped; a killed run's ``.*.tmp`` files
            are removed; labels.csv and meta.json are rebuilt from the clips' meta.json files at the end.
        sequences: how many clips (each 7-13 frames). subjects: the set's number of subjects (clip i
            shows subject i % subjects); must be the same in every run into ``out``.
        size: image size in pixels (square, >= 32). workers: processes rendering in parallel.
        seed: the set; (seed, index) fixes a clip, so disjoint index ranges are disjoint shards of one set.
        backgrounds: a folder of background images (None: scikit-image's textures).
        progress: show a progress bar (tqdm, in frames).

    Returns:
        :class:`~.writer.SynthReport`; its ``written_pairs`` counts frames (each clip has one onset -> apex
        flow pair), so ``pairs_per_minute`` is frames per minute.
    """
    if sequences < 1 or subjects < 1 or size < 32 or workers < 1 or first_index < 0:
        raise ValueError(f"synthesize_micro: need sequences >= 1, subjects >= 1, size >= 32, workers >= 1, "
                         f"first_index >= 0; got {sequences}, {subjects}, {size}, {workers}, {first_index}")
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    _check_settings(root, {"seed": seed, "size": size, "subjects": subjects})
    for stale in root.rglob(".*.tmp"):  # a killed run's unfinished file (never under a final name)
        stale.unlink(missing_ok=True)
    specs = [micro_spec(seed, i, subjects, size) for i in range(first_index, first_index + sequences)]
    todo = sorted((s for s in specs if not micro_marker(root, s).exists()), key=lambda s: (s.subject, s.index))
    groups: list[list[MicroSpec]] = []
    for s in todo:
        if groups and groups[-1][0].subject == s.subject and len(groups[-1]) < GROUP:
            groups[-1].append(s)
        else:
            groups.append([s])
    start = time.perf_counter()
    written = _run(root, groups, workers, None if backgrounds is None else str(backgrounds), progress,
                   work=_work_micro, units=lambda group: sum(s.num_frames for s in group), unit="frame")
    report = SynthReport(len(todo), sum(written), len(specs) - len(todo), time.perf_counter() - start)
    _update_meta(root, seed, size, subjects)
    return report


def _update_meta(root: Path, seed: int, size: int, subjects: int) -> None:
    """Rewrite labels.csv and meta.json from the clips' meta.json files (right after any mix of runs)."""
    records = sorted((json.loads(m.read_text()) for m in root.glob("s*/*/meta.json")),
                     key=lambda r: (r["subject"], r["index"]))
    rows = [",".join(LABEL_COLUMNS)]
    for r in records:
        subject, sequence = r["folder"].split("/")
        rows.append(",".join(str(v) for v in (subject, sequence, r["onset"], r["apex"], r["offset"],
                                              r["num_frames"], r["emotion"], r["class"])))
    text = "\n".join(rows) + "\n"
    _atomic_write(root / "labels.csv", lambda fh: fh.write(text.encode()))
    count = lambda key, values: {v: sum(r[key] == v for r in records) for v in values}
    _json(root / "meta.json", {
        "generator": "pyflowops_models.data.micro (procedural Gaussian heads, render_flow order 1)",
        "layout": LAYOUT,
        "seed": seed,
        "size": size,
        "subjects": subjects,
        "sequences": len(records),
        "subjects_present": len({r["subject"] for r in records}),
        "frames": sum(r["num_frames"] for r in records),
        "classes": count("class", MICRO_CLASSES),
        "emotions": count("emotion", [e for c in MICRO_CLASSES for e in MICRO_EMOTIONS[c]]),
        "files": FILES,
    })
