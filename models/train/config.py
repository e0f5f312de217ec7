"""Training configurations: nested dataclasses loaded from YAML (``models/configs/NAME.yaml``).

A config has four sections; every field is documented on its dataclass below::

    model:  name, size, corr, options           -> pyflowops_models.create(name, size, corr, **options)
    data:   source, image_size, crop, augment, crop_shift, seed, length, first_index, motion_scales, cache,
            val_source, val_seed, val_first_index, val_length, val_split, val_batch_size
    optim:  lr, weight_decay, eps, clip, steps, extra_schedule_steps, pct_start, batch_size, iters,
            gamma, amp, loss_options
    train:  stage, init, checkpoint_every, keep_last, val_every, log_every, seed, num_workers, device

``load_config("decflow_stage1", overrides=["optim.lr=1e-4", "data.crop=[256, 256]"])`` reads the
named file (or a path), applies the overrides (values parsed by YAML scalar rules, so ``1e-4`` is a
float, ``null`` is None, ``[256, 256]`` a list) and validates: an unknown key is an error naming the
key and the valid ones. ``model.options`` and ``optim.loss_options`` are free dicts (any key).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = ["Config", "ModelConfig", "DataConfig", "OptimConfig", "TrainConfig", "CONFIG_DIR",
           "config_names", "load_config", "config_from_dict", "config_to_dict"]

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
AMP_MODES = ("bf16", "fp16", "off")
STAGES = (0, 1, 2)
DEVICES = ("auto", "cpu", "cuda")


@dataclass
class ModelConfig:
    """Which network: ``create(name, size, corr, **options)``."""

    name: str = "raft"  # raft | gma | decflow | srflownet (stage 0 ignores it: FacePartsEncoder)
    size: str = "full"  # full (the paper's widths) | small (CPU work)
    corr: str = "auto"  # allpairs | onthefly | auto
    options: dict = field(default_factory=dict)  # create() keywords: dropout, softmax, semantic, semantic_weights...


@dataclass
class DataConfig:
    """Where training and validation pairs come from."""

    source: str = "rendered"  # "rendered" (faces on the fly, no disk), "generic" (photos under random affine
    #                           motions: pretraining, data/generic.py), a FacialFlowNet-layout folder, or a
    #                           `pyflowops synth --mode micro` folder (its onset -> apex pairs; one split)
    image_size: int = 256  # rendered: image width = height in pixels (ignored for a folder)
    crop: list | None = None  # [H, W] random crop with FlowAugmentor; None: full images, no augmentation
    augment: bool = True  # with crop: RAFT/FFN photometric + spatial augmentation; False: plain random crop only
    crop_shift: int = 0  # plain crop: image 2's window moves up to this many px from image 1's (flow shifts too)
    seed: int = 0  # rendered: the data set seed (sequence_spec seed) of the training pairs
    length: int = 1000  # rendered: number of training pairs (sequences first_index .. first_index+length-1)
    first_index: int = 0  # rendered: index of the first training sequence
    motion_scales: list | None = None  # rendered: training sequence lengths n (null: FacialFlowNet's 5-20; [1, 2, 3]: larger motion)
    cache: bool = False  # keep un-augmented samples in memory after the first render/read (small sets only)
    val_source: str | None = None  # None: as source (rendered/generic: val_seed/val_first_index; folder: val_split)
    val_seed: int = 1  # rendered: seed of the held-out set (differs from seed: disjoint sequences)
    val_first_index: int = 1_000_000  # rendered: first sequence index of the held-out set
    val_length: int = 16  # number of validation pairs (a folder's split is cut to this many; 0 = all of it)
    val_split: str = "val"  # folder: the split used for validation
    val_batch_size: int = 2  # batch size of validation


@dataclass
class OptimConfig:
    """AdamW + OneCycleLR (linear, no momentum cycling) + gradient clipping, as RAFT/GMA/FacialFlowNet."""

    lr: float = 1.25e-4  # peak learning rate of the one-cycle schedule
    weight_decay: float = 1e-5  # AdamW weight decay
    eps: float = 1e-8  # AdamW epsilon
    clip: float = 1.0  # max global gradient norm (clip_grad_norm_); 0 = no clipping
    steps: int = 10_000  # optimizer steps of the run
    extra_schedule_steps: int = 100  # OneCycleLR total_steps = steps + this (the official "+ 100"; >= 1)
    pct_start: float = 0.05  # fraction of the schedule spent warming up
    batch_size: int = 6  # pairs per optimizer step, summed over all processes
    iters: int = 12  # refinement iterations of the recurrent decoder during training and validation
    gamma: float = 0.85  # per-iteration loss decay gamma^(N-1-i)
    amp: str = "bf16"  # autocast dtype: bf16 | fp16 (CUDA only; CPU falls back to bf16) | off
    loss_options: dict = field(default_factory=dict)  # extra loss keywords (srflownet: smooth_weight, match_weight)


@dataclass
class TrainConfig:
    """Stage, initialization, checkpoints, validation, logging."""

    stage: int = 1  # 0: pretrain FacePartsEncoder on part labels; 1: train all; 2: DecFlow freeze_stage2()
    init: str | None = None  # weights to start from: a .pth/.pt file or a run directory (its latest checkpoint)
    checkpoint_every: int = 1000  # steps between checkpoints (one is always written at the end)
    keep_last: int = 3  # checkpoints kept in out_dir/checkpoints (older ones are deleted)
    val_every: int = 1000  # steps between validations (one always runs at the end); 0 = only at the end
    log_every: int = 50  # steps between TensorBoard scalar writes (and the tqdm postfix refresh)
    seed: int = 1234  # seeds python, numpy and torch, and the data order (FacialFlowNet's 1234)
    num_workers: int = 0  # DataLoader worker processes
    device: str = "auto"  # auto (CUDA when available) | cpu | cuda


@dataclass
class Config:
    """A full training configuration (see the module docstring)."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


