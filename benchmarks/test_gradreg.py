"""Gradient-regularization benchmarks: the fused op against what a user would write instead.

Configuration (every case): ``pyflowops.gradient_regularization(flow, image, mask,
operator="sobel", penalty="charbonnier", eps=1e-3, edge_weight=10.0, reduction="mean")``
with flow [4, 2, S, S] float32 (random normal, 2 px), image [4, 3, S, S] float32 in
[0, 1], mask [4, 1, S, S] bool (90 % True); S = 256, 512, 1024, 2048 (quick mode: 256,
512; ``PYFLOWOPS_BENCH_GRADREG_SIZES=64,128`` overrides, e.g. for a smoke test).

Directions (``extra_info["direction"]``):

* ``fwd``     the loss only, flow not requiring grad (validation / metric use: no
              autograd graph, the fused op saves no weight);
* ``fwdbwd``  loss + ``loss.backward()`` to flow (``flow.grad`` reset to None before
              each round, as ``zero_grad(set_to_none=True)`` does).

Variants (``extra_info["variant"]``), on each device:

* ours: every available pyflowops kernel backend (cpu; cuda and triton on a GPU), skipped
  with a recorded reason ("no kernel") while a backend has no gradreg kernel;
* ``torch``: the pyflowops torch reference (``backend="torch"``);
* ``kornia``: the same loss composed from ``kornia.filters.spatial_gradient`` and torch
  pointwise ops, written the way a user would (:func:`kornia_smoothness`);
* ``kornia_compile``: that composition under ``torch.compile`` (compiled afresh for each
  case after ``torch._dynamo.reset()``; the first call, compile included, is excluded
  from the timing and recorded as ``extra_info["compile_s"]``).

Before the first case of each size and device, the kornia composition's loss is asserted
to equal the reference's and every kernel's (float32 tolerance; the gradient to flow too
up to 512^2), and the compiled composition's first loss to equal the eager one, so a
benchmark never compares different math.

Each case records peak memory, and the memory-bandwidth floor: the bytes the op must
move (:func:`floor_bytes`) over the device's measured ``copy_`` bandwidth
(:func:`benchmarks._measure.copy_bandwidth`); ``floor_multiple`` = mean time / floor.
``python -m benchmarks.report`` writes the "Gradient regularization" section of RESULTS.md
(``benchmarks/report_gradreg.py``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import kornia
import pytest
import torch

import pyflowops
from benchmarks import _measure as m

BATCH = 4
CHANNELS = 3
OPERATOR = "sobel"
PENALTY = "charbonnier"
EPS = 1e-3
EDGE_WEIGHT = 10.0
FLOW_SCALE = 2.0  # pixels
MASK_KEEP = 0.9
DIRECTIONS = ("fwd", "fwdbwd")
PEERS = ("torch", "kornia", "kornia_compile")
PEER_TITLES = {
    "torch": "torch reference",
    "kornia": "kornia",
    "kornia_compile": "kornia + torch.compile",
}
CONFIG = {
    "operator": OPERATOR,
    "penalty": PENALTY,
    "eps": EPS,
    "edge_weight": EDGE_WEIGHT,
    "reduction": "mean",
    "channels": CHANNELS,
    "mask": "bool",
    "target": False,
    "dtype": "float32",
}
GRAD_CHECK_MAX_SIZE = 512  # the gradient to flow is compared up to this size (the loss at every size)
LOSS_RTOL = 1e-4


def gradreg_sizes() -> list[int]:
    """Image sides: ``PYFLOWOPS_BENCH_GRADREG_SIZES`` if set, else 256..2048 (quick: 256, 512)."""
    env = os.environ.get("PYFLOWOPS_BENCH_GRADREG_SIZES")
    if env:
        return [int(s) for s in env.split(",") if s.strip()]
    return m.image_sizes()


SIZES = gradreg_sizes()
TARGETS = m.bench_targets()
DEVICES = list(dict.fromkeys(t.device for t in TARGETS))
OURS = {d: [t.backend for t in TARGETS if t.device == d and t.backend != "torch"] for d in DEVICES}


# ---------------------------------------------------------------------------
# the peer: the loss composed from kornia, as a user would write it
# ---------------------------------------------------------------------------


def kornia_smoothness(flow, image, mask, edge_weight: float = EDGE_WEIGHT, eps: float = EPS):
    """Edge-aware Charbonnier smoothness of ``flow`` from kornia's Sobel gradients (mean over pixels)."""
    flow_grad = kornia.filters.spatial_gradient(flow, mode="sobel", order=1)  # [B, 2, 2, H, W]
    image_grad = kornia.filters.spatial_gradient(image, mode="sobel", order=1)  # [B, 3, 2, H, W]
    edges = image_grad.abs().mean(dim=(1, 2))  # [B, H, W]
    weight = torch.exp(-edge_weight * edges) * mask.squeeze(1).float()
    penalty = torch.sqrt(flow_grad**2 + eps**2).sum(dim=(1, 2))  # charbonnier over (u, v) x (dx, dy)
    return (weight * penalty).mean()


