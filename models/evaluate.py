"""Evaluate flow networks and classical baselines on the same pairs: FacialFlowNet-style tables.

:func:`evaluate` runs every method on every pair and pools the errors; :func:`load_pairs` reads
the pairs (a FacialFlowNet-layout folder, a plain folder of image pairs with ``.flo`` ground
truth, or held-out synthetic pairs rendered on the fly); :func:`markdown` formats the result.

Samples are dicts as :mod:`pyflowops_models.data.dataset` makes them: ``image1``, ``image2``
[3, H, W] float 0..255; ``flow`` [2, H, W] facial flow; optional ``flow_head`` [2, H, W] (head
flow; expression = flow - flow_head), ``mask`` [H, W] (moving region, nonzero = inside),
``valid`` [H, W], ``points_t`` / ``points_t1`` [K, 2] (x, y) point tracks, ``scale`` (int motion
scale n, or None), ``sequence`` (str), ``step`` (int).

Example:
    >>> from pyflowops_models.baselines import BASELINES
    >>> result = evaluate({"zero": BASELINES["zero"]}, load_pairs("synthetic", pairs=2, size=64))
    >>> print(markdown(result))  # doctest: +SKIP
"""

from __future__ import annotations

import heapq
import itertools
import json
import math
import re
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from pyflowops.flow import epe, error_map, flow_to_color, make_panel, masked_epe, official_ffn_epe, read_flo, sparse_epe

__all__ = ["SCALES", "DEFINITIONS", "PairSource", "evaluate", "load_pairs", "markdown", "write_results"]

SCALES = (20, 15, 10, 5)  # FacialFlowNet Table 2 columns: pairs per sequence n, motion per pair ~ 1/n
SYNTHETIC_FIRST_INDEX = 1_000_000  # far above any training range, so held-out pairs are unseen sequences
SYNTHETIC_PAIRS = 32  # default number of synthetic pairs

DEFINITIONS = {
    "epe": "facial flow EPE, mean over all valid pixels of all pairs (pixels pooled)",
    "1px": "fraction of valid pixels with facial EPE < 1 px (pooled); likewise 3px, 5px",
    "masked_epe": "facial EPE over the moving-region mask: sum(EPE * mask) / sum(mask), pooled over all pairs",
    "official_epe": "official-style: EPE summed over all pixels / mask area (FacialFlowNet evaluate.py), "
                    "computed per pair and averaged over pairs as that script does",
    "head_epe": "head flow EPE over all valid pixels (pooled); head_masked_epe: over the mask",
    "expression_epe": "expression flow EPE, gt = flow - flow_head, over all valid pixels (pooled); "
                      "expression_masked_epe: over the mask",
    "sparse_epe": "FacialFlowNet Eq. 6: mean |p_t + flow(p_t) - p_t1| over all point tracks (pooled)",
    "seconds_per_pair": "wall time of the method per pair (includes moving data to the device)",
    "per_scale": "the same numbers per motion scale n (pairs per sequence; 'all' = every pair)",
}

_Method = Callable[[np.ndarray, np.ndarray], np.ndarray] | nn.Module


# ----------------------------------------------------------------------------- running methods


def _uint8_hw3(image: torch.Tensor) -> np.ndarray:
    """[3, H, W] float 0..255 tensor -> uint8 [H, W, 3] numpy."""
    return image.detach().cpu().permute(1, 2, 0).clamp(0, 255).round().to(torch.uint8).numpy()


def _predict(method: _Method, sample: dict, iters: int, device: str) -> dict[str, torch.Tensor]:
    """Flows of one pair: ``{"facial": [1, 2, H, W]}`` plus ``head`` / ``expression`` when the method gives them."""
    if isinstance(method, nn.Module):
        im1 = sample["image1"][None].float().to(device)
        im2 = sample["image2"][None].float().to(device)
        with torch.no_grad():
            out = method(im1, im2, iters=iters)
        if isinstance(out, dict):  # DecFlow: facial, head, expression
            flows = {"facial": out["facial"]}
            if out.get("head") is not None:
                flows["head"] = out["head"]
                expression = out.get("expression")
                flows["expression"] = expression if expression is not None else out["facial"] - out["head"]
        elif isinstance(out, (list, tuple)):  # a train-mode style list of refinements: the last is the answer
            flows = {"facial": out[-1]}
        else:
            flows = {"facial": out}
        return {k: v.detach().float().cpu() for k, v in flows.items()}
    flow = method(_uint8_hw3(sample["image1"]), _uint8_hw3(sample["image2"]))
    flow = np.asarray(flow, dtype=np.float32)
    h, w = sample["flow"].shape[-2:]
    if flow.shape != (h, w, 2):
        raise ValueError(f"method returned flow of shape {flow.shape}, expected [H, W, 2] = {(h, w, 2)}")
    return {"facial": torch.from_numpy(flow).permute(2, 0, 1)[None].contiguous()}