_SECTIONS = {"model": ModelConfig, "data": DataConfig, "optim": OptimConfig, "train": TrainConfig}
_FREE_DICTS = {("model", "options"), ("optim", "loss_options")}


def config_names() -> list[str]:
    """Names of the bundled configs (``models/configs/*.yaml`` without the suffix)."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def _fields(cls) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def _unknown(where: str, key: str, valid: list[str]) -> ValueError:
    return ValueError(f"config: unknown key {where}{key!r}; valid keys{' of ' + where.rstrip('.') if where else ''}: "
                      f"{', '.join(valid)}")


def _coerce(path: str, value: Any, default: Any, annotation: str) -> Any:
    """Check one scalar against its field's type (ints are accepted where floats are expected)."""
    allows_none = "None" in annotation
    if value is None:
        if allows_none:
            return None
        raise ValueError(f"config: {path} must not be null")
    if isinstance(default, bool) or annotation == "bool":
        if not isinstance(value, bool):
            raise ValueError(f"config: {path} must be true or false, got {value!r}")
        return value
    if annotation.startswith("float"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"config: {path} must be a number, got {value!r}")
        return float(value)
    if annotation.startswith("int"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"config: {path} must be an integer, got {value!r}")
        return value
    if annotation.startswith("str"):
        if isinstance(value, bool):  # YAML 1.1 reads off/on/no/yes as booleans: amp: off means "off"
            value = "on" if value else "off"
        if not isinstance(value, str):
            raise ValueError(f"config: {path} must be a string, got {value!r}")
        return value
    if annotation.startswith("list"):
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"config: {path} must be a list, got {value!r}")
        return list(value)
    if annotation.startswith("dict"):
        if not isinstance(value, dict):
            raise ValueError(f"config: {path} must be a mapping, got {value!r}")
        return dict(value)
    return value


