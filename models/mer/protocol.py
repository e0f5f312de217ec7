"""Leave-one-subject-out (LOSO) training and the MEGC 2019 composite-benchmark metrics (UF1, UAR).

* :func:`loso_splits`: one fold per subject, the subject's clips as the test set;
* :func:`confusion_matrix`, :func:`uf1`, :func:`uar`: on all predictions pooled over the folds, as the
  composite benchmark defines them (not a mean of per-fold scores);
* :class:`TrainOptions`, :func:`train_classifier`, :func:`predict`: a :class:`MicroExpressionNet` on
  maps ``[N, C, S, S]`` (e.g. :func:`~pyflowops_models.mer.representation.flow_representation`'s u, v, strain);
* :func:`loso_evaluate`: all of it, one model per fold.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .network import MicroExpressionNet

__all__ = [
    "TrainOptions",
    "confusion_matrix",
    "flip_horizontal",
    "loso_evaluate",
    "loso_splits",
    "predict",
    "train_classifier",
    "uar",
    "uf1",
]


def loso_splits(subjects: Sequence[str]) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """``subjects [N]`` (one id per sample) -> ``[(subject, train_idx, test_idx)]``, one per distinct subject.

    Subjects come in sorted order; ``test_idx`` are the subject's sample indices, ``train_idx`` all the
    others (both int64, ascending). Raises ValueError with fewer than 2 distinct subjects.
    """
    ids = list(subjects)
    distinct = sorted(set(ids))
    if len(distinct) < 2:
        raise ValueError(f"LOSO needs at least 2 distinct subjects, got {len(distinct)}")
    out = []
    for subject in distinct:
        is_test = np.array([s == subject for s in ids], dtype=bool)
        out.append((subject, np.flatnonzero(~is_test), np.flatnonzero(is_test)))
    return out


def _labels(y, num_classes: int, name: str) -> np.ndarray:
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D [N], got shape {arr.shape}")
    if arr.size and arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
        arr = arr.astype(np.int64)
    if arr.size and arr.dtype.kind not in "iub":
        raise ValueError(f"{name} must hold integer class labels, got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    if arr.size and (arr.min() < 0 or arr.max() >= num_classes):
        raise ValueError(f"{name} labels must be in [0, {num_classes}), got range [{arr.min()}, {arr.max()}]")
    return arr


def _pair(y_true, y_pred, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    if int(num_classes) != num_classes or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes}")
    t, p = _labels(y_true, num_classes, "y_true"), _labels(y_pred, num_classes, "y_pred")
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred must have the same length, got {t.size} and {p.size}")
    return t, p


def confusion_matrix(y_true, y_pred, num_classes: int) -> np.ndarray:
    """``[C, C]`` int64 counts: row = true class, column = predicted class (``y_true``, ``y_pred`` [N] ints)."""
    t, p = _pair(y_true, y_pred, num_classes)
    return np.bincount(t * num_classes + p, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def uf1(y_true, y_pred, num_classes: int) -> float:
    """Unweighted F1: the mean over classes of ``2 TP / (2 TP + FP + FN)``, on ``[N]`` pooled predictions.

    The composite benchmark (MEGC 2019) counts TP, FP, FN over all folds' predictions together. A class
    with ``2 TP + FP + FN = 0`` (never true, never predicted) is left out of the mean; a class that is
    never true but is predicted has F1 = 0 and counts. Raises ValueError on empty input.
    """
    cm = confusion_matrix(y_true, y_pred, num_classes)
    if cm.sum() == 0:
        raise ValueError("uf1 of no samples")
    tp = np.diag(cm).astype(np.float64)
    denom = 2 * tp + (cm.sum(axis=0) - tp) + (cm.sum(axis=1) - tp)
    seen = denom > 0
    return float(np.mean(2 * tp[seen] / denom[seen]))


def uar(y_true, y_pred, num_classes: int) -> float:
    """Unweighted average recall: the mean over classes of ``TP_c / N_c`` on ``[N]`` pooled predictions.

    A class with no true samples (``N_c = 0``) is left out of the mean. Raises ValueError on empty input.
    """
    cm = confusion_matrix(y_true, y_pred, num_classes)
    if cm.sum() == 0:
        raise ValueError("uar of no samples")
    n = cm.sum(axis=1)
    seen = n > 0
    return float(np.mean(np.diag(cm)[seen] / n[seen]))


@dataclass(frozen=True)
class TrainOptions:
    """How :func:`train_classifier` trains one model (one LOSO fold).

    ``flip``: mirror half of each batch left-right (:func:`flip_horizontal`); ``class_weights``:
    inverse-frequency weighted cross entropy (the real sets are imbalanced); ``threads``: torch CPU
    threads while training (None = leave as is). Defaults sized for a 60-fold LOSO run on ~360 maps of
    48 x 48 on one CPU core: measured 2.9-3.0 s per fold (179 s for 60 folds); 40 epochs cost 3.8 s per
    fold, ``width=32`` (58k parameters) at 40 epochs 7.4 s.
    """

    epochs: int = 30
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    width: int = 16
    dropout: float = 0.3
    flip: bool = True
    class_weights: bool = True
    seed: int = 0
    device: str = "cpu"
    threads: int | None = None


def flip_horizontal(x):
    """Mirror maps ``[..., C, H, W]`` (numpy or torch) left-right and negate u (channel 0); a new array.

    Mirroring x -> -x turns the horizontal displacement u into -u at the mirrored pixel; v and the
    strain magnitude are unchanged (only mirrored).
    """
    if x.ndim < 3:
        raise ValueError(f"expected maps [..., C, H, W], got shape {tuple(x.shape)}")
    if isinstance(x, torch.Tensor):
        out = torch.flip(x, dims=(-1,)).clone()
    else:
        out = np.ascontiguousarray(np.asarray(x)[..., ::-1])
    out[..., 0, :, :] = -out[..., 0, :, :]
    return out


def _check_maps(x, y, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    arr = np.asarray(x)
    if arr.ndim != 4 or arr.shape[0] == 0:
        raise ValueError(f"x must have shape [N, C, S, S] with N >= 1, got {arr.shape}")
    if arr.dtype.kind not in "fiu":
        raise ValueError(f"x must be numeric, got dtype {arr.dtype}")
    arr = arr.astype(np.float32, copy=False)
    if not np.all(np.isfinite(arr)):
        raise ValueError("x contains NaN or inf: clean the flow maps first")
    if int(num_classes) != num_classes or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes}")
    labels = _labels(y, num_classes, "y")
    if labels.size != arr.shape[0]:
        raise ValueError(f"x has {arr.shape[0]} samples but y has {labels.size}")
    return arr, labels


def _batches(order: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """``order`` cut into batches; a last batch of 1 joins the one before (BatchNorm needs 2 samples)."""
    out = [order[i:i + batch_size] for i in range(0, order.size, batch_size)]
    if len(out) > 1 and out[-1].size == 1:
        out[-2] = np.concatenate(out[-2:])
        out.pop()
    return out


def train_classifier(x: np.ndarray, y: np.ndarray, num_classes: int,
                     options: TrainOptions = TrainOptions()) -> MicroExpressionNet:
    """Train a :class:`MicroExpressionNet` on maps ``x [N, C, S, S]`` float32 and labels ``y [N]`` ints.

    AdamW (``lr``, ``weight_decay``) with a per-step cosine schedule to 0 over ``epochs``; the inputs are
    standardised per channel by the training set's mean / std, stored in the model (``mean``, ``std``
    buffers) so :func:`predict` applies them. Deterministic given ``options.seed`` (same machine, same
    threads): the global torch RNG is forked, not disturbed. Returns the model in eval mode on ``device``.
    """
    arr, labels = _check_maps(x, y, num_classes)
    if arr.shape[0] < 2:
        raise ValueError("train_classifier needs at least 2 samples")
    if options.epochs < 1 or options.batch_size < 2:
        raise ValueError(f"need epochs >= 1 and batch_size >= 2, got {options.epochs}, {options.batch_size}")
    old_threads = torch.get_num_threads()
    if options.threads is not None:
        torch.set_num_threads(int(options.threads))
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(options.seed)
            rng = np.random.default_rng(options.seed)
            device = torch.device(options.device)
            model = MicroExpressionNet(num_classes, arr.shape[1], options.width, options.dropout)
            model.set_input_stats(arr.mean(axis=(0, 2, 3), dtype=np.float64), arr.std(axis=(0, 2, 3), dtype=np.float64))
            model.to(device).train()
            data, target = torch.from_numpy(arr).to(device), torch.from_numpy(labels).to(device)
            weight = None
            if options.class_weights:
                counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
                w = np.where(counts > 0, labels.size / (np.count_nonzero(counts) * np.maximum(counts, 1)), 0.0)
                weight = torch.tensor(w, dtype=torch.float32, device=device)
            steps = options.epochs * len(_batches(np.arange(labels.size), options.batch_size))
            opt = torch.optim.AdamW(model.parameters(), lr=options.lr, weight_decay=options.weight_decay,
                                    fused=device.type in ("cpu", "cuda"))
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
            for _ in range(options.epochs):
                for batch in _batches(rng.permutation(labels.size), options.batch_size):
                    index = torch.from_numpy(batch).to(device)
                    xb = data[index]
                    if options.flip:
                        mirror = torch.from_numpy(rng.random(batch.size) < 0.5).to(device)
                        xb = torch.where(mirror.view(-1, 1, 1, 1), flip_horizontal(xb), xb)
                    loss = torch.nn.functional.cross_entropy(model(xb), target[index], weight=weight)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    sched.step()
    finally:
        torch.set_num_threads(old_threads)
    return model.eval()


@torch.no_grad()
def predict(model: MicroExpressionNet, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Class predictions ``[N]`` int64 (argmax of the logits, eval mode) for maps ``x [N, C, S, S]``."""
    arr = np.asarray(x, dtype=np.float32)
    if arr.ndim != 4:
        raise ValueError(f"x must have shape [N, C, S, S], got {arr.shape}")
    model.eval()
    device = next(model.parameters()).device
    out = [model(torch.from_numpy(arr[i:i + batch_size]).to(device)).argmax(dim=1).cpu()
           for i in range(0, arr.shape[0], batch_size)]
    return torch.cat(out).numpy().astype(np.int64) if out else np.zeros(0, np.int64)


