"""``pyflowops mer`` end to end on a tiny generated micro-expression set: rows, files, cache, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pyflowops_models.cli import main
from pyflowops_models.mer.datasets import load_mer_dataset
from pyflowops_models.mer.flows import parse_flow_method
from pyflowops_models.mer.pipeline import markdown, run_mer
from pyflowops_models.mer.protocol import TrainOptions

from pyflowops.flow import read_flo


@pytest.fixture(scope="module")
def micro(tmp_path_factory):
    from pyflowops_models.data.micro import synthesize_micro

    root = tmp_path_factory.mktemp("micro")
    synthesize_micro(root, sequences=6, subjects=3, size=64, workers=1, progress=False)
    return root


def test_ground_truth_methods_read_the_clip_files(micro):
    sample = load_mer_dataset(micro)[0]
    facial = read_flo(sample.flow_facial)
    expression = facial - read_flo(sample.flow_head)
    blank = np.zeros((64, 64, 3), np.uint8)
    np.testing.assert_array_equal(parse_flow_method("gt-facial").compute(sample, blank, blank), facial)
    np.testing.assert_array_equal(parse_flow_method("gt-expression").compute(sample, blank, blank), expression)


def test_run_mer_gives_one_row_per_method_with_pooled_scores(micro):
    samples = load_mer_dataset(micro)
    methods = [parse_flow_method("dis"), parse_flow_method("gt-expression"), parse_flow_method("dis")]
    result = run_mer(samples, methods, None, size=16, options=TrainOptions(epochs=2), progress=False)
    assert list(result["methods"]) == ["dis", "gt-expression", "dis-2"]  # a repeated method gets its own row
    assert result["clips"] == len(samples) and result["subjects"] == 3
    for scores in result["methods"].values():
        assert 0.0 <= scores["uf1"] <= 1.0 and 0.0 <= scores["uar"] <= 1.0
        assert np.array(scores["confusion"]).sum() == len(samples)
    # the same flow, recogniser, splits and seeds: the same predictions
    assert result["methods"]["dis"]["predictions"] == result["methods"]["dis-2"]["predictions"]
    table = markdown(result)
    assert "| dis |" in table and "| gt-expression |" in table


def test_cli_writes_the_table_pictures_and_a_cache_a_rerun_reuses(micro, tmp_path, capsys):
    out = tmp_path / "mer"
    argv = ["mer", "--data", str(micro), "--out", str(out), "--flow", "farneback", "--flow",
            "decflow:decflow:small", "--flow", "decflow-facial:decflow:small", "--flow", "gt-facial",
            "--size", "16", "--epochs", "2", "--iters", "1", "--quiet"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    for row in ("farneback", "decflow", "decflow-facial", "gt-facial"):
        assert f"| {row} |" in printed
        assert (out / f"confusion_{row}.png").stat().st_size > 0
        assert (out / f"representation_{row}.png").stat().st_size > 0
        assert (out / "cache" / f"{row}.npz").exists()
    result = json.loads((out / "results.json").read_text())
    assert set(result["methods"]) == {"farneback", "decflow", "decflow-facial", "gt-facial"}
    assert (out / "results.md").read_text().startswith("Leave-one-subject-out")
    cached = [out / "cache" / "farneback.npz", out / "cache" / "farneback.json"]
    stamps = [p.stat().st_mtime_ns for p in cached]
    assert main(argv[:7] + ["--size", "16", "--epochs", "2", "--quiet"]) == 0
    assert [p.stat().st_mtime_ns for p in cached] == stamps  # maps and scores reused, not recomputed
    assert capsys.readouterr().out.count("| farneback |") == 1
    assert main(argv[:7] + ["--size", "16", "--epochs", "3", "--quiet"]) == 0  # other options: trained again
    assert (out / "cache" / "farneback.json").stat().st_mtime_ns != stamps[1]


def test_each_clip_is_read_once_and_a_cached_run_reads_none(micro, tmp_path, monkeypatch):
    import pyflowops_models.infer as infer

    samples = load_mer_dataset(micro)
    reads: list[str] = []
    real = infer.load_image
    monkeypatch.setattr(infer, "load_image", lambda path, *a, **k: reads.append(str(path)) or real(path, *a, **k))
    methods = [parse_flow_method("dis"), parse_flow_method("farneback")]
    run_mer(samples, methods, tmp_path, size=16, options=TrainOptions(epochs=1), progress=False)
    frames = [str(s.onset_frame) for s in samples] + [str(s.apex_frame) for s in samples]
    masks = [str(s.mask) for s in samples if s.mask is not None]
    assert sorted(reads) == sorted(frames + masks)  # two methods, but every file read once
    reads.clear()
    run_mer(samples, methods, tmp_path, size=16, options=TrainOptions(epochs=1), progress=False)
    assert reads == []  # every method cached: no frame, mask or face box is touched


@pytest.mark.parametrize(("flow", "message"), [
    ("sift", "unknown flow method"),
    ("decflow", "give the checkpoint as decflow:CKPT"),
    ("decflow:raft:small", "has no expression flow"),
    ("decflow:/no/such.pt", "no such checkpoint"),
])
def test_cli_bad_flow_methods_get_one_line(micro, tmp_path, capsys, flow, message):
    assert main(["mer", "--data", str(micro), "--out", str(tmp_path), "--flow", flow, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pyflowops mer: ") and message in err


def test_cli_data_problems_get_one_line(tmp_path, capsys):
    assert main(["mer", "--data", str(tmp_path / "missing"), "--out", str(tmp_path), "--flow", "dis"]) == 2
    assert capsys.readouterr().err.startswith("pyflowops mer: ")
    (tmp_path / "empty").mkdir()
    assert main(["mer", "--data", str(tmp_path / "empty"), "--out", str(tmp_path), "--flow", "dis"]) == 2
    assert capsys.readouterr().err.startswith("pyflowops mer: ")


def test_ground_truth_rows_refuse_data_without_ground_truth(micro, tmp_path):
    import dataclasses

    samples = [dataclasses.replace(s, flow_facial=None, flow_head=None) for s in load_mer_dataset(micro)]
    with pytest.raises(ValueError, match="needs ground-truth flow"):
        run_mer(samples, [parse_flow_method("gt-expression")], None, size=16, progress=False)


def test_one_subject_is_refused(micro):
    samples = [s for s in load_mer_dataset(micro) if s.subject == load_mer_dataset(micro)[0].subject]
    with pytest.raises(ValueError, match="at least 2 subjects"):
        run_mer(samples, [parse_flow_method("dis")], None, size=16, progress=False)


def test_a_micro_set_is_training_data_of_onset_apex_pairs(micro, tmp_path):
    import warnings

    from pyflowops_models.data.dataset import MicroClipDataset, folder_dataset
    from pyflowops_models.train import load_config, train

    data = folder_dataset(micro)
    assert isinstance(data, MicroClipDataset) and len(data) == 6
    clip, sample = data.clips[0], data[0]
    assert sample["image1"].shape == (3, 64, 64) and sample["mask"].shape == (64, 64)
    np.testing.assert_array_equal(sample["flow"].permute(1, 2, 0).numpy(), read_flo(clip.flow_facial))
    assert sample["step"] == clip.onset and sample["valid"].all()
    with pytest.raises(ValueError, match="no face-part labels"):
        folder_dataset(micro, extras=True)
    with pytest.raises(ValueError, match="FacialFlowNet-layout"):
        folder_dataset(tmp_path)
    cfg = load_config("decflow_micro_cpu_small", [
        f"data.source={micro}", "data.crop=[48, 48]", "optim.steps=2", "optim.batch_size=2", "optim.iters=2",
        "data.val_length=2", "data.val_batch_size=2", "train.val_every=2", "train.checkpoint_every=2",
        "train.num_workers=0", "optim.amp=off"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # DecFlow's untrained semantic encoder
        result = train(cfg, tmp_path / "run", progress=False)
    assert result["step"] == 2 and np.isfinite(result["val"]["expression_masked_epe"])
