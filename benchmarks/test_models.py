"""Flow-network benchmarks (issue 7): the ``pyflowops_models`` networks on pyflowops ops vs the reference ops.

Three families (``extra_info["family"]``):

* ``model_train_step`` — drop-in acceleration. One DecFlow training step: size
  ``small``, batch 2, 256x256 random images (0..255), 12 iterations, train mode,
  ``decflow_loss`` against fixed random facial / head ground-truth flows,
  ``loss.backward()`` (no optimizer; ``.grad`` reset to None before each round).
  Variants (``extra_info["variant"]``): ``reference`` (RAFT's grid_sample
  CorrBlock + GMA's explicit (HW)^2 softmax, :mod:`benchmarks._reference_models`),
  ``allpairs`` and ``onthefly`` (pyflowops correlation blocks, fused softmax).
  Every variant is built with the same seed, so the weights are the same; each
  variant's loss is asserted to equal the reference's (rtol 1e-4) and recorded.
  Target: pyflowops all-pairs >= 1.3x faster than the reference.
* ``model_highres`` — DecFlow size ``full``, eval, ``no_grad``, one 2048x2048 pair,
  batch 1, 12 iterations, ``corr="auto"`` (which block it picked is recorded):
  time and peak extra memory of one call. Target: peak <= 8 GiB. What the
  reference configuration would need there (all-pairs pyramid + the explicit
  attention matrix) is computed, not run, and recorded.
* ``model_memory`` — peak extra memory (and time) of one eval forward
  (``no_grad``, 2 iterations: eval memory does not grow with iterations) of gma
  and decflow (size ``full``, fused softmax) with ``corr="allpairs"`` /
  ``"onthefly"`` at 256^2 .. 2048^2. All-pairs is skipped (recorded with the
  estimate) where its pyramid alone exceeds the memory budget per case.

GMA's aggregator starts with ``gamma = 0``; every ``Aggregate.gamma`` is set to 0.5
here so the attention path contributes. DecFlow's semantic encoder has random
weights (its warning is silenced): speed and memory do not depend on the weights.

Quick mode (``PYFLOWOPS_BENCH_QUICK=1``): no 1536^2 / 2048^2 memory points and no
2048^2 high-resolution run. ``PYFLOWOPS_BENCH_MODEL`` (default ``decflow``) picks
the network of the training step and the high-resolution run (e.g. ``gma``).

``python -m benchmarks.report`` writes the "Models" section of RESULTS.md
(``benchmarks/report_models.py``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import pytest
import torch
import torch.nn as nn

from benchmarks import _measure as m
from benchmarks._reference_models import create_model, reference_model

DEVICE = "cpu"  # the networks' eager PyTorch parts make CPU the machine this file is written for
MODEL = os.environ.get("PYFLOWOPS_BENCH_MODEL", "decflow")
GAMMA = 0.5
SEED = 0
LOSS_RTOL = 1e-4

# training step
TRAIN_SIZE, TRAIN_BATCH, TRAIN_IMAGE, TRAIN_ITERS = "small", 2, 256, 12
TRAIN_ROUNDS = 5
TRAIN_VARIANTS = ("reference", "allpairs", "onthefly")  # reference first: its loss is the one the others match
GT_SCALE = 4.0  # pixels: the random ground-truth flows

# high resolution
HIGHRES_SIZE, HIGHRES_IMAGE, HIGHRES_ITERS = "full", 2048, 12
HIGHRES_TARGET_BYTES = 8 * 1024**3

# memory vs resolution
MEMORY_MODELS = ("gma", "decflow")
MEMORY_MODES = ("allpairs", "onthefly")
MEMORY_ITERS = 2
FEATURE_STRIDE = 8
NUM_LEVELS = 4


def memory_sizes() -> list[int]:
    return [256, 512, 1024] if m.quick_mode() else [256, 512, 1024, 1536, 2048]


# ---------------------------------------------------------------------------
# what the reference configuration needs (computed)
# ---------------------------------------------------------------------------


def pyramid_bytes(image_size: int, batch: int = 1) -> int:
    """The float32 all-pairs pyramid of a square image (features at 1/8, 4 levels)."""
    from pyflowops_models.correlation import allpairs_bytes

    side = image_size // FEATURE_STRIDE
    return allpairs_bytes(batch, side, side, NUM_LEVELS)


def attention_bytes(image_size: int, batch: int = 1, heads: int = 1) -> int:
    """GMA's explicit attention matrix: B * heads * (HW/64)^2 float32 (16 GiB at 2048^2)."""
    tokens = (image_size // FEATURE_STRIDE) ** 2
    return batch * heads * tokens * tokens * 4


def reference_need_bytes(image_size: int, batch: int = 1) -> int:
    """The two (HW)^2 tensors of the reference configuration: pyramid + attention matrix."""
    return pyramid_bytes(image_size, batch) + attention_bytes(image_size, batch)


# ---------------------------------------------------------------------------
# models and inputs
# ---------------------------------------------------------------------------


def set_gamma(model: nn.Module, gamma: float = GAMMA) -> nn.Module:
    """Give every GMA aggregator a non-zero gamma, so the attention's output is used."""
    from pyflowops_models.attention import Aggregate

    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, Aggregate):
                module.gamma.fill_(gamma)
    return model


