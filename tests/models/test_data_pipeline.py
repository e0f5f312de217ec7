"""Synthetic facial flow data: flow against geometry (not against our renderer), photometric
consistency, the facial/head split, determinism, shards, resume, the loader and augmentation.

Small images (64-96 px) and short sequences keep this file to a few seconds per test.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pyflowops_models.data.augment import FlowAugmentor
from pyflowops_models.data.dataset import FacialFlowDataset, RenderedFacialFlowDataset
from pyflowops_models.data.expression import HeadPose, expression_displacement, pose_points
from pyflowops_models.data.head import build_head, surface_points
from pyflowops_models.data.sequence import (
    HEAD_DISTANCE,
    Camera,
    _ease,
    render_pair,
    render_sequence,
    sequence_generator,
    sequence_spec,
)
from pyflowops_models.data.writer import sequence_marker, synthesize, write_sequence

SIZE = 96


def _spec(index=0, size=SIZE, emotion="happy", num_steps=5, seed=0):
    return sequence_spec(seed, index, size, "train", emotion=emotion, num_steps=num_steps)


def _head(spec):
    g = sequence_generator(spec.seed, spec.index)
    g.manual_seed(g.initial_seed() ^ 0x5EED)
    return build_head(spec.identity, resolution=spec.size, generator=g)


def _bilinear(image: np.ndarray, xy: torch.Tensor) -> torch.Tensor:
    """Sample [H, W, C] at pixel positions xy [P, 2] (x = column; pixel centres at +0.5)."""
    t = torch.from_numpy(image).permute(2, 0, 1)[None].double()
    h, w = image.shape[:2]
    grid = torch.stack([xy[:, 0] / w * 2 - 1, xy[:, 1] / h * 2 - 1], -1)[None, None].double()
    return F.grid_sample(t, grid, align_corners=False)[0, :, 0].T  # [P, C]


def _project(points: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    return torch.stack([K[0, 0] * points[:, 0] / points[:, 2] + K[0, 2],
                        K[1, 1] * points[:, 1] / points[:, 2] + K[1, 2]], -1)


def test_flow_matches_the_geometry_of_surface_points():
    """Project surface points at t and t+1 with the camera; where a point is visible its
    displacement must equal the rendered flow there (facial and head part): < 0.1 px mean."""
    spec = _spec(size=128, emotion="surprise")
    head = _head(spec)
    step = 2
    pair = render_pair(spec, step, head=head)
    g = torch.Generator().manual_seed(7)
    points, owner = surface_points(head, 20000, g)
    camera = Camera.for_size(spec.size)
    target = torch.tensor(spec.expression)
    n = spec.num_steps

    def at(expression_step, pose_step):
        weights = target * _ease(expression_step / n)
        moved = points + expression_displacement(head, points, weights, index=owner)
        pose = HeadPose.interpolate(spec.pose_start, spec.pose_end, _ease(pose_step / n))
        return pose_points(moved, pose, HEAD_DISTANCE)

    p0 = at(step, step)
    xy0 = _project(p0, camera.K)
    inside = ((xy0 > 2) & (xy0 < spec.size - 2)).all(1)
    depth = _bilinear(pair.depth[..., None], xy0)[:, 0]
    # visible: the rendered depth there is this point's (not a surface in front of it), well inside the head
    visible = inside & ((depth - p0[:, 2]).abs() < 0.01) & (_bilinear(pair.mask[..., None].astype(float), xy0)[:, 0] > 0.999)
    assert visible.sum() > 300
    for flow, (es, ps) in ((pair.flow, (step + 1, step + 1)), (pair.flow_head, (step, step + 1))):
        truth = _project(at(es, ps), camera.K) - xy0
        rendered = _bilinear(flow, xy0)
        error = (rendered - truth)[visible].norm(dim=1)
        assert error.mean() < 0.1, f"mean error {error.mean():.3f} px over {int(visible.sum())} points"


def test_warping_frame_t_plus_1_back_reproduces_frame_t():
    spec = _spec(size=128, emotion="happy")
    pair = render_pair(spec, 3)
    h, w = pair.mask.shape
    ys, xs = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    target = torch.stack([xs, ys], -1).reshape(-1, 2) + torch.from_numpy(pair.flow).reshape(-1, 2)
    warped = _bilinear(pair.image2.astype(np.float64), target).reshape(h, w, 3).numpy()
    keep = pair.mask & ~pair.occlusion & (pair.labels > 0)
    keep &= np.pad(keep, 2, mode="constant")[4:, 4:] & np.pad(keep, 2, mode="constant")[:-4, :-4]  # off the edges
    error = np.abs(warped - pair.image1.astype(np.float64))[keep].mean()
    contrast = pair.image1.astype(np.float64)[keep].std()
    assert error < 0.2 * contrast, (error, contrast)


def test_expression_is_facial_minus_head_and_neutral_has_no_expression():
    neutral = render_pair(_spec(emotion="neutral"), 1)
    np.testing.assert_array_equal(neutral.flow, neutral.flow_head)  # same Gaussians: bitwise the same render
    happy = render_pair(_spec(emotion="happy"), 1)
    assert np.abs(happy.flow - happy.flow_head)[happy.mask].max() > 0.05  # the expression moves something


def test_sequence_equals_its_pairs_rendered_alone():
    spec = _spec(num_steps=5)
    pairs = list(render_sequence(spec))
    assert len(pairs) == 5 and [p.step for p in pairs] == list(range(5))
    alone = render_pair(spec, 3)
    np.testing.assert_array_equal(alone.flow, pairs[3].flow)
    np.testing.assert_array_equal(alone.image1, pairs[3].image1)
    np.testing.assert_array_equal(pairs[2].image2, pairs[3].image1)  # frame t+1 of pair t is frame t of pair t+1


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != "meta.json"}


def test_deterministic_bytes_and_disjoint_shards(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    synthesize(a, 2, size=64, workers=1, seed=3, progress=False, motion_scales=(2,))
    synthesize(b, 2, size=64, workers=1, seed=3, progress=False, motion_scales=(2,))
    assert _digest(a) == _digest(b)
    c = tmp_path / "c"
    synthesize(c, 2, size=64, workers=1, seed=3, first_index=2, progress=False, motion_scales=(2,))
    names_a = {p.name for p in (a / "meta").rglob("*.json")}
    names_c = {p.name for p in (c / "meta").rglob("*.json")}
    assert names_a == {"0000000.json", "0000001.json"} and names_c == {"0000002.json", "0000003.json"}
    assert sequence_spec(3, 0, 64).identity != sequence_spec(3, 2, 64).identity


def test_resume_after_a_killed_run(tmp_path):
    root = tmp_path / "data"
    script = textwrap.dedent(f"""
        from pyflowops_models.data.writer import synthesize
        synthesize({str(root)!r}, 3, size=64, workers=1, seed=5, progress=False, motion_scales=(3,))
    """)
    proc = subprocess.Popen([sys.executable, "-c", script])
    marker_dir = root / "meta"
    try:
        for _ in range(600):  # kill as soon as the first sequence is complete
            if marker_dir.exists() and any(marker_dir.rglob("*.json")):
                break
            if proc.poll() is not None:
                break
            subprocess.run(["sleep", "0.1"])
        proc.kill()
    finally:
        proc.wait()
    done_before = {p: p.stat().st_mtime_ns for p in marker_dir.rglob("*.json")}
    assert 0 < len(done_before) < 3, "the kill should land after the first sequence and before the last"
    report = synthesize(root, 3, size=64, workers=1, seed=5, progress=False, motion_scales=(3,))
    assert report.skipped_sequences == len(done_before) and report.written_sequences == 3 - len(done_before)
    for p, mtime in done_before.items():
        assert p.stat().st_mtime_ns == mtime  # complete sequences were not rewritten
    fresh = tmp_path / "fresh"
    synthesize(fresh, 3, size=64, workers=1, seed=5, progress=False, motion_scales=(3,))
    assert _digest(root) == _digest(fresh)  # no half-written file, no temp file left behind


def test_loader_reads_what_the_writer_wrote(tmp_path):
    spec = _spec(size=64, num_steps=5)
    write_sequence(tmp_path, spec)
    assert sequence_marker(tmp_path, spec).exists()
    data = FacialFlowDataset(tmp_path, "train", extras=True)
    assert len(data) == 5
    pairs = list(render_sequence(spec))
    for t in (0, 4):
        sample = data[t]
        assert sample["image1"].shape == (3, 64, 64) and sample["flow"].shape == (2, 64, 64)
        np.testing.assert_array_equal(sample["image1"].permute(1, 2, 0).numpy(), pairs[t].image1)
        np.testing.assert_array_equal(sample["image2"].permute(1, 2, 0).numpy(), pairs[t].image2)
        np.testing.assert_array_equal(sample["flow"].permute(1, 2, 0).numpy(), pairs[t].flow)
        np.testing.assert_array_equal(sample["flow_head"].permute(1, 2, 0).numpy(), pairs[t].flow_head)
        np.testing.assert_array_equal(sample["mask"].numpy(), pairs[t].mask)
        np.testing.assert_array_equal(sample["labels"].numpy(), pairs[t].labels)
        assert sample["valid"].all() and sample["step"] == t
    with pytest.raises(ValueError, match="no .*flow/facial/val"):
        FacialFlowDataset(tmp_path, "val")


def test_rendered_dataset_matches_the_written_pairs():
    data = RenderedFacialFlowDataset(3, size=64, seed=0, extras=True)
    sample = data[1]
    spec = sequence_spec(0, 1, 64, "train")
    pair = render_pair(spec, 1 % spec.num_steps)
    np.testing.assert_array_equal(sample["flow"].permute(1, 2, 0).numpy(), pair.flow)
    with pytest.raises(IndexError):
        data[3]


def test_augmentation_keeps_flow_consistent_with_the_images():
    """Warping augmented image 2 by the augmented flow reproduces augmented image 1 about as
    well as before augmenting (geometric steps only: photometric jitter changes both images)."""
    pair = render_pair(_spec(size=128, emotion="happy"), 2)
    sample = {
        "image1": torch.from_numpy(pair.image1).permute(2, 0, 1).float(),
        "image2": torch.from_numpy(pair.image2).permute(2, 0, 1).float(),
        "flow": torch.from_numpy(pair.flow).permute(2, 0, 1),
        "flow_head": torch.from_numpy(pair.flow_head).permute(2, 0, 1),
        "mask": torch.from_numpy(pair.mask & ~pair.occlusion).float(),
    }

    def photometric_error(s):
        _, h, w = s["image1"].shape
        ys, xs = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
        xy = torch.stack([xs, ys], -1).reshape(-1, 2) + s["flow"].permute(1, 2, 0).reshape(-1, 2)
        warped = _bilinear(s["image2"].permute(1, 2, 0).numpy().astype(np.float64), xy).reshape(h, w, 3)
        lands_inside = ((xy >= 1) & (xy <= torch.tensor([w - 1.0, h - 1.0]))).all(1).reshape(h, w)  # not cropped away
        keep = (s["mask"] > 0.5) & lands_inside
        return (warped - s["image1"].permute(1, 2, 0).double()).abs()[keep].mean().item()

    before = photometric_error(sample)
    geometric = FlowAugmentor(crop_size=(96, 96), min_scale=0.2, max_scale=0.4, eraser_prob=0.0)
    geometric.jitter = lambda image: image.float()  # photometric jitter off for this check
    for seed in range(3):
        out = geometric(sample, torch.Generator().manual_seed(seed))
        assert out["image1"].shape == (3, 96, 96) and out["flow"].shape == (2, 96, 96)
        assert photometric_error(out) < 1.3 * before + 1.0
    flipped = FlowAugmentor(crop_size=(96, 96), spatial_prob=0.0, stretch_prob=0.0, min_scale=0, max_scale=0)
    out = flipped(sample, torch.Generator().manual_seed(0))
    assert torch.isfinite(out["flow"]).all()


def test_face_photo_texture_is_projected_frontally(tmp_path):
    """A 'photo' whose left half is red and right half blue colours the front of the head
    that way (x < 0 is image left); the sides and the eyes keep the procedural colours."""
    from PIL import Image

    photo = np.zeros((64, 64, 3), np.uint8)
    photo[:, :32] = (220, 30, 30)
    photo[:, 32:] = (30, 30, 220)
    Image.fromarray(photo).save(tmp_path / "face.png")
    spec = _spec(size=64)
    plain = build_head(spec.identity, resolution=64, generator=torch.Generator().manual_seed(0))
    textured = build_head(spec.identity, resolution=64, texture=str(tmp_path / "face.png"),
                          generator=torch.Generator().manual_seed(0))
    front = (textured.normals[:, 2] < -0.8) & (textured.labels == 1)  # skin facing the camera
    left, right = front & (textured.gaussians.means[:, 0] < -0.15), front & (textured.gaussians.means[:, 0] > 0.15)
    assert textured.albedo[left, 0].mean() > 0.7 and textured.albedo[left, 2].mean() < 0.3
    assert textured.albedo[right, 2].mean() > 0.7 and textured.albedo[right, 0].mean() < 0.3
    eyes = textured.labels == 3
    torch.testing.assert_close(textured.albedo[eyes], plain.albedo[eyes])


def test_astronaut_is_reserved_for_evaluation():
    """No default training image may contain scikit-image's astronaut (kept for evaluation)."""
    import inspect

    from pyflowops_models.data import backgrounds, head, texture
    from pyflowops_models.data.backgrounds import DEFAULT_TEXTURES, RESERVED_FOR_EVALUATION, Backgrounds

    assert "astronaut" in RESERVED_FOR_EVALUATION and not set(DEFAULT_TEXTURES) & set(RESERVED_FOR_EVALUATION)
    assert Backgrounds().names == DEFAULT_TEXTURES
    for module in (head, texture):
        assert "astronaut" not in inspect.getsource(module)
    assert inspect.getsource(backgrounds).count('"astronaut"') == 1  # only in RESERVED_FOR_EVALUATION


def test_rendered_pairs_follow_the_motion_scales_asked_for():
    from pyflowops_models.data.dataset import RenderedFacialFlowDataset

    ffn = RenderedFacialFlowDataset(3, 32, seed=0)
    big = RenderedFacialFlowDataset(3, 32, seed=0, motion_scales=(1,))
    assert big.motion_scales == (1,) and ffn.motion_scales == (5, 10, 15, 20)
    # n = 1: the whole neutral -> emotion + pose motion in one pair, more than any FFN step of the same sequence
    assert float(big[0]["flow"].abs().mean()) > float(ffn[0]["flow"].abs().mean())
