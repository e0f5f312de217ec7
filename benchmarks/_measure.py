"""Helpers shared by the benchmarks (``benchmarks/test_corr.py``, ``benchmarks/test_gradreg.py``) and the demo.

* inputs: RAFT-shaped feature maps and lookup coordinates;
* peak memory of a callable (CPU: the kernel's peak-RSS counter, CUDA: the
  caching allocator's peak);
* memory estimates, so that a configuration that cannot fit is skipped with a
  reason instead of taking the machine down (the all-pairs pyramid of a 2048^2
  image is ~21 GiB per sample);
* the device's copy bandwidth (for the memory-bandwidth floor of a case);
* a description of the machine for the report.

Environment knobs (all optional):

* ``PYFLOWOPS_BENCH_QUICK=1``: image sizes 256^2 and 512^2 only (a fast check of the flow);
* ``PYFLOWOPS_BENCH_FULL=1``: also run the torch on-the-fly reference at >= 1024^2 on CPU
  (minutes per case, skipped by default);
* ``PYFLOWOPS_BENCH_MEM_BUDGET_GIB``: memory budget per case (default: half the RAM on
  CPU, 80% of the GPU memory on CUDA);
* ``PYFLOWOPS_BENCH_DEVICES``: comma list of devices to benchmark (default: cpu, plus cuda
  when a GPU is present);
* ``PYFLOWOPS_BENCH_IDLE_WAIT_S``: seconds (whole session, default 180) the benchmarks may
  spend waiting for other processes to leave the CPU before a case starts (0: never wait);
* ``PYFLOWOPS_BENCH_GRADREG_SIZES``: comma list of image sides for ``test_gradreg.py``
  (overrides the sweep, e.g. ``64,128`` for a smoke test).
"""

from __future__ import annotations

import ctypes
import datetime as _dt
import gc
import math
import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

import pyflowops

__all__ = [
    "FEATURE_DIM",
    "NUM_LEVELS",
    "RADIUS",
    "STRIDE",
    "ITERATIONS",
    "Case",
    "CpuContention",
    "PeakMemory",
    "bench_targets",
    "copy_bandwidth",
    "coords_sequence",
    "wait_for_idle",
    "estimate_bytes",
    "fits",
    "gib",
    "image_sizes",
    "machine_info",
    "make_coords",
    "make_fmaps",
    "measure",
    "memory_budget_bytes",
    "pyramid_bytes",
    "record_skip",
    "run_benchmark",
    "synchronize",
    "total_memory_bytes",
]

FEATURE_DIM = 256  # RAFT's feature channels
NUM_LEVELS = 4
RADIUS = 4
STRIDE = 8  # features at 1/8 of the image
ITERATIONS = 12  # RAFT's refinement iterations at inference

GIB = 1024**3
MIB = 1024**2


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "0").strip().lower() not in ("", "0", "false", "no")


def quick_mode() -> bool:
    """``PYFLOWOPS_BENCH_QUICK=1``: the reduced sweep (256^2 and 512^2)."""
    return _env_flag("PYFLOWOPS_BENCH_QUICK")


def full_mode() -> bool:
    """``PYFLOWOPS_BENCH_FULL=1``: run the slow torch on-the-fly reference at every size that fits."""
    return _env_flag("PYFLOWOPS_BENCH_FULL")


def image_sizes() -> list[int]:
    """Image sides of the sweep (square images, features at 1/8)."""
    return [256, 512] if quick_mode() else [256, 512, 1024, 2048]


def gib(nbytes: float) -> float:
    return nbytes / GIB


# ---------------------------------------------------------------------------
# backends and devices
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """A backend run on tensors of one device (``torch`` is the reference on each device)."""

    backend: str
    device: str

    def __str__(self) -> str:
        return f"{self.backend}@{self.device}"


def bench_targets() -> list[Target]:
    """Every (backend, device) pair this install can run, the torch reference first on each device."""
    available = pyflowops.available_backends()
    wanted = os.environ.get("PYFLOWOPS_BENCH_DEVICES")
    devices = [d.strip() for d in wanted.split(",")] if wanted else ["cpu", "cuda"]
    targets = []
    if "cpu" in devices:
        targets.append(Target("torch", "cpu"))
        if "cpu" in available:
            targets.append(Target("cpu", "cpu"))
    if "cuda" in devices and torch.cuda.is_available():
        targets.append(Target("torch", "cuda"))
        targets += [Target(b, "cuda") for b in ("cuda", "triton") if b in available]
    return targets


