"""Frozen facial semantic encoders for DecFlow (FacialFlowNet, ACM MM 2024).

DecFlow concatenates a frozen encoder's 1/8-resolution features with its context
features. Any frozen module mapping the [-1, 1] image [B, 3, H, W] to
[B, C, H/8, W/8] works; two are provided:

``ResNet50Stage2`` (``resnet50``, 512 channels)
    The official encoder: the stem and the first two stages of a ResNet-50
    (RIA1159/FacialFlowNet ``core/dad_3dhead_utils/dad_3dheads_encoder.py`` keeps
    ``nn.Sequential(init_block, stage1, stage2, stage3)`` of pytorchcv's
    ``resnet50`` features as ``dad_encoder.model`` and runs only ``model[0..2]``;
    stage 3 is stored in checkpoints but never run). The image goes in as is, in
    [-1, 1], with no ImageNet normalization, as in the official code.

``FacePartsEncoder`` (``faceparts``, 64 channels by default)
    A small CNN meant to be pretrained on the synthetic data's face-part labels
    (its ``head`` gives the part logits), for CPU-sized work.

Weight layouts ``ResNet50Stage2.load_weights`` reads (same parameter shapes):

``torchvision``
    ``conv1.weight``, ``bn1.*``, ``layer{1,2}.{i}.conv{1,2,3}.weight``,
    ``layer{1,2}.{i}.bn{1,2,3}.*``, ``layer{1,2}.0.downsample.{0,1}.*`` (our own
    names too); ``layer3.*``, ``layer4.*``, ``fc.*`` are ignored. torchvision's
    ResNet-50 is "v1.5": a stage's stride 2 sits on the 3x3 ``conv2``.
``pytorchcv`` (the official checkpoints, under ``dad_encoder.model.``)
    ``0.conv.conv.weight`` / ``0.conv.bn.*`` (stem), ``{s}.unit{j}.body.conv{k}.conv.weight``,
    ``{s}.unit{j}.body.conv{k}.bn.*`` and ``{s}.unit{j}.identity_conv.{conv,bn}.*``
    (``init_block`` / ``stage{s}`` spell the same modules in pytorchcv's own
    ``features``). pytorchcv's ``resnet50`` is "v1" (``conv1_stride=True``): the
    stride 2 sits on the 1x1 ``conv1``. :func:`pytorchcv_to_torchvision` renames
    one key; stage 3 and later map to None (unused).

The two strides give different features from the same weights, so loading a
layout also sets the stride placement the weights were trained with
(:meth:`ResNet50Stage2.set_stride_in_1x1`).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

__all__ = [
    "FrozenEncoder",
    "ResNet50Stage2",
    "FacePartsEncoder",
    "SemanticLoadReport",
    "pytorchcv_to_torchvision",
    "make_semantic_encoder",
    "SEMANTIC_ENCODERS",
]

SEMANTIC_ENCODERS = ("resnet50", "faceparts")

# Wrappers a semantic-encoder state dict may sit under, most specific first: the
# official checkpoint (``module.`` from DataParallel), our DecFlow, pytorchcv's model.
_PREFIXES = (
    "module.dad_encoder.model.",
    "dad_encoder.model.",
    "module.semantic_encoder.",
    "semantic_encoder.",
    "module.",
    "model.",
    "features.",
)


@dataclass
class SemanticLoadReport:
    """What ``load_weights`` did.

    layout: ``torchvision`` | ``pytorchcv`` | ``ours``; loaded: how many tensors
    were copied in; ignored: the file's keys that nothing reads (e.g. ``layer3.*``,
    ``fc.*``, the official stage 3 ``dad_encoder.model.3.*``), as the file spells them.
    """

    layout: str
    loaded: int
    ignored: list[str] = field(default_factory=list)


class FrozenEncoder(nn.Module):
    """A semantic encoder that never trains.

    Every parameter has ``requires_grad=False`` once a subclass's ``__init__``
    returns (enforced here for any subclass), and ``train(mode)`` keeps the
    module in eval mode, so batch-norm running statistics never move.

    Attribute ``out_channels`` (int). ``forward(image)``: image [B, 3, H, W] in
    [-1, 1], H and W multiples of 8 -> [B, out_channels, H/8, W/8].
    """

    out_channels: int

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is None:
            return

        # Freeze after the subclass has built its layers, whatever the subclass does.
        @functools.wraps(init)
        def frozen_init(self, *args, **kw):
            init(self, *args, **kw)
            self.requires_grad_(False)
            self.train(False)

        cls.__init__ = frozen_init

    def train(self, mode: bool = True) -> FrozenEncoder:
        """Ignores ``mode``: always eval (frozen batch-norm statistics)."""
        return super().train(False)

    def _check_image(self, image: torch.Tensor) -> None:
        if image.dim() != 4 or image.shape[1] != 3:
            raise ValueError(f"{type(self).__name__}: image must be [B, 3, H, W], got {list(image.shape)}")
        if image.shape[2] % 8 or image.shape[3] % 8:
            raise ValueError(f"{type(self).__name__}: H and W must be multiples of 8, got {list(image.shape[2:])}")


def _read_state(path_or_state_dict, who: str) -> tuple[dict[str, torch.Tensor], str]:
    """(state dict, a name for messages) from a path or a dict, unwrapping training checkpoints."""
    if isinstance(path_or_state_dict, (str, Path)):
        path = Path(path_or_state_dict)
        if path.is_dir():  # a `pyflowops train` run directory (stage 0): its newest readable checkpoint
            from .train.checkpoint import latest

            path = latest(path) or path
        if not path.is_file():
            raise FileNotFoundError(f"{who}: no weights file (or run directory with a checkpoint) at {path}")
        state = torch.load(path, map_location="cpu", weights_only=True)
        source = str(path)
    else:
        state, source = path_or_state_dict, "the given state dict"
    if isinstance(state, dict):
        for key in ("state_dict", "model"):  # training checkpoints keep the weights under one of these
            if isinstance(state.get(key), dict):
                state = state[key]
                break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{who}: {source} does not hold a state dict of tensors")
    return dict(state), source


def _strip_wrappers(state: dict[str, torch.Tensor]) -> tuple[dict[str, tuple[str, torch.Tensor]], list[str]]:
    """Strip the known wrapper prefixes, repeatedly (``module.`` then ``model.``, ...).

    Returns ({stripped key: (key as in the file, tensor)}, keys outside the wrapper):
    a full official DecFlow checkpoint keeps only its ``dad_encoder.model.*`` part.
    """
    entries = {k: (k, v) for k, v in state.items()}
    outside: list[str] = []
    while True:
        prefix = next((p for p in _PREFIXES if any(k.startswith(p) for k in entries)), None)
        if prefix is None:
            return entries, outside
        outside += [orig for k, (orig, _) in entries.items() if not k.startswith(prefix)]
        entries = {k[len(prefix):]: e for k, e in entries.items() if k.startswith(prefix)}


def _load_checked(
    module: nn.Module, state: dict[str, torch.Tensor], source: str, who: str, file_keys: dict[str, str] | None = None
) -> int:
    """Copy ``state`` (our names) into ``module`` after checking every key and shape; returns the count.

    ``num_batches_tracked`` may be absent (old checkpoints; eval-mode batch norm never reads it).
    ``file_keys`` maps our names to the file's, for messages about renamed layouts.
    """
    file_keys = file_keys or {}
    own = module.state_dict()
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    if missing:
        shown = ", ".join(missing[:10]) + (f", ... ({len(missing) - 10} more)" if len(missing) > 10 else "")
        named = " (torchvision names)" if file_keys else ""
        raise ValueError(f"{who}: {source} lacks {len(missing)} needed weight(s){named}: {shown}")
    for key, value in state.items():
        if value.shape != own[key].shape:
            name = key if file_keys.get(key, key) == key else f"{key} (file: {file_keys[key]})"
            expected, got = tuple(own[key].shape), tuple(value.shape)
            raise ValueError(f"{who}: {source}: shape mismatch for {name}: expected {expected}, got {got}")
    full = {k: state.get(k, own[k]) for k in own}
    module.load_state_dict(full, strict=True)
    return len(state)


_UNIT_KEY = re.compile(r"^unit(\d+)\.(body\.conv([123])|identity_conv)\.(conv|bn)\.(\w+)$")


def pytorchcv_to_torchvision(key: str) -> str | None:
    """Rename one pytorchcv ResNet-50 ``features`` key to torchvision's names.

    ``key`` is an official key without its ``dad_encoder.model.`` prefix, e.g.
    ``1.unit1.body.conv1.conv.weight`` -> ``layer1.0.conv1.weight``;
    ``2.unit1.identity_conv.bn.running_var`` -> ``layer2.0.downsample.1.running_var``;
    ``0.conv.bn.weight`` -> ``bn1.weight``. pytorchcv's own ``init_block`` /
    ``stage{s}`` names are read as ``0`` / ``{s}``.

    Returns None for stage 3 and later (stored in the official checkpoints but
    never run). Raises ValueError for a key that is not a pytorchcv ResNet key.
    """
    head, _, rest = key.partition(".")
    if head == "init_block":
        head = "0"
    elif head.startswith("stage") and head[5:].isdigit():
        head = head[5:]
    if not head.isdigit() or not rest:
        raise ValueError(f"pytorchcv_to_torchvision: not a pytorchcv ResNet key: {key!r}")
    stage = int(head)
    if stage >= 3:
        return None  # the official forward stops after stage 2
    if stage == 0:
        if rest == "conv.conv.weight":
            return "conv1.weight"
        if rest.startswith("conv.bn.") and "." not in rest[len("conv.bn."):]:
            return "bn1." + rest[len("conv.bn."):]
        raise ValueError(f"pytorchcv_to_torchvision: not a pytorchcv ResNet key: {key!r}")
    match = _UNIT_KEY.match(rest)
    if match is None or int(match.group(1)) < 1 or (match.group(4) == "conv" and match.group(5) != "weight"):
        raise ValueError(f"pytorchcv_to_torchvision: not a pytorchcv ResNet key: {key!r}")
    unit, conv_index, part, param = int(match.group(1)), match.group(3), match.group(4), match.group(5)
    block = f"layer{stage}.{unit - 1}"
    if conv_index is None:  # identity_conv = torchvision's downsample (Sequential(conv, bn))
        return f"{block}.downsample.{0 if part == 'conv' else 1}.{param}"
    return f"{block}.{'conv' if part == 'conv' else 'bn'}{conv_index}.{param}"


class ResNet50Stage2(FrozenEncoder):
    """ResNet-50 stem + layer1 + layer2 (the official DecFlow semantic encoder).

    Built from ``torchvision.models.resnet50(weights=None)`` (no download) with
    torchvision's module names (conv1, bn1, relu, maxpool, layer1, layer2), so a
    torchvision ImageNet state dict loads as is.

    Args:
        stride_in_1x1: True (default, the official pytorchcv layout) puts
            layer2[0]'s stride 2 on its 1x1 conv1; False keeps torchvision's
            stride on the 3x3 conv2. ``load_weights`` sets it from the layout.

    forward(image [B, 3, H, W] in [-1, 1]) -> [B, 512, H/8, W/8].
    """

    out_channels = 512

    def __init__(self, stride_in_1x1: bool = True) -> None:
        super().__init__()
        from torchvision.models import resnet50

        net = resnet50(weights=None)
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2 = net.layer1, net.layer2  # layer3/layer4/fc are dropped with net
        self.set_stride_in_1x1(stride_in_1x1)

    def set_stride_in_1x1(self, flag: bool) -> None:
        """Place layer2[0]'s stride 2 on conv1 (True, pytorchcv / ResNet v1) or conv2 (False, torchvision v1.5).

        layer1 has stride 1 (the max-pool already halved), so only layer2[0] changes.
        """
        block = self.layer2[0]
        block.conv1.stride = (2, 2) if flag else (1, 1)
        block.conv2.stride = (1, 1) if flag else (2, 2)
        self.stride_in_1x1 = bool(flag)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """image [B, 3, H, W] in [-1, 1], H and W multiples of 8 -> [B, 512, H/8, W/8]."""
        self._check_image(image)
        x = self.maxpool(self.relu(self.bn1(self.conv1(image))))  # 1/4
        return self.layer2(self.layer1(x))  # 1/8

    def load_weights(self, path_or_state_dict) -> SemanticLoadReport:
        """Load torchvision, pytorchcv (official) or our weights; sets the stride layout to match.

        Args:
            path_or_state_dict: a ``.pth`` path (read with ``weights_only=True``) or
                a state dict; a checkpoint dict holding it under ``state_dict`` /
                ``model`` is unwrapped, and the prefixes ``module.dad_encoder.model.``,
                ``dad_encoder.model.``, ``semantic_encoder.``, ``module.``, ``model.``,
                ``features.`` are stripped (keys outside such a prefix are ignored).

        Layouts: ``pytorchcv`` (numbered / ``init_block`` / ``stage*`` keys) sets
        stride_in_1x1=True; ``torchvision`` (our names plus any of layer3/layer4/fc)
        sets it False; ``ours`` (only our names) leaves it as it is, since a state
        dict does not record it.

        Returns:
            :class:`SemanticLoadReport`.

        Raises:
            ValueError: a needed weight is missing (the path and the keys are named),
            a shape differs (key, expected and got), or the file is not a state dict.
            FileNotFoundError: no such file.
        """
        who = "ResNet50Stage2.load_weights"
        raw, source = _read_state(path_or_state_dict, who)
        entries, ignored = _strip_wrappers(raw)
        own = self.state_dict()
        state: dict[str, torch.Tensor] = {}
        file_keys: dict[str, str] = {}  # our name -> the file's, for error messages
        if any(re.match(r"^(\d+|init_block|stage\d+)\.", k) for k in entries):
            layout, stride_in_1x1 = "pytorchcv", True
            for key, (orig, value) in entries.items():
                try:
                    mapped = pytorchcv_to_torchvision(key)
                except ValueError:
                    mapped = None  # e.g. pytorchcv's ``output.*`` classifier: not part of the encoder
                if mapped is None:
                    ignored.append(orig)
                else:
                    state[mapped], file_keys[mapped] = value, orig
        else:
            tv_only = ("layer3.", "layer4.", "fc.")
            is_tv = any(k.startswith(tv_only) for k in entries)
            layout, stride_in_1x1 = ("torchvision", False) if is_tv else ("ours", self.stride_in_1x1)
            for key, (orig, value) in entries.items():
                if key in own:
                    state[key] = value
                else:
                    ignored.append(orig)
        loaded = _load_checked(self, state, source, who, file_keys)
        self.set_stride_in_1x1(stride_in_1x1)
        return SemanticLoadReport(layout=layout, loaded=loaded, ignored=ignored)


class FacePartsEncoder(FrozenEncoder):
    """A small CNN for face-part semantics: three stride-2 stages (32, 48, out_channels).

    Each stage is conv3x3(stride 2)-BN-ReLU-conv3x3-BN-ReLU. ``head`` (1x1 conv)
    turns the features into ``num_parts`` logits, the target of its pretraining
    on the synthetic data's face-part labels; DecFlow uses only the features.

    Args:
        out_channels: C of the features (default 64).
        num_parts: classes of the part labels (default 11).

    forward(image [B, 3, H, W] in [-1, 1]) -> [B, out_channels, H/8, W/8].
    """

    def __init__(self, out_channels: int = 64, num_parts: int = 11) -> None:
        super().__init__()
        self.out_channels = int(out_channels)
        self.num_parts = int(num_parts)
        widths = (3, 32, 48, self.out_channels)
        # Named layer1..3 (not model/features) so our keys never look like a wrapper prefix.
        self.layer1, self.layer2, self.layer3 = (self._stage(widths[i], widths[i + 1]) for i in range(3))
        self.head = nn.Conv2d(self.out_channels, self.num_parts, 1)

    @staticmethod
    def _stage(cin: int, cout: int) -> nn.Sequential:
        return nn.Sequential(
            nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        )

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """image [B, 3, H, W] in [-1, 1], H and W multiples of 8 -> [B, out_channels, H/8, W/8]."""
        self._check_image(image)
        return self.layer3(self.layer2(self.layer1(image)))

    def part_logits(self, image: torch.Tensor) -> torch.Tensor:
        """image [B, 3, H, W] in [-1, 1] -> face-part logits [B, num_parts, H/8, W/8]."""
        return self.head(self(image))

    def load_weights(self, path_or_state_dict) -> SemanticLoadReport:
        """Load our own weights (layout ``ours``), from a path or a state dict.

        Checkpoint dicts (``state_dict`` / ``model``) and the ``module.`` /
        ``semantic_encoder.`` prefixes are unwrapped as in
        :meth:`ResNet50Stage2.load_weights`; unknown keys are reported as ignored.

        Raises:
            ValueError: a needed weight is missing (the path and the keys are
            named) or a shape differs. FileNotFoundError: no such file.
        """
        who = "FacePartsEncoder.load_weights"
        raw, source = _read_state(path_or_state_dict, who)
        entries, ignored = _strip_wrappers(raw)
        own = self.state_dict()
        state = {}
        for key, (orig, value) in entries.items():
            if key in own:
                state[key] = value
            else:
                ignored.append(orig)
        loaded = _load_checked(self, state, source, who)
        return SemanticLoadReport(layout="ours", loaded=loaded, ignored=ignored)


def make_semantic_encoder(name: str = "resnet50", weights=None) -> FrozenEncoder:
    """Build a named frozen semantic encoder, optionally loading weights.

    Args:
        name: ``resnet50`` (:class:`ResNet50Stage2`, 512 channels) or
            ``faceparts`` (:class:`FacePartsEncoder`, 64 channels).
        weights: None (random weights), a path or a state dict for ``load_weights``.

    Returns:
        The encoder, in eval mode with every parameter frozen; it maps
        [B, 3, H, W] in [-1, 1] to [B, out_channels, H/8, W/8].
    """
    if name not in SEMANTIC_ENCODERS:
        raise ValueError(f"make_semantic_encoder: name must be one of {SEMANTIC_ENCODERS}, got {name!r}")
    encoder = ResNet50Stage2() if name == "resnet50" else FacePartsEncoder()
    if weights is not None:
        encoder.load_weights(weights)
    return encoder
