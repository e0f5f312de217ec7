"""Generic-motion pretraining pairs (pyflowops_models.data.generic): exact flow, determinism, errors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from pyflowops_models.data.generic import GenericMotionDataset, similarity


def _warp_back(image2: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """image2 [3, H, W] sampled at p + flow(p): image 1 where the flow is right and nothing is occluded."""
    h, w = flow.shape[-2:]
    ys, xs = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij")
    px, py = xs + flow[0], ys + flow[1]
    grid = torch.stack([2 * px / (w - 1) - 1, 2 * py / (h - 1) - 1], dim=-1)[None]
    return F.grid_sample(image2[None], grid, align_corners=True)[0]


def _lands_inside(flow: torch.Tensor, margin: int = 2) -> torch.Tensor:
    """[H, W] bool: p + flow(p) lies inside image 2, ``margin`` px from its edge."""
    h, w = flow.shape[-2:]
    ys, xs = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij")
    px, py = xs + flow[0], ys + flow[1]
    return (px >= margin) & (px <= w - 1 - margin) & (py >= margin) & (py <= h - 1 - margin)


def test_similarity_maps_points_as_stated():
    m = similarity((3.0, -2.0), math.radians(90), 2.0, (10.0, 20.0))
    p = torch.tensor([11.0, 20.0, 1.0], dtype=torch.float64)  # one px right of the centre
    assert torch.allclose(m @ p, torch.tensor([10.0 + 3.0, 20.0 + 2.0 - 2.0], dtype=torch.float64))


def test_background_only_flow_is_the_similarity_and_warps_image2_onto_image1():
    pairs = GenericMotionDataset(3, size=96, seed=5, layers=(0, 0))
    for i in range(3):
        s = pairs[i]
        flow = s["flow"]
        # an affine field: second differences vanish
        assert flow.diff(n=2, dim=-1).abs().max() < 1e-3 and flow.diff(n=2, dim=-2).abs().max() < 1e-3
        back = _warp_back(s["image2"], flow)
        inside = _lands_inside(flow)
        err = (back - s["image1"]).abs().mean(0)[inside]
        moved = (s["image2"] - s["image1"]).abs().mean(0)[inside]
        # what remains is the blur of two bilinear resamplings of a photo
        assert float(err.median()) < 0.3 * float(moved.median()), (float(err.median()), float(moved.median()))


def test_layers_move_with_their_own_motion_and_warp_back_where_visible():
    pairs = GenericMotionDataset(4, size=128, seed=0, layers=(2, 3))
    s = pairs[1]
    flow = s["flow"]
    # several motions: the flow is not one affine field
    assert flow.diff(n=2, dim=-1).abs().max() > 0.5
    inside = _lands_inside(flow)
    err = (_warp_back(s["image2"], flow) - s["image1"]).abs().mean(0)[inside]
    moved = (s["image2"] - s["image1"]).abs().mean(0)[inside]
    # most pixels are neither occluded nor at a layer's edge: their colour comes back (up to resampling blur)
    assert float(err.median()) < 0.3 * float(moved.median()), (float(err.median()), float(moved.median()))
    assert torch.equal(s["flow_head"], s["flow"]) and bool((s["mask"] == 1).all()) and bool((s["valid"] == 1).all())


def test_pairs_are_deterministic_and_sets_disjoint():
    a, b = GenericMotionDataset(2, size=48, seed=3), GenericMotionDataset(2, size=48, seed=3)
    assert torch.equal(a[1]["image1"], b[1]["image1"]) and torch.equal(a[1]["flow"], b[1]["flow"])
    other = GenericMotionDataset(2, size=48, seed=4)
    shifted = GenericMotionDataset(2, size=48, seed=3, first_index=1)
    assert not torch.equal(a[0]["flow"], other[0]["flow"])
    assert torch.equal(a[1]["flow"], shifted[0]["flow"]) and shifted[0]["sequence"].endswith("0000001")


def test_sample_keys_shapes_and_range():
    s = GenericMotionDataset(1, size=40)[0]
    assert s["image1"].shape == s["image2"].shape == (3, 40, 40)
    assert s["flow"].shape == (2, 40, 40) and s["mask"].shape == (40, 40)
    assert 0 <= float(s["image1"].min()) and float(s["image2"].max()) <= 255


@pytest.mark.parametrize("kwargs, message", [
    ({"length": 0}, "length >= 1"), ({"size": 8}, "size >= 16"), ({"layers": (3, 1)}, "layers must be"),
])
def test_bad_arguments_are_named(kwargs, message):
    args = {"length": 2, "size": 32, **kwargs}
    with pytest.raises(ValueError, match=message):
        GenericMotionDataset(**args)
    with pytest.raises(IndexError, match="out of range"):
        GenericMotionDataset(2, size=32)[2]


def test_the_pretraining_recipe_trains_on_generic_pairs():
    from pyflowops_models.train import load_config
    from pyflowops_models.train.trainer import _datasets

    cfg = load_config("decflow_pretrain_cpu_small", ["data.length=4", "data.val_length=2", "data.image_size=64",
                                                     "data.crop=[48, 48]"])
    train_set, val_set = _datasets(cfg)
    assert isinstance(train_set.base, GenericMotionDataset) and isinstance(val_set.base, GenericMotionDataset)
    assert train_set[(0, 7)]["image1"].shape == (3, 48, 48)
    assert val_set.base.seed != train_set.base.seed