def kernels_built() -> bool:
    """Whether a compiled (non-reference) backend is available."""
    return any(b != "torch" for b in pyflowops.available_backends())


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


# ---------------------------------------------------------------------------
# inputs
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One benchmark configuration: square image of side ``size`` (pixels), batch, backend, device."""

    size: int
    batch: int
    backend: str
    device: str
    mode: str = "allpairs"  # "allpairs" (pyramid + lookup) or "onthefly"

    @property
    def feat(self) -> int:
        """Feature-map side (H = W = size / 8)."""
        return self.size // STRIDE

    @property
    def id(self) -> str:
        return f"{self.size}px-b{self.batch}-{self.mode}-{self.backend}@{self.device}"

    def config(self) -> dict[str, Any]:
        return {
            "image_size": self.size,
            "feature_size": self.feat,
            "batch": self.batch,
            "backend": self.backend,
            "device": self.device,
            "mode": self.mode,
            "dim": FEATURE_DIM,
            "levels": NUM_LEVELS,
            "radius": RADIUS,
        }


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def make_fmaps(
    image_size: int,
    batch: int,
    *,
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
    dim: int = FEATURE_DIM,
    seed: int = 0,
    requires_grad: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random feature maps [B, dim, size/8, size/8] of two images (generated on CPU for reproducibility)."""
    side = image_size // STRIDE
    gen = _generator(seed)
    f1, f2 = torch.randn(2, batch, dim, side, side, generator=gen).to(device=device, dtype=dtype).unbind(0)
    f1, f2 = f1.contiguous(), f2.contiguous()
    if requires_grad:
        f1.requires_grad_()
        f2.requires_grad_()
    return f1, f2


def make_coords(
    batch: int,
    height: int,
    width: int,
    *,
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
    max_flow: float = 4.0,
    seed: int = 1,
) -> torch.Tensor:
    """[B, 2, H, W] lookup positions: the pixel grid (x, y) plus a random flow in [-max_flow, max_flow)."""
    ys, xs = torch.meshgrid(torch.arange(height, dtype=dtype), torch.arange(width, dtype=dtype), indexing="ij")
    grid = torch.stack([xs, ys]).expand(batch, 2, height, width)
    flow = (torch.rand(batch, 2, height, width, generator=_generator(seed), dtype=dtype) * 2 - 1) * max_flow
    return (grid + flow).to(device).contiguous()


def coords_sequence(coords: torch.Tensor, n: int = ITERATIONS, step: float = 0.5, seed: int = 2) -> list[torch.Tensor]:
    """``n`` lookup positions as RAFT's refinement produces them: each a small random update of the last."""
    gen = _generator(seed)
    out, current = [], coords
    for _ in range(n):
        delta = (torch.rand(coords.shape, generator=gen, dtype=coords.dtype) * 2 - 1) * step
        current = (current + delta.to(coords.device)).contiguous()
        out.append(current)
    return out


# ---------------------------------------------------------------------------
# peak memory
# ---------------------------------------------------------------------------


def _proc_status_bytes(*keys: str) -> dict[str, int]:
    """Fields of /proc/self/status given in kB, in bytes."""
    found = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in keys:
                found[key] = int(value.split()[0]) * 1024
    return found


try:
    _LIBC = ctypes.CDLL("libc.so.6")
except OSError:  # not glibc: no malloc_trim
    _LIBC = None


def _trim_heap() -> None:
    """Return freed heap memory to the kernel, so a reused free block counts as new memory."""
    gc.collect()
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def _rss_peak_supported() -> bool:
    return os.path.exists("/proc/self/clear_refs")


