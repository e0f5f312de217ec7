"""``pyflowops eval``: classical baselines, the pooled metrics on hand-made flows, data sources, the CLI."""

import argparse
import json

import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image

from pyflowops.flow import write_flo
from pyflowops_models.baselines import BASELINES
from pyflowops_models.cli_eval import add_parser
from pyflowops_models.evaluate import evaluate, load_pairs, markdown

SHIFT = (1.5, -0.75)  # (u, v) pixels: sub-pixel in both directions


def _texture(h, w, shift=(0.0, 0.0), seed=0):
    """Smooth random RGB texture (a sum of sinusoids, periods 8..32 px) translated exactly by ``shift``."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    x, y = x - shift[0], y - shift[1]
    grey, total = np.zeros((h, w)), 0.0
    for _ in range(24):
        period, angle = rng.uniform(8, 32), rng.uniform(0, np.pi)
        phase, amp = rng.uniform(0, 2 * np.pi), rng.uniform(0.5, 1)
        grey += amp * np.sin(2 * np.pi / period * (np.cos(angle) * x + np.sin(angle) * y) + phase)
        total += amp
    grey = 0.5 + 0.5 * grey / total  # a fixed normalisation (not min/max), so both frames share it
    return np.rint(np.clip(np.stack([grey, 0.8 * grey + 0.1, 1 - grey], -1), 0, 1) * 255).astype(np.uint8)


@pytest.mark.parametrize("name", ["zero", "farneback", "dis", "tvl1"])
def test_baseline_recovers_a_subpixel_translation(name):
    image1, image2 = _texture(96, 96), _texture(96, 96, SHIFT)
    flow = BASELINES[name](image1, image2)
    assert flow.shape == (96, 96, 2) and flow.dtype == np.float32
    err = np.linalg.norm(flow - np.array(SHIFT, np.float32), axis=-1)[16:-16, 16:-16].mean()
    if name == "zero":
        assert err == pytest.approx(np.hypot(*SHIFT), rel=1e-6)
    else:
        assert err < 0.3, (name, err)


# ----------------------------------------------------------------------------- hand-made samples


def _sample(h=8, w=10, scale=None, mask=None, seed=0, **extra):
    g = torch.Generator().manual_seed(seed)
    s = {"image1": torch.rand(3, h, w, generator=g) * 255, "image2": torch.rand(3, h, w, generator=g) * 255,
         # multiples of 1/4: gt + error - gt is then exact in float32, so EPE 5 is exactly 5 (not 4.9999998)
         "flow": (torch.randn(2, h, w, generator=g) * 12).round() / 4,
         "flow_head": (torch.randn(2, h, w, generator=g) * 4).round() / 4,
         "mask": torch.ones(h, w) if mask is None else mask, "sequence": f"test/x/{seed}", "step": 0, "scale": scale}
    s.update(extra)
    return s


class _GtPlus(nn.Module):
    """A fake model returning each sample's gt + a constant error, in the order the samples come."""

    def __init__(self, samples, error, decflow=False, head_error=(0.0, 0.0)):
        super().__init__()
        self.gts = [(s["flow"], s["flow_head"]) for s in samples]
        self.error, self.head_error = torch.tensor(error), torch.tensor(head_error)
        self.decflow, self.calls = decflow, 0

    def forward(self, image1, image2, iters=12):
        assert not self.training and not torch.is_grad_enabled() and image1.shape[0] == 1
        flow, head = self.gts[self.calls]
        self.calls += 1
        facial = (flow + self.error.view(2, 1, 1))[None]
        if not self.decflow:
            return facial
        head = (head + self.head_error.view(2, 1, 1))[None]
        return {"facial": facial, "head": head, "expression": facial - head}


@pytest.mark.parametrize("error, epe_value, acc", [((3.0, 4.0), 5.0, (0, 0, 0)), ((0.3, 0.4), 0.5, (1, 1, 1))])
def test_constant_error_gives_known_epe_and_accuracy(error, epe_value, acc):
    samples = [_sample(seed=i, scale=5) for i in range(3)]
    m = evaluate({"fake": _GtPlus(samples, error)}, samples)["methods"]["fake"]["all"]
    assert m["pairs"] == 3
    for key in ("epe", "masked_epe", "official_epe"):  # the mask is everything here: all three agree
        assert m[key] == pytest.approx(epe_value, abs=1e-5)
    assert (m["1px"], m["3px"], m["5px"]) == acc
    assert m["head_epe"] is None and m["sparse_epe"] is None


