"""One way to make a model: ``create(name, size, corr, **options)``."""

from __future__ import annotations

import torch.nn as nn

from .correlation import CORR_MODES

__all__ = ["create", "MODEL_NAMES", "SIZES"]

MODEL_NAMES = ("raft", "gma", "decflow", "srflownet")
SIZES = ("full", "small")


def create(name: str, size: str = "full", corr: str = "auto", **options) -> nn.Module:
    """Build a flow network.

    Args:
        name: one of ``raft``, ``gma``, ``decflow``, ``srflownet``.
        size: ``full`` (the paper's configuration) or ``small`` (for CPU work).
        corr: ``allpairs`` (pyflowops.nn.CorrBlock), ``onthefly``
            (pyflowops.nn.AlternateCorrBlock) or ``auto`` (on-the-fly when the
            all-pairs pyramid would pass ``corr_memory_budget`` bytes, default 2 GiB).
        **options: model keyword arguments: all take ``dropout``,
            ``corr_memory_budget`` and ``corr_block``; gma, decflow and srflownet
            ``softmax`` (``fused`` | ``explicit``); decflow ``semantic`` and
            ``semantic_weights``.

    Returns:
        The model; ``model(image1, image2, iters=12)`` takes images [B, 3, H, W]
        (float, 0..255, any H and W). Eval mode: the final flow [B, 2, H, W]
        (decflow: a dict of ``facial``, ``head``, ``expression`` flows); train
        mode: the list of per-iteration flows [B, 2, H, W] (decflow: a dict of
        ``facial`` and ``head`` lists).

    Example:
        >>> model = create("gma", size="small").eval()
        >>> flow = model(torch.rand(1, 3, 100, 120) * 255, torch.rand(1, 3, 100, 120) * 255, iters=4)
        >>> flow.shape
        torch.Size([1, 2, 100, 120])
    """
    if not isinstance(name, str) or name.lower() not in MODEL_NAMES:
        raise ValueError(f"create: name must be one of {MODEL_NAMES}, got {name!r}")
    if size not in SIZES:
        raise ValueError(f"create: size must be one of {SIZES}, got {size!r}")
    if corr not in CORR_MODES:
        raise ValueError(f"create: corr must be one of {CORR_MODES}, got {corr!r}")
    from .decflow import DecFlow
    from .gma import GMA
    from .raft import RAFT
    from .srflownet import SRFlowNet

    model_class = {"raft": RAFT, "gma": GMA, "decflow": DecFlow, "srflownet": SRFlowNet}[name.lower()]
    return model_class(size=size, corr=corr, **options)
