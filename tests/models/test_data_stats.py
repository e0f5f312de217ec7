"""Data-set statistics: counts per motion scale, expression = facial - head, histograms that
add up, the report's files, and the ``pyflowops stats`` command."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from pyflowops.flow import read_flo
from pyflowops_models.cli import main
from pyflowops_models.data.stats import flow_statistics, write_report
from pyflowops_models.data.writer import synthesize


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    synthesize(root, 3, size=64, workers=1, seed=0, progress=False, motion_scales=(2, 3))
    return root


def test_counts_per_motion_scale_follow_the_meta_records(tiny_set):
    stats = flow_statistics(tiny_set, progress=False)
    expected: dict[str, int] = {}
    for meta in (tiny_set / "meta").rglob("*.json"):
        n = json.loads(meta.read_text())["num_steps"]
        expected[str(n)] = expected.get(str(n), 0) + n
    assert {k: v["pairs"] for k, v in stats["scales"].items()} == expected
    assert stats["all"]["pairs"] == sum(expected.values())
    for entry in list(stats["scales"].values()) + [stats["all"]]:
        for kind in ("facial", "head", "expression"):
            still = round(entry[kind]["still_share"] * entry[kind]["pixels"])
            assert sum(entry[kind]["histogram"]) + still == entry[kind]["pixels"]


def test_expression_statistics_come_from_facial_minus_head(tiny_set):
    one = sorted((tiny_set / "flow" / "facial").rglob("*.flo"))[0]
    rel = one.relative_to(tiny_set / "flow" / "facial")
    facial, head = read_flo(one), read_flo(tiny_set / "flow" / "head" / rel)
    mask = np.load((tiny_set / "mask" / rel).with_suffix(".npy")).astype(bool)
    stats = flow_statistics(tiny_set, max_pairs=1, progress=False)
    expression = np.linalg.norm((facial - head)[mask], axis=-1)
    assert stats["all"]["expression"]["mean"] == pytest.approx(float(expression.mean()), rel=1e-5)
    assert stats["all"]["expression"]["max"] == pytest.approx(float(expression.max()), rel=1e-5)


def test_report_files_and_the_command(tiny_set, tmp_path):
    stats = write_report(tiny_set, tmp_path / "a", samples=3, progress=False)
    assert stats["sample_panels"] == 3
    for name in ("flow_histograms.png", "sample_panels.png"):
        with Image.open(tmp_path / "a" / name) as im:
            assert im.size[0] >= 200 and im.size[1] >= 100
    assert json.loads((tmp_path / "a" / "stats.json").read_text())["all"]["pairs"] == stats["all"]["pairs"]
    assert main(["stats", "--data", str(tiny_set), "--out", str(tmp_path / "b"), "--samples", "2", "--quiet"]) == 0
    assert (tmp_path / "b" / "sample_panels.png").is_file()


def test_not_a_data_set(tmp_path, capsys):
    with pytest.raises(ValueError, match="FacialFlowNet-layout"):
        flow_statistics(tmp_path)
    assert main(["stats", "--data", str(tmp_path), "--out", str(tmp_path / "r"), "--quiet"]) == 2
    assert "FacialFlowNet-layout" in capsys.readouterr().err
