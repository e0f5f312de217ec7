"""Micro-expression clips (onset, apex, offset, class) from our synthetic sets, CASME II, SAMM and SMIC.

Every loader returns a list of :class:`MERSample`, sorted by ``(subject, sequence)``: the frame files
of one clip in temporal order (sorted by the frame *number* in the name, so ``img9`` comes before
``img10``), the onset / apex / offset as indices into those frames, the data set's own emotion label
and its class in the three classes of the MEGC 2019 composite benchmark (:data:`CLASSES`).

Layouts (``<t>`` / ``<n>`` = a frame number; frame files are .jpg, .jpeg, .png or .bmp, any case)::

    synthetic   root/meta.json  {"layout": "pyflowops-micro/1", ...}   (``pyflowops synth --mode micro``)
                root/labels.csv subject,sequence,onset,apex,offset,num_frames,emotion,class (frame indices t)
                root/s007/000012/0000.png ... <t>.png, flow_facial.flo, flow_head.flo, mask.png
    casme2      root/sub01/EP02_01f/img46.jpg (RAW_selected) or reg_img46.jpg (Cropped)
                + CASME2-coding-20140508.xlsx (or any .xlsx/.csv) in root or root's parent: Subject,
                Filename, OnsetFrame, ApexFrame, OffsetFrame, Estimated Emotion (frame numbers <n>)
    samm        root/006/006_1_2/006_05562.jpg  + SAMM_Micro_FACS_Codes_v2.xlsx: a title block above the
                header row (Subject, Filename, Onset Frame, Apex Frame, Offset Frame, Estimated Emotion,
                optional Type); the header is found as the row holding the most of those names (first 30 rows)
    smic        root/HS/s1/micro/negative/s1_ne_01/image001001.bmp (or VIS/, NIR/; or root = the variant folder)

Policies:

* Composite classes (MEGC 2019): positive = happiness; negative = disgust, repression, anger,
  contempt, fear, sadness; surprise = surprise. Clips with any other label ("others", "other", a
  blank cell) are dropped, and so are sheet rows whose ``Type`` column (SAMM) lacks "micro";
  each loader call reports what it dropped in one ``warnings.warn`` with the counts.
* A missing apex ("/", -1 or an empty cell) is the middle frame between onset and offset (index
  ``(onset + offset) // 2``); SMIC has no apex at all: onset = first frame, offset = last, apex =
  the middle one, as MEGC 2019 baselines did. A missing offset is the last frame of the clip.
* Errors (``FileNotFoundError`` / ``ValueError``, both one line naming the file, row or column):
  a missing root, no label sheet, a sheet without a required column, a clip folder missing, a
  folder without frames, an onset or apex frame not on disk, an offset number not on disk.
"""

from __future__ import annotations

import csv
import json
import re
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["CLASSES", "FRAME_EXTENSIONS", "MERSample", "composite_class", "list_frames", "load_casme2",
           "load_mer_dataset", "load_samm", "load_smic", "load_synthetic"]

CLASSES: tuple[str, ...] = ("negative", "positive", "surprise")  # MEGC 2019 composite benchmark: ids 0, 1, 2
FRAME_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
DATASETS = ("synthetic", "casme2", "samm", "smic")
SYNTHETIC_LAYOUT = "pyflowops-micro/1"

_COMPOSITE = {"negative": 0, "disgust": 0, "repression": 0, "anger": 0, "contempt": 0, "fear": 0, "sadness": 0,
              "positive": 1, "happiness": 1, "surprise": 2, "sad": 0, "happy": 1}  # sad, happy: our synthetic sets'

