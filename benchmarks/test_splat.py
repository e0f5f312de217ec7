"""Gaussian-splatting benchmarks: ``pyflowops.render`` (projection + tiled rasterization) per backend.

The scene is ``benchmarks/_splat_scene.py::random_scene`` (N Gaussians in a box in front
of the camera, focal = width), float32. Cases (``extra_info["kind"]``):

* ``sweep``: 256^2 and 512^2 with 10k, 50k and 200k Gaussians, C = 3, every backend
  against the dense torch reference (forward; the reference's forward + backward would
  keep the whole (pixel, Gaussian) graph and does not fit, recorded as not run). The
  reference's cost grows as pixels x Gaussians: it is timed where its estimated time
  (from a rate measured on a small case) is under REFERENCE_BUDGET_S, everywhere with
  ``PYFLOWOPS_BENCH_FULL=1``.
* ``throughput``: 100k Gaussians at 1024^2 and 1M at 2048^2, C = 3, and C = 32 / 64 at
  1024^2: megapixels/s and Gaussians/s, forward and forward + backward (gradients to
  means, quats, scales, opacities and features).
* ``flow``: 100k Gaussians at 1024^2, image + alpha + depth + order-1 flow in one pass
  (``flow_features`` + one ``rasterize_gaussians`` of 3 + 6 channels + ``composite_flow``),
  the issue's CPU target (< 1 s).

On a GPU, gsplat (``gsplat.rasterization``, only if importable; never a dependency) runs
the same scenes. ``python -m benchmarks.report`` writes the "Gaussian splatting" section.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import torch

import pyflowops
from benchmarks import _measure as m
from benchmarks._splat_scene import random_scene

FAMILY = "splat"
REFERENCE_BUDGET_S = 600.0  # the dense reference runs where its estimated time is below this (or FULL mode)
SMOKE = bool(os.environ.get("PYFLOWOPS_BENCH_SPLAT_SMOKE"))  # tiny sizes: a smoke run of this file
# (image side, Gaussians) and (side, Gaussians, channels)
SWEEP = [(64, 500)] if SMOKE else [(256, 10_000), (256, 50_000), (256, 200_000), (512, 10_000), (512, 50_000),
                                   (512, 200_000)]
THROUGHPUT = [(128, 2_000, 3)] if SMOKE else [(1024, 100_000, 3), (2048, 1_000_000, 3), (1024, 100_000, 32),
                                              (1024, 100_000, 64)]
FLOW = [(128, 2_000)] if SMOKE else [(1024, 100_000)]
DIRECTIONS = ("fwd", "fwdbwd")
TARGETS = m.bench_targets()
DEVICES = list(dict.fromkeys(t.device for t in TARGETS))
OURS = {d: [t.backend for t in TARGETS if t.device == d and t.backend != "torch"] for d in DEVICES}


def _gsplat() -> Callable | None:
    try:
        from gsplat import rasterization  # type: ignore[import-not-found]
    except Exception:  # noqa: BLE001 - not installed, or its extension cannot build here
        return None
    return rasterization


GSPLAT = _gsplat() if torch.cuda.is_available() else None


@dataclass(frozen=True)
class SCase:
    kind: str  # sweep | throughput | flow
    size: int
    n: int
    channels: int
    device: str
    variant: str  # a pyflowops backend ("torch" = the dense reference) or "gsplat"
    direction: str

    @property
    def id(self) -> str:
        return f"{self.kind}-{self.size}px-{self.n // 1000}k-c{self.channels}-{self.direction}-{self.variant}@{self.device}"

    @property
    def is_ours(self) -> bool:
        return self.variant not in ("torch", "gsplat")

    def config(self) -> dict[str, Any]:
        return {
            "family": FAMILY,
            "kind": self.kind,
            "image_size": self.size,
            "gaussians": self.n,
            "channels": self.channels,
            "device": self.device,
            "variant": self.variant,
            "direction": self.direction,
            "batch": 1,
            "dtype": "float32",
        }


def _cases() -> list[SCase]:
    cases = []
    for device in DEVICES:
        peers = ["gsplat"] if device == "cuda" else []
        for size, n in SWEEP:
            for direction in DIRECTIONS:
                for variant in (*OURS[device], "torch", *peers):
                    cases.append(SCase("sweep", size, n, 3, device, variant, direction))
        for size, n, channels in THROUGHPUT:
            for direction in DIRECTIONS:
                for variant in (*OURS[device], *peers):
                    cases.append(SCase("throughput", size, n, channels, device, variant, direction))
        for size, n in FLOW:
            for variant in OURS[device]:
                cases.append(SCase("flow", size, n, 3, device, variant, "fwd"))
    return cases


# ---------------------------------------------------------------------------
# inputs and the variants
# ---------------------------------------------------------------------------

_SCENES: dict[tuple, dict[str, Any]] = {}


def _scene(case: SCase) -> dict[str, Any]:
    key = (case.size, case.n, case.channels, case.device)
    if key not in _SCENES:
        _SCENES.clear()  # one scene at a time (1M Gaussians are ~100 MB)
        _SCENES[key] = random_scene(case.n, case.size, case.size, channels=case.channels, device=case.device)
    return _SCENES[key]


def _leaves(scene: dict[str, Any], grad: bool) -> dict[str, Any]:
    """The scene with fresh leaf tensors (requiring grad for fwdbwd) for the differentiable inputs."""
    out = dict(scene)
    for k in ("means", "quats", "scales", "opacities", "features"):
        out[k] = scene[k].detach().clone().requires_grad_(grad)
    return out


def _render_ours(s: dict[str, Any], backend: str) -> tuple[torch.Tensor, ...]:
    return pyflowops.render(
        s["means"], s["quats"], s["scales"], s["opacities"], s["features"], s["viewmat"], s["K"],
        s["width"], s["height"], backend=backend,
    )  # fmt: skip


def _render_gsplat(s: dict[str, Any]) -> tuple[torch.Tensor, ...]:
    colors, alphas, _ = GSPLAT(  # type: ignore[misc]
        s["means"], s["quats"], s["scales"], s["opacities"], s["features"], s["viewmat"][None], s["K"][None],
        s["width"], s["height"],
    )  # fmt: skip
    return colors, alphas


def _render_with_flow(s: dict[str, Any], backend: str) -> tuple[torch.Tensor, ...]:
    """Image + alpha + depth + order-1 flow in one rasterization (the scene moves by a small rigid motion)."""
    means_next = s.get("_means_next")
    if means_next is None:
        means_next = s["_means_next"] = s["means"] + torch.tensor([0.01, -0.005, 0.02], device=s["means"].device)
    means2d, conics, depths, radii = pyflowops.project_gaussians(
        s["means"], s["quats"], s["scales"], s["viewmat"], s["K"], s["width"], s["height"], backend=backend
    )
    motion = pyflowops.flow_features(
        s["means"], s["quats"], s["scales"], means_next, s["quats"], s["scales"], s["viewmat"], s["K"], order=1
    )
    features = torch.cat([s["features"], motion], dim=1)
    image, alpha, depth = pyflowops.rasterize_gaussians(
        means2d, conics, s["opacities"], features, depths, radii, s["width"], s["height"], backend=backend
    )
    return image[..., :3], alpha, depth, pyflowops.composite_flow(image[..., 3:], alpha)


@contextlib.contextmanager
def large_allocations_mmapped() -> Iterator[None]:
    """glibc: serve allocations over 1 MiB by mmap while the dense reference runs.

    The reference allocates the same ~16 MB temporaries for each of thousands of pixel
    chunks; with glibc's dynamic mmap threshold they land on the heap, which then grows
    by tens of MB a chunk (measured: 256^2 with 200k Gaussians was OOM-killed at 24 GB).
    M_MMAP_THRESHOLD = 1 MiB keeps it flat. Afterwards the threshold is set to glibc's
    dynamic maximum (32 MiB), which is what a long-running process settles at anyway.
    """
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except OSError:  # not glibc
        yield
        return
    m_mmap_threshold = -3
    mallopt(m_mmap_threshold, 1 << 20)
    try:
        yield
    finally:
        mallopt(m_mmap_threshold, 32 << 20)


_REF_RATE: dict[str, float] = {}


def reference_seconds(case: SCase) -> float:
    """Estimated time of the dense reference's forward: pixels x Gaussians / a rate measured once per device."""
    if case.device not in _REF_RATE:
        small = random_scene(2_000, 128, 128, device=case.device)
        t0 = time.perf_counter()
        with torch.no_grad(), large_allocations_mmapped():
            _render_ours(small, "torch")
        m.synchronize(case.device)
        _REF_RATE[case.device] = 128 * 128 * 2_000 / (time.perf_counter() - t0)
    return case.size * case.size * case.n / _REF_RATE[case.device]


