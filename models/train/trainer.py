"""One trainer for every model: ``train(config, out_dir, resume=False) -> final metrics``.

AdamW + OneCycleLR (linear, no momentum cycling, total steps + 100) + gradient clipping; autocast
(bf16 on the CPU; bf16 or fp16 with a GradScaler on CUDA); the loss of the model (DecFlow:
``decflow_loss``; SRFlowNet: ``srflownet_loss``; RAFT/GMA: ``sequence_loss``); DecFlow stage 2
freezes all but the head decoder and the semantic 1x1 conv; stage 0 pretrains the FacePartsEncoder
on the synthetic face-part labels. Validation on a held-out split, TensorBoard under ``out_dir/tb``,
``out_dir/metrics.jsonl``, a tqdm bar, atomic checkpoints every N steps and at the end.

Determinism: the data order is a permutation seeded by (train.seed, epoch) and each sample's
augmentation has its own seeded generator, so the step number alone fixes which pairs (and which
augmentation) a step sees; with the RNG states in the checkpoint a resumed CPU run is bit-identical
to an uninterrupted one. Under torchrun (WORLD_SIZE > 1) each global batch of ``optim.batch_size``
pairs is split across the ranks (DistributedSampler-style sharding of the same order) and the model
is wrapped in DistributedDataParallel; rank 0 alone logs, validates and writes checkpoints.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import time
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
import yaml
from torch.utils.data import DataLoader, Dataset

from . import checkpoint as ckpt
from .config import Config, config_to_dict, load_config

__all__ = ["train", "state_hash", "build_model", "batches_per_epoch"]

HASH_ENV = "PYFLOWOPS_TRAIN_DUMP_HASH"  # set to 1: every rank writes out_dir/weights_rank{r}.sha256 at the end


# ---------------------------------------------------------------------------------------------- data
def _valid(flow: torch.Tensor) -> torch.Tensor:
    return (torch.isfinite(flow).all(0) & (flow.abs() < 1000).all(0)).float()  # as the dataset's loader


class _Pairs(Dataset):
    """A dataset wrapper: optional in-memory cache of the raw samples, then a per-sample seeded
    augmentation or crop. ``dataset[(index, seed)]`` -> the sample dict (tensors only)."""

    def __init__(self, base: Dataset, crop, augment: bool, cache: bool, crop_shift: int = 0) -> None:
        from ..data.augment import FFN_AUGMENTATION, FlowAugmentor

        self.base, self.crop, self.cache, self.crop_shift = base, crop, {} if cache else None, crop_shift
        self.augmentor = None
        if crop is not None and augment:
            self.augmentor = FlowAugmentor(**{**FFN_AUGMENTATION, "crop_size": tuple(crop)})

    def __len__(self) -> int:
        return len(self.base)

    def _raw(self, index: int) -> dict:
        if self.cache is not None and index in self.cache:
            return self.cache[index]
        sample = {k: v for k, v in self.base[index].items() if isinstance(v, torch.Tensor)}
        if self.cache is not None:
            self.cache[index] = sample
        return sample

    def __getitem__(self, item) -> dict:
        index, seed = item if isinstance(item, tuple) else (item, None)
        sample = dict(self._raw(index))
        if self.crop is None or seed is None:
            return sample
        g = torch.Generator().manual_seed(seed)
        if self.augmentor is not None:
            sample = self.augmentor(sample, g)
        else:
            sample = self._random_crop(sample, g)
        sample["valid"], sample["valid_head"] = _valid(sample["flow"]), _valid(sample["flow_head"])
        return sample


    def _random_crop(self, sample: dict, g: torch.Generator) -> dict:
        """A random crop; with ``crop_shift`` s, image 2's window is moved by (dx, dy) in [-s, s]^2 from
        image 1's, which adds (-dx, -dy) to the flow everywhere (background included): every pair then
        asks the network to match, not to predict "no motion", the attractor of facial data."""
        ch, cw = self.crop
        h, w = sample["image1"].shape[-2:]
        s = self.crop_shift
        if ch + 2 * s > h or cw + 2 * s > w:
            raise ValueError(f"data.crop {self.crop} plus twice data.crop_shift {s} is larger than the images "
                             f"{h}x{w} (set data.augment true to zoom, or a smaller crop)")
        y0 = int(torch.randint(s, h - ch - s + 1, (1,), generator=g))
        x0 = int(torch.randint(s, w - cw - s + 1, (1,), generator=g))
        dy, dx = (torch.randint(-s, s + 1, (2,), generator=g).tolist() if s else (0, 0))
        out = {k: v[..., y0:y0 + ch, x0:x0 + cw].contiguous() for k, v in sample.items() if k != "image2"}
        out["image2"] = sample["image2"][..., y0 + dy:y0 + dy + ch, x0 + dx:x0 + dx + cw].contiguous()
        offset = torch.tensor([dx, dy], dtype=out["flow"].dtype).view(2, 1, 1)
        for key in ("flow", "flow_head"):
            if key in out:
                out[key] = out[key] - offset  # crop-2 coordinates = original - (x0 + dx, y0 + dy)
        return out


class _BatchOrder:
    """The deterministic, resumable, sharded batch order.

    Epoch e visits ``randperm(n, seed(train.seed, e))``; global batch b is its slice
    [b*G, (b+1)*G) (G = optim.batch_size, the last incomplete batch dropped) and rank r takes
    the r-th of its ``world`` equal parts. Yields [(index, augmentation seed), ...] per batch,
    starting at batch ``start`` of ``epoch``.
    """

    def __init__(self, n: int, global_batch: int, seed: int, epoch: int, start: int, rank: int, world: int):
        self.n, self.g, self.seed, self.epoch, self.start, self.rank, self.world = (
            n, global_batch, seed, epoch, start, rank, world)
        self.per_rank = global_batch // world

    def __len__(self) -> int:
        return self.n // self.g - self.start

    def __iter__(self):
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.n, generator=gen).tolist()
        for b in range(self.start, self.n // self.g):
            chunk = order[b * self.g:(b + 1) * self.g][self.rank * self.per_rank:(self.rank + 1) * self.per_rank]
            # one seed per (run seed, epoch, sample): the augmentation does not depend on workers or ranks
            yield [(i, (self.seed * 1_000_003 + self.epoch) * 10_000_019 + i) for i in chunk]


def batches_per_epoch(n: int, global_batch: int) -> int:
    """Optimizer steps per pass over ``n`` pairs (incomplete last batch dropped)."""
    return n // global_batch


def _datasets(cfg: Config) -> tuple[_Pairs, _Pairs | None]:
    from ..data.dataset import RenderedFacialFlowDataset, folder_dataset
    from ..data.generic import GenericMotionDataset

    d, extras = cfg.data, cfg.train.stage == 0
    if "generic" in (d.source, d.val_source) and extras:
        raise ValueError("data.source generic has no face-part labels: stage 0 needs rendered or folder data")
    if d.source == "generic":
        base = GenericMotionDataset(d.length, d.image_size, d.seed, "train", d.first_index)
    elif d.source == "rendered":
        scales = {} if d.motion_scales is None else {"motion_scales": tuple(d.motion_scales)}
        base = RenderedFacialFlowDataset(d.length, d.image_size, d.seed, "train", d.first_index, extras=extras,
                                         **scales)
    else:
        base = folder_dataset(d.source, "train", extras=extras)
    train_set = _Pairs(base, d.crop, d.augment, d.cache, d.crop_shift)
    val_source = d.val_source or d.source
    if d.val_length == 0 and val_source in ("rendered", "generic"):
        return train_set, None
    if val_source == "generic":
        val_base = GenericMotionDataset(d.val_length, d.image_size, d.val_seed, "val", d.val_first_index)
    elif val_source == "rendered":
        val_base = RenderedFacialFlowDataset(d.val_length, d.image_size, d.val_seed, "val", d.val_first_index,
                                             extras=extras)
    else:
        val_base = folder_dataset(val_source, d.val_split, extras=extras)
        if 0 < d.val_length < len(val_base):  # evenly spaced pairs: every motion scale and sequence kind
            keep = np.linspace(0, len(val_base) - 1, d.val_length).round().astype(int).tolist()
            val_base = torch.utils.data.Subset(val_base, keep)
    return train_set, _Pairs(val_base, None, False, cache=d.val_length > 0)


# --------------------------------------------------------------------------------------------- model
def build_model(cfg: Config) -> nn.Module:
    """The network of ``cfg.model`` (stage 0: a trainable ``FacePartsEncoder``)."""
    if cfg.train.stage == 0:
        from ..semantic import FacePartsEncoder

        model = FacePartsEncoder(**cfg.model.options)
        model.requires_grad_(True)  # FrozenEncoder freezes itself; here it is the thing trained
        return model
    from ..registry import create

    with warnings.catch_warnings():  # the untrained-semantic warning is expected before init weights load
        if cfg.train.init:
            warnings.filterwarnings("ignore", message="DecFlow: the .* semantic encoder has random weights")
        return create(cfg.model.name, cfg.model.size, cfg.model.corr, **cfg.model.options)


def _set_train_mode(model: nn.Module, stage: int) -> None:
    if stage == 0:
        nn.Module.train(model, True)  # FrozenEncoder.train() would keep it in eval mode
        return
    model.train()
    if stage == 2:
        model.freeze_stage2()  # after train(): it puts the frozen parts' batch norms back in eval mode


def _load_init(model: nn.Module, cfg: Config, log) -> None:
    init = cfg.train.init
    if not init:
        if cfg.train.stage == 2:
            warnings.warn("train.stage 2 without train.init: training the head decoder of an untrained model "
                          "(set train.init to the stage-1 run directory or checkpoint)", UserWarning, stacklevel=3)
        return
    from ..weights import resolve

    path = resolve(init)  # a file, a run directory or bundled:<name>
    if path.is_dir():
        found = ckpt.latest(path)
        if found is None:
            raise FileNotFoundError(f"train.init: no readable checkpoint in the run directory {path}")
        path = found
    if cfg.train.stage == 0:
        log(f"init: {path}: {model.load_weights(str(path))}")
        model.requires_grad_(True)
        return
    from ..checkpoint import load_checkpoint

    report = load_checkpoint(model, path, strict=False)  # GMA weights into DecFlow: head decoder etc. missing
    log(f"init: {path}: {report}")


# ---------------------------------------------------------------------------------------------- loss
def _to(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def _loss(cfg: Config, model: nn.Module, batch: dict, autocast) -> tuple[torch.Tensor, dict]:
    """Forward + the model's loss (computed in float32 outside autocast)."""
    from .. import losses

    opts, gamma, name = cfg.optim.loss_options, cfg.optim.gamma, cfg.model.name
    if cfg.train.stage == 0:
        image = batch["image1"] / 127.5 - 1.0
        with autocast():  # the features through the (possibly DDP-wrapped) module, then the 1x1 head
            logits = getattr(model, "module", model).head(model(image))
        target = F.interpolate(batch["labels"][:, None].float(), size=logits.shape[-2:], mode="nearest")[:, 0].long()
        loss = F.cross_entropy(logits.float(), target)
        return loss, {"accuracy": float((logits.argmax(1) == target).float().mean())}
    with autocast():
        out = model(batch["image1"], batch["image2"], iters=cfg.optim.iters)
    if name == "decflow":
        return losses.decflow_loss([p.float() for p in out["facial"]], [p.float() for p in out["head"]],
                                   batch["flow"], batch["flow_head"], batch["valid"], batch["valid_head"],
                                   gamma=gamma, **opts)
    preds = [p.float() for p in out]
    if name == "srflownet":
        return losses.srflownet_loss(preds, batch["flow"], batch["image1"], batch["valid"], gamma=gamma, **opts)
    return losses.sequence_loss(preds, batch["flow"], batch["valid"], gamma=gamma, **opts)