_MATH_FALLBACK: dict[str, bool] = {}


def fused_attention_materializes(name: str) -> bool:
    """Whether ``name``'s ``softmax="fused"`` attention runs SDPA's *math* path on CPU (once per session).

    That path (taken e.g. for q / k / v whose last dimension is not contiguous) stores the
    (HW)^2 score matrix and its softmax, like the explicit attention: 2 x 16 GiB at 2048^2.
    Found by profiling one tiny eval forward (64^2, one iteration); raft has no attention.
    """
    if name == "raft":
        return False
    if name not in _MATH_FALLBACK:
        model = build(name, "small", "onthefly").eval()
        image1, image2 = images(64, 1)
        with torch.no_grad(), torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            model(image1, image2, iters=1)
        _MATH_FALLBACK[name] = any(e.key == "aten::_scaled_dot_product_attention_math" for e in prof.key_averages())
    return _MATH_FALLBACK[name]


def eval_floor_bytes(name: str, variant: str, image: int, batch: int = 1) -> tuple[int, str]:
    """(bytes an eval forward needs at least, what they are): the all-pairs pyramid (``allpairs``)
    plus, where the fused attention falls back to SDPA's math path, its score matrix and softmax."""
    total, parts = 0, []
    if variant == "allpairs":
        total += pyramid_bytes(image, batch)
        parts.append(f"all-pairs pyramid {m.gib(pyramid_bytes(image, batch)):.1f} GiB")
    if fused_attention_materializes(name):
        total += 2 * attention_bytes(image, batch)
        parts.append(f"2 x {m.gib(attention_bytes(image, batch)):.1f} GiB attention scores + softmax "
                     "(softmax=\"fused\" falls back to SDPA's math path on CPU)")
    return total, " + ".join(parts)


class RecordingCorrBlock:
    """``corr_block=`` wrapper around the built-in factory that remembers which block ``corr="auto"`` picked."""

    def __init__(self) -> None:
        self.picked: str | None = None

    def __call__(self, fmap1, fmap2, mode, num_levels, radius, memory_budget_bytes):
        from pyflowops_models.correlation import make_corr_block

        block = make_corr_block(fmap1, fmap2, mode, num_levels, radius, memory_budget_bytes)
        self.picked = type(block).__name__
        return block


def build(name: str, size: str, variant: str, **options) -> nn.Module:
    """``variant``: ``reference`` or a pyflowops ``corr`` mode; same seed -> same weights."""
    torch.manual_seed(SEED)
    if variant == "reference":
        model = reference_model(name, size, **options)
    else:
        model = create_model(name, size=size, corr=variant, **options)
    return set_gamma(model)


def images(size: int, batch: int, seed: int = SEED) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return tuple((torch.rand(2, batch, 3, size, size, generator=gen) * 255).unbind(0))  # type: ignore[return-value]


def ground_truth(size: int, batch: int, seed: int = SEED + 1) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    facial, head = (torch.randn(2, batch, 2, size, size, generator=gen) * GT_SCALE).unbind(0)
    return facial, head


def training_loss(name: str, out, facial_gt: torch.Tensor, head_gt: torch.Tensor) -> torch.Tensor:
    """DecFlow: ``decflow_loss``; the other networks: RAFT's ``sequence_loss`` against the facial gt."""
    from pyflowops_models.losses import decflow_loss, sequence_loss

    if isinstance(out, dict):
        return decflow_loss(out["facial"], out["head"], facial_gt, head_gt)[0]
    return sequence_loss(out, facial_gt)[0]