# the sheets of CASME II and SAMM differ only in these: the columns' spelling, the file name, the subject folder
_CODED = {
    "casme2": {"name": "CASME II", "sheet": "CASME2-coding-20140508.xlsx", "hint": "casme", "prefix": "sub",
               "width": 2, "columns": ("Subject", "Filename", "OnsetFrame", "ApexFrame", "OffsetFrame",
                                       "Estimated Emotion")},
    "samm": {"name": "SAMM", "sheet": "SAMM_Micro_FACS_Codes_v2.xlsx", "hint": "samm", "prefix": "",
             "width": 3, "columns": ("Subject", "Filename", "Onset Frame", "Apex Frame", "Offset Frame",
                                     "Estimated Emotion")},
}
_HEADER_ROWS = 30  # a sheet's header row is searched in its first rows (SAMM has a title block above it)
_NUMBER = re.compile(r"(\d+)$")


@dataclass(frozen=True)
class MERSample:
    """One micro-expression clip.

    ``subject`` is the leave-one-subject-out key, prefixed by the data set (``"casme2/sub01"``,
    ``"samm/006"``, ``"smic/s1"``, ``"synthetic/s007"``) so a composite set never merges subjects;
    ``sequence`` is the clip's folder name. ``onset``, ``apex``, ``offset`` index ``frames`` (every
    frame file of the clip, temporal order); ``label`` indexes :data:`CLASSES`; ``emotion`` is the
    data set's own label, lower-case. Synthetic clips also carry their head mask at onset (png, 255 =
    head) and ground-truth onset -> apex flows (.flo: facial, and head only).
    """

    dataset: str
    subject: str
    sequence: str
    frames: tuple[Path, ...]
    onset: int
    apex: int
    offset: int
    emotion: str
    label: int
    mask: Path | None = None
    flow_facial: Path | None = None
    flow_head: Path | None = None

    def __post_init__(self) -> None:
        n = len(self.frames)
        if not all(0 <= i < n for i in (self.onset, self.apex, self.offset)):
            raise ValueError(f"{self.subject}/{self.sequence}: onset/apex/offset {self.onset}/{self.apex}/"
                             f"{self.offset} outside its {n} frames")
        if not 0 <= self.label < len(CLASSES):
            raise ValueError(f"{self.subject}/{self.sequence}: label {self.label} is not an index into {CLASSES}")

    @property
    def onset_frame(self) -> Path:
        return self.frames[self.onset]

    @property
    def apex_frame(self) -> Path:
        return self.frames[self.apex]

    @property
    def class_name(self) -> str:
        return CLASSES[self.label]


def composite_class(dataset: str, emotion: str) -> int | None:
    """The MEGC 2019 composite class id of a data set's emotion label (any case), or None: excluded.

    positive = happiness; negative = disgust, repression, anger, contempt, fear, sadness; surprise =
    surprise; the class names themselves map to themselves (SMIC), as do the synthetic generator's
    "sad" and "happy" (its loader reads the ``class`` column, which agrees); anything else
    ("others", "other", blank) is None.
    """
    if dataset not in DATASETS:
        raise ValueError(f"unknown data set {dataset!r}: expected one of {', '.join(DATASETS)}")
    return _COMPOSITE.get(str(emotion).strip().lower())


# ----------------------------------------------------------------------------- shared helpers


def _dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def list_frames(folder: str | Path) -> tuple[list[int], tuple[Path, ...]]:
    """The frame files of a clip folder: ``(numbers, paths)``, sorted by the number ending the file stem.

    Frame files are images (:data:`FRAME_EXTENSIONS`, any case) whose stem ends in digits (``img46``,
    ``reg_img46``, ``006_05562``, ``image001001``, ``0000``); other files (``mask.png``, hidden files)
    are ignored. Two files with one number are an error.
    """
    folder = Path(folder)
    found: dict[int, Path] = {}
    for p in folder.iterdir():
        match = _NUMBER.search(p.stem)
        if p.suffix.lower() not in FRAME_EXTENSIONS or p.name.startswith(".") or not match or not p.is_file():
            continue
        number = int(match.group(1))
        if number in found:
            raise ValueError(f"{folder}: frames {found[number].name} and {p.name} have the same number {number}")
        found[number] = p
    numbers = sorted(found)
    return numbers, tuple(found[n] for n in numbers)


