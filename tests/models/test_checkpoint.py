"""Checkpoints: the official DataParallel layout loads strictly; mismatches are reported by name."""

from __future__ import annotations

import pytest
import torch

import pyflowops_models
from pyflowops_models.checkpoint import load_checkpoint, strip_prefix


def _small():
    torch.manual_seed(0)
    return pyflowops_models.create("raft", size="small")


def test_official_dataparallel_layout_loads_strictly(tmp_path):
    source = _small()
    path = tmp_path / "raft-small.pth"
    torch.save({f"module.{k}": v for k, v in source.state_dict().items()}, path)  # as official train.py saves
    torch.manual_seed(1)
    target = pyflowops_models.create("raft", size="small")
    assert not torch.equal(target.fnet.conv1.weight, source.fnet.conv1.weight)
    report = load_checkpoint(target, path)
    assert report.ok and str(report) == "all keys matched"
    for k, v in source.state_dict().items():
        assert torch.equal(target.state_dict()[k], v), k


def test_training_checkpoint_dict_and_our_format(tmp_path):
    source = _small()
    path = tmp_path / "ckpt.pth"
    torch.save({"model": source.state_dict(), "step": torch.tensor(3)}, path)
    target = pyflowops_models.create("raft", size="small")
    assert load_checkpoint(target, path).ok
    assert torch.equal(target.update_block.flow_head.conv2.weight, source.update_block.flow_head.conv2.weight)


def test_mismatches_are_named(tmp_path):
    state = _small().state_dict()
    state.pop("update_block.flow_head.conv2.bias")
    state["extra.weight"] = torch.zeros(1)
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    model = pyflowops_models.create("raft", size="small")
    with pytest.raises(ValueError, match=r"1 missing: update_block\.flow_head\.conv2\.bias.*1 unexpected: extra\.weight"):
        load_checkpoint(model, path)
    report = load_checkpoint(model, path, strict=False)
    assert report.missing == ["update_block.flow_head.conv2.bias"] and report.unexpected == ["extra.weight"]


def test_wrong_model_size_and_bad_files(tmp_path):
    path = tmp_path / "full.pth"
    full = pyflowops_models.create("raft", size="full")
    small = _small()
    torch.save({k: v for k, v in small.state_dict().items()}, path)
    with pytest.raises(ValueError, match="does not fit RAFT"):
        load_checkpoint(full, path)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        load_checkpoint(full, tmp_path / "missing.pth")
    junk = tmp_path / "junk.pth"
    torch.save([1, 2, 3], junk)
    with pytest.raises(ValueError, match="state dict"):
        load_checkpoint(full, junk)
    assert strip_prefix({"module.a": 1, "b": 2}) == {"a": 1, "b": 2}