def config_from_dict(raw: dict | None) -> Config:
    """Build and validate a :class:`Config` from a nested dict (missing keys keep their defaults).

    Raises:
        ValueError: an unknown section or key (naming it and the valid ones), a value of the wrong
        type, or a value out of range.
    """
    raw = raw or {}
    if not isinstance(raw, dict):
        raise ValueError(f"config: the top level must be a mapping of sections, got {type(raw).__name__}")
    config = Config()
    for section, values in raw.items():
        if section not in _SECTIONS:
            raise _unknown("", section, list(_SECTIONS))
        if values is None:
            continue
        if not isinstance(values, dict):
            raise ValueError(f"config: section {section!r} must be a mapping, got {values!r}")
        cls = _SECTIONS[section]
        target = getattr(config, section)
        annotations = {f.name: str(f.type) for f in dataclasses.fields(cls)}
        for key, value in values.items():
            if key not in annotations:
                raise _unknown(f"{section}.", key, _fields(cls))
            setattr(target, key, _coerce(f"{section}.{key}", value, getattr(target, key), annotations[key]))
    _check(config)
    return config


def _check(c: Config) -> None:
    from ..registry import MODEL_NAMES, SIZES

    def need(ok: bool, message: str) -> None:
        if not ok:
            raise ValueError(f"config: {message}")

    need(c.model.name in MODEL_NAMES, f"model.name must be one of {MODEL_NAMES}, got {c.model.name!r}")
    need(c.model.size in SIZES, f"model.size must be one of {SIZES}, got {c.model.size!r}")
    need(c.optim.amp in AMP_MODES, f"optim.amp must be one of {AMP_MODES}, got {c.optim.amp!r}")
    need(c.train.stage in STAGES, f"train.stage must be one of {STAGES}, got {c.train.stage!r}")
    need(c.train.device in DEVICES, f"train.device must be one of {DEVICES}, got {c.train.device!r}")
    need(c.train.stage != 2 or c.model.name == "decflow", "train.stage 2 (freeze_stage2) is for model.name decflow")
    need(c.optim.steps >= 1 and c.optim.batch_size >= 1 and c.optim.iters >= 1,
         "optim.steps, optim.batch_size and optim.iters must be >= 1")
    need(c.optim.lr > 0 and 0 < c.optim.pct_start < 1, "optim.lr must be > 0 and optim.pct_start in (0, 1)")
    # OneCycleLR is stepped after every optimizer step: it needs total_steps > steps and a warm-up of > 1 step
    need(c.optim.extra_schedule_steps >= 1, "optim.extra_schedule_steps must be >= 1")
    need(c.optim.pct_start * (c.optim.steps + c.optim.extra_schedule_steps) > 1,
         "optim.pct_start * (optim.steps + optim.extra_schedule_steps) must exceed 1 (the warm-up steps)")
    need(c.train.checkpoint_every >= 1 and c.train.keep_last >= 1 and c.train.log_every >= 1,
         "train.checkpoint_every, train.keep_last and train.log_every must be >= 1")
    need(c.train.val_every >= 0 and c.train.num_workers >= 0, "train.val_every and train.num_workers must be >= 0")
    need(c.data.crop is None or (len(c.data.crop) == 2 and all(isinstance(v, int) and v > 0 for v in c.data.crop)),
         f"data.crop must be null or [H, W] positive integers, got {c.data.crop!r}")
    need(c.data.crop_shift >= 0 and (c.data.crop_shift == 0 or (c.data.crop is not None and not c.data.augment)),
         "data.crop_shift must be >= 0 and needs a plain crop (data.crop set, data.augment false)")
    need(c.data.motion_scales is None or (len(c.data.motion_scales) > 0 and all(
        isinstance(n, int) and n >= 1 for n in c.data.motion_scales)),
        f"data.motion_scales must be null or a list of sequence lengths >= 1, got {c.data.motion_scales!r}")
    need(c.data.length >= 1 and c.data.val_length >= 0 and c.data.image_size >= 16 and c.data.val_batch_size >= 1,
         "data.length >= 1, data.val_length >= 0, data.image_size >= 16, data.val_batch_size >= 1")