def test_masked_and_official_style_differ_as_defined():
    # error 0.5 px on the left half (inside the mask), 4 px on the right half (outside); 8x10 image
    mask = torch.zeros(8, 10)
    mask[:, :5] = 1
    s = _sample(mask=mask)
    error = torch.zeros(2, 8, 10)
    error[0, :, :5], error[1, :, 5:] = 0.5, 4.0

    def method(image1, image2):
        return (s["flow"] + error).permute(1, 2, 0).numpy()

    m = evaluate({"m": method}, [s])["methods"]["m"]["all"]
    assert m["masked_epe"] == pytest.approx(0.5, abs=1e-6)  # 40 * 0.5 / 40
    assert m["official_epe"] == pytest.approx((40 * 0.5 + 40 * 4) / 40, abs=1e-6)  # all pixels / mask area = 4.5
    assert m["official_epe"] - m["masked_epe"] == pytest.approx(40 * 4 / 40)  # = EPE outside the mask / mask area
    assert m["epe"] == pytest.approx(2.25, abs=1e-6)  # all 80 pixels
    assert (m["1px"], m["3px"], m["5px"]) == (0.5, 0.5, 1.0)


def test_pooling_sums_pixels_and_per_scale_rows():
    # pair A: 2 mask pixels with error 1; pair B: 6 mask pixels with error 3 -> pooled 20/8, not (1+3)/2
    a_mask, b_mask = torch.zeros(4, 4), torch.zeros(4, 4)
    a_mask[0, :2], b_mask[1:, :2] = 1, 1
    samples = [_sample(4, 4, scale=20, mask=a_mask, seed=1), _sample(4, 4, scale=10, mask=b_mask, seed=2)]
    errors = iter([(1.0, 0.0), (0.0, 3.0)])

    def method(image1, image2):
        return np.broadcast_to(np.array(next(errors), np.float32), (4, 4, 2)) + current.pop(0)

    current = [s["flow"].permute(1, 2, 0).numpy() for s in samples]
    result = evaluate({"m": method}, samples)
    ps = result["methods"]["m"]["per_scale"]
    assert result["scales"] == [20, 10] and set(ps) == {"20", "10", "all"}
    assert ps["20"]["masked_epe"] == pytest.approx(1.0) and ps["10"]["masked_epe"] == pytest.approx(3.0)
    assert ps["all"]["masked_epe"] == pytest.approx((2 * 1 + 6 * 3) / 8)
    assert ps["all"]["official_epe"] == pytest.approx((16 / 2 + 48 / 6) / 2)  # per pair, then averaged (evaluate.py)
    table = markdown(result)
    assert "| m |" in table and "n=20 (1)" in table and "n=15 (0)" in table and "official-style" in table


def test_decflow_like_dict_gets_head_and_expression_epe():
    samples = [_sample(seed=i) for i in range(2)]
    fake = _GtPlus(samples, (0.0, 0.0), decflow=True, head_error=(0.6, 0.8))
    m = evaluate({"dec": fake}, samples)["methods"]["dec"]["all"]
    assert m["epe"] == pytest.approx(0.0, abs=1e-6)
    assert m["head_epe"] == pytest.approx(1.0, abs=1e-5) and m["head_masked_epe"] == pytest.approx(1.0, abs=1e-5)
    assert m["expression_epe"] == pytest.approx(1.0, abs=1e-5)  # facial exact, head off by 1 -> expression off by 1


def test_sparse_epe_at_point_tracks():
    s = _sample(points_t=torch.tensor([[2.0, 3.0], [5.5, 1.0]]), points_t1=torch.tensor([[2.0, 3.0], [5.5, 1.0]]))

    def method(image1, image2):
        return np.full((8, 10, 2), (3.0, 4.0), np.float32)  # every point moves 5 px too far

    m = evaluate({"m": method}, [s])["methods"]["m"]["all"]
    assert m["sparse_epe"] == pytest.approx(5.0) and m["sparse_points"] == 2


# ----------------------------------------------------------------------------- data sources


def test_plain_folder_layout_loads_and_other_folders_raise(tmp_path):
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        for k in (1, 2):
            Image.fromarray(rng.integers(0, 256, (6, 7, 3), dtype=np.uint8)).save(tmp_path / f"{name}_{k}.png")
        write_flo(tmp_path / f"{name}.flo", np.full((6, 7, 2), 0.5, np.float32))
    mask = np.zeros((6, 7), np.uint8)
    mask[:3] = 255
    Image.fromarray(mask).save(tmp_path / "a_mask.png")
    (tmp_path / "a_points.txt").write_text("1 2 1.5 2.5\n3 3 3.5 3.5\n")
    pairs = load_pairs(tmp_path)
    assert len(pairs) == 2
    a, b = pairs[0], pairs[1]
    assert a["image1"].shape == (3, 6, 7) and a["flow"].shape == (2, 6, 7) and a["scale"] is None
    assert a["mask"].sum() == 21 and "mask" not in b and a["points_t"].shape == (2, 2)
    m = evaluate({"zero": BASELINES["zero"]}, pairs)["methods"]["zero"]["all"]
    assert m["epe"] == pytest.approx(np.hypot(0.5, 0.5), abs=1e-6)
    assert m["sparse_epe"] == pytest.approx(np.hypot(0.5, 0.5))  # zero flow at points that moved (0.5, 0.5)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "readme.txt").write_text("not flow")
    with pytest.raises(ValueError, match="other"):
        load_pairs(tmp_path / "other")
    with pytest.raises(ValueError, match="no such folder"):
        load_pairs(tmp_path / "missing")


