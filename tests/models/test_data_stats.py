"""Data-set statistics: counts per motion scale, expression = facial - head, histograms that
add up, the report's files, and the ``pyflowops stats`` / ``synth --report`` commands."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from pyflowops.flow import read_flo
from pyflowops_models.cli import main
from pyflowops_models.data.stats import HIST_EDGES, flow_statistics, write_report
from pyflowops_models.data.writer import synthesize

KINDS = ("facial", "head", "expression")


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    synthesize(root, 3, size=64, workers=1, seed=0, progress=False, motion_scales=(2, 3))
    return root


@pytest.fixture(scope="module")
def tiny_stats(tiny_set):
    return flow_statistics(tiny_set, progress=False)


def test_counts_per_motion_scale_follow_the_meta_records(tiny_set, tiny_stats):
    expected: dict[str, int] = {}
    for meta in (tiny_set / "meta").rglob("*.json"):
        n = json.loads(meta.read_text())["num_steps"]
        expected[str(n)] = expected.get(str(n), 0) + n
    assert {k: v["pairs"] for k, v in tiny_stats["scales"].items()} == expected
    assert list(tiny_stats["scales"]) == sorted(expected, key=int, reverse=True)
    assert tiny_stats["all"]["pairs"] == sum(expected.values())


def test_histograms_sum_to_the_masked_pixels(tiny_set, tiny_stats):
    masked = sum(int((np.load(m) != 0).sum()) for m in (tiny_set / "mask").rglob("*.npy"))
    assert masked > 0
    assert len(tiny_stats["histogram_edges"]) == len(HIST_EDGES)
    for kind in KINDS:
        assert tiny_stats["all"][kind]["pixels"] == masked
        assert sum(tiny_stats["all"][kind]["histogram"]) == masked
        assert sum(sum(e[kind]["histogram"]) for e in tiny_stats["scales"].values()) == masked
        s = tiny_stats["all"][kind]
        assert 0 <= s["median"] <= s["p95"] <= s["p99"] <= s["max"]


def test_expression_statistics_come_from_facial_minus_head(tiny_set):
    one = sorted((tiny_set / "flow" / "facial").rglob("*.flo"))[0]  # the first pair in the data set's order
    rel = one.relative_to(tiny_set / "flow" / "facial")
    facial, head = read_flo(one), read_flo(tiny_set / "flow" / "head" / rel)
    mask = np.load((tiny_set / "mask" / rel).with_suffix(".npy")) != 0
    stats = flow_statistics(tiny_set, max_pairs=1, progress=False)
    for kind, flow in (("expression", facial - head), ("facial", facial), ("head", head)):
        magnitude = np.linalg.norm(flow[mask], axis=-1)
        s = stats["all"][kind]
        assert s["mean"] == pytest.approx(float(magnitude.mean()), rel=1e-5)
        assert s["max"] == pytest.approx(float(magnitude.max()), rel=1e-5)
        assert s["histogram"] == np.histogram(np.minimum(magnitude, 100), bins=HIST_EDGES)[0].tolist()
    moving = np.linalg.norm(facial[mask], axis=-1)  # the facial flow moves every masked pixel: no 0.0 percentiles
    for q, key in ((50, "median"), (95, "p95"), (99, "p99")):
        assert stats["all"]["facial"][key] == pytest.approx(float(np.percentile(moving, q)), rel=0.03)


def test_without_meta_the_motion_scale_is_the_sequence_length(tiny_set, tiny_stats, tmp_path):
    real = tmp_path / "real"  # as the real download: no meta/ and no meta.json
    for folder in ("image", "flow", "mask"):
        shutil.copytree(tiny_set / folder, real / folder)
    stats = flow_statistics(real, progress=False)
    assert {k: v["pairs"] for k, v in stats["scales"].items()} == \
        {k: v["pairs"] for k, v in tiny_stats["scales"].items()}  # our sequences of n have n pairs


def test_report_files_and_the_stats_command(tiny_set, tmp_path):
    stats = write_report(tiny_set, tmp_path / "a", samples=3, progress=False)
    assert stats["sample_panels"] == 3
    with Image.open(tmp_path / "a" / "flow_histograms.png") as im:
        assert im.size[0] > 1000 and 300 < im.size[1] < im.size[0]  # three plots side by side
    with Image.open(tmp_path / "a" / "sample_panels.png") as im:
        assert im.size[0] >= 4 * 64 and im.size[1] >= 3 * 64  # 3 rows of 4 tiles of 64 px
    assert json.loads((tmp_path / "a" / "stats.json").read_text())["all"]["pairs"] == stats["all"]["pairs"]
    assert main(["stats", "--data", str(tiny_set), "--out", str(tmp_path / "b"), "--samples", "2", "--quiet"]) == 0
    for name in ("flow_histograms.png", "sample_panels.png", "stats.json"):
        assert (tmp_path / "b" / name).is_file()


def test_synth_report(tmp_path, capsys):
    out = tmp_path / "set"
    assert main(["synth", "--out", str(out), "--sequences", "1", "--size", "32", "--workers", "1",
                 "--motion-scales", "2", "--report", "--quiet"]) == 0
    stats = json.loads((out / "report" / "stats.json").read_text())
    assert list(stats["scales"]) == ["2"] and stats["all"]["pairs"] == 2
    assert (out / "report" / "sample_panels.png").is_file() and (out / "report" / "flow_histograms.png").is_file()
    assert "pyflowops stats: 2 pairs" in capsys.readouterr().out


def test_not_a_data_set(tmp_path, capsys):
    with pytest.raises(ValueError, match="FacialFlowNet-layout"):
        flow_statistics(tmp_path)
    with pytest.raises(ValueError, match="FacialFlowNet-layout"):
        write_report(tmp_path, tmp_path / "r", progress=False)
    assert not (tmp_path / "r").exists()  # nothing written
    assert main(["stats", "--data", str(tmp_path), "--out", str(tmp_path / "r"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pyflowops stats:") and "FacialFlowNet-layout" in err
