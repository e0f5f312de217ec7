"""Synthetic micro-expression clips (``pyflowops synth --mode micro``): the intensity profile, the
MEGC 2019 classes and the 5-20% intensities, subjects, the onset -> apex ground truth, the
pyflowops-micro/1 layout (resume, determinism, a killed run) and the command line.

Small images (32-64 px) and few clips keep this file to a few seconds per test.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from pyflowops_models.cli import main
from pyflowops_models.data.backgrounds import Backgrounds
from pyflowops_models.data.expression import ACTION_UNITS, EMOTIONS
from pyflowops_models.data.micro import (
    FILES,
    INTENSITY_RANGE,
    LABEL_COLUMNS,
    LAYOUT,
    MICRO_CLASSES,
    MICRO_EMOTIONS,
    intensity_profile,
    micro_spec,
    render_micro,
    subject_head,
    subject_traits,
    synthesize_micro,
)

from pyflowops.flow import read_flo

SIZE = 64


def test_intensity_profile_rises_to_the_apex_and_falls_to_the_offset():
    for onset, apex, offset, n in [(1, 3, 5, 7), (2, 6, 10, 13), (1, 4, 6, 8), (0, 1, 2, 3)]:
        p = np.array(intensity_profile(onset, apex, offset, n))
        assert p.shape == (n,) and p[apex] == 1.0
        assert (p[: onset + 1] == 0).all() and (p[offset:] == 0).all()
        assert (np.diff(p[onset: apex + 1]) > 0).all() and (np.diff(p[apex: offset + 1]) < 0).all()
    spec = micro_spec(0, 5, 3, SIZE)
    assert spec.profile() == intensity_profile(spec.onset, spec.apex, spec.offset, spec.num_frames)
    for bad in [(2, 2, 4, 6), (1, 3, 5, 5), (-1, 2, 3, 5)]:
        with pytest.raises(ValueError, match="onset < apex < offset < num_frames"):
            intensity_profile(*bad)


def test_classes_intensities_timing_and_head_motion():
    specs = [micro_spec(7, i, 5, SIZE) for i in range(90)]
    assert micro_spec(7, 3, 5, SIZE) == specs[3]  # (seed, index) fixes a clip
    assert {s.micro_class for s in specs} == set(MICRO_CLASSES)
    assert len({s.emotion for s in specs if s.micro_class == "negative"}) >= 4
    lo, hi = INTENSITY_RANGE
    for s in specs:
        assert s.emotion in MICRO_EMOTIONS[s.micro_class] and s.subject == s.index % 5
        assert lo <= s.intensity <= hi
        preset = torch.tensor([EMOTIONS[s.emotion].get(a, 0.0) for a in ACTION_UNITS])
        apex = s.weights(s.apex)
        torch.testing.assert_close(apex, torch.tensor(s.to_json()["apex_expression"]))
        assert float((apex * preset).sum() / (preset * preset).sum()) == pytest.approx(s.intensity, rel=1e-5)
        assert (apex[preset == 0] == 0).all()
        major = preset >= 0.5  # the emotion's main AUs: within the intensity, up to sample_expression's jitter
        ratio = apex[major] / preset[major]
        assert (ratio >= 0.6 * s.intensity).all() and (ratio <= 1.5 * s.intensity).all(), (s.emotion, ratio)
        assert (s.weights(s.onset) == 0).all() and (s.weights(s.num_frames - 1) == 0).all()
        assert s.onset in (1, 2) and s.apex - s.onset in (2, 3, 4) and s.offset - s.apex in (2, 3, 4)
        assert s.num_frames - 1 - s.offset in (1, 2)
        start, end = s.pose_start, s.pose_end
        assert max(abs(start.yaw), abs(start.pitch), abs(start.roll)) <= math.radians(3.0)
        drift = (end.yaw - start.yaw, end.pitch - start.pitch, end.roll - start.roll)
        assert max(map(abs, drift)) <= math.radians(2.0) and max(map(abs, drift)) > 0
        assert max(abs(b - a) for a, b in zip(start.translation, end.translation)) <= 0.02
        assert s.pose(0) == start and s.pose(s.num_frames - 1) == end


def test_a_subject_is_the_same_person_in_every_clip():
    a, b, other = micro_spec(0, 1, 4, SIZE), micro_spec(0, 9, 4, SIZE), micro_spec(0, 2, 4, SIZE)
    assert a.subject == b.subject == 1 and other.subject == 2
    assert (a.identity, a.light, a.background) == (b.identity, b.light, b.background) == subject_traits(0, 1)
    assert a.identity != other.identity and a.light != other.light and a.background != other.background
    assert (a.pose_start, a.num_frames, a.intensity) != (b.pose_start, b.num_frames, b.intensity)  # per clip
    head, again = subject_head(0, 1, SIZE), subject_head(0, 1, SIZE)
    assert torch.equal(head.gaussians.means, again.gaussians.means) and torch.equal(head.albedo, again.albedo)
    assert not torch.equal(head.albedo[:100], subject_head(0, 2, SIZE).albedo[:100])
    backgrounds = Backgrounds()
    np.testing.assert_array_equal(backgrounds.pick(a.background, SIZE), backgrounds.pick(b.background, SIZE))
    # the same subject, pose and expression render the same picture in two clips
    clip_a = render_micro(replace(a, pose_start=b.pose_start, pose_end=b.pose_end, num_frames=b.num_frames,
                                  onset=b.onset, apex=b.apex, offset=b.offset), backgrounds, head)
    clip_b = render_micro(b, backgrounds, head)
    np.testing.assert_array_equal(clip_a.frames[0], clip_b.frames[0])


def _warp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """image [H, W, C] sampled at x + flow(x) (backward warp; pixel centres at +0.5)."""
    h, w = flow.shape[:2]
    ys, xs = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    f = torch.from_numpy(flow).double()
    grid = torch.stack([(xs + f[..., 0]) / w * 2 - 1, (ys + f[..., 1]) / h * 2 - 1], -1)[None]
    t = torch.from_numpy(image).double().permute(2, 0, 1)[None]
    return F.grid_sample(t, grid, align_corners=False)[0].permute(1, 2, 0).numpy()


def test_ground_truth_flow_of_the_onset_and_apex_frames():
    spec = micro_spec(1, 1, 4, SIZE)
    clip = render_micro(spec)
    assert len(clip.frames) == spec.num_frames and clip.frames[0].shape == (SIZE, SIZE, 3)
    assert clip.frames[0].dtype == np.uint8 and clip.flow_facial.dtype == clip.flow_head.dtype == np.float32
    assert clip.flow_facial.shape == clip.flow_head.shape == (SIZE, SIZE, 2) and clip.mask.dtype == bool
    assert 0.15 < clip.mask.mean() < 0.6
    assert np.abs(clip.flow_facial[~clip.mask]).max() < 0.5  # the background plane does not move
    expression = np.linalg.norm(clip.flow_facial - clip.flow_head, axis=-1)
    assert expression[clip.mask].max() > 0.2  # the expression moves the face
    still = render_micro(replace(spec, intensity=0.0))
    np.testing.assert_array_equal(still.flow_facial, still.flow_head)  # head motion only: bitwise the same
    assert np.abs(still.flow_head).max() > 0.05  # and the head does move
    for index in (1, 2, 4):  # warping the apex frame back reproduces the onset frame; the reverse flow does not
        spec = micro_spec(1, index, 4, SIZE)
        clip = render_micro(spec)
        onset, apex = (clip.frames[t].astype(np.float64) for t in (spec.onset, spec.apex))
        inner = clip.mask & np.pad(clip.mask, 2)[4:, 4:] & np.pad(clip.mask, 2)[:-4, :-4]  # off the edges
        zero = np.abs(apex - onset).mean(-1)
        moved = inner & (zero > 2)
        for sign, better in ((1, True), (-1, False)):
            error = np.abs(_warp(apex, sign * clip.flow_facial) - onset).mean(-1)
            assert (error[inner].mean() < 0.9 * zero[inner].mean()) == better, (index, sign)
            assert ((error < zero)[moved].mean() > 0.75) == better, (index, sign)


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_writer_layout_resume_determinism_and_a_killed_run(tmp_path):
    root = tmp_path / "a"
    report = synthesize_micro(root, 4, 3, size=SIZE, workers=1, seed=2, first_index=1, progress=False)
    specs = [micro_spec(2, i, 3, SIZE) for i in range(1, 5)]
    assert report.written_sequences == 4 and report.skipped_sequences == 0
    assert report.written_pairs == sum(s.num_frames for s in specs)  # frames
    expected = {"meta.json", "labels.csv"}
    for s in specs:
        folder = f"s{s.index % 3:03d}/{s.index:06d}"
        expected |= {f"{folder}/{t:04d}.png" for t in range(s.num_frames)}
        expected |= {f"{folder}/{name}" for name in ("flow_facial.flo", "flow_head.flo", "mask.png", "meta.json")}
    assert set(_digest(root)) == expected
    # the files hold the clip
    s = specs[1]
    folder = root / f"s{s.subject:03d}" / s.name
    clip = render_micro(s)
    for t in range(s.num_frames):
        np.testing.assert_array_equal(np.asarray(Image.open(folder / f"{t:04d}.png")), clip.frames[t])
    np.testing.assert_array_equal(read_flo(folder / "flow_facial.flo"), clip.flow_facial)
    np.testing.assert_array_equal(read_flo(folder / "flow_head.flo"), clip.flow_head)
    mask = np.asarray(Image.open(folder / "mask.png"))
    assert mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 255}
    np.testing.assert_array_equal(mask == 255, clip.mask)
    # labels.csv and meta.json agree with the clips' meta.json
    with open(root / "labels.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0]) == LABEL_COLUMNS
    assert [(r["subject"], r["sequence"]) for r in rows] == [("s000", "000003"), ("s001", "000001"),
                                                             ("s001", "000004"), ("s002", "000002")]
    for r in rows:
        record = json.loads((root / r["subject"] / r["sequence"] / "meta.json").read_text())
        assert {k: str(record[k]) for k in LABEL_COLUMNS[2:]} == {k: r[k] for k in LABEL_COLUMNS[2:]}
        assert record["subject"] == int(r["subject"][1:]) and record["index"] == int(r["sequence"])
        assert set(record) >= {"intensity", "subject", "onset", "apex", "offset", "num_frames", "emotion", "class"}
    meta = json.loads((root / "meta.json").read_text())
    assert (meta["layout"], meta["seed"], meta["size"], meta["subjects"], meta["sequences"]) == (LAYOUT, 2, SIZE, 3, 4)
    assert meta["classes"] == {c: sum(r["class"] == c for r in rows) for c in MICRO_CLASSES} and meta["files"] == FILES
    # a rerun rewrites no clip
    clip_files = {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.parent != root}
    again = synthesize_micro(root, 4, 3, size=SIZE, workers=1, seed=2, first_index=1, progress=False)
    assert (again.written_sequences, again.written_pairs, again.skipped_sequences) == (0, 0, 4)
    assert {p: p.stat().st_mtime_ns for p in clip_files} == clip_files
    # a killed run: an incomplete clip (no meta.json, a torn frame) and a stale temporary file
    victim = root / "s001" / "000004"
    (victim / "meta.json").unlink()
    (victim / "0001.png").write_bytes(b"torn")
    (victim / ".0002.png.x1y2.tmp").write_bytes(b"half")
    resumed = synthesize_micro(root, 4, 3, size=SIZE, workers=1, seed=2, first_index=1, progress=False)
    assert (resumed.written_sequences, resumed.skipped_sequences) == (1, 3)
    fresh = tmp_path / "b"  # the same set from scratch: byte-identical, with no temporary file left behind
    synthesize_micro(fresh, 4, 3, size=SIZE, workers=1, seed=2, first_index=1, progress=False)
    assert _digest(root) == _digest(fresh)
    with pytest.raises(ValueError, match="holds a set made with"):
        synthesize_micro(root, 4, 2, size=SIZE, workers=1, seed=2, progress=False)  # other subjects: refused
    for bad in ({"sequences": 0}, {"subjects": 0}, {"size": 16}, {"workers": 0}, {"first_index": -1}):
        args = {"sequences": 1, "subjects": 1, "size": SIZE, "workers": 1, "first_index": 0} | bad
        with pytest.raises(ValueError, match="synthesize_micro: need"):
            synthesize_micro(tmp_path / "c", progress=False, **args)


def test_two_workers_write_the_same_bytes(tmp_path):
    synthesize_micro(tmp_path / "one", 3, 2, size=32, workers=1, seed=4, progress=False)
    synthesize_micro(tmp_path / "two", 3, 2, size=32, workers=2, seed=4, progress=False)
    assert _digest(tmp_path / "one") == _digest(tmp_path / "two")


def test_cli_writes_a_micro_set_and_refuses_macro_options(tmp_path, capsys):
    out = tmp_path / "set"
    base = ["synth", "--mode", "micro", "--out", str(out), "--sequences", "2", "--size", "32", "--workers", "1",
            "--quiet"]
    assert main(base + ["--subjects", "2"]) == 0
    printed = capsys.readouterr().out
    assert "2 micro-expression clips" in printed and "negative" in printed and "surprise" in printed
    assert len((out / "labels.csv").read_text().splitlines()) == 3
    assert json.loads((out / "meta.json").read_text())["subjects"] == 2
    for extra, message in ((["--split", "val"], "--split"), (["--report"], "--report"),
                           (["--motion-scales", "3"], "--motion-scales"), (["--textures", "x"], "--textures"),
                           (["--subjects", "3"], "holds a set made with")):
        with pytest.raises(SystemExit):
            main(base + extra)
        assert message in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["synth", "--out", str(tmp_path / "macro"), "--sequences", "1", "--subjects", "3"])
    assert "--subjects is for --mode micro" in capsys.readouterr().err