class PeakMemory:
    """Peak extra memory of the work done between :meth:`start` and :meth:`stop`.

    CPU: writing "5" to /proc/self/clear_refs resets the kernel's peak-RSS
    counter (VmHWM) to the current RSS; the peak is VmHWM after the work minus
    VmRSS before it. Freed heap memory is trimmed first so reused blocks count.
    CUDA: the caching allocator's ``max_memory_allocated`` minus
    ``memory_allocated`` before. Calling :meth:`start` again closes the
    previous window; :attr:`peak` is the largest window seen (``None`` if
    the platform cannot measure).
    """

    def __init__(self, device: str = "cpu") -> None:
        self.device = device
        self.peak: int | None = None
        self.method = "cuda max_memory_allocated" if device == "cuda" else "peak RSS (VmHWM)"
        self._before: int | None = None

    def start(self) -> None:
        self.stop()
        if self.device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self._before = torch.cuda.memory_allocated()
            return
        if not _rss_peak_supported():
            return
        _trim_heap()
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        self._before = _proc_status_bytes("VmRSS")["VmRSS"]

    def stop(self) -> int | None:
        """Close the current window; returns its peak in bytes."""
        if self._before is None:
            return None
        if self.device == "cuda":
            torch.cuda.synchronize()
            used = torch.cuda.max_memory_allocated() - self._before
        else:
            used = _proc_status_bytes("VmHWM")["VmHWM"] - self._before
        self._before = None
        used = max(used, 0)
        self.peak = used if self.peak is None else max(self.peak, used)
        return used


def measure(fn: Callable[[], Any], device: str = "cpu") -> tuple[Any, float, int | None]:
    """Run ``fn()`` once: returns (result, seconds, peak extra memory in bytes or None)."""
    tracker = PeakMemory(device)
    tracker.start()
    t0 = time.perf_counter()
    result = fn()
    synchronize(device)
    seconds = time.perf_counter() - t0
    tracker.stop()
    return result, seconds, tracker.peak


class CpuContention:
    """Share of the machine's CPU time used by *other* processes between :meth:`start` and :meth:`stop`.

    Busy jiffies from /proc/stat minus this process's utime+stime from
    /proc/self/stat, over wall time x cores: 0.0 = the benchmark had the
    machine to itself, 0.5 = other processes used half of all cores.
    """

    def __init__(self) -> None:
        self._t0: tuple[int, int] | None = None

    @staticmethod
    def _snapshot() -> tuple[int, int]:
        with open("/proc/stat") as fh:
            fields = [int(v) for v in fh.readline().split()[1:]]
        busy = sum(fields) - fields[3] - (fields[4] if len(fields) > 4 else 0)  # minus idle, iowait
        with open("/proc/self/stat") as fh:
            stat = fh.read().rsplit(")", 1)[1].split()
        own = int(stat[11]) + int(stat[12])  # utime, stime (fields 14, 15)
        return busy, own

    def start(self) -> None:
        try:
            self._t0 = (*self._snapshot(), time.monotonic())  # type: ignore[assignment]
        except (OSError, ValueError, IndexError):
            self._t0 = None

    def stop(self) -> float | None:
        if self._t0 is None:
            return None
        busy0, own0, wall0 = self._t0  # type: ignore[misc]
        busy1, own1 = self._snapshot()
        wall = time.monotonic() - wall0
        ticks = os.sysconf("SC_CLK_TCK") * wall * (os.cpu_count() or 1)
        return max(0.0, (busy1 - busy0 - (own1 - own0)) / ticks) if ticks > 0 else None


_IDLE_WAIT_LEFT = [float(os.environ.get("PYFLOWOPS_BENCH_IDLE_WAIT_S", "180"))]


def wait_for_idle(max_wait_s: float = 15.0, threshold: float = 0.1, window_s: float = 0.5) -> float:
    """Wait (at most ``max_wait_s``, and at most PYFLOWOPS_BENCH_IDLE_WAIT_S per session, default 180 s)
    until other processes use less than ``threshold`` of the CPU over ``window_s``; returns the seconds waited.

    On a shared machine a busy neighbour inflates timings unevenly (torch's OpenMP
    threads suffer most), so each benchmark starts in a quiet moment when one comes soon.
    """
    waited = 0.0
    probe = CpuContention()
    while _IDLE_WAIT_LEFT[0] > 0 and waited < max_wait_s:
        probe.start()
        time.sleep(window_s)
        load = probe.stop()
        if load is None or load < threshold:
            break
        waited += window_s
        _IDLE_WAIT_LEFT[0] -= window_s
    return waited


# (case name, other-process CPU share) of every benchmark run in this process.
CONTENTION: list[tuple[str, float | None]] = []
CONTENDED = 0.25  # above this share the case's time is flagged as inflated


# Rounds of the fast cases: enough for ~TIME_PER_CASE seconds, within [min, max].
TIME_PER_CASE = {"cpu": 1.5, "cuda": 1.0}
ROUNDS_RANGE = {"cpu": (3, 30), "cuda": (10, 200)}