def test_ffn_layout_reads_scale_from_meta_or_pair_count(tmp_path):
    rng = np.random.default_rng(0)
    for seq, steps, meta in (("0000000", 2, 15), ("0000001", 4, None)):  # 4 pairs = 5 frames -> scale 5
        rel = f"test/happy/{seq}"
        for t in range(steps + 1):
            (tmp_path / "image/facial" / rel).mkdir(parents=True, exist_ok=True)
            frame = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
            Image.fromarray(frame).save(tmp_path / "image/facial" / rel / f"{t:04d}.png")
        for t in range(steps):
            for kind in ("facial", "head"):
                (tmp_path / "flow" / kind / rel).mkdir(parents=True, exist_ok=True)
                write_flo(tmp_path / "flow" / kind / rel / f"{t:04d}.flo", np.zeros((8, 8, 2), np.float32))
            (tmp_path / "mask" / rel).mkdir(parents=True, exist_ok=True)
            np.save(tmp_path / "mask" / rel / f"{t:04d}.npy", np.ones((8, 8), np.uint8))
        if meta is not None:
            (tmp_path / "meta/test/happy").mkdir(parents=True, exist_ok=True)
            (tmp_path / "meta/test/happy" / f"{seq}.json").write_text(json.dumps({"num_steps": meta}))
    pairs = load_pairs(tmp_path, split="test")
    assert len(pairs) == 6 and [p["scale"] for p in pairs] == [15, 15, 5, 5, 5, 5]
    assert len(load_pairs(tmp_path, split="test", pairs=3)) == 3
    result = evaluate({"zero": BASELINES["zero"]}, pairs)
    assert result["scales"] == [15, 5] and result["methods"]["zero"]["per_scale"]["15"]["pairs"] == 2


# ----------------------------------------------------------------------------- end to end


def test_end_to_end_random_raft_and_baselines_write_outputs(tmp_path):
    from pyflowops_models import create

    pairs = load_pairs("synthetic", pairs=3, size=64)
    assert pairs[0]["scale"] in (5, 10, 15, 20) and pairs[0]["sequence"].startswith("test/")
    methods = {"raft": create("raft", size="small"), "zero": BASELINES["zero"], "farneback": BASELINES["farneback"]}
    result = evaluate(methods, pairs, iters=2, worst=2, out_dir=tmp_path)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert set(saved["methods"]) == {"raft", "zero", "farneback"} and saved["pairs"] == 3
    for name in methods:
        m = saved["methods"][name]["all"]
        assert all(m[k] is not None for k in ("epe", "1px", "masked_epe", "official_epe"))
        assert m["official_epe"] >= m["masked_epe"] - 1e-9  # a whole-face mask is smaller than the image
        assert [w["panel"] for w in saved["methods"][name]["worst"]] == [f"worst_{name}_1.png", f"worst_{name}_2.png"]
        for k in (1, 2):
            panel = np.asarray(Image.open(tmp_path / f"worst_{name}_{k}.png"))
            assert panel.ndim == 3 and panel.shape[1] > 4 * 64
    assert "| farneback |" in (tmp_path / "results.md").read_text()
    assert result["methods"]["zero"]["all"]["epe"] == pytest.approx(saved["methods"]["zero"]["all"]["epe"])


def test_cli_handler_with_baselines_on_synthetic_pairs(capsys):
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    args = parser.parse_args(["eval", "--baselines", "zero,farneback", "--data", "synthetic", "--pairs", "2",
                              "--size", "64", "--quiet"])
    assert args.run(args) == 0
    out = capsys.readouterr().out
    assert "| zero |" in out and "| farneback |" in out and "masked EPE" in out and "n=20" in out


def test_cli_errors_are_one_line(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    args = parser.parse_args(["eval", "--data", "synthetic"])
    assert args.run(args) == 2 and "nothing to evaluate" in capsys.readouterr().err
    args = parser.parse_args(["eval", "--baselines", "zero", "--data", str(tmp_path)])
    assert args.run(args) == 2 and str(tmp_path) in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parser.parse_args(["eval", "--baselines", "zero,bogus", "--data", "synthetic"])
