"""Training-recipe benchmark (issue 10): steps/s of ``decflow_cpu_small`` through the real trainer,
on pyflowops ops and on the reference ops, in one run.

Family ``train_recipe``: ``pyflowops_models.train.train`` runs the bundled ``decflow_cpu_small``
recipe (DecFlow size small, random 128x128 crops of 256x256 pairs, batch 4, 8 iterations, bf16
autocast, AdamW + OneCycleLR + clipping) for ``STEPS`` steps without validation. The pairs come
from a small synthetic set written once before the timed runs (the recipe renders its pairs once
and keeps them in memory, so in steady state no step renders). ``steps_per_s`` is the trainer's
own figure: training steps including data loading, without checkpoint writing. Variants, built
with the same seed (same weights, same pairs):

* ``pyflowops``: the recipe as bundled (``corr="auto"``: the pyflowops all-pairs block at this
  size; fused scaled-dot-product attention);
* ``reference``: the same network on RAFT's grid_sample ``CorrBlock`` and GMA's explicit
  (HW)^2 softmax (:mod:`benchmarks._reference_models`). DecFlow has no gradient-regularization
  term, so the kornia-style regularization reference does not enter this recipe (the
  ``srflownet`` recipe is where it would; the gradreg family benchmarks it alone).

``PYFLOWOPS_BENCH_TRAIN_STEPS`` (default 24) sets the steps per variant.
``python -m benchmarks.report`` writes the "Training recipe" section (``benchmarks/report_train.py``).
"""

from __future__ import annotations

import os

import pytest

from benchmarks import _measure as m
from benchmarks._reference_models import create_model, reference_model

RECIPE = "decflow_cpu_small"
STEPS = int(os.environ.get("PYFLOWOPS_BENCH_TRAIN_STEPS", "24"))
VARIANTS = ("reference", "pyflowops")


def _factory(variant: str):
    def build(cfg):
        options = dict(cfg.model.options)
        if variant == "reference":
            return reference_model(cfg.model.name, cfg.model.size, **options)
        return create_model(cfg.model.name, cfg.model.size, cfg.model.corr, **options)

    return build


@pytest.fixture(scope="module")
def pairs_folder(tmp_path_factory):
    """Two synthetic sequences (25 pairs) at the recipe's 256x256, written once for both variants."""
    from pyflowops_models.data.writer import synthesize

    folder = tmp_path_factory.mktemp("recipe_pairs")
    synthesize(folder, 2, size=256, workers=2, seed=0, progress=False)
    return folder


@pytest.mark.parametrize("variant", VARIANTS)
def test_train_recipe(benchmark, variant, tmp_path, pairs_folder):
    from pyflowops_models.train import load_config, train

    cfg = load_config(RECIPE, [f"optim.steps={STEPS}", f"data.source={pairs_folder}", "data.val_source=rendered",
                               "data.val_length=0", f"train.checkpoint_every={STEPS}", f"train.log_every={STEPS}"])
    result = {}

    def run() -> None:
        result.update(train(cfg, tmp_path / variant, progress=False, model_factory=_factory(variant)))

    m.wait_for_idle()
    contention = m.CpuContention()
    contention.start()
    benchmark.pedantic(run, rounds=1, warmup_rounds=0, iterations=1)
    other_load = contention.stop()
    m.CONTENTION.append((f"train_recipe-{variant}", other_load))
    benchmark.group = f"train_recipe | {RECIPE}"
    benchmark.extra_info.update(
        family="train_recipe", recipe=RECIPE, variant=variant, steps=STEPS, steps_per_s=result["steps_per_s"],
        loss=result["loss"], batch=cfg.optim.batch_size, image_size=cfg.data.image_size, iters=cfg.optim.iters,
        amp=cfg.optim.amp, crop=cfg.data.crop, other_cpu_load=other_load, device="cpu")
    assert result["step"] == STEPS