def _clip(folder: Path, where: str) -> tuple[list[int], tuple[Path, ...]]:
    if not folder.is_dir():
        raise FileNotFoundError(f"{where}: no clip folder {folder}")
    numbers, frames = list_frames(folder)
    if not frames:
        raise ValueError(f"{where}: no frame images ({', '.join(FRAME_EXTENSIONS)}) in {folder}")
    return numbers, frames


def _index(numbers: list[int], frames: tuple[Path, ...], number: int, what: str, where: str) -> int:
    """The index of frame ``number`` in a clip; a number not on disk names the file it looked for."""
    try:
        return numbers.index(number)
    except ValueError:
        digits = _NUMBER.search(frames[0].stem).group(1)
        text = str(number).zfill(len(digits)) if digits.startswith("0") else str(number)
        name = frames[0].stem[: -len(digits)] + text + frames[0].suffix
        raise FileNotFoundError(f"{where}: {what} frame {number} ({name}) not found in {frames[0].parent} "
                                f"(its frames are {numbers[0]}..{numbers[-1]})") from None


def _indices(numbers: list[int], frames: tuple[Path, ...], onset: int | None, apex: int | None,
             offset: int | None, where: str) -> tuple[int, int, int]:
    """Frame numbers -> indices; no onset is an error, no offset = the last frame, no apex = the middle one."""
    if onset is None:
        raise ValueError(f"{where}: no onset frame")
    i_onset = _index(numbers, frames, onset, "onset", where)
    i_offset = len(frames) - 1 if offset is None else _index(numbers, frames, offset, "offset", where)
    i_apex = (i_onset + i_offset) // 2 if apex is None else _index(numbers, frames, apex, "apex", where)
    return i_onset, i_apex, i_offset


def _number(value: Any, where: str) -> int | None:
    """A frame number from a sheet cell (int, float, text); "/", "-", -1 and blank are None (missing)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = "" if value is None else str(value).strip()
    if text in ("", "/", "-", "-1", "n/a", "N/A"):
        return None
    if re.fullmatch(r"\d+(\.0*)?", text):
        return int(float(text))
    raise ValueError(f"{where}: {value!r} is not a frame number")


def _norm(name: Any) -> str:
    return re.sub(r"[^a-z0-9]", "", str(name).lower()) if name is not None else ""


def _tables(path: Path) -> list[list[tuple]]:
    """The rows of every sheet of an .xlsx workbook, or of a .csv file (one table)."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        with open(path, newline="", encoding="utf-8-sig") as f:
            return [[tuple(row) for row in csv.reader(f)]]
    if suffix not in (".xlsx", ".xlsm"):
        raise ValueError(f"label sheet {path}: unsupported format {suffix or '(none)'} (give .xlsx or .csv)")
    import openpyxl

    workbook = openpyxl.load_workbook(path, read_only=True, data_only=True)
    try:
        return [list(sheet.iter_rows(values_only=True)) for sheet in workbook.worksheets]
    finally:
        workbook.close()