def ours(flow, image, mask, backend: str):
    return pyflowops.gradient_regularization(
        flow, image, mask, operator=OPERATOR, penalty=PENALTY, eps=EPS, edge_weight=EDGE_WEIGHT, backend=backend
    )


# ---------------------------------------------------------------------------
# cases
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class GCase:
    """One case: image side ``size``, ``variant`` (a pyflowops backend or a peer), device, direction."""

    size: int
    device: str
    variant: str
    direction: str
    batch: int = BATCH

    @property
    def is_ours(self) -> bool:
        return self.variant not in PEERS

    @property
    def backend(self) -> str | None:
        """The pyflowops backend that runs it (None for the kornia peers)."""
        return None if self.variant.startswith("kornia") else self.variant

    @property
    def id(self) -> str:
        return f"{self.size}px-b{self.batch}-{self.direction}-{self.variant}@{self.device}"

    @property
    def pixels(self) -> int:
        return self.batch * self.size * self.size

    def config(self) -> dict[str, Any]:
        return {
            "family": "gradreg",
            "image_size": self.size,
            "batch": self.batch,
            "backend": self.backend,
            "variant": self.variant,
            "peer": "ours" if self.is_ours else PEER_TITLES[self.variant],
            "device": self.device,
            "direction": self.direction,
            **CONFIG,
        }


def _cases() -> list[GCase]:
    return [
        GCase(size, device, variant, direction)
        for device in DEVICES
        for size in SIZES
        for direction in DIRECTIONS
        for variant in (*OURS[device], *PEERS)
    ]


# ---------------------------------------------------------------------------
# bytes, floor, memory estimate
# ---------------------------------------------------------------------------


def floor_bytes_per_pixel(direction: str, channels: int = CHANNELS, itemsize: int = 4, target: bool = False) -> int:
    """Bytes per pixel the op must move at least (the model of the memory-bandwidth floor).

    Forward: read flow (2 values), image (C values) and the bool mask (1 byte), plus the
    target (2 values) when given; the loss is a scalar. ``fwd`` (no grad) writes nothing
    else: 8 + 12 + 1 = 21 B/px for float32, C = 3.

    Forward + backward (autograd: two passes, the backward needs ``grad_loss``, known only
    after the forward): the forward also writes the per-pixel weight ``w`` (float32, 4 B,
    what the fused backward reads instead of image + mask, the cheaper of the two: 4 < 13);
    the backward reads flow again (2 values), the weight (4 B) and writes grad_flow (2
    values), plus the target (2 values) when given: 21 + 4 + 8 + 4 + 8 = 45 B/px.
    """
    forward = (2 + channels + (2 if target else 0)) * itemsize + 1
    if direction == "fwd":
        return forward
    backward = (2 + (2 if target else 0)) * itemsize + 4 + 2 * itemsize
    return forward + 4 + backward


def floor_bytes(case: GCase) -> int:
    return case.pixels * floor_bytes_per_pixel(case.direction) + 4  # + the scalar loss


# Rough peak extra memory per pixel (bytes), pessimistic, to skip what cannot fit; measured on
# CPU at 256^2-1024^2 (kornia eager fwd+bwd ~290-470 B/px, the torch reference similar).
_EXTRA_BYTES_PER_PIXEL = {
    ("eager", "fwd"): 320,
    ("eager", "fwdbwd"): 560,
    ("kornia_compile", "fwd"): 160,
    ("kornia_compile", "fwdbwd"): 320,
    ("ours", "fwd"): 16,
    ("ours", "fwdbwd"): 64,
}


def estimate_bytes(case: GCase) -> int:
    """Inputs plus the variant's peak extra memory (rough, pessimistic)."""
    kind = "ours" if case.is_ours else ("kornia_compile" if case.variant == "kornia_compile" else "eager")
    inputs = case.pixels * floor_bytes_per_pixel("fwd")
    return inputs + case.pixels * _EXTRA_BYTES_PER_PIXEL[(kind, case.direction)]


