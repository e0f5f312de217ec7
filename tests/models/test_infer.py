"""``pyflowops infer`` and models/infer.py: files written for pairs and videos, input problems, high resolution."""

import argparse
import warnings

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from PIL import Image
from pyflowops.flow.io import read_flo
from pyflowops.nn import AlternateCorrBlock, CorrBlock

from pyflowops_models import cli_infer, create
from pyflowops_models.correlation import make_corr_block
from pyflowops_models.infer import InputError, flow_pair, infer_video, load_image, needs_onthefly

KINDS = ("facial", "head", "expression")


def _small(name, **options):
    torch.manual_seed(0)
    with warnings.catch_warnings():  # DecFlow's random semantic encoder warning
        warnings.simplefilter("ignore", UserWarning)
        return create(name, size="small", **options).eval()


@pytest.fixture(scope="module")
def raft():
    return _small("raft")


@pytest.fixture(scope="module")
def decflow():
    return _small("decflow")


def _texture(height, width, seed=0, shift=0):
    """A smooth RGB uint8 [H, W, 3] pattern, shifted ``shift`` px to the right."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    x = x - shift
    rng = np.random.default_rng(seed)
    f = rng.uniform(0.1, 0.4, size=(3, 2))
    chans = [127 + 100 * np.sin(f[c, 0] * x + 1.3 * c) * np.cos(f[c, 1] * y) for c in range(3)]
    return np.clip(np.stack(chans, -1), 0, 255).astype(np.uint8)


def _save(path, array, mode=None):
    Image.fromarray(array, mode=mode).save(path) if mode else Image.fromarray(array).save(path)
    return str(path)


def _cli(argv, model, monkeypatch):
    """Parse ``infer`` + argv with a parser built by add_parser and run it with ``model``."""
    monkeypatch.setattr(cli_infer, "load_model", lambda spec: (model, f"test model for {spec}"))
    parser = argparse.ArgumentParser(prog="pyflowops")
    cli_infer.add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["infer", *argv, "--model", "x", "--iters", "2", "--quiet"])
    return args.run(args)


@pytest.fixture
def pair(tmp_path):
    return _save(tmp_path / "a.png", _texture(64, 64)), _save(tmp_path / "b.png", _texture(64, 64, shift=2))


def test_raft_pair_writes_facial_files(pair, raft, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    assert _cli([*pair, "--out", str(out)], raft, monkeypatch) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["pair_facial.flo", "pair_facial.png", "pair_panel.png"]
    assert read_flo(out / "pair_facial.flo").shape == (64, 64, 2)
    assert np.asarray(Image.open(out / "pair_facial.png")).shape == (64, 64, 3)
    assert str(out) in capsys.readouterr().out  # says where the files are


def test_decflow_pair_writes_three_kinds(tmp_path, decflow, monkeypatch):
    a = _save(tmp_path / "a.png", _texture(56, 72))
    b = _save(tmp_path / "b.png", _texture(56, 72, shift=1))
    out = tmp_path / "out"
    assert _cli([a, b, "--out", str(out), "--name", "x"], decflow, monkeypatch) == 0
    expected = {f"x_{k}.{e}" for k in KINDS for e in ("flo", "png")} | {"x_panel.png"}
    assert {p.name for p in out.iterdir()} == expected
    flows = {k: read_flo(out / f"x_{k}.flo") for k in KINDS}
    assert all(f.shape == (56, 72, 2) for f in flows.values())
    np.testing.assert_allclose(flows["expression"], flows["facial"] - flows["head"], atol=1e-4)
    panel = np.asarray(Image.open(out / "x_panel.png"))
    assert panel.shape[1] > 4 * 72  # image + three flows side by side


def test_grey_rgba_and_16bit_images_load_as_rgb8(tmp_path):
    rgb = _texture(20, 24)
    grey = _save(tmp_path / "grey.png", rgb[:, :, 0], mode="L")
    rgba = _save(tmp_path / "rgba.png", np.dstack([rgb, np.full((20, 24), 128, np.uint8)]))
    grey16 = tmp_path / "grey16.png"
    iio.imwrite(grey16, rgb[:, :, 0].astype(np.uint16) * 257)
    notes = []
    g = load_image(grey, notes)
    assert g.shape == (20, 24, 3) and g.dtype == np.uint8 and (g == rgb[:, :, :1]).all()
    assert np.array_equal(load_image(rgba, notes), rgb)
    assert np.array_equal(load_image(grey16, notes)[:, :, 0], rgb[:, :, 0])
    text = "\n".join(notes)
    assert "copied to 3 channels" in text and "alpha channel dropped" in text and "16-bit" in text


def test_grey_and_rgba_pair_through_the_command(tmp_path, raft, monkeypatch, capsys):
    rgb = _texture(64, 64)
    grey = _save(tmp_path / "grey.png", rgb[:, :, 1], mode="L")
    rgba = _save(tmp_path / "rgba.png", np.dstack([_texture(64, 64, shift=1), np.full((64, 64), 255, np.uint8)]))
    assert _cli([grey, rgba, "--out", str(tmp_path / "o")], raft, monkeypatch) == 0
    err = capsys.readouterr().err
    assert "grey image" in err and "alpha channel dropped" in err
    assert read_flo(tmp_path / "o" / "pair_facial.flo").shape == (64, 64, 2)


def _bad_inputs(tmp_path):
    good = _save(tmp_path / "good.png", _texture(64, 64))
    other = _save(tmp_path / "other.png", _texture(56, 72))
    tiny = _save(tmp_path / "tiny.png", _texture(1, 1))
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"this is not a PNG file\n" * 10)
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes((tmp_path / "good.png").read_bytes()[:200])
    return {
        "sizes": ([good, other], ["64x64", "72x56", "differ in size"]),
        "one_pixel": ([tiny, tiny], ["1x1", "too small", "8x8"]),
        "unreadable": ([good, str(junk)], ["junk.png", "not an image"]),
        "truncated": ([str(truncated), good], ["truncated.png", "cannot read"]),
        "missing": ([good, str(tmp_path / "nope.png")], ["nope.png", "no such file"]),
        "folder": ([good, str(tmp_path)], ["is a folder"]),
        "missing_video": (["--video", str(tmp_path / "nope.mp4")], ["nope.mp4", "no such video"]),
        "video_folder": (["--video", str(tmp_path)], ["is a folder"]),
        "one_image": ([good], ["two images"]),
        "images_and_video": ([good, good, "--video", good], ["not both"]),
        "not_a_video": (["--video", str(junk)], ["junk.png", "cannot read"]),
        "bad_device": ([good, good, "--device", "floppy"], ["--device floppy"]),
    }


BAD_CASES = ["sizes", "one_pixel", "unreadable", "truncated", "missing", "folder", "missing_video", "video_folder",
             "one_image", "images_and_video", "not_a_video", "bad_device"]


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_input_gives_one_line_and_status_2(case, tmp_path, raft, monkeypatch, capsys):
    argv, words = _bad_inputs(tmp_path)[case]
    assert _cli([*argv, "--out", str(tmp_path / "out")], raft, monkeypatch) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pyflowops infer: "), captured.err
    assert "Traceback" not in captured.err and captured.out == ""
    for word in words:
        assert word in lines[0], lines[0]


def test_flow_pair_checks_sizes_directly(raft):
    with pytest.raises(InputError, match="64x64 and 72x56"):
        flow_pair(raft, _texture(64, 64), _texture(56, 72))
    with pytest.raises(InputError, match="too small"):
        flow_pair(raft, _texture(1, 1), _texture(1, 1))
    with pytest.raises(InputError, match="no such file"):
        load_image("/nonexistent/a.png")
    assert issubclass(InputError, ValueError)


def _gif(path, frames=4, size=(56, 64)):
    iio.imwrite(path, np.stack([_texture(*size, shift=2 * k) for k in range(frames)]), duration=100, loop=0)
    return str(path)


@pytest.mark.parametrize("every, starts", [(1, [0, 1, 2]), (2, [0]), (3, [0]), (4, None)])
def test_video_pairs_every_n(every, starts, tmp_path, raft, monkeypatch, capsys):
    gif = _gif(tmp_path / "face.gif")
    out = tmp_path / "out"
    rc = _cli(["--video", gif, "--out", str(out), "--every", str(every)], raft, monkeypatch)
    if starts is None:  # frames 0 and 4: the 4-frame GIF has only one sampled frame
        assert rc == 2 and "only one frame" in capsys.readouterr().err
        return
    assert rc == 0
    flos = sorted(p.name for p in out.glob("*.flo"))
    assert flos == [f"frame_{k:06d}_facial.flo" for k in starts]
    assert len(list(out.glob("*_panel.png"))) == len(starts)
    assert read_flo(out / flos[0]).shape == (56, 64, 2)
    assert f"{len(starts)} pairs" in capsys.readouterr().out


def test_infer_video_decflow_returns_pair_count(tmp_path, decflow):
    gif = _gif(tmp_path / "v.gif", frames=3, size=(64, 64))
    assert infer_video(decflow, gif, tmp_path / "o", every=1, iters=1, progress=False) == 2
    assert {p.name for p in (tmp_path / "o").glob("frame_000001_*")} == {
        f"frame_000001_{k}.{e}" for k in KINDS for e in ("flo", "png")
    } | {"frame_000001_panel.png"}


def test_high_resolution_switches_allpairs_model_to_onthefly():
    # A tiny corr_memory_budget makes a 64x64 pair "high resolution" for this model.
    used = []

    def recording_block(fmap1, fmap2, mode, *args):
        block = make_corr_block(fmap1, fmap2, mode, *args)
        used.append((mode, type(block)))
        return block

    model = _small("raft", corr="allpairs", corr_memory_budget=1024, corr_block=recording_block)
    image = _texture(64, 64)
    assert needs_onthefly(model, 64, 64)
    flow_pair(model, image, image, iters=1)
    assert used == [("auto", AlternateCorrBlock)]
    assert model.corr == "allpairs"  # restored afterwards

    roomy = _small("raft", corr="allpairs", corr_block=recording_block)  # default budget: 2 GiB
    assert not needs_onthefly(roomy, 64, 64) and not needs_onthefly(roomy, 512, 512)
    assert needs_onthefly(roomy, 2048, 2048)  # the all-pairs pyramid there is ~21 GiB
    flow_pair(roomy, image, image, iters=1)
    assert used[-1] == ("allpairs", CorrBlock)


def test_amp_on_cpu_returns_float32(raft):
    flows = flow_pair(raft, _texture(64, 64), _texture(64, 64, shift=1), iters=1, amp=True)
    assert flows["facial"].dtype == np.float32 and flows["facial"].shape == (64, 64, 2)


def test_load_model_names_and_missing_checkpoint(tmp_path):
    model, what = cli_infer.load_model("raft:small")
    assert model.config.small and "RANDOM" in what
    with pytest.raises(ValueError, match="no such checkpoint"):
        cli_infer.load_model(str(tmp_path / "missing.pt"))
    with pytest.raises(ValueError, match="no such checkpoint"):
        cli_infer.load_model("raft:tiny")


def test_load_model_takes_bundled_weights():
    model, what = cli_infer.load_model("bundled:decflow_small_generic")
    assert type(model).__name__ == "DecFlow" and what == "model from bundled:decflow_small_generic"
    with pytest.raises(ValueError, match=r"--model bundled:nope: unknown bundled weights 'nope'"):
        cli_infer.load_model("bundled:nope")