def _read_sheet(path: Path, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> list[tuple[int, dict]]:
    """The data rows of a label sheet as ``(sheet row number, {normalised column: value})``.

    Column names compare lower-case without spaces or punctuation (``OnsetFrame`` = ``Onset Frame``).
    The header is the row, in the first 30 rows of any sheet, that holds the most ``required`` names;
    a required name it lacks is an error naming it. Rows with a blank first required column are skipped.
    """
    wanted = [_norm(c) for c in required]
    best: tuple[int, int, list[tuple], int] = (0, 0, [], 0)  # (names found, -row, rows, row)
    for rows in _tables(path):
        for r, row in enumerate(rows[:_HEADER_ROWS]):
            cells = {_norm(c) for c in row}
            hits = sum(w in cells for w in wanted)
            if hits > best[0]:
                best = (hits, -r, rows, r)
    hits, _, rows, r = best
    if not hits:
        raise ValueError(f"label sheet {path}: no header row (with {', '.join(map(repr, required))}) "
                         f"in its first {_HEADER_ROWS} rows")
    header = [_norm(c) for c in rows[r]]
    missing = [c for c, w in zip(required, wanted) if w not in header]
    if missing:
        raise ValueError(f"label sheet {path}: no column {', '.join(map(repr, missing))} in its header row "
                         f"{r + 1} (it has {', '.join(repr(c) for c in rows[r] if c not in (None, ''))})")
    keep = {w: header.index(w) for w in wanted + [_norm(c) for c in optional] if w in header}
    out = []
    for k, row in enumerate(rows[r + 1:], start=r + 2):
        values = {w: (row[j] if j < len(row) else None) for w, j in keep.items()}
        if str(values[wanted[0]] if values[wanted[0]] is not None else "").strip():
            out.append((k, values))
    return out


def _find_sheet(root: Path, labels: str | Path | None, dataset: str) -> Path:
    """The label sheet: ``labels``, else the release's file name, else the one .xlsx/.csv (preferring one
    whose name says the data set) in root, then in root's parent."""
    spec = _CODED[dataset]
    if labels is not None:
        if not Path(labels).is_file():
            raise FileNotFoundError(f"no label sheet {labels}")
        return Path(labels)
    folders = (root, root.parent)
    for folder in folders:
        if (folder / spec["sheet"]).is_file():
            return folder / spec["sheet"]
    for folder in folders:
        found = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".xlsx", ".csv") and p.is_file()
                       and not p.name.startswith(("~$", ".")))
        named = [p for p in found if spec["hint"] in p.name.lower()] or found
        if len(named) > 1:
            raise ValueError(f"{spec['name']}: several label sheets in {folder} ({', '.join(p.name for p in named)}):"
                             " pick one with labels=")
        if named:
            return named[0]
    raise FileNotFoundError(f"{spec['name']}: no label sheet: looked for {spec['sheet']} or another .xlsx/.csv in "
                            f"{root} and {root.parent} (give it with labels=)")


