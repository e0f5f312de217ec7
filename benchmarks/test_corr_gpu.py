"""The GPU correlation table (issue 9): our blocks in every backend against RAFT's own blocks.

Family ``corr_gpu`` (runs only where CUDA is available): for 512^2 batch 2, 1024^2 batch 2 and
2048^2 batch 1 images (features [B, 256, H/8, W/8], 4 levels, radius 4), each variant

* ``raft-corrblock``: RAFT's ``CorrBlock`` (``../shared/peers/raft/core/corr.py``, grid_sample);
* ``raft-alternate``: RAFT's ``AlternateCorrBlock`` (its ``alt_cuda_corr`` extension, compiled
  here with ``torch.utils.cpp_extension.load``);
* ``ours-corrblock-<backend>`` and ``ours-alternate-<backend>``: ``pyflowops.nn.CorrBlock`` /
  ``AlternateCorrBlock`` with ``backend`` auto, cuda, triton;

runs two modes: ``inference`` (build the block, then RAFT's 12 lookups with coordinates moving a
little each iteration, under ``torch.no_grad``) and ``train`` (the same with fmaps that need
gradients, then one backward of a random cotangent on every lookup). Time and peak CUDA memory
(``max_memory_allocated`` above what was allocated before, on the warmup call) through
``_measure.run_benchmark``, as every other benchmark; a case that runs out of
memory or fails is recorded with its error (RAFT's CorrBlock at 2048^2 is expected to).
``benchmarks/report_corr_gpu.py`` writes the table into RESULTS.md.
"""

from __future__ import annotations

import pytest
import torch

from benchmarks import _measure as m
from benchmarks import _raft_peer

pytestmark = [
    pytest.mark.skipif(not torch.cuda.is_available(), reason="the GPU table needs a CUDA GPU"),
    pytest.mark.skipif(_raft_peer.available() is not None, reason=str(_raft_peer.available())),
]

SIZES = ((512, 2), (1024, 2), (2048, 1))
VARIANTS = ("raft-corrblock", "raft-alternate", *(f"ours-{block}-{backend}" for block in ("corrblock", "alternate")
                                                  for backend in ("auto", "cuda", "triton")))
MODES = ("inference", "train")


def _block_factory(variant: str):
    if variant.startswith("raft-"):
        corr = _raft_peer.corr_module()
        if variant == "raft-alternate":
            _raft_peer.alt_cuda_corr()
            return corr.AlternateCorrBlock
        return corr.CorrBlock
    import pyflowops
    from pyflowops.nn import AlternateCorrBlock, CorrBlock

    _, block, backend = variant.split("-")
    cls = CorrBlock if block == "corrblock" else AlternateCorrBlock

    def make(f1, f2, num_levels, radius):
        with pyflowops.use_backend(backend):
            made = cls(f1, f2, num_levels=num_levels, radius=radius)

        def call(coords):
            with pyflowops.use_backend(backend):
                return made(coords)

        return call

    return make


def _run_case(variant: str, size: int, batch: int, mode: str):
    make = _block_factory(variant)
    f1, f2 = m.make_fmaps(size, batch, device="cuda")
    coords = m.coords_sequence(m.make_coords(batch, size // 8, size // 8, device="cuda"))
    train = mode == "train"
    if train:
        f1.requires_grad_()
        f2.requires_grad_()
    cotangent = None

    def step():
        nonlocal cotangent
        with torch.set_grad_enabled(train):
            block = make(f1, f2, m.NUM_LEVELS, m.RADIUS)
            outs = [block(c) for c in coords]
            if train:
                if cotangent is None:
                    cotangent = torch.randn_like(outs[0])
                torch.autograd.backward(outs, [cotangent] * len(outs))
                f1.grad = f2.grad = None

    return step


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("size, batch", SIZES, ids=[f"{s}px-b{b}" for s, b in SIZES])
def test_corr_gpu_table(benchmark, size, batch, variant, mode):
    benchmark.group = f"corr_gpu | {size}px b{batch} | {mode}"
    info = dict(family="corr_gpu", size=size, batch=batch, variant=variant, mode=mode, device="cuda",
                gpu=torch.cuda.get_device_name(), iterations=m.ITERATIONS)
    torch.cuda.empty_cache()
    try:  # the shared timer: an untimed warmup (its peak CUDA memory is the case's), then timed rounds
        measured = m.run_benchmark(benchmark, f"{variant}-{mode}-{size}-b{batch}", "cuda", False,
                                   _run_case(variant, size, batch, mode))
    except (torch.OutOfMemoryError, RuntimeError) as exc:  # recorded, not a benchmark failure
        torch.cuda.empty_cache()
        m.record_skip(**info, kind="failed", reason=f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}")
        pytest.skip(f"{variant} {mode} {size}px: {type(exc).__name__}")
    benchmark.extra_info.update(info, **measured)
