"""The main job on built-in data: ``python -m pyflowops_models.demo [--fast] [--out demo]`` (``make demo``).

1. generate a small synthetic facial-flow set (``synthesize``, FacialFlowNet layout, 256x256);
2. train DecFlow from the shipped generic-motion weights (``bundled:decflow_small_generic``:
   ``decflow_pretrain_cpu_small`` on photos under random motions, how long is in
   :mod:`pyflowops_models.weights`; they stand in for the GMA weights the paper starts from):
   ``decflow_cpu_small`` (stage 1: both decoders, on the faces), then ``decflow_stage2_cpu_small``
   (stage 2: the head decoder alone);
3. evaluate the trained model and the classical baselines (zero flow, OpenCV Farneback and DIS,
   scikit-image TV-L1) on held-out pairs rendered on the fly (other sequences, another seed);
4. run inference on one held-out pair (facial, head and expression flow);
5. write ``REPORT.md`` (the table, the pictures, the timings) and ``model.pt`` (the trained
   weights and config, loadable with ``pyflowops_models.load``).

Every step resumes: a second run reuses the data and the finished training runs and only
re-evaluates. ``--fast`` (``DEMO_FAST=1 make demo``, what CI runs) is the same pipeline on
a few 80x80 pairs and steps: it checks the plumbing, its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DemoPlan", "FULL", "FAST", "run_demo", "main"]


@dataclass(frozen=True)
class DemoPlan:
    """How big the demo is."""

    sequences: int  # synthetic training sequences (5-20 pairs each)
    size: int  # image side in pixels
    crop: int  # training crops (crop x crop) of those images
    stage1_steps: int
    stage2_steps: int
    val_every: int  # validation (16 held-out pairs) every this many steps
    eval_pairs: int  # held-out pairs of the final evaluation
    eval_iters: int  # refinement iterations at evaluation
    baselines: tuple[str, ...] = ("zero", "farneback", "dis", "tvl1")


FULL = DemoPlan(sequences=32, size=256, crop=128, stage1_steps=1000, stage2_steps=100,
                val_every=200, eval_pairs=24, eval_iters=12)
FAST = DemoPlan(sequences=2, size=80, crop=64, stage1_steps=4, stage2_steps=2, val_every=2,
                eval_pairs=3, eval_iters=2)
HELD_OUT_SEED, HELD_OUT_FIRST = 1, 1_000_000  # held-out pairs: another seed, far-away sequence indices
GENERIC_WEIGHTS = "bundled:decflow_small_generic"  # stage 1 starts here (pyflowops_models.weights)


def _say(message: str) -> None:
    print(f"pyflowops demo: {message}", flush=True)


def _train_stage(config: str, run_dir: Path, data: Path | str, plan: DemoPlan, steps: int, extra: list[str],
                 progress: bool) -> dict:
    from .train import load_config, train

    cfg = load_config(config, [
        f"data.source={data}", "data.val_source=rendered", f"data.image_size={plan.size}", "data.cache=true",
        f"data.crop=[{plan.crop}, {plan.crop}]",
        "train.num_workers=0",
        f"optim.steps={steps}", f"train.val_every={plan.val_every}", f"train.checkpoint_every={plan.val_every}",
        f"data.val_length={min(16, plan.eval_pairs * 4)}", *extra])
    with warnings.catch_warnings():  # stage 1 from scratch: the semantic encoder's random-weights warning
        warnings.filterwarnings("ignore", message="DecFlow: the .* semantic encoder has random weights")
        return train(cfg, run_dir, resume=True, progress=progress)


def _export(run_dir: Path, path: Path) -> Path:
    """``path``: the newest checkpoint's weights, config, step and validation, without optimizer state."""
    from .train import checkpoint as ckpt

    _, state = ckpt.load_latest(run_dir)
    keep = {k: state[k] for k in ("format", "step", "model", "config", "val") if k in state}
    return ckpt.save(path, keep)