# ---------------------------------------------------------------------------
# inputs, kernel probes, the correctness check
# ---------------------------------------------------------------------------

_INPUTS: dict[tuple, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}


def _inputs(size: int, device: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(flow, image, mask) of one size and device, generated on CPU (seeded) and kept for the size's cases."""
    key = (size, device)
    if key not in _INPUTS:
        _INPUTS.clear()
        gen = torch.Generator().manual_seed(size)
        flow = torch.randn(BATCH, 2, size, size, generator=gen) * FLOW_SCALE
        image = torch.rand(BATCH, CHANNELS, size, size, generator=gen)
        mask = torch.rand(BATCH, 1, size, size, generator=gen) < MASK_KEEP
        _INPUTS[key] = tuple(t.to(device).contiguous() for t in (flow, image, mask))  # type: ignore[assignment]
    return _INPUTS[key]


_MISSING: dict[tuple[str, str, str], str | None] = {}
# What a backend without a gradreg kernel raises: the dispatcher's "Could not run ..."
# (NotImplementedError), no such op / module (Triton twins not written yet), or the backend itself.
_NO_KERNEL = (NotImplementedError, ImportError, AttributeError, pyflowops.BackendUnavailableError)


def kernel_missing(backend: str, device: str, direction: str) -> str | None:
    """Why ``backend`` cannot run the gradreg forward (``fwd``) or backward (``fwdbwd``) on ``device``, or None.

    Probed on a tiny input each session, so a kernel built since the last run is found.
    Any other error (a wrong result, a crash) is not hidden: it fails the benchmark.
    """
    key = (backend, device, direction)
    if key not in _MISSING:
        flow = torch.randn(1, 2, 6, 7, device=device, requires_grad=direction == "fwdbwd")
        image = torch.rand(1, CHANNELS, 6, 7, device=device)
        mask = torch.rand(1, 1, 6, 7, device=device) < MASK_KEEP
        try:
            loss = ours(flow, image, mask, backend)
            if direction == "fwdbwd":
                loss.backward()
            _MISSING[key] = None
        except _NO_KERNEL as exc:
            what = "forward" if direction == "fwd" else "forward or backward"
            text = str(exc).strip()
            first = text.splitlines()[0].split(". ")[0][:200] if text else ""
            _MISSING[key] = f"no {what} kernel for backend {backend!r} on {device} ({type(exc).__name__}: {first})"
    return _MISSING[key]


# (size, device) -> {"loss": kornia eager loss, "grad": its gradient to flow (small sizes only)}
_VERIFIED: dict[tuple[int, str], dict[str, Any]] = {}


def _close(actual: torch.Tensor, expected: torch.Tensor, what: str) -> None:
    atol = 1e-5 * float(expected.abs().max()) if expected.numel() else 0.0
    torch.testing.assert_close(actual, expected, rtol=LOSS_RTOL, atol=atol, msg=lambda msg: f"{what}: {msg}")


def verify(size: int, device: str) -> dict[str, Any]:
    """Assert (once per size and device) that kornia's composition, the reference and every kernel agree."""
    key = (size, device)
    if key in _VERIFIED:
        return _VERIFIED[key]
    flow, image, mask = _inputs(size, device)
    with torch.no_grad():
        expected = kornia_smoothness(flow, image, mask)
        _close(ours(flow, image, mask, "torch"), expected, f"torch reference vs kornia, {size}^2 {device}")
        for backend in OURS[device]:
            if kernel_missing(backend, device, "fwd") is None:
                _close(ours(flow, image, mask, backend), expected, f"{backend} vs kornia loss, {size}^2 {device}")
    entry: dict[str, Any] = {"loss": expected}
    if size <= GRAD_CHECK_MAX_SIZE:
        grads = {}
        for variant in ("kornia", "torch", *OURS[device]):
            if variant in OURS[device] and kernel_missing(variant, device, "fwdbwd") is not None:
                continue
            leaf = flow.detach().clone().requires_grad_()
            loss = kornia_smoothness(leaf, image, mask) if variant == "kornia" else ours(leaf, image, mask, variant)
            loss.backward()
            grads[variant] = leaf.grad
        for variant, grad in grads.items():
            if variant != "kornia":
                _close(grad, grads["kornia"], f"{variant} vs kornia gradient to flow, {size}^2 {device}")
        entry["grad"] = grads["kornia"]
    _VERIFIED.clear()  # one size at a time
    _VERIFIED[key] = entry
    return entry


# ---------------------------------------------------------------------------
# timing
# ---------------------------------------------------------------------------

def _slow(case: GCase) -> bool:
    """The peers at >= 1024^2 on CPU take ~0.5-10 s a call: one timed round, no untimed call before it
    (the compiled peer still gets its compile call)."""
    return case.device == "cpu" and not case.is_ours and case.size >= 1024


def _skip(case: GCase, kind: str, reason: str, estimate: int | None = None) -> None:
    m.record_skip(kind=kind, reason=reason, estimate_bytes=estimate, **case.config())
    pytest.skip(f"{kind}: {reason}")


def _run(
    benchmark,
    case: GCase,
    estimate: int,
    target: Callable[[], object],
    setup: Callable[[], None],
    first_call: Callable[[], None] | None = None,
) -> None:
    """Time ``target`` (``_measure.run_benchmark``); record peak memory, the bandwidth floor and CPU contention.

    ``first_call`` (the compile, or a plain call) runs untimed first; peak memory is
    that of the next call (the warmup, or the single timed round of a slow case).
    """
    bandwidth = m.copy_bandwidth(case.device)  # once per session and device
    benchmark.group = f"gradreg {case.direction} | {case.size}px b{case.batch} | {case.device}"
    benchmark.extra_info.update(case.config())
    first_s = None
    if first_call is not None:
        t0 = time.perf_counter()
        first_call()
        m.synchronize(case.device)
        first_s = time.perf_counter() - t0
    measured = m.run_benchmark(benchmark, case.id, case.device, _slow(case), target, setup)
    nbytes = floor_bytes(case)
    floor_s = nbytes / bandwidth
    mean = benchmark.stats.stats.mean if benchmark.stats is not None else None
    benchmark.extra_info.update(
        measured,
        memory_estimate_bytes=estimate,
        bytes_moved=nbytes,
        floor_bytes_per_pixel=floor_bytes_per_pixel(case.direction),
        copy_bandwidth_bytes_per_s=bandwidth,
        floor_s=floor_s,
        floor_multiple=mean / floor_s if mean else None,
        input_bytes=case.pixels * floor_bytes_per_pixel("fwd"),
        first_call_s=first_s,
        compile_s=first_s if case.variant == "kornia_compile" else None,
    )


# ---------------------------------------------------------------------------
# the benchmark
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in _cases()])
def test_gradreg(benchmark, case):
    estimate = estimate_bytes(case)
    budget = m.memory_budget_bytes(case.device)
    if estimate > budget:
        ram = m.total_memory_bytes(case.device)
        _skip(case, "does not fit", f"needs ~{m.gib(estimate):.1f} GiB, budget {m.gib(budget):.1f} GiB "
              f"({'GPU' if case.device == 'cuda' else 'RAM'} {m.gib(ram):.1f} GiB)", estimate)
    if case.is_ours and (reason := kernel_missing(case.variant, case.device, case.direction)):
        _skip(case, "no kernel", reason, estimate)
    checked = verify(case.size, case.device)
    flow0, image, mask = _inputs(case.size, case.device)
    backward = case.direction == "fwdbwd"
    flow = flow0.detach().clone().requires_grad_(backward)

    if case.variant == "kornia_compile":
        torch._dynamo.reset()  # compile afresh for this size and direction: static shapes, as a user's loop
        loss_fn = torch.compile(kornia_smoothness)
    elif case.variant == "kornia":
        loss_fn = kornia_smoothness
    else:

        def loss_fn(f, i, k):
            return ours(f, i, k, case.variant)

    def setup() -> None:
        flow.grad = None

    def target() -> None:
        loss = loss_fn(flow, image, mask)
        if backward:
            loss.backward()

    first_call = target
    if case.variant == "kornia_compile":

        def first_call() -> None:  # the compile (forward, and the backward's at the first backward) + a check
            setup()
            try:
                loss = loss_fn(flow, image, mask)
                if backward:
                    loss.backward()
            except Exception as exc:  # noqa: BLE001 - an environment without a working compiler
                if isinstance(exc, AssertionError):
                    raise
                _skip(case, "compile failed", f"torch.compile: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
            _close(loss.detach(), checked["loss"], f"compiled vs eager kornia loss, {case.size}^2 {case.device}")
            if backward and "grad" in checked:
                _close(flow.grad, checked["grad"], f"compiled vs eager kornia gradient, {case.size}^2 {case.device}")

    elif _slow(case):
        first_call = None  # seconds a call: no untimed call before the single round

    _run(benchmark, case, estimate, target, setup, first_call)
    setup()
    if case.variant == "kornia_compile":
        torch._dynamo.reset()