# ------------------------------------------------------------------------------------------ validation
@torch.no_grad()
def _validate(cfg: Config, model: nn.Module, loader, device, autocast) -> tuple[dict, dict | None]:
    """Metrics over the held-out pairs, and (images, gt, prediction) of its first pair for the picture.

    Flow models: ``epe`` (pooled over valid pixels), ``masked_epe`` (mean over pairs of the EPE
    inside the face mask), ``zero_epe`` / ``zero_masked_epe`` (the same for a zero prediction);
    DecFlow adds ``head_*`` and ``expression_*``. Stage 0: ``loss`` and ``accuracy``.
    """
    from pyflowops.flow.metrics import epe, masked_epe

    model.eval()
    sums: dict[str, list[float]] = {}
    first = None

    def add(key: str, total: float, count: float) -> None:
        s = sums.setdefault(key, [0.0, 0.0])
        s[0] += total
        s[1] += count

    for batch in loader:
        batch = _to(batch, device)
        if cfg.train.stage == 0:
            loss, m = _loss(cfg, model, batch, autocast)
            n = batch["image1"].shape[0]
            add("loss", loss.item() * n, n)
            add("accuracy", m["accuracy"] * n, n)
            continue
        with autocast():
            out = model(batch["image1"], batch["image2"], iters=cfg.optim.iters)
        flows = {k: v.float() for k, v in out.items()} if isinstance(out, dict) else {"facial": out.float()}
        gts = {"facial": (batch["flow"], batch["valid"])}
        if "head" in flows:
            gts["head"] = (batch["flow_head"], batch["valid_head"])
            gts["expression"] = (batch["flow"] - batch["flow_head"], batch["valid"] * batch["valid_head"])
        for part, (gt, valid) in gts.items():
            prefix = "" if part == "facial" else f"{part}_"
            inside = batch["mask"] * valid
            for tag, pred in (("", flows[part]), ("zero_", torch.zeros_like(gt))):
                err = epe(pred, gt)
                add(f"{tag}{prefix}epe", float((err * valid).sum()), float(valid.sum()))
                per_pair = masked_epe(pred, gt, inside, reduction="none")
                ok = torch.isfinite(per_pair)
                add(f"{tag}{prefix}masked_epe", float(per_pair[ok].sum()), float(ok.sum()))
        if first is None:
            first = {"image1": batch["image1"][0], "gt": batch["flow"][0], "pred": flows["facial"][0]}
    return {k: (t / c if c else float("nan")) for k, (t, c) in sums.items()}, first