def config_to_dict(config: Config) -> dict:
    """The config as a nested dict of plain types (what checkpoints and ``config.yaml`` store)."""
    return dataclasses.asdict(config)


def _set(raw: dict, override: str) -> None:
    if "=" not in override:
        raise ValueError(f"config: an override must be key=value (e.g. optim.lr=1e-4), got {override!r}")
    key, text = override.split("=", 1)
    parts = key.strip().split(".")
    value = yaml.safe_load(text) if text.strip() else None  # YAML scalar rules: 1e-4, null, [1, 2], true
    if isinstance(value, str) and _looks_float(value):
        value = float(value)  # PyYAML reads "1e-4" (no dot) as a string; YAML 1.2 reads it as a float
    if len(parts) < 2:
        raise ValueError(f"config: an override key must be section.field (e.g. optim.lr), got {key!r}; "
                         f"sections: {', '.join(_SECTIONS)}")
    section, name = parts[0], parts[1]
    if section not in _SECTIONS:
        raise _unknown("", section, list(_SECTIONS))
    if name not in _fields(_SECTIONS[section]):
        raise _unknown(f"{section}.", name, _fields(_SECTIONS[section]))
    target = raw.setdefault(section, {}) or {}
    raw[section] = target
    if len(parts) > 2:  # model.options.dropout=0.1: a key inside a free dict
        if (section, name) not in _FREE_DICTS:
            raise ValueError(f"config: {section}.{name} has no sub-keys (got {key!r})")
        node = target.setdefault(name, {}) or {}
        target[name] = node
        for part in parts[2:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    else:
        target[name] = value


def _looks_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return any(c in text.lower() for c in ".e") and text.lower() not in ("inf", "nan")


def _read_yaml(path: Path) -> dict:
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"config: {path} must hold a mapping of sections")
    _fix_floats(raw)
    return raw


def _fix_floats(node: Any) -> Any:
    # PyYAML (YAML 1.1) reads 1e-4 as a string: turn such strings into floats, everywhere.
    if isinstance(node, dict):
        for k, v in node.items():
            node[k] = _fix_floats(v)
    elif isinstance(node, list):
        return [_fix_floats(v) for v in node]
    elif isinstance(node, str) and _looks_float(node):
        return float(node)
    return node


def load_config(name_or_path: str | Path | dict | Config, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Load a config by bundled name (``decflow_stage1``), YAML path, dict or Config, then apply overrides.

    Args:
        name_or_path: a name from :func:`config_names`, a path to a YAML file, a nested dict,
            or a :class:`Config` (copied).
        overrides: ``"section.field=value"`` strings, value parsed as YAML (``optim.lr=1e-4``,
            ``data.crop=[64, 64]``, ``train.init=null``, ``model.options.dropout=0.1``).

    Returns:
        The validated :class:`Config`.

    Raises:
        FileNotFoundError: neither a bundled name nor a file (the bundled names are listed).
        ValueError: an unknown key (naming it and the valid ones) or an invalid value.
    """
    if isinstance(name_or_path, Config):
        raw = config_to_dict(name_or_path)
    elif isinstance(name_or_path, dict):
        raw = _fix_floats(yaml.safe_load(yaml.safe_dump(name_or_path)))  # a deep copy of plain types
    else:
        text = str(name_or_path)
        path = Path(text)
        if not path.is_file():
            path = CONFIG_DIR / f"{text}.yaml"
        if not path.is_file():
            raise FileNotFoundError(f"config: no file {text!r} and no bundled config of that name; "
                                    f"bundled: {', '.join(config_names())}")
        raw = _read_yaml(path)
    for override in overrides or ():
        _set(raw, override)
    return config_from_dict(raw)
