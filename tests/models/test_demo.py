"""``make demo``'s pipeline in its fast mode: data -> two training stages from the shipped weights -> evaluation
-> inference -> report."""

from __future__ import annotations

import json

import torch

import pyflowops_models
from pyflowops_models.demo import FAST, main


def test_fast_demo_writes_the_report_and_a_loadable_model_then_reuses_its_work(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["--fast", "--quiet", "--out", str(out)]) == 0
    report = (out / "REPORT.md").read_text()
    assert "| method | EPE |" in report and "| DecFlow (demo) |" in report
    for name in FAST.baselines:
        assert f"| {name} |" in report and f" {name} (" in report  # a table row and a verdict line each
    for picture in ("curves.png", "infer/pair_panel.png", "eval/worst_DecFlow_demo_1.png"):
        assert (out / picture).read_bytes()[:4] == b"\x89PNG", picture
    model = pyflowops_models.load(out / "model.pt")
    flows = model(torch.rand(1, 3, 64, 64) * 255, torch.rand(1, 3, 64, 64) * 255, iters=2)
    assert set(flows) == {"facial", "head", "expression"}
    assert "optimizer" not in torch.load(out / "model.pt", weights_only=True)
    first = json.loads((out / "summary.json").read_text())
    assert (first["stage1_step"], first["stage2_step"]) == (FAST.stage1_steps, FAST.stage2_steps)
    stage1_config = (out / "runs" / "stage1" / "config.yaml").read_text()
    assert "init: bundled:decflow_small_generic" in stage1_config  # stage 1 starts from the shipped weights
    assert f"report {out / 'REPORT.md'}" in capsys.readouterr().out

    checkpoints = sorted(p.name for p in (out / "runs" / "stage1" / "checkpoints").iterdir())
    assert main(["--fast", "--quiet", "--out", str(out)]) == 0  # reuses the data and the finished runs
    assert sorted(p.name for p in (out / "runs" / "stage1" / "checkpoints").iterdir()) == checkpoints
    assert json.loads((out / "summary.json").read_text())["masked_epe"] == first["masked_epe"]