def _infer_one(model, sample: dict, out: Path, iters: int) -> Path:
    from .infer import flow_pair, write_outputs

    image1, image2 = (sample[k].round().clamp(0, 255).byte().permute(1, 2, 0).numpy() for k in ("image1", "image2"))
    flows = flow_pair(model, image1, image2, iters=iters)
    written = write_outputs(out, "pair", flows, image1)
    return written[-1]  # the panel


def _verdict(result: dict, model_name: str) -> list[str]:
    """One line per baseline: does the model beat it in masked facial EPE on these pairs?"""
    methods = result["methods"]
    mine = methods[model_name]["all"]["masked_epe"]
    lines = []
    for name, entry in methods.items():
        if name == model_name:
            continue
        theirs = entry["all"]["masked_epe"]
        word = "beats" if mine < theirs else "does NOT beat"
        lines.append(f"- {model_name} ({mine:.3f} px) {word} {name} ({theirs:.3f} px) in masked facial EPE")
    return lines


def _forget_other_plan(out: Path, plan: DemoPlan) -> None:
    """Reuse ``out`` only when it was made with the same plan (a --fast run's data is not the full demo's)."""
    record, wanted = out / "plan.json", json.dumps(plan.__dict__, sort_keys=True, default=list)
    if record.is_file() and record.read_text() != wanted:
        _say(f"{out} was made with another plan (--fast or not): starting its data and training afresh")
        for name in ("data", "runs"):
            shutil.rmtree(out / name, ignore_errors=True)
    record.write_text(wanted)