def _skip(case: SCase, kind: str, reason: str, estimate: int | None = None) -> None:
    # "kind" of a skip record is why it did not run; the case's own kind goes under "bench_kind"
    m.record_skip(**{**case.config(), "bench_kind": case.kind, "kind": kind}, reason=reason, estimate_bytes=estimate)
    pytest.skip(f"{kind}: {reason}")


_NO_KERNEL = (NotImplementedError, ImportError, AttributeError, pyflowops.BackendUnavailableError)
_MISSING: dict[tuple[str, str, str], str | None] = {}


def kernel_missing(case: SCase) -> str | None:
    """Why ``case.variant`` cannot run this direction (probed on a tiny scene), or None."""
    key = (case.variant, case.device, case.direction)
    if key not in _MISSING:
        scene = _leaves(random_scene(20, 32, 24, device=case.device), case.direction == "fwdbwd")
        try:
            image = _render_ours(scene, case.variant)[0]
            if case.direction == "fwdbwd":
                image.sum().backward()
            _MISSING[key] = None
        except _NO_KERNEL as exc:
            first = (str(exc).strip().splitlines() or [""])[0][:200]
            _MISSING[key] = f"no kernel for backend {case.variant!r} on {case.device} ({type(exc).__name__}: {first})"
    return _MISSING[key]


