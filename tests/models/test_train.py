"""The trainer: configs, loss going down for every model, DecFlow stage 2, exact resume, torchrun.

Everything runs tiny: size-small models, 64x64 rendered pairs (cached), batch 2, 2 iterations.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch

import pyflowops_models
from pyflowops_models.train import checkpoint as ckpt
from pyflowops_models.train import config_names, load_config, train
from pyflowops_models.train.trainer import state_hash

TINY = ["model.size=small", "data.image_size=64", "data.crop=null", "data.crop_shift=0", "data.length=4", "data.cache=true",
        "data.val_length=1", "data.val_batch_size=1", "optim.batch_size=2", "optim.iters=2",
        "train.num_workers=0", "train.val_every=0", "train.log_every=1", "train.checkpoint_every=1000"]
CONFIGS = {"raft": "raft_cpu_small", "gma": "gma_cpu_small", "decflow": "decflow_cpu_small",
           "srflownet": "srflownet_cpu_small", "decflow_pretrain": "decflow_pretrain_cpu_small"}


def _env() -> dict:
    # one thread in every process: the same reduction order, so runs in different processes are bit-equal
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def _cli(config: str, out: Path, steps: int, extra: list[str]) -> list[str]:
    sets = [a for o in TINY + extra for a in ("--set", o)]
    return ["-m", "pyflowops_models.train", "--config", config, "--out", str(out), "--steps", str(steps),
            "--quiet", *sets]


def _train(config: str, out: Path, extra: list[str] = (), **kw) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # DecFlow's untrained semantic encoder
        return train(load_config(config, TINY + list(extra)), out, progress=False, **kw)


# ------------------------------------------------------------------------------------------------- config
def test_bundled_configs_load_and_decflow_matches_the_paper():
    names = config_names()
    for base in ("decflow_stage1", "decflow_stage2", "srflownet", "gma", "raft"):
        assert base in names
    assert {"decflow_cpu_small", "gma_cpu_small", "raft_cpu_small", "srflownet_cpu_small",
            "decflow_pretrain_cpu_small"} <= set(names)
    for name in names:
        load_config(name)
    c = load_config("decflow_stage1")
    o = c.optim
    assert (o.steps, o.lr, o.eps, o.weight_decay, o.extra_schedule_steps, o.pct_start) == (
        10000, 1.25e-4, 1e-8, 1e-5, 100, 0.05)
    assert (o.clip, o.gamma, o.batch_size, o.iters, o.amp, c.data.crop, c.train.seed) == (
        1.0, 0.85, 6, 12, "bf16", [480, 480], 1234)
    assert load_config("decflow_stage2").train.stage == 2 and load_config("decflow_cpu_small").model.size == "small"


def test_overrides_follow_yaml_scalar_rules():
    c = load_config("gma_cpu_small", ["optim.lr=1e-4", "data.crop=[64, 48]", "train.init=null", "optim.amp=off",
                                      "model.options.dropout=0.1", "data.cache=true", "optim.steps=7"])
    assert c.optim.lr == 1e-4 and isinstance(c.optim.lr, float)
    assert c.data.crop == [64, 48] and c.train.init is None and c.optim.amp == "off"
    assert c.model.options == {"dropout": 0.1} and c.data.cache is True and c.optim.steps == 7


@pytest.mark.parametrize("override, message", [
    ("optim.lrr=1", r"unknown key optim\.'lrr'.*valid keys of optim: lr, weight_decay"),
    ("optimizer.lr=1", r"unknown key 'optimizer'.*model, data, optim, train"),
    ("optim.steps=many", r"optim\.steps must be an integer"),
    ("optim.amp=fp8", r"optim\.amp must be one of"),
    ("lr=1", r"section\.field"),
    ("data.motion_scales=[0, 5]", r"data\.motion_scales must be null or a list"),
])
def test_bad_overrides_are_named(override, message):
    with pytest.raises(ValueError, match=message):
        load_config("raft_cpu_small", [override])


def test_unknown_key_in_a_file_is_named(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model: {name: raft, sise: small}\n")
    with pytest.raises(ValueError, match=r"model\.'sise'.*name, size, corr, options"):
        load_config(str(path))
    with pytest.raises(FileNotFoundError, match="bundled: .*decflow_stage1"):
        load_config("no_such_config")


# -------------------------------------------------------------------------------------------------- train
@pytest.mark.parametrize("name", list(CONFIGS))
def test_a_few_steps_lower_the_loss(name, tmp_path):
    # Two fixed pairs, one batch: the loss of overfitting them must fall.
    result = _train(CONFIGS[name], tmp_path, ["data.length=2", "optim.steps=10", "optim.lr=2e-3",
                                              "optim.extra_schedule_steps=1", "optim.pct_start=0.2"])
    losses = result["losses"]
    assert len(losses) == 10 and all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-3:]) / 3 < 0.8 * sum(losses[:3]) / 3, losses
    assert result["val"]["epe"] >= 0 and "zero_masked_epe" in result["val"]
    assert (tmp_path / "checkpoints" / "step_000010.pt").is_file() and any((tmp_path / "tb").iterdir())


def test_stage2_trains_only_the_head_decoder_and_change_dim(tmp_path):
    _train("decflow_cpu_small", tmp_path / "s1", ["optim.steps=1"])
    before = torch.load(ckpt.latest(tmp_path / "s1"), weights_only=True)["model"]
    _train("decflow_stage2_cpu_small", tmp_path / "s2", ["optim.steps=2", f"train.init={tmp_path / 's1'}",
                                                         "optim.lr=1e-3"])
    after = pyflowops_models.load(tmp_path / "s2").state_dict()
    assert before.keys() == after.keys()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith(("update_block_head.", "change_dim.")) for k in changed), sorted(changed)
    assert any(k.startswith("change_dim.") for k in changed) and any(k.startswith("update_block_head.") for k in changed)


def test_stage0_pretrains_the_face_parts_encoder_that_decflow_then_loads(tmp_path):
    result = _train("decflow_cpu_small", tmp_path, ["train.stage=0", "train.init=null", "model.options={}",
                                                    "optim.steps=6", "optim.lr=3e-3", "data.length=2"])
    assert sum(result["losses"][-2:]) < sum(result["losses"][:2]) and 0 <= result["val"]["accuracy"] <= 1
    encoder = pyflowops_models.load(tmp_path)
    assert type(encoder).__name__ == "FacePartsEncoder" and not encoder.training
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # with weights: no untrained-semantic warning
        model = pyflowops_models.create("decflow", size="small", semantic_weights=str(tmp_path))
    assert torch.equal(model.semantic_encoder.head.weight, encoder.head.weight)


# ------------------------------------------------------------------------------------ checkpoints, resume
def test_killed_run_resumes_bit_exactly(tmp_path):
    steps, extra = 12, ["train.checkpoint_every=2", "train.val_every=5", "train.keep_last=2"]
    full = subprocess.run([sys.executable, *_cli("decflow_cpu_small", tmp_path / "full", steps, extra)],
                          env=_env(), capture_output=True, text=True, timeout=120)
    assert full.returncode == 0, full.stderr[-2000:]
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, *_cli("decflow_cpu_small", killed, steps, extra)], env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 90
    while not ckpt.checkpoints(killed) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    stopped_at = ckpt.checkpoints(killed)[-1][0]
    assert stopped_at < steps
    resumed = subprocess.run([sys.executable, *_cli("decflow_cpu_small", killed, steps, extra), "--resume"],
                             env=_env(), capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a = torch.load(ckpt.latest(tmp_path / "full"), weights_only=True)
    b = torch.load(ckpt.latest(killed), weights_only=True)
    assert a["step"] == b["step"] == steps
    assert state_hash(a["model"]) == state_hash(b["model"])
    for key, value in a["optimizer"]["state"].items():
        assert all(torch.equal(value[k], b["optimizer"]["state"][key][k]) for k in value)
    assert a["scheduler"]["last_epoch"] == b["scheduler"]["last_epoch"]
    assert len(ckpt.checkpoints(killed)) == 2  # keep_last


def test_truncated_checkpoint_is_reported_and_the_previous_one_used(tmp_path):
    extra = ["train.checkpoint_every=2"]
    reference = _train("raft_cpu_small", tmp_path / "ref", extra + ["optim.steps=6"])
    run = tmp_path / "run"
    _train("raft_cpu_small", run, extra + ["optim.steps=6"])
    newest = ckpt.checkpoint_path(run, 6)
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    with pytest.warns(UserWarning, match=r"step_000006\.pt \(step 6\) is unreadable, truncated or corrupt"):
        assert ckpt.latest(run) == ckpt.checkpoint_path(run, 4)
    with pytest.warns(UserWarning, match="step_000006.pt"):
        resumed = train(load_config("raft_cpu_small", TINY + extra + ["optim.steps=6"]), run, resume=True,
                        progress=False)
    assert resumed["losses"] and len(resumed["losses"]) == 2  # steps 5 and 6 again
    assert resumed["weights_sha256"] == reference["weights_sha256"]


def test_save_is_atomic_and_leaves_no_temporary_file(tmp_path):
    path = ckpt.save(tmp_path / "checkpoints" / "step_000001.pt", {"model": {"w": torch.ones(2)}, "step": 1})
    assert [p.name for p in path.parent.iterdir()] == ["step_000001.pt"]
    (path.parent / ".step_000002.pt.abc.tmp").write_bytes(b"partial")  # a writer killed mid-way
    assert ckpt.latest(tmp_path) == path
    ckpt.prune(tmp_path, keep_last=1)
    assert [p.name for p in path.parent.iterdir()] == ["step_000001.pt"]


def test_load_returns_an_eval_model_from_a_run_dir_or_file(tmp_path):
    _train("gma_cpu_small", tmp_path, ["optim.steps=1"])
    model = pyflowops_models.load(tmp_path)
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    flow = model(torch.rand(1, 3, 64, 64) * 255, torch.rand(1, 3, 64, 64) * 255, iters=2)
    assert flow.shape == (1, 2, 64, 64)
    assert not pyflowops_models.load(ckpt.latest(tmp_path)).training
    with pytest.raises(FileNotFoundError, match="no readable checkpoint"):
        pyflowops_models.load(tmp_path / "tb")


# ------------------------------------------------------------------------------------------ command line
def test_pyflowops_train_command(tmp_path, capsys):
    from pyflowops_models.cli import main

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sets = [a for o in TINY for a in ("--set", o)]
        assert main(["train", "--config", "raft_cpu_small", "--out", str(tmp_path), "--steps", "2",
                     "--checkpoint-every", "1", "--quiet", *sets]) == 0
    assert '"step": 2' in capsys.readouterr().out
    assert [s for s, _ in ckpt.checkpoints(tmp_path)] == [1, 2]
    assert main(["train", "--config", "raft_cpu_small", "--out", str(tmp_path), "--set", "optim.bogus=1"]) == 2
    assert "unknown key optim.'bogus'" in capsys.readouterr().err


def test_torchrun_two_cpu_processes_keep_identical_weights(tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           *_cli("decflow_cpu_small", tmp_path, 3, ["train.checkpoint_every=2"])]
    done = subprocess.run(cmd, env={**_env(), "PYFLOWOPS_TRAIN_DUMP_HASH": "1"}, capture_output=True, text=True,
                          timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    rank0 = (tmp_path / "weights_rank0.sha256").read_text().strip()
    rank1 = (tmp_path / "weights_rank1.sha256").read_text().strip()
    assert rank0 == rank1
    state = torch.load(ckpt.latest(tmp_path), weights_only=True)
    assert state["step"] == 3 and state["world_size"] == 2 and state_hash(state["model"]) == rank0


# ------------------------------------------------------------------------------------------------- curves
def test_run_draws_its_curves_and_stages_chain(tmp_path):
    from pyflowops_models.train.curves import plot_curves, read_metrics

    calls = []

    def factory(cfg):  # the benchmarks' hook: the same recipe on another build of the network
        calls.append(cfg.model.name)
        return pyflowops_models.create(cfg.model.name, cfg.model.size, cfg.model.corr)

    _train("raft_cpu_small", tmp_path / "a", ["optim.steps=3", "train.val_every=1"], model_factory=factory)
    assert calls == ["raft"]
    assert (tmp_path / "a" / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with open(tmp_path / "a" / "metrics.jsonl", "a") as f:  # a resumed run logs steps again; a killed one cuts a line
        f.write('{"step": 3, "split": "train", "loss": 0.5, "lr": 0.0}\n{"step": 4, "spl')
    train_records, val_records = read_metrics(tmp_path / "a")
    assert [r["step"] for r in train_records] == [1, 2, 3] and train_records[-1]["loss"] == 0.5
    assert [r["step"] for r in val_records] == [1, 2, 3] and "zero_masked_epe" in val_records[0]
    out = plot_curves([tmp_path / "a", tmp_path / "a"], tmp_path / "both.png", labels=["stage 1", "stage 2"],
                      references={"Farneback": 1.0})
    assert out.stat().st_size > 10_000
    with pytest.raises(FileNotFoundError, match="no metrics.jsonl"):
        read_metrics(tmp_path)


def test_crop_shift_moves_image2_and_the_flow_together():
    from pyflowops_models.train.trainer import _Pairs

    class Moving(torch.utils.data.Dataset):  # image 2 = image 1 moved by (+3, -2) px: flow (3, -2) everywhere
        def __len__(self):
            return 1

        def __getitem__(self, i):
            image1 = torch.rand(3, 40, 48, generator=torch.Generator().manual_seed(0)) * 255
            flow = torch.tensor([3.0, -2.0]).view(2, 1, 1).expand(2, 40, 48).clone()
            return {"image1": image1, "image2": torch.roll(image1, (-2, 3), (1, 2)), "flow": flow,
                    "flow_head": flow.clone(), "mask": torch.ones(40, 48)}

    pairs = _Pairs(Moving(), [24, 24], augment=False, cache=False, crop_shift=5)
    offsets = set()
    for seed in range(6):
        s = pairs[(0, seed)]
        fx, fy = int(s["flow"][0, 0, 0]), int(s["flow"][1, 0, 0])
        assert torch.equal(s["flow"], s["flow_head"]) and (s["flow"] == s["flow"][:, :1, :1]).all()
        offsets.add((fx - 3, fy + 2))
        # every pixel of crop 1 is found in crop 2 where the flow says (inside crop 2)
        for y, x in ((5, 7), (12, 12), (18, 3)):
            if 0 <= y + fy < 24 and 0 <= x + fx < 24:
                assert torch.equal(s["image2"][:, y + fy, x + fx], s["image1"][:, y, x])
    assert len(offsets) > 1 and all(abs(dx) <= 5 and abs(dy) <= 5 for dx, dy in offsets)
    with pytest.raises(ValueError, match="crop_shift"):
        load_config("decflow_cpu_small", ["data.crop_shift=4", "data.augment=true"])
    with pytest.raises(ValueError, match="larger than the images"):
        _Pairs(Moving(), [24, 40], augment=False, cache=False, crop_shift=5)[(0, 1)]
