"""Correlation benchmarks: every available backend against the torch reference, over a size sweep.

Families (``extra_info["family"]``; one pytest-benchmark group per family,
image size, batch and device, so the terminal table's ratios compare backends):

* ``lookup_fwd``      corr_lookup forward, pyramid built beforehand (not timed);
* ``lookup_fwdbwd``   corr_lookup forward + backward (gradients to pyramid and coords);
* ``raft_inference``  RAFT inference: all-pairs (corr_pyramid + 12 lookups, ``CorrBlock``)
                      vs on-the-fly (``AlternateCorrBlock`` + 12 lookups), coords moving a
                      little each iteration;
* ``train_step``      one lookup forward + backward from the feature maps: on-the-fly vs
                      all-pairs (pyramid + lookup), i.e. the training cost.

Images 256^2..2048^2, features [B, 256, H/8, W/8], 4 levels, radius 4, batch 1 and 2.
Every case records its peak memory (bytes) in ``extra_info``. Cases whose
memory estimate exceeds the budget are skipped as "does not fit" (never
attempted); ``python -m benchmarks.report`` lists them.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

import pyflowops
from benchmarks import _measure as m
from pyflowops.nn import AlternateCorrBlock, CorrBlock

TARGETS = m.bench_targets()
SIZES = m.image_sizes()
BATCHES = (1, 2)

FAMILY_TITLES = {
    "lookup_fwd": "corr_lookup forward",
    "lookup_fwdbwd": "corr_lookup forward+backward",
    "raft_inference": f"RAFT inference: pyramid or prep + {m.ITERATIONS} lookups",
    "train_step": "training step: one lookup forward+backward from the fmaps",
}

# The torch on-the-fly reference samples fmap2 into a [B, D, HW, (2r+1)^2] tensor per
# level: ~3 s per lookup at 512^2 and ~15 s at 1024^2 on a 2-core CPU. It is the
# correctness reference, not what anyone would run, so on CPU it is only timed up to
# these sizes (12 lookups for RAFT inference, one for the training step).
REFERENCE_ONTHEFLY_CPU_MAX_SIZE = {"raft_inference": 256, "train_step": 512}


def _cases(modes: tuple[str, ...]) -> list[m.Case]:
    return [
        m.Case(size, batch, t.backend, t.device, mode)
        for t_device in dict.fromkeys(t.device for t in TARGETS)
        for size in SIZES
        for batch in BATCHES
        for mode in modes
        for t in TARGETS
        if t.device == t_device
    ]


def _params(modes: tuple[str, ...]) -> list:
    return [pytest.param(case, id=case.id) for case in _cases(modes)]


def _skip(case: m.Case, family: str, kind: str, reason: str, estimate: int | None = None) -> None:
    m.record_skip(family=family, kind=kind, reason=reason, estimate_bytes=estimate, **case.config())
    pytest.skip(f"{kind}: {reason}")


def _require(case: m.Case, family: str) -> int:
    """Skip ``case`` unless it fits the memory budget (and is not the slow CPU reference); returns the estimate."""
    ok, estimate, budget = m.fits(case, family)
    if not ok:
        ram = m.total_memory_bytes(case.device)
        _skip(
            case,
            family,
            "does not fit",
            f"needs ~{m.gib(estimate):.1f} GiB, budget {m.gib(budget):.1f} GiB "
            f"({'GPU' if case.device == 'cuda' else 'RAM'} {m.gib(ram):.1f} GiB)",
            estimate,
        )
    if (
        case.mode == "onthefly"
        and case.backend == "torch"
        and case.device == "cpu"
        and case.size > REFERENCE_ONTHEFLY_CPU_MAX_SIZE[family]
        and not m.full_mode()
    ):
        _skip(
            case,
            family,
            "too slow",
            f"the torch on-the-fly reference is timed up to {REFERENCE_ONTHEFLY_CPU_MAX_SIZE[family]}^2 on CPU "
            "to keep the sweep short (seconds per lookup; PYFLOWOPS_BENCH_FULL=1 runs it)",
            estimate,
        )
    return estimate


def _slow(case: m.Case) -> bool:
    """Cases that take seconds per call on CPU: one timed round, no warmup."""
    if case.device == "cuda":
        return False
    return case.size >= 1024 or (case.mode == "onthefly" and case.backend == "torch")


def _run(
    benchmark,
    case: m.Case,
    family: str,
    estimate: int,
    target: Callable[[], object],
    setup: Callable[[], None] | None = None,
    lookups: int = 1,
) -> None:
    """Time ``target`` (``_measure.run_benchmark``); record its configuration, peak memory and CPU contention."""
    benchmark.group = f"{family} | {case.size}px b{case.batch} | {case.device}"
    benchmark.extra_info.update(case.config())
    benchmark.extra_info.update(family=family, title=FAMILY_TITLES[family], lookups=lookups)
    measured = m.run_benchmark(benchmark, case.id, case.device, _slow(case), target, setup)
    benchmark.extra_info.update(measured, memory_estimate_bytes=estimate)


# One pyramid shared by the lookup benchmarks of the same configuration (building it
# at 1024^2 takes seconds and is not what they time); dropped when the config changes.
_PYRAMID_CACHE: dict[tuple, list[torch.Tensor]] = {}


def _pyramid(case: m.Case) -> list[torch.Tensor]:
    key = (case.size, case.batch, case.device)
    if key not in _PYRAMID_CACHE:
        _PYRAMID_CACHE.clear()
        f1, f2 = m.make_fmaps(case.size, case.batch, device=case.device)
        _PYRAMID_CACHE[key] = pyflowops.corr_pyramid(f1, f2, m.NUM_LEVELS, backend="auto")  # fastest
    return _PYRAMID_CACHE[key]


@pytest.fixture(autouse=True)
def _drop_pyramid_unless_lookup(request):
    if not request.node.name.startswith("test_corr_lookup"):
        _PYRAMID_CACHE.clear()
    yield


def _coords(case: m.Case) -> torch.Tensor:
    return m.make_coords(case.batch, case.feat, case.feat, device=case.device)


# ---------------------------------------------------------------------------
# a. corr_lookup forward
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("case", _params(("allpairs",)))
def test_corr_lookup_forward(benchmark, case):
    family = "lookup_fwd"
    estimate = _require(case, family)
    pyramid, coords = _pyramid(case), _coords(case)

    def target():
        pyflowops.corr_lookup(pyramid, coords, m.RADIUS, backend=case.backend)

    _run(benchmark, case, family, estimate, target)


# ---------------------------------------------------------------------------
# b. corr_lookup forward + backward
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("case", _params(("allpairs",)))
def test_corr_lookup_forward_backward(benchmark, case):
    family = "lookup_fwdbwd"
    estimate = _require(case, family)
    pyramid = [p.detach().requires_grad_() for p in _pyramid(case)]
    coords = _coords(case).requires_grad_()
    cotangent = torch.randn(
        m.lookup_bytes(case.batch, case.feat, case.feat) // 4, generator=torch.Generator().manual_seed(3)
    ).reshape(case.batch, -1, case.feat, case.feat).to(case.device)
    leaves = [*pyramid, coords]

    def setup():  # zero_grad(set_to_none=True): each round allocates its gradients, as training does
        for t in leaves:
            t.grad = None

    def target():
        pyflowops.corr_lookup(pyramid, coords, m.RADIUS, backend=case.backend).backward(cotangent)

    _run(benchmark, case, family, estimate, target, setup=setup)
    setup()


# ---------------------------------------------------------------------------
# c. RAFT inference: all-pairs vs on-the-fly, 12 lookups
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("case", _params(("allpairs", "onthefly")))
def test_raft_inference(benchmark, case):
    family = "raft_inference"
    estimate = _require(case, family)
    fmap1, fmap2 = m.make_fmaps(case.size, case.batch, device=case.device)
    coords = m.coords_sequence(_coords(case), m.ITERATIONS)
    block_cls = CorrBlock if case.mode == "allpairs" else AlternateCorrBlock

    def target():
        with torch.no_grad():
            block = block_cls(fmap1, fmap2, m.NUM_LEVELS, m.RADIUS, backend=case.backend)
            for c in coords:
                out = block(c)  # the update block would consume it; only the latest is alive
        return out

    _run(benchmark, case, family, estimate, target, lookups=m.ITERATIONS)


# ---------------------------------------------------------------------------
# d. training step: one lookup forward + backward from the feature maps
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("case", _params(("allpairs", "onthefly")))
def test_train_step(benchmark, case):
    family = "train_step"
    estimate = _require(case, family)
    fmap1, fmap2 = m.make_fmaps(case.size, case.batch, device=case.device, requires_grad=True)
    coords = _coords(case).requires_grad_()
    cotangent = torch.randn(
        m.lookup_bytes(case.batch, case.feat, case.feat) // 4, generator=torch.Generator().manual_seed(3)
    ).reshape(case.batch, -1, case.feat, case.feat).to(case.device)
    leaves = [fmap1, fmap2, coords]

    def setup():
        for t in leaves:
            t.grad = None

    if case.mode == "allpairs":

        def target():
            pyramid = pyflowops.corr_pyramid(fmap1, fmap2, m.NUM_LEVELS, backend=case.backend)
            pyflowops.corr_lookup(pyramid, coords, m.RADIUS, backend=case.backend).backward(cotangent)

    else:

        def target():
            out = pyflowops.corr_lookup_onthefly(
                fmap1, fmap2, coords, m.RADIUS, m.NUM_LEVELS, backend=case.backend
            )
            out.backward(cotangent)

    _run(benchmark, case, family, estimate, target, setup=setup)
    setup()
