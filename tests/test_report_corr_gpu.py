"""benchmarks/report_corr_gpu.py: the GPU table and issue 9's verdicts from hand-made results."""

from __future__ import annotations

from benchmarks import report_corr_gpu


def _case(variant, mode, size, batch, ms, mib):
    return {"stats": {"mean": ms / 1e3}, "extra_info": {
        "family": "corr_gpu", "variant": variant, "mode": mode, "size": size, "batch": batch,
        "peak_memory_bytes": mib * 2**20, "gpu": "NVIDIA H100"}}


def test_table_cells_failures_and_verdicts():
    data = {"benchmarks": [
        _case("ours-alternate-auto", "inference", 1024, 2, 6.0, 560),
        _case("ours-alternate-cuda", "inference", 1024, 2, 4.0, 570),
        _case("ours-alternate-triton", "inference", 1024, 2, 5.0, 570),
        _case("ours-alternate-auto", "train", 1024, 2, 90.0, 700),
        _case("raft-corrblock", "train", 1024, 2, 101.0, 8754),
    ], "pyflowops": {"skipped": [{"family": "corr_gpu", "kind": "failed", "variant": "raft-corrblock",
                                  "mode": "train", "size": 2048, "batch": 1,
                                  "reason": "RuntimeError: CUDA error: invalid argument"}]}}
    text = "\n".join(report_corr_gpu.section(data, None))
    assert "Device: NVIDIA H100" in text
    assert "| ours AlternateCorrBlock, cuda, inference | not run | 4.0 (570) | not run |" in text
    assert "fails: RuntimeError: CUDA error: invalid argument" in text
    lines = {line.split(" | ")[0]: line for line in text.splitlines() if line.startswith("| ")}
    assert lines["| AlternateCorrBlock (auto) 12-iteration inference at 1024² B2 ≤ 8 ms"].endswith("**PASS** |")
    assert "n/a" in lines["| AlternateCorrBlock (auto) 12-iteration inference at 2048² B1 ≤ 20 ms"]
    # 90 ms <= 101 ms and 700 MiB * 8 < 8754 MiB
    assert lines["| AlternateCorrBlock training step at 1024² B2 no slower than RAFT's CorrBlock, under 1/8 of "
                 "its memory"].endswith("**PASS** |")
    # auto took 6 ms where cuda took 4: 1.5x the best backend
    assert "worst auto / best = 1.50 | **MISS** |" in text


def test_no_gpu_cases_no_section():
    assert report_corr_gpu.section({"benchmarks": []}, None) == []
