"""Training: configs (``models/configs/*.yaml``), the trainer, resumable checkpoints.

    from pyflowops_models.train import load_config, train
    cfg = load_config("decflow_cpu_small", overrides=["optim.steps=200"])
    metrics = train(cfg, "runs/decflow", resume=True)       # {"step", "loss", "val", "steps_per_s", ...}
    model = pyflowops_models.load("runs/decflow")           # eval-mode model from the newest checkpoint

Command line (also under torchrun): ``python -m pyflowops_models.train --config NAME --out DIR
[--steps N] [--checkpoint-every N] [--resume] [--set key=value ...]`` = ``pyflowops train ...``.
"""

from .checkpoint import latest, load, save
from .config import Config, config_names, load_config
from .trainer import train

__all__ = ["Config", "config_names", "latest", "load", "load_config", "save", "train"]