# ---------------------------------------------------------------------------
# cases
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class MCase:
    family: str
    model: str
    size: str  # "full" | "small"
    image: int
    batch: int
    variant: str  # "reference", "allpairs", "onthefly", "auto"
    iters: int

    @property
    def id(self) -> str:
        return f"{self.family}-{self.model}-{self.size}-{self.image}px-b{self.batch}-{self.variant}"

    def config(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "model": self.model,
            "model_size": self.size,
            "image_size": self.image,
            "batch": self.batch,
            "variant": self.variant,
            "corr": "reference" if self.variant == "reference" else self.variant,
            "softmax": "explicit" if self.variant == "reference" else "fused",
            "iters": self.iters,
            "device": DEVICE,
            "gamma": GAMMA,
        }


def _skip(case: MCase, kind: str, reason: str, estimate: int | None = None) -> None:
    m.record_skip(kind=kind, reason=reason, estimate_bytes=estimate, **case.config())
    pytest.skip(f"{kind}: {reason}")


def _run(benchmark, case: MCase, slow: bool, target, setup=None) -> dict[str, Any]:
    benchmark.group = f"{case.family} | {case.model}-{case.size} {case.image}px b{case.batch}"
    benchmark.extra_info.update(case.config())
    measured = m.run_benchmark(benchmark, case.id, DEVICE, slow, target, setup)
    benchmark.extra_info.update(measured)
    return measured


# ---------------------------------------------------------------------------
# 1. drop-in acceleration: a training step
# ---------------------------------------------------------------------------

# variant -> the loss of its last timed round (the reference's is what the others must match)
_TRAIN_LOSSES: dict[str, float] = {}


def _train_step_fn(case: MCase):
    model = build(case.model, case.size, case.variant).train()
    image1, image2 = images(case.image, case.batch)
    facial_gt, head_gt = ground_truth(case.image, case.batch)
    last: dict[str, float] = {}

    def setup() -> None:
        model.zero_grad(set_to_none=True)

    def target() -> None:
        out = model(image1, image2, iters=case.iters)
        loss = training_loss(case.model, out, facial_gt, head_gt)
        loss.backward()
        last["loss"] = float(loss.detach())

    return setup, target, last


def _reference_loss(case: MCase) -> float:
    """The reference variant's loss (from its benchmark, or one untimed step when it did not run first)."""
    if "reference" not in _TRAIN_LOSSES:
        setup, target, last = _train_step_fn(MCase(**{**case.__dict__, "variant": "reference"}))
        setup()
        target()
        _TRAIN_LOSSES["reference"] = last["loss"]
    return _TRAIN_LOSSES["reference"]


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(c, id=c.id)
        for c in (MCase("model_train_step", MODEL, TRAIN_SIZE, TRAIN_IMAGE, TRAIN_BATCH, v, TRAIN_ITERS)
                  for v in TRAIN_VARIANTS)
    ],
)
def test_train_step(benchmark, case):
    setup, target, last = _train_step_fn(case)
    # an untimed warmup step (peak memory) + TRAIN_ROUNDS timed rounds: each step takes seconds on CPU
    benchmark.group = f"{case.family} | {case.model}-{case.size} {case.image}px b{case.batch}"
    benchmark.extra_info.update(case.config())
    waited = m.wait_for_idle()
    contention = m.CpuContention()
    contention.start()
    tracker = m.PeakMemory(DEVICE)
    setup()
    tracker.start()
    target()
    tracker.stop()
    benchmark.pedantic(target, setup=setup, rounds=TRAIN_ROUNDS, warmup_rounds=0, iterations=1)
    other_load = contention.stop()
    m.CONTENTION.append((case.id, other_load))
    benchmark.extra_info.update(other_cpu_load=other_load, waited_for_idle_s=waited, peak_memory_bytes=tracker.peak,
                                memory_method=tracker.method)
    _TRAIN_LOSSES[case.variant] = last["loss"]
    reference = _reference_loss(case)
    benchmark.extra_info.update(loss=last["loss"], reference_loss=reference,
                                loss_rel_diff=abs(last["loss"] - reference) / abs(reference))
    setup()
    assert last["loss"] == pytest.approx(reference, rel=LOSS_RTOL), (
        f"{case.variant} loss {last['loss']} != reference loss {reference} (same weights, same inputs)"
    )


