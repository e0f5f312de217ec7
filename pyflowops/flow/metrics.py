"""Optical flow error metrics on torch tensors, in the layout models output.

Flows are ``[B, 2, H, W]`` torch tensors (channel 0 = u = column (x) displacement, pixels).
Masks are ``[B, H, W]`` or ``[B, 1, H, W]``, bool or float; floats act as weights in the
masked means (a 0/1 float mask equals the bool one) and as ``>= 0.5`` in :func:`flow_metrics`.
An empty mask gives NaN (0 / 0), never an error.

Example:
    >>> import torch
    >>> gt = torch.zeros(1, 2, 4, 4)
    >>> flow_metrics(gt + torch.tensor([3.0, 4.0]).view(1, 2, 1, 1), gt)["epe"]
    5.0
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

__all__ = ["epe", "flow_metrics", "masked_epe", "official_ffn_epe", "sparse_epe"]

_REDUCTIONS = ("mean", "none")


def _check_flow(name: str, value: Any) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if value.dim() != 4 or value.shape[1] != 2:
        raise ValueError(f"{name} must have shape [B, 2, H, W], got {tuple(value.shape)}")
    if not value.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {value.dtype}")
    return value


def _check_pair(flow: Any, gt: Any) -> tuple[torch.Tensor, torch.Tensor]:
    flow, gt = _check_flow("flow", flow), _check_flow("gt", gt)
    if flow.shape != gt.shape:
        raise ValueError(f"gt must have the shape of flow {tuple(flow.shape)}, got {tuple(gt.shape)}")
    if flow.device != gt.device:
        raise ValueError(f"gt is on {gt.device} but flow is on {flow.device}")
    return flow, gt


def _check_mask(name: str, mask: Any, ref: torch.Tensor) -> torch.Tensor:
    """``mask`` as a [B, H, W] tensor (bool or float) matching flow ``ref`` [B, 2, H, W]."""
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(mask).__name__}")
    b, _, h, w = ref.shape
    if mask.dim() == 4 and mask.shape[1] == 1:
        mask = mask[:, 0]
    if tuple(mask.shape) != (b, h, w):
        raise ValueError(f"{name} must have shape [B, H, W] or [B, 1, H, W] with B, H, W = {(b, h, w)}, "
                         f"got {tuple(mask.shape)}")
    if mask.dtype != torch.bool and not mask.is_floating_point():
        raise TypeError(f"{name} must be bool or floating point, got {mask.dtype}")
    if mask.device != ref.device:
        raise ValueError(f"{name} is on {mask.device} but flow is on {ref.device}")
    return mask


def _ratio(total: torch.Tensor, area: torch.Tensor) -> torch.Tensor:
    """total / area, NaN where area == 0 (x / 0 would give inf for official_ffn_epe)."""
    return torch.where(area != 0, total / area, torch.full_like(total, float("nan")))


def _reduce(per_item: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "none":
        return per_item
    if reduction == "mean":
        # NaN items (empty masks) are skipped; all empty gives NaN
        return torch.nanmean(per_item)
    raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def epe(flow: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """End-point error per pixel, ``|flow - gt|_2``.

    Args:
        flow, gt: ``[B, 2, H, W]`` float tensors, same shape and device.

    Returns:
        ``[B, H, W]`` tensor (flow's dtype).

    Example:
        >>> import torch
        >>> epe(torch.tensor([3.0, 4.0]).view(1, 2, 1, 1), torch.zeros(1, 2, 1, 1))
        tensor([[[5.]]])
    """
    flow, gt = _check_pair(flow, gt)
    return torch.linalg.vector_norm(flow - gt, dim=1)


def flow_metrics(flow: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor | None = None) -> dict[str, float]:
    """The standard flow benchmark numbers, pooled over all valid pixels of the batch.

    Args:
        flow, gt: ``[B, 2, H, W]`` float tensors.
        valid: optional ``[B, H, W]`` or ``[B, 1, H, W]`` mask (bool, or float read as ``>= 0.5``).

    Returns:
        ``{"epe": mean EPE, "1px", "3px", "5px": fraction of valid pixels with EPE < 1 / 3 / 5}``
        as Python floats (the usual RAFT-style accuracies, higher is better). All NaN when no pixel
        is valid.
    """
    err = epe(flow, gt)
    if valid is not None:
        mask = _check_mask("valid", valid, flow)
        mask = mask if mask.dtype == torch.bool else mask >= 0.5
        err = err[mask]
    else:
        err = err.reshape(-1)
    err = err.double()
    return {
        "epe": err.mean().item(),  # mean of an empty tensor is NaN, without raising
        "1px": (err < 1).double().mean().item(),
        "3px": (err < 3).double().mean().item(),
        "5px": (err < 5).double().mean().item(),
    }


def masked_epe(flow: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Mean EPE over the mask: ``sum(EPE * mask) / sum(mask)`` per batch element, then averaged.

    This is the masked mean a reader expects (pixels outside the mask do not count); compare
    :func:`official_ffn_epe`.

    Args:
        flow, gt: ``[B, 2, H, W]`` float tensors.
        mask: ``[B, H, W]`` or ``[B, 1, H, W]``, bool or float (float = per-pixel weight).
        reduction: ``"mean"`` (average over batch elements, skipping empty masks; NaN if all are
            empty) or ``"none"`` (``[B]``, NaN where a mask is empty).

    Returns:
        0-dim tensor, or ``[B]`` with ``reduction="none"``.
    """
    err = epe(flow, gt)
    m = _check_mask("mask", mask, flow).to(err.dtype)
    # where(): NaN/inf error outside the mask (e.g. undefined ground truth there) must not leak in
    inside = torch.where(m != 0, err * m, torch.zeros_like(err))
    return _reduce(_ratio(inside.sum((1, 2)), m.sum((1, 2))), reduction)


def official_ffn_epe(
    flow: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor, reduction: str = "mean"
) -> torch.Tensor:
    """The EPE the official FacialFlowNet ``evaluate.py`` reports: ``sum(EPE over ALL pixels) / sum(mask)``.

    Their evaluation sums the error over the whole image but divides by the face mask's area,
    so pixels outside the mask (background, hair) are counted in the numerator only. This
    overstates the error relative to :func:`masked_epe`, by exactly
    ``sum(EPE outside the mask) / sum(mask)``, and the more so the smaller the face is. Use it
    only to compare with numbers published with that script.

    Args:
        flow, gt: ``[B, 2, H, W]`` float tensors.
        mask: ``[B, H, W]`` or ``[B, 1, H, W]``, bool or float (its sum is the denominator).
        reduction: ``"mean"`` (over batch elements, skipping empty masks) or ``"none"`` (``[B]``).

    Returns:
        0-dim tensor, or ``[B]`` with ``reduction="none"``; NaN for an empty mask.
    """
    err = epe(flow, gt)
    m = _check_mask("mask", mask, flow).to(err.dtype)
    return _reduce(_ratio(err.sum((1, 2)), m.sum((1, 2))), reduction)


def sparse_epe(
    flow: torch.Tensor, gt_points_t: torch.Tensor, gt_points_t1: torch.Tensor, reduction: str = "mean"
) -> torch.Tensor:
    """EPE at sparse points (FacialFlowNet Eq. 6): mean of ``|p_t + flow(p_t) - p_t1|_2``.

    ``flow(p_t)`` is the predicted flow sampled bilinearly at the (sub-pixel) point ``p_t``;
    pixel coordinates put pixel centres at integers, ``x`` = column, ``y`` = row (so
    ``grid_sample`` with ``align_corners=True``). Points outside the image use the nearest
    border flow.

    Args:
        flow: ``[B, 2, H, W]`` float tensor (pixels).
        gt_points_t: ``[B, K, 2]`` (x, y) positions at frame t.
        gt_points_t1: ``[B, K, 2]`` true positions of the same points at frame t+1.
        reduction: ``"mean"`` (over all B*K points) or ``"none"`` (``[B, K]``).

    Returns:
        0-dim tensor, or ``[B, K]``; NaN when K = 0.

    Example:
        >>> import torch
        >>> flow = torch.ones(1, 2, 4, 4)  # every pixel moves by (1, 1)
        >>> sparse_epe(flow, torch.tensor([[[1.5, 2.0]]]), torch.tensor([[[2.5, 3.0]]]))
        tensor(0.)
    """
    flow = _check_flow("flow", flow)
    b, _, h, w = flow.shape
    for name, pts in (("gt_points_t", gt_points_t), ("gt_points_t1", gt_points_t1)):
        if not isinstance(pts, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(pts).__name__}")
        if pts.dim() != 3 or pts.shape[0] != b or pts.shape[2] != 2:
            raise ValueError(f"{name} must have shape [B, K, 2] with B = {b}, got {tuple(pts.shape)}")
        if pts.device != flow.device:
            raise ValueError(f"{name} is on {pts.device} but flow is on {flow.device}")
    if gt_points_t.shape != gt_points_t1.shape:
        raise ValueError(
            f"gt_points_t1 must have the shape of gt_points_t {tuple(gt_points_t.shape)}, "
            f"got {tuple(gt_points_t1.shape)}"
        )
    p0 = gt_points_t.to(flow.dtype)
    p1 = gt_points_t1.to(flow.dtype)
    # align_corners=True: -1 and +1 are the centres of the first and last pixel. max(.., 1) keeps a
    # 1-pixel-wide image finite (its only column is x = 0 -> -1).
    scale = p0.new_tensor([2.0 / max(w - 1, 1), 2.0 / max(h - 1, 1)])
    grid = (p0 * scale - 1).unsqueeze(1)  # [B, 1, K, 2]
    sampled = F.grid_sample(flow, grid, mode="bilinear", padding_mode="border", align_corners=True)
    sampled = sampled[:, :, 0].transpose(1, 2)  # [B, 2, 1, K] -> [B, K, 2]
    err = torch.linalg.vector_norm(p0 + sampled - p1, dim=-1)
    if reduction == "none":
        return err
    if reduction == "mean":
        return err.mean()
    raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
