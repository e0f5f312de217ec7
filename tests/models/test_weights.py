"""Shipped weights (pyflowops_models.weights): names resolve, load strictly, and they match motion."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from pyflowops_models import load
from pyflowops_models.data.generic import GenericMotionDataset
from pyflowops_models.decflow import DecFlow
from pyflowops_models.weights import BUNDLED, resolve


def test_bundled_names_resolve_to_shipped_files_and_paths_pass_through(tmp_path):
    for name in BUNDLED:
        assert resolve(f"bundled:{name}").is_file()
    assert resolve(tmp_path / "run") == tmp_path / "run"
    assert resolve("runs/s0") == Path("runs/s0")
    with pytest.raises(ValueError, match="unknown bundled weights 'nope'; bundled are: decflow_small_generic"):
        resolve("bundled:nope")


def test_the_generic_weights_match_held_out_generic_motion():
    model = load("bundled:decflow_small_generic")
    assert isinstance(model, DecFlow) and all(p.dtype == torch.float32 for p in model.parameters())
    pairs = GenericMotionDataset(2, size=96, seed=7, first_index=10_000_000)  # never trained on
    errors, zero = [], []
    with torch.no_grad():
        for pair in (pairs[0], pairs[1]):
            flow = model(pair["image1"][None], pair["image2"][None], iters=8)["facial"][0]
            errors.append((flow - pair["flow"]).norm(dim=0).mean())
            zero.append(pair["flow"].norm(dim=0).mean())
    # random weights give about zero flow's error; these weights a fraction of it
    assert sum(errors) < 0.4 * sum(zero), (errors, zero)


def test_the_face_recipe_starts_from_bundled_weights():
    from pyflowops_models.train import load_config
    from pyflowops_models.train.trainer import _load_init, build_model

    cfg = load_config("decflow_cpu_small")  # its default init
    model = build_model(cfg)
    logged: list[str] = []
    _load_init(model, cfg, logged.append)
    assert "decflow_small_generic.pt" in logged[0]
    shipped = torch.load(resolve("bundled:decflow_small_generic"), weights_only=True)["model"]
    key = "update_block.flow_head.conv2.weight"
    assert torch.equal(model.state_dict()[key], shipped[key].float())