def loso_evaluate(x: np.ndarray, y: np.ndarray, subjects: Sequence[str], num_classes: int,
                  options: TrainOptions = TrainOptions(), progress: bool = True, description: str = "LOSO") -> dict:
    """Leave-one-subject-out scores of :func:`train_classifier` on maps ``x [N, C, S, S]``, labels ``y [N]``.

    One model per subject (sorted order), trained on all the other subjects with seed ``options.seed +
    fold index``; a tqdm bar (``description``) over the folds unless ``progress`` is False. Returns
    ``{"uf1", "uar", "accuracy"}`` (floats, on all predictions pooled), ``"confusion"`` (``[C][C]`` lists,
    rows = truth), ``"predictions"`` (ints in input order), ``"folds"`` (int) and ``"per_subject"``
    (``{str(subject): {"n": int, "correct": int}}``).
    """
    from dataclasses import replace

    from tqdm import tqdm

    arr, labels = _check_maps(x, y, num_classes)
    ids = list(subjects)
    if len(ids) != labels.size:
        raise ValueError(f"x has {labels.size} samples but subjects has {len(ids)}")
    splits = loso_splits(ids)
    predictions = np.full(labels.size, -1, np.int64)
    per_subject = {}
    for fold, (subject, train, test) in enumerate(tqdm(splits, desc=description, unit="fold", disable=not progress)):
        if train.size < 2:
            raise ValueError(f"fold {subject!r}: fewer than 2 training samples")
        model = train_classifier(arr[train], labels[train], num_classes, replace(options, seed=options.seed + fold))
        predictions[test] = predict(model, arr[test])
        per_subject[str(subject)] = {"n": int(test.size), "correct": int(np.sum(predictions[test] == labels[test]))}
    return {"uf1": uf1(labels, predictions, num_classes), "uar": uar(labels, predictions, num_classes),
            "accuracy": float(np.mean(predictions == labels)),
            "confusion": confusion_matrix(labels, predictions, num_classes).tolist(),
            "predictions": predictions.tolist(), "folds": len(splits), "per_subject": per_subject}