def run_benchmark(
    benchmark,
    case_id: str,
    device: str,
    slow: bool,
    target: Callable[[], object],
    setup: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Time ``target`` with pytest-benchmark's pedantic mode; returns what it measured besides time.

    A slow case runs one timed round; otherwise an untimed warmup call sets the
    round count (about TIME_PER_CASE seconds). Peak memory is measured on the
    first call only (the warmup, or the single timed round), right after trimming
    the heap: later rounds run as a steady loop would, reusing the allocator's
    memory. On CPU it first waits (briefly) for other processes to leave, and it
    records their CPU share during the case (CONTENTION).

    Returns:
        extra_info entries: other_cpu_load, waited_for_idle_s, peak_memory_bytes, memory_method.
    """
    tracker = PeakMemory(device)
    calls = 0

    def _setup() -> None:
        nonlocal calls
        if setup is not None:
            setup()
        if calls == 0:
            tracker.start()
        else:
            tracker.stop()
        calls += 1

    def _target() -> None:
        target()
        synchronize(device)

    waited = wait_for_idle() if device == "cpu" else 0.0
    contention = CpuContention()
    contention.start()
    if slow:
        rounds = 1
    else:  # warmup call (untimed by pytest-benchmark): memory, and the round count from its duration
        _setup()
        t0 = time.perf_counter()
        _target()
        seconds = time.perf_counter() - t0
        low, high = ROUNDS_RANGE[device]
        rounds = max(low, min(high, math.ceil(TIME_PER_CASE[device] / max(seconds, 1e-9))))
    benchmark.pedantic(_target, setup=_setup, rounds=rounds, warmup_rounds=0, iterations=1)
    tracker.stop()
    other_load = contention.stop()
    CONTENTION.append((case_id, other_load))
    return {
        "other_cpu_load": other_load,
        "waited_for_idle_s": waited,
        "peak_memory_bytes": tracker.peak,
        "memory_method": tracker.method,
    }


# ---------------------------------------------------------------------------
# copy bandwidth
# ---------------------------------------------------------------------------

# device -> {"bytes_per_s", "buffer_bytes", "best_s", "repeats", "other_cpu_load"}: measured once per
# session by copy_bandwidth(); benchmarks/conftest.py writes it into the pytest-benchmark JSON.
BANDWIDTH: dict[str, dict[str, Any]] = {}


def copy_bandwidth(device: str = "cpu") -> float:
    """Bytes per second a large contiguous ``copy_`` moves on ``device`` (read + write counted), best of a few.

    The reference for a case's memory-bandwidth floor (bytes it must move / this).
    CPU: 256 MiB float32 copied 10 times with torch's threads; CUDA: 1 GiB, 20 times.
    Measured once per device and session (cached in :data:`BANDWIDTH`).
    """
    if device in BANDWIDTH:
        return BANDWIDTH[device]["bytes_per_s"]
    nbytes, repeats = (256 * MIB, 10) if device == "cpu" else (GIB, 20)
    if device == "cpu":
        wait_for_idle()
    src = torch.ones(nbytes // 4, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    dst.copy_(src)  # fault the pages in
    synchronize(device)
    load = CpuContention()
    load.start()
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        dst.copy_(src)
        synchronize(device)
        best = min(best, time.perf_counter() - t0)
    del src, dst
    bandwidth = 2 * nbytes / best
    BANDWIDTH[device] = {
        "bytes_per_s": bandwidth,
        "buffer_bytes": nbytes,
        "best_s": best,
        "repeats": repeats,
        "threads": torch.get_num_threads(),
        "other_cpu_load": load.stop(),
    }
    return bandwidth


# ---------------------------------------------------------------------------
# memory estimates and budget
# ---------------------------------------------------------------------------


def total_memory_bytes(device: str = "cpu") -> int:
    """RAM (MemTotal) for cpu, the GPU's memory for cuda."""
    if device == "cuda":
        return torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("MemTotal missing from /proc/meminfo")


def memory_budget_bytes(device: str = "cpu") -> int:
    """Largest estimated footprint a case may have: ``PYFLOWOPS_BENCH_MEM_BUDGET_GIB`` or a share of the memory."""
    env = os.environ.get("PYFLOWOPS_BENCH_MEM_BUDGET_GIB")
    if env:
        return int(float(env) * GIB)
    share = 0.8 if device == "cuda" else 0.5
    return int(total_memory_bytes(device) * share)


def pyramid_bytes(batch: int, height: int, width: int, levels: int = NUM_LEVELS, itemsize: int = 4) -> int:
    """Bytes of the all-pairs pyramid: B*H*W * sum_l H_l*W_l * itemsize (about B*(HW)^2*4*(1+1/4+1/16+1/64))."""
    return sum(batch * height * width * (height >> lvl) * (width >> lvl) * itemsize for lvl in range(levels))


def lookup_bytes(batch: int, height: int, width: int, levels: int = NUM_LEVELS, radius: int = RADIUS) -> int:
    """Bytes of one lookup output [B, L*(2r+1)^2, H, W] in float32."""
    return batch * levels * (2 * radius + 1) ** 2 * height * width * 4


def estimate_bytes(case: Case, family: str, itemsize: int = 4) -> int:
    """Rough memory a benchmark case needs in total (inputs included), to skip what cannot fit.

    Families: ``lookup_fwd`` (pyramid built beforehand + lookup), ``lookup_fwdbwd``
    (+ pyramid gradient), ``raft_inference`` (pyramid build or on-the-fly prep +
    12 lookups), ``train_step`` (one lookup forward+backward from the fmaps).
    Deliberately pessimistic on transients (the matmul result before the
    1/sqrt(D) scaling, pooled gradients).
    """
    b, h, w = case.batch, case.feat, case.feat
    pyr = pyramid_bytes(b, h, w, NUM_LEVELS, itemsize)
    level0 = b * (h * w) ** 2 * itemsize
    out = lookup_bytes(b, h, w)
    fmaps = 2 * b * FEATURE_DIM * h * w * itemsize
    window = (2 * RADIUS + 1) ** 2
    if case.mode == "allpairs":
        if family == "lookup_fwd":
            return pyr + 2 * out
        if family == "lookup_fwdbwd":
            return 2 * pyr + 3 * out
        if family == "raft_inference":
            return fmaps + pyr + level0 + 2 * out
        if family == "train_step":
            return 2 * fmaps + 2 * pyr + 2 * level0 + 3 * out
    elif case.backend == "torch":  # reference on-the-fly: grid_sample of fmap2 -> [B, D, HW, K] per level
        sampled = b * FEATURE_DIM * h * w * window * itemsize
        if family == "raft_inference":
            return 2 * fmaps + 2 * sampled + 2 * out
        if family == "train_step":
            return 2 * fmaps + (NUM_LEVELS + 2) * sampled + 3 * out
    else:  # kernels: channels-last copies of fmap1 and fmap2's levels
        if family == "raft_inference":
            return 2 * fmaps + 2 * out
        if family == "train_step":
            return 4 * fmaps + 3 * out
    raise ValueError(f"no estimate for family {family!r} and mode {case.mode!r}")


# Cases skipped in this process (dicts: config, family, kind, reason, estimate_bytes);
# benchmarks/conftest.py writes them into the pytest-benchmark JSON for the report.
SKIPPED: list[dict[str, Any]] = []


def record_skip(**entry: Any) -> None:
    """Remember a skipped case (e.g. kind="does not fit") so the report can list it."""
    SKIPPED.append(entry)


def fits(case: Case, family: str) -> tuple[bool, int, int]:
    """(estimate <= budget, estimate, budget) for ``case`` in ``family``."""
    estimate = estimate_bytes(case, family)
    budget = memory_budget_bytes(case.device)
    return estimate <= budget, estimate, budget


# ---------------------------------------------------------------------------
# machine
# ---------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@dataclass
class MachineInfo:
    date: str = field(default_factory=lambda: _dt.datetime.now().astimezone().isoformat(timespec="seconds"))
    cpu_model: str = field(default_factory=_cpu_model)
    cpu_cores: int | None = field(default_factory=os.cpu_count)
    torch_threads: int = field(default_factory=torch.get_num_threads)
    ram_bytes: int = field(default_factory=total_memory_bytes)
    python: str = field(default_factory=platform.python_version)
    torch_version: str = torch.__version__
    pyflowops_version: str = pyflowops.__version__
    build_info: dict = field(default_factory=pyflowops.build_info)
    available_backends: list = field(default_factory=pyflowops.available_backends)
    gpu: str | None = None
    gpu_memory_bytes: int | None = None


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on (CPU model, cores, RAM, torch, pyflowops build)."""
    info = MachineInfo()
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(torch.cuda.current_device())
        info.gpu, info.gpu_memory_bytes = props.name, props.total_memory
    return asdict(info)