# ----------------------------------------------------------------------------- accumulation


def _zero_invalid(flow: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Both flows set to 0 where ``valid`` [1, H, W] is False, so invalid pixels add exactly 0 to every sum."""
    keep = valid[:, None]
    return torch.where(keep, flow, torch.zeros_like(flow)), torch.where(keep, gt, torch.zeros_like(gt))


def _pair_sums(flows: dict[str, torch.Tensor], sample: dict) -> tuple[dict[str, float], float, np.ndarray]:
    """Sums of one pair (to be pooled), its ranking error for the worst-pairs list, and EPE [H, W]."""
    gt = sample["flow"][None].float()
    pred = flows["facial"]
    if pred.shape != gt.shape:
        raise ValueError(f"{sample.get('sequence', '?')}: predicted flow {tuple(pred.shape)} vs gt {tuple(gt.shape)}")
    valid = sample.get("valid")
    valid = (torch.isfinite(gt).all(1) & (gt.abs() < 1000).all(1)) if valid is None else (valid[None] >= 0.5)
    valid = valid & torch.isfinite(pred).all(1)
    pred, gt_ = _zero_invalid(pred, gt, valid)
    err = epe(pred, gt_).double()  # [1, H, W], 0 at invalid pixels
    n = float(valid.sum())
    s = {"pairs": 1.0, "pixels": n, "epe_sum": float(err.sum()),
         "px1": float(((err < 1) & valid).sum()), "px3": float(((err < 3) & valid).sum()),
         "px5": float(((err < 5) & valid).sum())}
    rank = float(err.sum()) / max(n, 1.0)
    mask = sample.get("mask")
    if mask is not None:
        m = (mask[None].float() != 0).double() * valid.double()  # [1, H, W]; invalid pixels are outside
        area = float(m.sum())
        if area > 0:
            masked = float(masked_epe(pred.double(), gt_.double(), m, reduction="none")[0])
            s.update(mask_area=area, masked_sum=masked * area, official_pairs=1.0,
                     official_sum=float(official_ffn_epe(pred.double(), gt_.double(), m, reduction="none")[0]))
            rank = masked
    head_gt = sample.get("flow_head")
    if "head" in flows and head_gt is not None:
        head_gt = head_gt[None].float()
        hvalid = valid & torch.isfinite(head_gt).all(1) & (head_gt.abs() < 1000).all(1)
        hvalid = hvalid & torch.isfinite(flows["head"]).all(1) & torch.isfinite(flows["expression"]).all(1)
        for key, p, g in (("head", flows["head"], head_gt), ("expression", flows["expression"], gt - head_gt)):
            p, g = _zero_invalid(p, g, hvalid)
            e = epe(p, g).double()
            s[f"{key}_pixels"] = float(hvalid.sum())
            s[f"{key}_sum"] = float(e.sum())
            if mask is not None:
                hm = (mask[None].float() != 0).double() * hvalid.double()
                area = float(hm.sum())
                if area > 0:
                    s[f"{key}_mask_area"] = area
                    s[f"{key}_masked_sum"] = float(masked_epe(p.double(), g.double(), hm, reduction="none")[0]) * area
    if sample.get("points_t") is not None and sample.get("points_t1") is not None:
        p0 = torch.as_tensor(sample["points_t"], dtype=torch.float64).reshape(1, -1, 2)
        p1 = torch.as_tensor(sample["points_t1"], dtype=torch.float64).reshape(1, -1, 2)
        if p0.shape[1] > 0:
            errs = sparse_epe(flows["facial"].double(), p0, p1, reduction="none")
            s["sparse_sum"], s["sparse_points"] = float(errs.sum()), float(p0.shape[1])
    return s, rank, err[0].float().numpy()


def _ratio(acc: dict[str, float], num: str, den: str) -> float | None:
    d = acc.get(den, 0.0)
    return acc.get(num, 0.0) / d if d > 0 else None  # None (JSON null): nothing to average


def _finish(acc: dict[str, float]) -> dict[str, Any]:
    """Pooled sums -> the metrics dict (None where a metric had no pixels/pairs)."""
    return {
        "pairs": int(acc.get("pairs", 0)),
        "epe": _ratio(acc, "epe_sum", "pixels"),
        "1px": _ratio(acc, "px1", "pixels"),
        "3px": _ratio(acc, "px3", "pixels"),
        "5px": _ratio(acc, "px5", "pixels"),
        "masked_epe": _ratio(acc, "masked_sum", "mask_area"),
        "official_epe": _ratio(acc, "official_sum", "official_pairs"),
        "head_epe": _ratio(acc, "head_sum", "head_pixels"),
        "head_masked_epe": _ratio(acc, "head_masked_sum", "head_mask_area"),
        "expression_epe": _ratio(acc, "expression_sum", "expression_pixels"),
        "expression_masked_epe": _ratio(acc, "expression_masked_sum", "expression_mask_area"),
        "sparse_epe": _ratio(acc, "sparse_sum", "sparse_points"),
        "sparse_points": int(acc.get("sparse_points", 0)),
        "seconds_per_pair": _ratio(acc, "seconds", "pairs"),
    }


def _scale_key(scale: Any) -> str:
    return "all" if scale is None else str(int(scale))


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "method"


# ----------------------------------------------------------------------------- evaluate


def evaluate(
    methods: dict[str, _Method],
    pairs: Iterable[dict],
    iters: int = 12,
    device: str = "cpu",
    worst: int = 4,
    out_dir: str | Path | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Run every method on every pair and pool the errors, overall and per motion scale.

    Pixel averages (EPE, 1/3/5 px, masked, head, expression EPE) are pooled: sums of errors and of
    pixel counts over ALL pairs, divided at the end (a big face weighs more than a small one),
    not means of per-pair means. The official-style number is the exception: it is computed per
    pair and averaged over pairs, exactly as FacialFlowNet's evaluate.py does. Pixels whose
    ground truth is invalid (``valid`` < 0.5, non-finite or >= 1000 px) count nowhere.

    Args:
        methods: name -> a model (``nn.Module``: run in eval mode under no_grad on [1, 3, H, W]
            images 0..255 with ``iters=iters``, moved to ``device``; output [1, 2, H, W] or a DecFlow
            dict of facial / head / expression) or a classical function ``f(image1, image2) ->
            flow [H, W, 2]`` on uint8 RGB [H, W, 3] images (see :mod:`pyflowops_models.baselines`).
        pairs: samples (see the module doc); ``scale`` (or ``num_steps``) gives the motion scale.
        iters: refinement iterations for the models.
        device: the models' device; classical methods run on the CPU.
        worst: panels of this many worst pairs per method (ranked by masked facial EPE, or EPE
            when a pair has no mask).
        out_dir: when given, write ``results.json``, ``results.md`` and ``worst_<method>_<k>.png``
            (k = 1 is the worst) there.
        progress: show a tqdm progress bar.

    Returns:
        ``{"methods": {name: {"all": metrics, "per_scale": {"20": metrics, ..., "all": metrics},
        "worst": [{"sequence", "step", "error", "panel"}]}}, "scales": [n present, ...],
        "pairs": count, "iters": iters, "definitions": DEFINITIONS}``; metrics hold ``epe``,
        ``1px``, ``3px``, ``5px``, ``masked_epe``, ``official_epe``, ``head_epe``,
        ``head_masked_epe``, ``expression_epe``, ``expression_masked_epe``, ``sparse_epe``,
        ``sparse_points``, ``pairs``, ``seconds_per_pair`` (None where not measurable).
    """
    if not methods:
        raise ValueError("evaluate: no methods given")
    for name, method in methods.items():
        if isinstance(method, nn.Module):
            method.to(device).eval()
        elif not callable(method):
            raise TypeError(f"evaluate: method {name!r} is neither an nn.Module nor callable")
    sums: dict[str, dict[str, dict[str, float]]] = {name: defaultdict(lambda: defaultdict(float)) for name in methods}
    heaps: dict[str, list] = {name: [] for name in methods}
    tie = itertools.count()  # heap tie-breaker: arrays do not compare
    scales_seen: set[int] = set()
    count = 0
    iterator: Iterable[dict] = pairs
    if progress:
        from tqdm import tqdm

        iterator = tqdm(pairs, total=len(pairs) if hasattr(pairs, "__len__") else None, unit="pair",
                        desc="pyflowops eval")
    for sample in iterator:
        count += 1
        scale = sample.get("scale", sample.get("num_steps"))
        if scale is not None:
            scales_seen.add(int(scale))
        groups = ["all"] if scale is None else ["all", _scale_key(scale)]
        for name, method in methods.items():
            start = time.perf_counter()
            flows = _predict(method, sample, iters, device)
            seconds = time.perf_counter() - start
            pair, rank, err = _pair_sums(flows, sample)
            pair["seconds"] = seconds
            for group in groups:
                acc = sums[name][group]
                for key, value in pair.items():
                    acc[key] += value
            if worst > 0 and math.isfinite(rank):
                item = (rank, next(tie), {"sequence": str(sample.get("sequence", f"pair {count - 1}")),
                                          "step": int(sample.get("step", 0)), "image1": _uint8_hw3(sample["image1"]),
                                          "pred": flows["facial"][0], "gt": sample["flow"].float(), "err": err})
                if len(heaps[name]) < worst:
                    heapq.heappush(heaps[name], item)
                else:
                    heapq.heappushpop(heaps[name], item)  # keeps the `worst` largest errors
    if count == 0:
        raise ValueError("evaluate: no pairs")
    others = sorted(scales_seen - set(SCALES), reverse=True)  # scales the paper does not have, after its four
    order = [str(n) for n in SCALES if n in scales_seen] + [str(n) for n in others]
    result: dict[str, Any] = {"methods": {}, "scales": [int(k) for k in order], "pairs": count, "iters": iters,
                              "definitions": DEFINITIONS}
    for name in methods:
        per_scale = {key: _finish(sums[name][key]) for key in order + ["all"]}
        ranked = sorted(heaps[name], key=lambda item: -item[0])
        worst_list = []
        for k, (rank, _, info) in enumerate(ranked, start=1):
            entry = {"sequence": info["sequence"], "step": info["step"], "error": rank, "panel": None}
            if out_dir is not None:
                panel = f"worst_{_safe_name(name)}_{k}.png"
                _write_worst_panel(Path(out_dir) / panel, info, name, rank)
                entry["panel"] = panel
            worst_list.append(entry)
        result["methods"][name] = {"all": per_scale["all"], "per_scale": per_scale, "worst": worst_list}
    if out_dir is not None:
        write_results(result, out_dir)
    return result


def _write_worst_panel(path: Path, info: dict, name: str, error: float) -> None:
    """image 1 | predicted facial flow | gt facial flow | EPE map, flows on one colour scale."""
    from PIL import Image

    gt, pred = info["gt"].numpy(), info["pred"].numpy()
    mags = np.sqrt(np.square(gt).sum(0))
    top = float(mags[np.isfinite(mags)].max()) if np.isfinite(mags).any() else 0.0
    top = top if top > 0 else 1.0
    err = info["err"]
    panel = make_panel(
        [info["image1"], flow_to_color(pred, max_flow=top), flow_to_color(gt, max_flow=top), error_map(pred, gt)],
        [f"{info['sequence']} #{info['step']}", f"{name} (max {top:.1f} px)", "ground truth",
         f"EPE {error:.2f} (max {float(err.max()):.1f})"],
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(panel).save(path)


# ----------------------------------------------------------------------------- reporting


def _fmt(value: Any, digits: int = 3) -> str:
    return "–" if value is None or (isinstance(value, float) and not math.isfinite(value)) else f"{value:.{digits}f}"


def markdown(result: dict[str, Any]) -> str:
    """The result as markdown: the metrics table (rows = methods) and the per-scale masked EPE table."""
    names = list(result["methods"])
    cols = [("EPE", "epe"), ("1px", "1px"), ("3px", "3px"), ("5px", "5px"), ("masked EPE", "masked_epe"),
            ("official-style*", "official_epe"), ("head EPE", "head_epe"), ("expr. EPE", "expression_epe"),
            ("sparse EPE", "sparse_epe"), ("s/pair", "seconds_per_pair")]
    lines = [f"Facial flow on {result['pairs']} pairs (lower EPE is better, higher 1/3/5 px accuracy is better).", "",
             "| method | " + " | ".join(c for c, _ in cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name in names:
        m = result["methods"][name]["all"]
        lines.append(f"| {name} | " + " | ".join(_fmt(m[k]) for _, k in cols) + " |")
    lines += ["", "\\* official-style: EPE summed over all pixels / mask area (FacialFlowNet's evaluate.py, "
              "per pair, averaged over pairs); it also counts errors outside the mask "
              "(so per pair it is >= the masked EPE). "
              "EPE and 1/3/5 px are over all valid pixels; head and expression EPE likewise "
              "(expression gt = facial - head flow).", ""]
    present = [int(k) for k in result["scales"]]
    scale_cols = list(SCALES) + [n for n in present if n not in SCALES]
    first = next(iter(result["methods"].values()))["per_scale"]
    head = [f"n={n} ({first[str(n)]['pairs']})" if str(n) in first else f"n={n} (0)" for n in scale_cols]
    lines += ["Masked facial EPE per motion scale (FacialFlowNet Table 2 layout; n = pairs per sequence, "
              "motion per pair ~ 1/n; pair counts in brackets):", "",
              "| method | " + " | ".join(head) + f" | all ({first['all']['pairs']}) |",
              "|---" * (len(scale_cols) + 2) + "|"]
    for name in names:
        ps = result["methods"][name]["per_scale"]
        row = [_fmt(ps[str(n)]["masked_epe"]) if str(n) in ps else "–" for n in scale_cols]
        lines.append(f"| {name} | " + " | ".join(row) + f" | {_fmt(ps['all']['masked_epe'])} |")
    return "\n".join(lines) + "\n"


def write_results(result: dict[str, Any], out_dir: str | Path) -> None:
    """``results.json`` (the result dict, None as null) and ``results.md`` (:func:`markdown`) in ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(result, indent=2, allow_nan=False) + "\n")
    (out / "results.md").write_text(markdown(result))


# ----------------------------------------------------------------------------- data sources


class PairSource(Sequence):
    """Lazily loaded samples: ``len()``, indexing and iteration; ``description`` says where they come from."""

    def __init__(self, get: Callable[[int], dict], indices: Sequence[int], description: str) -> None:
        self._get, self._indices, self.description = get, list(indices), description

    def __len__(self) -> int:
        return len(self._indices)

    def __getitem__(self, i: int) -> dict:  # type: ignore[override]
        return self._get(self._indices[i])


def _subset(total: int, pairs: int | None) -> list[int]:
    """All indices, or ``pairs`` of them evenly spread (so every sequence and scale is sampled, not just the first)."""
    if pairs is None or pairs >= total:
        return list(range(total))
    if pairs < 1:
        raise ValueError(f"pairs must be >= 1, got {pairs}")
    return sorted({int(round(v)) for v in np.linspace(0, total - 1, pairs)})


def _ffn_scales(root: Path, dataset) -> dict[str, int]:
    """Sequence ("split/emotion/seq") -> motion scale n: meta json ``num_steps``, else the pair count.

    Without meta (the real download) n is the pair count, except that a count one short of a paper
    scale (a sequence of 5/10/15/20 frames has 4/9/14/19 pairs) is read as that scale.
    """
    counts: dict[str, int] = defaultdict(int)
    for rel, *_ in dataset.pairs:
        counts[rel] += 1
    scales = {}
    for rel, count in counts.items():
        meta = root / "meta" / f"{rel}.json"
        n = None
        if meta.is_file():
            try:
                n = int(json.loads(meta.read_text())["num_steps"])
            except (ValueError, KeyError, TypeError):
                n = None
        if n is None:
            n = count + 1 if count not in SCALES and count + 1 in SCALES else count
        scales[rel] = n
    return scales


_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def _plain_names(folder: Path) -> list[str]:
    names = []
    for flo in sorted(folder.glob("*.flo")):
        stem = flo.stem
        if all(any((folder / f"{stem}_{k}{s}").is_file() for s in _IMAGE_SUFFIXES) for k in (1, 2)):
            names.append(stem)
    return names


def _plain_sample(folder: Path, name: str) -> dict:
    from PIL import Image

    def find(suffix: str) -> Path | None:
        for s in _IMAGE_SUFFIXES:
            if (folder / f"{name}{suffix}{s}").is_file():
                return folder / f"{name}{suffix}{s}"
        return None

    def image(path: Path) -> torch.Tensor:
        return torch.from_numpy(np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)).permute(2, 0, 1)

    im1, im2 = image(find("_1")), image(find("_2"))
    flow = torch.from_numpy(read_flo(folder / f"{name}.flo")).permute(2, 0, 1).contiguous()
    if not (im1.shape[1:] == im2.shape[1:] == flow.shape[1:]):
        raise ValueError(f"{folder}: pair {name!r} has images {tuple(im1.shape[1:])} and {tuple(im2.shape[1:])} "
                         f"but flow {tuple(flow.shape[1:])} (H, W must agree)")
    sample = {"image1": im1, "image2": im2, "flow": flow, "sequence": name, "step": 0, "scale": None,
              "valid": (torch.isfinite(flow).all(0) & (flow.abs() < 1000).all(0)).float()}
    mask = find("_mask")
    if mask is not None:
        m = torch.from_numpy(np.asarray(Image.open(mask).convert("L")) != 0).float()
        if m.shape != flow.shape[1:]:
            raise ValueError(f"{mask}: mask is {tuple(m.shape)}, flow {tuple(flow.shape[1:])}")
        sample["mask"] = m
    points = folder / f"{name}_points.txt"
    if points.is_file():  # K lines "x_t y_t x_t1 y_t1" (pixels, x = column): the point tracks of Eq. 6
        table = np.loadtxt(points, dtype=np.float64, ndmin=2)
        if table.size and table.shape[1] != 4:
            raise ValueError(f"{points}: expected lines of 4 numbers 'x_t y_t x_t1 y_t1', got {table.shape[1]}")
        table = table.reshape(-1, 4)
        sample["points_t"], sample["points_t1"] = torch.from_numpy(table[:, :2]), torch.from_numpy(table[:, 2:])
    return sample


def load_pairs(
    spec: str | Path,
    split: str = "test",
    pairs: int | None = None,
    size: int = 256,
    seed: int = 0,
    first_index: int = SYNTHETIC_FIRST_INDEX,
) -> PairSource:
    """Evaluation pairs from a folder or rendered on the fly.

    Args:
        spec: ``"synthetic"`` (held-out pairs rendered by
            :class:`~pyflowops_models.data.dataset.RenderedFacialFlowDataset`: sequences
            ``first_index``, ``first_index + 1``, ... of data set ``seed``, far from the indices
            training uses); or a folder in the FacialFlowNet layout (``image/``, ``flow/``,
            ``mask/``: ``pyflowops synth`` output or the real download); or a plain folder of
            ``<name>_1.png``, ``<name>_2.png``, ``<name>.flo``, optional ``<name>_mask.png``
            (nonzero = inside) and ``<name>_points.txt`` (lines ``x_t y_t x_t1 y_t1``).
        split: the split folder of a FacialFlowNet-layout set (and the label of synthetic pairs).
        pairs: use this many pairs, evenly spread over the set (None: all; synthetic: 32).
        size: image side of synthetic pairs.
        seed, first_index: which synthetic sequences.

    Returns:
        A :class:`PairSource` of samples with ``scale`` = the motion scale n of their sequence
        (meta json ``num_steps``, else the pair count; None for a plain folder).

    Raises:
        ValueError: a folder in neither layout (the message names it), or a broken set.
    """
    if isinstance(spec, str) and spec == "synthetic":
        from .data.dataset import RenderedFacialFlowDataset
        from .data.sequence import sequence_spec

        count = SYNTHETIC_PAIRS if pairs is None else pairs
        if count < 1:
            raise ValueError(f"pairs must be >= 1, got {count}")
        dataset = RenderedFacialFlowDataset(count, size=size, seed=seed, split=split, first_index=first_index)

        def get(i: int) -> dict:
            sample = dataset[i]
            sample["scale"] = sequence_spec(seed, first_index + i, size, split).num_steps
            return sample

        return PairSource(get, range(count), f"{count} synthetic {size}x{size} pairs (seed {seed}, sequences "
                                             f"{first_index}..{first_index + count - 1})")
    root = Path(spec)
    if not root.is_dir():
        raise ValueError(f"{root}: no such folder (give a data folder or 'synthetic')")
    if (root / "flow" / "facial").is_dir():
        from .data.dataset import FacialFlowDataset

        dataset = FacialFlowDataset(root, split)
        scales = _ffn_scales(root, dataset)

        def get(i: int) -> dict:
            sample = dataset[i]
            sample["scale"] = scales.get(sample["sequence"])
            return sample

        indices = _subset(len(dataset), pairs)
        return PairSource(get, indices, f"{len(indices)} of {len(dataset)} pairs of {root} ({split})")
    names = _plain_names(root)
    if names:
        indices = _subset(len(names), pairs)
        return PairSource(lambda i: _plain_sample(root, names[i]), indices,
                          f"{len(indices)} of {len(names)} pairs of {root}")
    raise ValueError(
        f"{root}: neither a FacialFlowNet-layout data set (no {root / 'flow' / 'facial'}) nor a folder of "
        "image pairs (<name>_1.png, <name>_2.png, <name>.flo, optional <name>_mask.png)"
    )