def _flow_picture(first: dict) -> np.ndarray:
    """[H, 3W, 3] uint8: image 1 | ground-truth facial flow | predicted flow (one colour scale)."""
    from pyflowops.flow import flow_to_color

    gt, pred = first["gt"].cpu(), first["pred"].cpu()
    scale = float(gt.square().sum(0).sqrt().max()) + 1e-5
    image = first["image1"].cpu().clamp(0, 255).round().byte().permute(1, 2, 0).numpy()
    return np.concatenate([image, flow_to_color(gt, max_flow=scale), flow_to_color(pred, max_flow=scale)], axis=1)


# ------------------------------------------------------------------------------------------ utilities
def state_hash(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 of a state dict's keys, dtypes, shapes and bytes (equal hashes = bit-equal weights)."""
    h = hashlib.sha256()
    for key in sorted(state):
        t = state[key].detach().cpu().contiguous()
        h.update(f"{key}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _distributed() -> tuple[int, int, int, bool]:
    """(rank, world, local_rank, initialized_here) from torchrun's environment."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, 0, False
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), local, False
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(local)
    dist.init_process_group("nccl" if cuda else "gloo")
    return dist.get_rank(), dist.get_world_size(), local, True


def _barrier(world: int) -> None:
    if world > 1:
        dist.barrier()


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class _Autocast:
    def __init__(self, device: torch.device, amp: str) -> None:
        self.device_type = device.type
        self.dtype = None
        if amp != "off":
            self.dtype = torch.float16 if amp == "fp16" and device.type == "cuda" else torch.bfloat16

    def __call__(self):
        return torch.autocast(self.device_type, dtype=self.dtype or torch.float32, enabled=self.dtype is not None)


# ------------------------------------------------------------------------------------------------ train
def train(config: Config | str | dict, out_dir: str | Path, resume: bool = False, progress: bool = True,
          model_factory: Callable[[Config], nn.Module] | None = None) -> dict:
    """Train ``config`` into the run directory ``out_dir``.

    Args:
        config: a :class:`Config`, a bundled name / YAML path, or a nested dict.
        out_dir: the run directory: ``config.yaml``, ``checkpoints/step_*.pt``, ``tb/``, ``metrics.jsonl``.
        resume: continue from the newest readable checkpoint of ``out_dir`` (from scratch if none).
        progress: show the tqdm bar (rank 0).
        model_factory: builds the network from the config instead of :func:`build_model` (the
            benchmarks train the same recipe on the reference operators this way).

    Returns:
        ``{"step", "loss" (mean of the last 10 steps), "losses" (every step of this call, rank 0),
        "val" (the last validation's metrics), "steps_per_s" (training steps incl. data loading, without
        validation and checkpoint writing), "checkpoint", "weights_sha256", "run_dir"}``.

    Raises:
        ValueError: an invalid config, a batch size not divisible by the number of processes, fewer
        pairs than one batch, or resuming with a different ``optim.steps``.
    """
    cfg = config if isinstance(config, Config) else load_config(config)
    out_dir = Path(out_dir)
    rank, world, local_rank, own_group = _distributed()
    try:
        return _train(cfg, out_dir, resume, progress, rank, world, local_rank, model_factory or build_model)
    finally:
        if own_group:
            dist.destroy_process_group()


def _train(cfg: Config, out_dir: Path, resume: bool, progress: bool, rank: int, world: int, local_rank: int,
           model_factory: Callable[[Config], nn.Module]) -> dict:
    from torch.utils.tensorboard import SummaryWriter
    from tqdm import tqdm

    o, t = cfg.optim, cfg.train
    if o.batch_size % world:
        raise ValueError(f"optim.batch_size {o.batch_size} must be divisible by the {world} processes")
    want_cuda = t.device == "cuda" or (t.device == "auto" and torch.cuda.is_available())
    device = torch.device(f"cuda:{local_rank}" if want_cuda else "cpu")
    if o.amp == "fp16" and device.type == "cpu" and rank == 0:
        warnings.warn("optim.amp fp16 is for CUDA; the CPU trains with bf16 autocast", UserWarning, stacklevel=3)
    main = rank == 0
    log = (lambda msg: tqdm.write(f"pyflowops train: {msg}")) if main else (lambda msg: None)

    _seed_all(t.seed)  # the same initial weights on every rank
    train_set, val_set = _datasets(cfg)
    per_epoch = batches_per_epoch(len(train_set), o.batch_size)
    if per_epoch < 1:
        raise ValueError(f"the training set has {len(train_set)} pairs, fewer than one batch of {o.batch_size}")

    model = model_factory(cfg)
    _load_init(model, cfg, log)
    model.to(device)
    _set_train_mode(model, t.stage)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=o.lr, weight_decay=o.weight_decay, eps=o.eps)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=o.lr, total_steps=o.steps + o.extra_schedule_steps, pct_start=o.pct_start,
        cycle_momentum=False, anneal_strategy="linear")
    scaler = torch.amp.GradScaler(device.type, enabled=o.amp == "fp16" and device.type == "cuda")
    autocast = _Autocast(device, o.amp)

    step, val_metrics = 0, {}
    if resume:
        found = ckpt.load_latest(out_dir)
        if found is not None:
            path, state = found
            saved_steps = state["config"]["optim"]["steps"]
            if saved_steps != o.steps:
                raise ValueError(f"resume: {path} belongs to a run of optim.steps={saved_steps}, not {o.steps}; "
                                 "the learning-rate schedule depends on it (start a new run with train.init=...)")
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            scaler.load_state_dict(state["scaler"])
            ckpt.set_rng_state(state["rng"])
            step, val_metrics = int(state["step"]), dict(state.get("val", {}))
            log(f"resumed from {path} at step {step}")
        else:
            log(f"resume: no checkpoint in {out_dir}, starting from scratch")

    net = model
    if world > 1:
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[local_rank] if device.type == "cuda" else None,
            find_unused_parameters=t.stage == 2)  # stage 2: frozen parts may leave grads unproduced

    writer = None
    if main:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "config.yaml").write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
        writer = SummaryWriter(str(out_dir / "tb"))
    val_loader = None
    if val_set is not None and main:
        val_loader = DataLoader(val_set, batch_size=cfg.data.val_batch_size, shuffle=False, num_workers=0)

    side = [0.0]  # seconds spent validating and checkpointing: not counted in steps/s

    def save_checkpoint() -> Path:
        began = time.perf_counter()
        path = ckpt.checkpoint_path(out_dir, step)
        if world > 1:  # DDP syncs buffers (BN running stats) at the next forward: do it now, so all ranks agree
            for buffer in model.buffers():
                dist.broadcast(buffer, 0)
        _barrier(world)  # every rank has finished the step: the weights are the same everywhere
        if main:
            ckpt.save(path, {
                "format": 1, "step": step, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(), "config": config_to_dict(cfg),
                "rng": ckpt.rng_state(), "val": val_metrics, "world_size": world,
                "data": {"epoch": step // per_epoch, "batch": step % per_epoch, "seed": t.seed,
                         "batches_per_epoch": per_epoch},
            })
            ckpt.prune(out_dir, t.keep_last)
        _barrier(world)
        side[0] += time.perf_counter() - began
        return path

    def validate() -> None:
        nonlocal val_metrics
        began = time.perf_counter()
        if main and val_loader is not None:
            val_metrics, first = _validate(cfg, model, val_loader, device, autocast)
            _set_train_mode(model, t.stage)
            for k, v in val_metrics.items():
                writer.add_scalar(f"val/{k}", v, step)
            if first is not None:
                writer.add_image("val/flow_image1_gt_pred", _flow_picture(first), step, dataformats="HWC")
            _jsonl(out_dir, {"step": step, "split": "val", **val_metrics})
            log(f"step {step}: val " + ", ".join(f"{k} {v:.3f}" for k, v in val_metrics.items()))
        _barrier(world)
        side[0] += time.perf_counter() - began

    losses, last_path, started, start_step = [], None, time.perf_counter(), step
    bar = tqdm(total=o.steps, initial=step, unit="step", disable=not (main and progress), dynamic_ncols=True)
    try:
        while step < o.steps:
            epoch, start = divmod(step, per_epoch)
            order = _BatchOrder(len(train_set), o.batch_size, t.seed, epoch, start, rank, world)
            loader = DataLoader(train_set, batch_sampler=order, num_workers=t.num_workers,
                                generator=torch.Generator(),  # keeps the loader off the global RNG
                                persistent_workers=False, pin_memory=device.type == "cuda")
            for batch in loader:
                batch = _to(batch, device)
                loss, metrics = _loss(cfg, net, batch, autocast)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.unscale_(optimizer)
                grad_norm = torch.nn.utils.clip_grad_norm_(params, o.clip) if o.clip > 0 else torch.zeros(())
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                step += 1
                losses.append(loss.item())
                if main:
                    bar.update(1)
                    if step % t.log_every == 0 or step == o.steps:
                        lr = scheduler.get_last_lr()[0]
                        writer.add_scalar("train/loss", losses[-1], step)
                        writer.add_scalar("train/lr", lr, step)
                        writer.add_scalar("train/grad_norm", float(grad_norm), step)
                        for k, v in metrics.items():
                            writer.add_scalar(f"train/{k}", v, step)
                        _jsonl(out_dir, {"step": step, "split": "train", "loss": losses[-1], "lr": lr, **metrics})
                        bar.set_postfix(loss=f"{losses[-1]:.3f}", epe=f"{metrics.get('epe', float('nan')):.2f}")
                if t.val_every and step % t.val_every == 0 and step < o.steps:
                    validate()
                if step % t.checkpoint_every == 0 and step < o.steps:
                    last_path = save_checkpoint()
                if step >= o.steps:
                    break
        if start_step < o.steps or not val_metrics:
            validate()
        if start_step < o.steps or last_path is None:
            last_path = save_checkpoint()
        if main:
            _plot(out_dir, log)
    finally:
        bar.close()
        if writer is not None:
            writer.close()
    seconds = time.perf_counter() - started - side[0]
    weights = state_hash(model.state_dict())
    if os.environ.get(HASH_ENV) == "1":
        (out_dir / f"weights_rank{rank}.sha256").write_text(weights + "\n")
    return {
        "step": step, "losses": losses,
        "loss": float(np.mean(losses[-10:])) if losses else float("nan"),
        "val": val_metrics, "steps_per_s": (step - start_step) / seconds if seconds > 0 else math.nan,
        "checkpoint": str(last_path), "weights_sha256": weights, "run_dir": str(out_dir),
    }


def _plot(out_dir: Path, log) -> None:
    """``out_dir/curves.png``; a plotting failure is reported, never fatal after a finished run."""
    from .curves import plot_curves

    try:
        log(f"curves: {plot_curves(out_dir, out_dir / 'curves.png', title=out_dir.name)}")
    except Exception as err:  # noqa: BLE001 - the weights are saved; a missing picture must not fail the run
        log(f"curves: not drawn ({type(err).__name__}: {err})")


def _jsonl(out_dir: Path, record: dict) -> None:
    with open(out_dir / "metrics.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")