def run_demo(out: str | Path = "demo", plan: DemoPlan = FULL, progress: bool = True) -> Path:
    """Run the whole demo into ``out``; returns the path of ``REPORT.md``.

    Writes ``out/data`` (training set), ``out/runs/{stage1,stage2}`` (run directories),
    ``out/eval`` (results.md / .json, worst-pair panels), ``out/infer`` (one pair's flows),
    ``out/curves.png``, ``out/model.pt`` and ``out/REPORT.md``.
    """
    import torch

    from . import load
    from .baselines import BASELINES
    from .data.dataset import FacialFlowDataset
    from .data.writer import synthesize
    from .evaluate import evaluate, load_pairs, markdown
    from .train import load_config
    from .train.curves import plot_curves

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _forget_other_plan(out, plan)
    torch.manual_seed(0)
    times: dict[str, float] = {}

    began = time.perf_counter()
    _say(f"1/5 synthetic training set: {plan.sequences} sequences at {plan.size}x{plan.size} -> {out / 'data'}")
    scales = load_config("decflow_cpu_small").data.motion_scales  # the recipe's motion, on disk
    synthesize(out / "data", plan.sequences, size=plan.size, workers=2, seed=0, progress=progress,
               **({"motion_scales": tuple(scales)} if scales else {}))
    times["data"] = time.perf_counter() - began
    train_pairs = len(FacialFlowDataset(out / "data", "train"))

    began = time.perf_counter()
    _say(f"2/5 training DecFlow from {GENERIC_WEIGHTS}: stage 1 ({plan.stage1_steps} steps), then stage 2 "
         f"({plan.stage2_steps} steps)")
    stage1 = _train_stage("decflow_cpu_small", out / "runs" / "stage1", out / "data", plan, plan.stage1_steps,
                          [f"train.init={GENERIC_WEIGHTS}"], progress)
    stage2 = _train_stage("decflow_stage2_cpu_small", out / "runs" / "stage2", out / "data", plan,
                          plan.stage2_steps, [f"train.init={out / 'runs' / 'stage1'}"], progress)
    model_path = _export(out / "runs" / "stage2", out / "model.pt")
    times["training"] = time.perf_counter() - began

    began = time.perf_counter()
    _say(f"3/5 evaluating on {plan.eval_pairs} held-out pairs with the baselines {', '.join(plan.baselines)}")
    model = load(model_path)
    pairs = load_pairs("synthetic", split="test", pairs=plan.eval_pairs, size=plan.size, seed=HELD_OUT_SEED,
                       first_index=HELD_OUT_FIRST)
    methods = {"DecFlow (demo)": model, **{name: BASELINES[name] for name in plan.baselines}}
    result = evaluate(methods, pairs, iters=plan.eval_iters, worst=2, out_dir=out / "eval", progress=progress)
    times["evaluation"] = time.perf_counter() - began

    began = time.perf_counter()
    _say("4/5 inference on one held-out pair")
    panel = _infer_one(model, pairs[0], out / "infer", plan.eval_iters)
    times["inference"] = time.perf_counter() - began

    _say("5/5 report")
    references = {name: result["methods"][name]["all"]["masked_epe"] for name in ("farneback", "dis")
                  if name in result["methods"]}
    curves = plot_curves([out / "runs" / "stage1", out / "runs" / "stage2"], out / "curves.png",
                         labels=["stage 1", "stage 2"], references=references,
                         title="DecFlow (decflow_cpu_small): training and validation")
    worst = result["methods"]["DecFlow (demo)"]["worst"]
    lines = [
        "# pyflowops demo: DecFlow trained on synthetic faces, against the classical methods",
        "",
        f"Training set: {plan.sequences} synthetic sequences at {plan.size}x{plan.size}"
        f" ({train_pairs} pairs) in `{out / 'data'}`. "
        f"DecFlow (size small) from the shipped weights `{GENERIC_WEIGHTS}` "
        f"(`decflow_pretrain_cpu_small` on generic motion: photos under random affine motions; how long: "
        f"`pyflowops_models/weights/__init__.py`), trained "
        f"{stage1['step']} steps (stage 1, both decoders) then "
        f"{stage2['step']} steps (stage 2, the head decoder) with the `decflow_cpu_small` recipes; "
        f"evaluated with {plan.eval_iters} iterations on {result['pairs']} held-out pairs rendered on the fly "
        f"(seed {HELD_OUT_SEED}, sequences {HELD_OUT_FIRST}.., never seen in training).",
        "",
        *_verdict(result, "DecFlow (demo)"),
        "",
        markdown(result),
        "## Training curves",
        "",
        f"![curves]({curves.relative_to(out)})",
        "",
        "## One held-out pair: image 1, facial, head and expression flow",
        "",
        f"![inference]({panel.relative_to(out)})",
        "",
        "## The model's worst held-out pairs",
        "",
        *[f"![worst {k + 1}](eval/{w['panel']})" for k, w in enumerate(worst) if w.get("panel")],
        "",
        "## Files and timings",
        "",
        f"- `{model_path}`: the trained model (`pyflowops_models.load(\"{model_path}\")`)",
        f"- `{out / 'runs'}`: the two training runs (TensorBoard logs in `tb/`, checkpoints, `metrics.jsonl`)",
        f"- `{out / 'eval'}`: results.md, results.json and worst-pair panels",
        "- seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in times.items()),
        f"- training steps/s (data loading included): stage 1 {stage1['steps_per_s']:.2f}, "
        f"stage 2 {stage2['steps_per_s']:.2f} (0 steps when a finished run was reused)",
        "",
    ]
    path = out / "REPORT.md"
    path.write_text("\n".join(lines))
    (out / "summary.json").write_text(json.dumps({"times_s": times, "init": GENERIC_WEIGHTS,
                                                  "stage1_step": stage1["step"],
                                                  "stage2_step": stage2["step"],
                                                  "masked_epe": {k: v["all"]["masked_epe"]
                                                                 for k, v in result["methods"].items()}}, indent=2))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pyflowops_models.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="demo", help="output folder (default demo/)")
    parser.add_argument("--fast", action="store_true", default=os.environ.get("DEMO_FAST") == "1",
                        help="a few tiny pairs and steps (the default when DEMO_FAST=1): checks the plumbing only")
    parser.add_argument("--fresh", action="store_true", help="delete --out first instead of reusing it")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    out = Path(args.out)
    if args.fresh and out.exists():
        shutil.rmtree(out)
    began = time.perf_counter()
    report = run_demo(out, FAST if args.fast else FULL, progress=not args.quiet)
    _say(f"done in {time.perf_counter() - began:.0f} s: report {report}, model {out / 'model.pt'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