def _subject(value: Any, prefix: str, width: int) -> str:
    """A sheet's subject cell (1, 1.0, "01", "sub01") -> the folder name ("sub01" / "006")."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip()
    digits = text[len(prefix):] if prefix and text.lower().startswith(prefix) else text
    return f"{prefix}{int(digits):0{width}d}" if digits.isdigit() else text


def _root(root: str | Path, name: str) -> Path:
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{name}: no such folder {root}")
    return root


def _finish(loader: str, samples: list[MERSample], dropped: Counter) -> list[MERSample]:
    if dropped:
        total = sum(dropped.values())
        warnings.warn(f"{loader}: dropped {total} of {total + len(samples)} clips outside the composite classes "
                      f"{CLASSES}: " + ", ".join(f"{k} x{v}" for k, v in sorted(dropped.items())), stacklevel=3)
    return sorted(samples, key=lambda s: (s.subject, s.sequence))


# ----------------------------------------------------------------------------- loaders


def load_synthetic(root: str | Path) -> list[MERSample]:
    """Clips of a ``pyflowops synth --mode micro`` set (layout ``pyflowops-micro/1``, see the module doc).

    labels.csv's onset/apex/offset are frame indices t (files ``<t>.png``, 4 digits); the label is its
    ``class`` column. ``mask``, ``flow_facial``, ``flow_head`` are set where the clip folder has them.
    """
    root = _root(root, "synthetic")
    meta = root / "meta.json"
    if not meta.is_file():
        raise FileNotFoundError(f"synthetic: no {meta} (pyflowops synth --mode micro writes it)")
    layout = json.loads(meta.read_text()).get("layout")
    if layout != SYNTHETIC_LAYOUT:
        raise ValueError(f"synthetic: {meta} has layout {layout!r}, expected {SYNTHETIC_LAYOUT!r}")
    if not (root / "labels.csv").is_file():
        raise FileNotFoundError(f"synthetic: no label sheet {root / 'labels.csv'}")
    columns = ("subject", "sequence", "onset", "apex", "offset", "num_frames", "emotion", "class")
    samples, dropped = [], Counter()
    for r, row in _read_sheet(root / "labels.csv", columns):
        subject, sequence = str(row["subject"]).strip(), str(row["sequence"]).strip()
        name = str(row["class"] or "").strip().lower()
        if name not in CLASSES:
            dropped[f"class {name!r}"] += 1
            continue
        where, folder = f"labels.csv row {r} ({subject}/{sequence})", root / subject / sequence
        numbers, frames = _clip(folder, where)
        if _number(row["numframes"], where) not in (None, len(frames)):
            raise ValueError(f"{where}: {row['numframes']} frames in the sheet, {len(frames)} in {folder}")
        onset, apex, offset = _indices(numbers, frames, *(_number(row[k], where) for k in ("onset", "apex", "offset")),
                                       where)
        extra = {k: (folder / f if (folder / f).is_file() else None)
                 for k, f in (("mask", "mask.png"), ("flow_facial", "flow_facial.flo"), ("flow_head", "flow_head.flo"))}
        samples.append(MERSample("synthetic", f"synthetic/{subject}", sequence, frames, onset, apex, offset,
                                 str(row["emotion"] or "").strip().lower(), CLASSES.index(name), **extra))
    return _finish("load_synthetic", samples, dropped)


def _load_coded(dataset: str, root: str | Path, labels: str | Path | None) -> list[MERSample]:
    """CASME II and SAMM: a label sheet of frame numbers + ``root/<subject>/<Filename>/<frames>``."""
    spec = _CODED[dataset]
    root = _root(root, spec["name"])
    sheet = _find_sheet(root, labels, dataset)
    keys = [_norm(c) for c in spec["columns"]]
    samples, dropped = [], Counter()
    for r, row in _read_sheet(sheet, spec["columns"], optional=("Type",)):
        subject = _subject(row[keys[0]], spec["prefix"], spec["width"])
        sequence, emotion = str(row[keys[1]]).strip(), str(row[keys[5]] or "").strip().lower()
        kind = str(row.get("type") or "")
        if "type" in row and "micro" not in kind.lower():
            dropped[f"type {kind!r}"] += 1
            continue
        label = composite_class(dataset, emotion)
        if label is None:
            dropped[f"emotion {emotion!r}"] += 1
            continue
        where = f"{sheet.name} row {r} ({subject}/{sequence})"
        numbers, frames = _clip(root / subject / sequence, where)
        onset, apex, offset = _indices(numbers, frames, *(_number(row[k], where) for k in keys[2:5]), where)
        samples.append(MERSample(dataset, f"{dataset}/{subject}", sequence, frames, onset, apex, offset, emotion,
                                 label))
    return _finish(f"load_{dataset}", samples, dropped)


def load_casme2(root: str | Path, labels: str | Path | None = None) -> list[MERSample]:
    """CASME II clips: ``root/sub01/EP02_01f/img46.jpg`` (or ``reg_img46.jpg``) + the coding sheet.

    ``labels``: the sheet (.xlsx or .csv), default ``CASME2-coding-20140508.xlsx`` or the one sheet
    in root or root's parent. ``Subject`` 1 or "01" is folder ``sub01``; the sheet's frame numbers are
    the numbers in the file names; an apex "/" is the middle frame between onset and offset.
    """
    return _load_coded("casme2", root, labels)


def load_samm(root: str | Path, labels: str | Path | None = None) -> list[MERSample]:
    """SAMM clips: ``root/006/006_1_2/006_05562.jpg`` + ``SAMM_Micro_FACS_Codes_v2.xlsx``.

    The header row is found below the sheet's title block; ``Subject`` 6 or "006" is folder ``006``;
    apex -1 is the middle frame; rows whose ``Type`` (when the column exists) lacks "micro" are dropped.
    """
    return _load_coded("samm", root, labels)


def _smic_subjects(folder: Path) -> list[Path]:
    return [d for d in _dirs(folder) if (d / "micro").is_dir()]


def load_smic(root: str | Path, variant: str = "HS") -> list[MERSample]:
    """SMIC clips: ``root/<variant>/s1/micro/<class>/s1_ne_01/image001001.bmp`` (variant HS, VIS or NIR),
    or ``root`` = the variant folder. The class folder (negative, positive, surprise) is the emotion and
    the label; SMIC has no apex: onset = first frame, offset = last, apex = the middle frame."""
    root = _root(root, "SMIC")
    base = root / variant if (root / variant).is_dir() else root
    subjects = _smic_subjects(base)
    if not subjects:
        raise FileNotFoundError(f"SMIC: no subject folders with micro/ (s<N>/micro/<class>/<clip>/) in {root / variant}"
                                f" or {root}")
    samples, dropped = [], Counter()
    for subject in subjects:
        for class_dir in _dirs(subject / "micro"):
            emotion, clips = class_dir.name.lower(), _dirs(class_dir)
            label = composite_class("smic", emotion)
            if label is None:
                dropped[f"class folder {class_dir.name!r}"] += len(clips)
                continue
            for clip in clips:
                frames = _clip(clip, f"SMIC {subject.name}/{clip.name}")[1]
                n = len(frames)
                samples.append(MERSample("smic", f"smic/{subject.name}", clip.name, frames, 0, (n - 1) // 2, n - 1,
                                         emotion, label))
    return _finish("load_smic", samples, dropped)


def _detect(root: Path) -> tuple[str, dict]:
    meta = root / "meta.json"
    if meta.is_file():
        try:
            if json.loads(meta.read_text()).get("layout") == SYNTHETIC_LAYOUT:
                return "synthetic", {}
        except (ValueError, AttributeError):
            pass
    variants = [v for v in ("HS", "VIS", "NIR") if (root / v).is_dir()]
    if variants or _smic_subjects(root):
        return "smic", {"variant": variants[0] if variants else "HS"}
    names = [d.name for d in _dirs(root)]
    if any(re.fullmatch(r"sub\d+", n) for n in names):
        return "casme2", {}
    if any(re.fullmatch(r"\d{3}", n) for n in names):
        return "samm", {}
    raise ValueError(f"cannot tell the data set in {root}: looked for meta.json with layout {SYNTHETIC_LAYOUT!r} "
                     "(synthetic), HS/, VIS/, NIR/ or s<N>/micro/ folders (SMIC), sub<NN>/ folders (CASME II) and "
                     "<NNN>/ folders (SAMM); give kind=")


def load_mer_dataset(root: str | Path, kind: str = "auto", labels: str | Path | None = None) -> list[MERSample]:
    """Clips of any supported layout. ``kind``: auto (detected from the folders, see :func:`_detect`),
    synthetic, casme2, samm or smic (auto picks SMIC's HS, else VIS, else NIR). ``labels``: the label
    sheet of CASME II or SAMM (refused for the others)."""
    if kind not in ("auto",) + DATASETS:
        raise ValueError(f"unknown data set kind {kind!r}: expected auto, {', '.join(DATASETS)}")
    root = _root(root, "data set")
    options: dict = {}
    if kind == "auto":
        kind, options = _detect(root)
    if labels is not None and kind not in _CODED:
        raise ValueError(f"labels= is the label sheet of CASME II or SAMM, not of {kind} data ({root})")
    if kind in _CODED:
        return _load_coded(kind, root, labels)
    return load_synthetic(root) if kind == "synthetic" else load_smic(root, **options)
