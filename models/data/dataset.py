"""Datasets of facial flow pairs: from disk (the FacialFlowNet layout) or rendered on the fly.

Both return the same sample dict, so training code does not care which it gets:

* ``image1``, ``image2``: [3, H, W] float32, 0..255 (pair t = frames t, t+1 of the facial part);
* ``flow``, ``flow_head``: [2, H, W] float32 facial and head flow (expression = flow - flow_head);
* ``valid``, ``valid_head``: [H, W] float32, 1 where the flow is finite and under 1000 px (as the
  official loader);
* ``mask``: [H, W] float32, 1 on the face/head region of frame t;
* ``sequence``: "<split>/<emotion>/<seq>", ``step``: t (int).

:class:`MicroClipDataset` gives the same dicts for the onset -> apex pairs of a micro-expression set;
:func:`folder_dataset` picks the reader a folder needs.

With ``extras=True`` (our generated data only) also ``labels`` [H, W] int64 part ids,
``occlusion`` [H, W] bool and ``image2_head`` [3, H, W].
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from pyflowops.flow import read_flo

from .augment import FlowAugmentor
from .backgrounds import Backgrounds
from .sequence import MOTION_SCALES, FramePair, render_pair, sequence_spec

__all__ = ["FacialFlowDataset", "MicroClipDataset", "RenderedFacialFlowDataset", "folder_dataset", "is_micro_set"]

_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def _image(path: Path) -> torch.Tensor:
    return torch.from_numpy(np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)).permute(2, 0, 1)


def _valid(flow: torch.Tensor) -> torch.Tensor:
    return (torch.isfinite(flow).all(0) & (flow.abs() < 1000).all(0)).float()


def _files(folder: Path, suffixes: tuple[str, ...]) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in suffixes) if folder.is_dir() else []


class FacialFlowDataset(Dataset):
    """Pairs of a data set in the FacialFlowNet layout: the real FacialFlowNet download or ``pyflowops synth``.

    Args:
        root: the data set root (holding ``image/``, ``flow/``, ``mask/``).
        split: ``train``, ``val`` or ``test``.
        augment: a :class:`~.augment.FlowAugmentor` (None: samples as stored).
        extras: also return our generator's extras (labels, occlusion, head image).

    Raises:
        ValueError: no sequences under ``root`` for ``split``, or a sequence whose image,
        flow and mask counts do not match (the message names it).
    """

    def __init__(self, root: str | Path, split: str = "train", augment: FlowAugmentor | None = None,
                 extras: bool = False) -> None:
        self.root, self.split, self.augment, self.extras = Path(root), split, augment, extras
        self.pairs: list[tuple[str, int, Path, Path, Path, Path, Path]] = []
        flow_root = self.root / "flow" / "facial" / split
        if not flow_root.is_dir():
            raise ValueError(f"FacialFlowDataset: no {flow_root} (is {self.root} a FacialFlowNet-layout data set?)")
        for seq_dir in sorted(p for p in flow_root.glob("*/*") if p.is_dir()):
            emotion, seq = seq_dir.parent.name, seq_dir.name
            rel = Path(split) / emotion / seq
            images = _files(self.root / "image" / "facial" / rel, _IMAGE_SUFFIXES)
            flows = _files(seq_dir, (".flo",))
            heads = _files(self.root / "flow" / "head" / rel, (".flo",))
            masks = _files(self.root / "mask" / rel, (".npy",))
            if not (len(flows) == len(heads) == len(images) - 1 <= len(masks)):
                raise ValueError(
                    f"FacialFlowDataset: {rel} has {len(images)} images, {len(flows)} facial and {len(heads)} head "
                    f"flows and {len(masks)} masks (need n+1 images, n flows of each, n masks)"
                )
            for t in range(len(flows)):
                self.pairs.append((str(rel), t, images[t], images[t + 1], flows[t], heads[t], masks[t]))
        if not self.pairs:
            raise ValueError(f"FacialFlowDataset: no sequences under {flow_root}")

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict:
        rel, t, image1, image2, flow, flow_head, mask = self.pairs[index]
        sample = {
            "image1": _image(image1),
            "image2": _image(image2),
            "flow": torch.from_numpy(read_flo(flow)).permute(2, 0, 1).contiguous(),
            "flow_head": torch.from_numpy(read_flo(flow_head)).permute(2, 0, 1).contiguous(),
            "mask": torch.from_numpy(np.load(mask).astype(np.float32)),
        }
        if self.extras:
            name = f"{t:04d}"
            extra = self.root / "extra"
            sample["labels"] = torch.from_numpy(np.array(Image.open(extra / "labels" / rel / f"{name}.png"))).long()
            sample["occlusion"] = torch.from_numpy(np.array(Image.open(extra / "occlusion" / rel / f"{name}.png")) > 0)
            sample["image2_head"] = _image(self.root / "image" / "head" / rel / f"{name}.png")
        return _finish(sample, rel, t, self.augment)


def _finish(sample: dict, rel: str, t: int, augment: FlowAugmentor | None) -> dict:
    if augment is not None:
        sample = augment(sample)
    sample["valid"], sample["valid_head"] = _valid(sample["flow"]), _valid(sample["flow_head"])
    sample["sequence"], sample["step"] = rel, t
    return sample


class RenderedFacialFlowDataset(Dataset):
    """Pairs rendered when asked for (in DataLoader workers), nothing on disk.

    Item i is one pair of sequence ``first_index + i`` of the set ``seed`` (the same
    sequences ``pyflowops synth`` writes), at a step drawn from that sequence's generator.

    Args:
        length: number of items. size: image size in pixels. seed: the data set.
        split: written into ``sequence``. first_index: offset of the sequence indices.
        augment: a :class:`~.augment.FlowAugmentor`. backgrounds: a folder of images (None: scikit-image's).
        extras: also return labels, occlusion and the head image.
        motion_scales: the sequence lengths n drawn from (default FacialFlowNet's 5, 10, 15, 20; shorter
            sequences move more per pair: (1, 2, 3) gives a network from scratch large motions to learn on).
    """

    def __init__(self, length: int, size: int = 256, seed: int = 0, split: str = "train", first_index: int = 0,
                 augment: FlowAugmentor | None = None, backgrounds: str | Path | None = None,
                 extras: bool = False, motion_scales: tuple[int, ...] = MOTION_SCALES) -> None:
        if length < 1 or size < 16:
            raise ValueError(f"RenderedFacialFlowDataset: need length >= 1 and size >= 16, got {length}, {size}")
        self.motion_scales = tuple(int(n) for n in motion_scales)
        self.length, self.size, self.seed, self.split = length, size, seed, split
        self.first_index, self.augment, self.extras = first_index, augment, extras
        self._backgrounds_folder = backgrounds
        self._backgrounds: Backgrounds | None = None  # made in the worker that first needs it

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.length:
            raise IndexError(f"RenderedFacialFlowDataset: index {index} out of range [0, {self.length})")
        if self._backgrounds is None:
            self._backgrounds = Backgrounds(self._backgrounds_folder)
        spec = sequence_spec(self.seed, self.first_index + index, self.size, self.split,
                             motion_scales=self.motion_scales)
        step = (self.first_index + index) % spec.num_steps
        pair: FramePair = render_pair(spec, step, self._backgrounds)
        sample = {
            "image1": torch.from_numpy(pair.image1).permute(2, 0, 1).float(),
            "image2": torch.from_numpy(pair.image2).permute(2, 0, 1).float(),
            "flow": torch.from_numpy(pair.flow).permute(2, 0, 1).contiguous(),
            "flow_head": torch.from_numpy(pair.flow_head).permute(2, 0, 1).contiguous(),
            "mask": torch.from_numpy(pair.mask).float(),
        }
        if self.extras:
            sample["labels"] = torch.from_numpy(pair.labels).long()
            sample["occlusion"] = torch.from_numpy(pair.occlusion)
            sample["image2_head"] = torch.from_numpy(pair.image2_head).permute(2, 0, 1).float()
        return _finish(sample, f"{self.split}/{spec.emotion}/{spec.name}", step, self.augment)


class MicroClipDataset(Dataset):
    """The onset -> apex pair of every clip of a ``pyflowops synth --mode micro`` set (layout ``pyflowops-micro/1``).

    The samples are the dicts above (``flow``, ``flow_head``: the clip's ground-truth onset -> apex facial
    and head flow; ``mask``: the head at onset; ``sequence``: "<subject>/<clip>", ``step``: the onset
    frame), so networks can be trained or fine-tuned on micro-expressions with the trainer as is.

    Raises:
        ValueError: ``root`` is not a micro-expression set (the message says what was looked for).
    """

    def __init__(self, root: str | Path, augment: FlowAugmentor | None = None) -> None:
        from ..mer.datasets import load_synthetic

        self.root, self.augment = Path(root), augment
        self.clips = load_synthetic(self.root)

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> dict:
        clip = self.clips[index]
        sample = {
            "image1": _image(clip.onset_frame),
            "image2": _image(clip.apex_frame),
            "flow": torch.from_numpy(read_flo(clip.flow_facial)).permute(2, 0, 1).contiguous(),
            "flow_head": torch.from_numpy(read_flo(clip.flow_head)).permute(2, 0, 1).contiguous(),
            "mask": torch.from_numpy(np.asarray(Image.open(clip.mask).convert("L")) > 127).float(),
        }
        return _finish(sample, f"{clip.subject.split('/')[-1]}/{clip.sequence}", clip.onset, self.augment)


def is_micro_set(root: str | Path) -> bool:
    """Whether ``root`` holds a micro-expression set (its meta.json names the ``pyflowops-micro/1`` layout)."""
    import json

    meta = Path(root) / "meta.json"
    try:
        return json.loads(meta.read_text()).get("layout", "").startswith("pyflowops-micro/")
    except (OSError, ValueError, AttributeError):
        return False


def folder_dataset(root: str | Path, split: str = "train", extras: bool = False) -> Dataset:
    """The pairs of a data set folder: :class:`MicroClipDataset` for a micro-expression set (no splits: a
    set is one split), else :class:`FacialFlowDataset` (``split``, ``extras``)."""
    if is_micro_set(root):
        if extras:
            raise ValueError(f"{root}: a micro-expression set has no face-part labels (stage 0 needs macro data)")
        return MicroClipDataset(root)
    return FacialFlowDataset(root, split, extras=extras)