def _check_against_reference(case: SCase, image: torch.Tensor) -> None:
    """Sweep cases at 256^2 x 10k: every kernel's image equals the dense reference's (float32 tolerance)."""
    if case.kind != "sweep" or (case.size, case.n) != SWEEP[0] or not case.is_ours:
        return
    with torch.no_grad(), large_allocations_mmapped():
        expected = _render_ours(_scene(case), "torch")[0]
    torch.testing.assert_close(image, expected, rtol=1e-3, atol=1e-3, msg=lambda s: f"{case.id} vs reference: {s}")


# ---------------------------------------------------------------------------
# the benchmark
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in _cases()])
def test_splat(benchmark, case):
    backward = case.direction == "fwdbwd"
    if case.variant == "gsplat" and GSPLAT is None:
        _skip(case, "no peer", "gsplat is not installed (or cannot build) here")
    if case.variant == "torch":
        if backward:
            gib = case.size**2 * case.n * 40 / 2**30  # ~5 float64 intermediates kept per (pixel, Gaussian) pair
            _skip(case, "does not fit", "autograd through the dense reference keeps every (pixel, Gaussian) "
                  f"intermediate: ~{gib:,.1f} GiB")
        estimate = reference_seconds(case)
        if estimate > REFERENCE_BUDGET_S and not m.full_mode():
            _skip(case, "too slow", f"dense reference estimated at {estimate / 60:.0f} min "
                  "(PYFLOWOPS_BENCH_FULL=1 runs it)")
    elif case.is_ours and (reason := kernel_missing(case)):
        _skip(case, "no kernel", reason)

    scene = _leaves(_scene(case), backward)
    if case.variant == "gsplat":
        run = _render_gsplat
    elif case.kind == "flow":
        def run(s):
            return _render_with_flow(s, case.variant)
    else:
        def run(s):
            return _render_ours(s, case.variant)

    if case.is_ours and not backward:
        with torch.no_grad():
            _check_against_reference(case, run(scene)[0])

    grads = [scene[k] for k in ("means", "quats", "scales", "opacities", "features")]

    def setup() -> None:
        for t in grads:
            t.grad = None

    def target() -> None:
        if backward:
            out = run(scene)
            (out[0].sum() + out[1].sum()).backward()
        elif case.variant == "torch":
            with torch.no_grad(), large_allocations_mmapped():
                run(scene)
        else:
            with torch.no_grad():
                run(scene)

    slow = case.variant == "torch" or (case.device == "cpu" and case.size >= 2048)
    benchmark.group = f"splat {case.kind} {case.direction} | {case.size}px {case.n // 1000}k c{case.channels} | {case.device}"
    benchmark.extra_info.update(case.config())
    measured = m.run_benchmark(benchmark, case.id, case.device, slow, target, setup)
    mean = benchmark.stats.stats.mean if benchmark.stats is not None else None
    benchmark.extra_info.update(
        measured,
        megapixels_per_s=case.size * case.size / mean / 1e6 if mean else None,
        gaussians_per_s=case.n / mean if mean else None,
        reference_estimate_s=reference_seconds(case) if case.variant == "torch" else None,
        threads=torch.get_num_threads(),
    )
    setup()