# ---------------------------------------------------------------------------
# 2. high resolution: DecFlow full, 2048^2, 12 iterations
# ---------------------------------------------------------------------------

HIGHRES = MCase("model_highres", MODEL, HIGHRES_SIZE, HIGHRES_IMAGE, 1, "auto", HIGHRES_ITERS)


@pytest.mark.parametrize("case", [pytest.param(HIGHRES, id=HIGHRES.id)])
def test_highres(benchmark, case):
    extra = {
        "reference_pyramid_bytes": pyramid_bytes(case.image, case.batch),
        "reference_attention_bytes": attention_bytes(case.image, case.batch),
        "reference_need_bytes": reference_need_bytes(case.image, case.batch),
        "target_peak_bytes": HIGHRES_TARGET_BYTES,
    }
    if m.quick_mode():
        _skip(case, "quick mode", f"{case.image}² takes 10+ minutes on CPU; PYFLOWOPS_BENCH_QUICK=1 leaves it out",
              None)
    benchmark.extra_info["fused_attention_math_fallback"] = fused_attention_materializes(case.model)
    need, what = eval_floor_bytes(case.model, "onthefly", case.image, case.batch)
    budget = m.memory_budget_bytes(DEVICE)
    if need > budget:
        _skip(case, "does not fit", f"needs at least {m.gib(need):.1f} GiB ({what}) > budget {m.gib(budget):.1f} GiB "
              f"(RAM {m.gib(m.total_memory_bytes(DEVICE)):.1f} GiB)", need)
    recorder = RecordingCorrBlock()
    model = build(case.model, case.size, "auto", corr_block=recorder).eval()
    image1, image2 = images(case.image, case.batch)
    out: dict[str, Any] = {}

    def target() -> None:
        with torch.no_grad():
            out["flow"] = model(image1, image2, iters=case.iters)

    _run(benchmark, case, True, target)  # one round, peak memory of that round
    flows = out.pop("flow")
    facial = flows["facial"] if isinstance(flows, dict) else flows
    assert facial.shape == (case.batch, 2, case.image, case.image)
    assert torch.isfinite(facial).all()
    benchmark.extra_info.update(extra, corr_block_picked=recorder.picked)


# ---------------------------------------------------------------------------
# 3. memory vs resolution
# ---------------------------------------------------------------------------

MEMORY_CASES = [
    MCase("model_memory", name, "full", size, 1, mode, MEMORY_ITERS)
    for name in MEMORY_MODELS
    for mode in MEMORY_MODES
    for size in memory_sizes()
]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in MEMORY_CASES])
def test_memory(benchmark, case):
    pyramid = pyramid_bytes(case.image, case.batch)
    budget = m.memory_budget_bytes(DEVICE)
    extra = {
        "pyramid_bytes": pyramid,
        "reference_attention_bytes": attention_bytes(case.image, case.batch),
        "reference_need_bytes": reference_need_bytes(case.image, case.batch),
    }
    if case.variant == "allpairs" and pyramid > budget:
        _skip(case, "does not fit", f"the all-pairs pyramid alone is {m.gib(pyramid):.1f} GiB > budget "
              f"{m.gib(budget):.1f} GiB (RAM {m.gib(m.total_memory_bytes(DEVICE)):.1f} GiB)", pyramid)
    need, what = eval_floor_bytes(case.model, case.variant, case.image, case.batch)
    extra["fused_attention_math_fallback"] = fused_attention_materializes(case.model)
    if need > budget:
        _skip(case, "does not fit", f"needs at least {m.gib(need):.1f} GiB ({what}) > budget {m.gib(budget):.1f} GiB "
              f"(RAM {m.gib(m.total_memory_bytes(DEVICE)):.1f} GiB)", need)
    model = build(case.model, case.size, case.variant).eval()
    image1, image2 = images(case.image, case.batch)

    def target() -> None:
        with torch.no_grad():
            model(image1, image2, iters=case.iters)

    _run(benchmark, case, case.image >= 1024, target)
    benchmark.extra_info.update(extra)
