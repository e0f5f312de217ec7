"""Training losses: RAFT's sequence loss, DecFlow's decomposed loss, SRFlowNet's regularization terms.

Shapes: flows [B, 2, H, W] (x then y, pixels), valid masks [B, H, W] or [B, 1, H, W]
(bool or float, > 0.5 = valid), images [B, 3, H, W]. Predictions are the per-iteration
lists a model returns in train mode, first iteration first.
"""

from __future__ import annotations

import torch

import pyflowops

__all__ = ["MAX_FLOW", "decflow_loss", "gradient_matching", "sequence_loss", "srflownet_loss",
           "textureless_smoothness"]

MAX_FLOW = 400.0  # ground truth beyond this magnitude is not trained on (RAFT, FacialFlowNet)
DECFLOW_WEIGHTS = (1.0, 0.8, 1.5)  # facial, head, expression: the official FacialFlowNet train.py


def _check_flow(name: str, flow: object, like: torch.Tensor | None = None) -> torch.Tensor:
    if not isinstance(flow, torch.Tensor) or flow.dim() != 4 or flow.shape[1] != 2:
        shape = tuple(flow.shape) if isinstance(flow, torch.Tensor) else type(flow).__name__
        raise ValueError(f"{name} must be a flow [B, 2, H, W], got {shape}")
    if like is not None and flow.shape != like.shape:
        raise ValueError(f"{name} must have the shape of the ground truth {tuple(like.shape)}, got {tuple(flow.shape)}")
    return flow


def _valid_mask(valid: torch.Tensor | None, gt: torch.Tensor, max_flow: float) -> torch.Tensor:
    """[B, 1, H, W] float: (valid >= 0.5) & |gt| < max_flow."""
    b, _, h, w = gt.shape
    keep = gt.square().sum(1, keepdim=True).sqrt() < max_flow
    if valid is not None:
        if not isinstance(valid, torch.Tensor) or valid.numel() != b * h * w or valid.shape[0] != b:
            shape = tuple(valid.shape) if isinstance(valid, torch.Tensor) else type(valid).__name__
            raise ValueError(f"valid must be [B, H, W] or [B, 1, H, W] = {(b, h, w)}, got {shape}")
        keep = keep & (valid.reshape(b, 1, h, w).float() >= 0.5)
    return keep.to(gt.dtype)


def _sequence(preds: list[torch.Tensor], target: torch.Tensor, mask: torch.Tensor, gamma: float) -> torch.Tensor:
    """sum_i gamma^(N-1-i) mean(mask * |pred_i - target|) (the mean over B, 2, H, W as RAFT's)."""
    n = len(preds)
    return sum(gamma ** (n - 1 - i) * (mask * (p - target).abs()).mean() for i, p in enumerate(preds))


def sequence_loss(
    flow_preds: list[torch.Tensor],
    flow_gt: torch.Tensor,
    valid: torch.Tensor | None = None,
    gamma: float = 0.8,
    max_flow: float = MAX_FLOW,
) -> tuple[torch.Tensor, dict[str, float]]:
    """RAFT's loss: ``L = sum_i gamma^(N-1-i) mean(v * |F_i - G|_1)``, v = valid & |G| < max_flow.

    Args:
        flow_preds: N predictions [B, 2, H, W]. flow_gt: [B, 2, H, W].
        valid: [B, H, W] or [B, 1, H, W] (> 0.5 valid), None = all valid.
        gamma: the decay (0.8; 0.85 in RAFT's Sintel/KITTI and FacialFlowNet's stages).
        max_flow: ground truth at least this large (pixels) is masked out.

    Returns:
        (loss, metrics): ``epe``, ``1px``, ``3px``, ``5px`` of the last prediction over valid pixels.

    Example:
        >>> gt = torch.zeros(1, 2, 4, 4); preds = [gt + 1.0, gt + 0.5]
        >>> loss, m = sequence_loss(preds, gt)
        >>> round(loss.item(), 4), round(m["epe"], 4)
        (1.3, 0.7071)
    """
    if not isinstance(flow_preds, (list, tuple)) or not flow_preds:
        raise ValueError("flow_preds must be a non-empty list of flows [B, 2, H, W]")
    _check_flow("flow_gt", flow_gt)
    for i, p in enumerate(flow_preds):
        _check_flow(f"flow_preds[{i}]", p, flow_gt)
    mask = _valid_mask(valid, flow_gt, max_flow)
    loss = _sequence(list(flow_preds), flow_gt, mask, gamma)
    with torch.no_grad():
        epe = (flow_preds[-1] - flow_gt).square().sum(1, keepdim=True).sqrt()[mask > 0.5]
        metrics = {"epe": float(epe.mean()) if epe.numel() else float("nan")}
        for px in (1, 3, 5):
            metrics[f"{px}px"] = float((epe < px).float().mean()) if epe.numel() else float("nan")
    return loss, metrics


def decflow_loss(
    facial_preds: list[torch.Tensor],
    head_preds: list[torch.Tensor],
    facial_gt: torch.Tensor,
    head_gt: torch.Tensor,
    valid: torch.Tensor | None = None,
    valid_head: torch.Tensor | None = None,
    gamma: float = 0.85,
    weights: tuple[float, float, float] = DECFLOW_WEIGHTS,
    max_flow: float = MAX_FLOW,
) -> tuple[torch.Tensor, dict[str, float]]:
    """DecFlow's decomposed loss: ``L_fac + 0.8 L_head + 1.5 L_exp`` (the official training code).

    ``L_fac = sum_i w_i mean(v * |F_i - F_fac|)``, ``L_head = sum_i w_i mean(v_h * |H_i - F_head|)``,
    ``L_exp = sum_i w_i mean(v_h * |(F_i - H_i) - (F_fac - F_head)|)``, ``w_i = gamma^(N-1-i)``;
    v and v_h are the valid masks (each & |gt| < max_flow); v_h defaults to v.

    Args:
        facial_preds, head_preds: N predictions each, [B, 2, H, W].
        facial_gt, head_gt: [B, 2, H, W]. valid, valid_head: [B, H, W] or [B, 1, H, W], None = all.
        gamma: 0.85 as FacialFlowNet trains. weights: (facial, head, expression).

    Returns:
        (loss, metrics): ``facial``, ``head``, ``expression`` (each term) and ``epe`` of the last facial flow.
    """
    if len(facial_preds) != len(head_preds) or not facial_preds:
        raise ValueError(f"facial_preds and head_preds must be non-empty lists of one length, got "
                         f"{len(facial_preds)} and {len(head_preds)}")
    _check_flow("facial_gt", facial_gt)
    _check_flow("head_gt", head_gt, facial_gt)
    for i, (f, h) in enumerate(zip(facial_preds, head_preds)):
        _check_flow(f"facial_preds[{i}]", f, facial_gt)
        _check_flow(f"head_preds[{i}]", h, facial_gt)
    v = _valid_mask(valid, facial_gt, max_flow)
    v_h = _valid_mask(valid if valid_head is None else valid_head, head_gt, max_flow)
    l_fac = _sequence(list(facial_preds), facial_gt, v, gamma)
    l_head = _sequence(list(head_preds), head_gt, v_h, gamma)
    expression = [f - h for f, h in zip(facial_preds, head_preds)]
    l_exp = _sequence(expression, facial_gt - head_gt, v_h, gamma)
    loss = weights[0] * l_fac + weights[1] * l_head + weights[2] * l_exp
    with torch.no_grad():
        epe = (facial_preds[-1] - facial_gt).square().sum(1, keepdim=True).sqrt()[v > 0.5]
        metrics = {"facial": l_fac.item(), "head": l_head.item(), "expression": l_exp.item(),
                   "epe": float(epe.mean()) if epe.numel() else float("nan")}
    return loss, metrics


def textureless_smoothness(
    flow: torch.Tensor,
    image: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    threshold: float = 0.02,
    penalty: str = "charbonnier",
    operator: str = "sobel",
) -> torch.Tensor:
    """Smoothness only where the image has no texture (SRFlowNet's noise suppression on skin).

    ``mean over pixels of [e < threshold] * mask * sum rho(grad flow)``, e the image's mean
    absolute Sobel gradient (``pyflowops.gradient_regularization`` with
    ``textureless_threshold``; images in [0, 1] for the default threshold).

    Args:
        flow: [B, 2, H, W]. image: [B, C, H, W] (same B, H, W). mask: [B, 1, H, W] or None.
        threshold: edge strength below which a pixel is texture-less.
        penalty: ``charbonnier``, ``l1`` or ``l2``. operator: ``sobel`` or ``diff``.

    Returns:
        The scalar loss.
    """
    _check_flow("flow", flow)
    return pyflowops.gradient_regularization(
        flow, image, mask, operator=operator, penalty=penalty, textureless_threshold=threshold
    )


def gradient_matching(
    flow: torch.Tensor, flow_gt: torch.Tensor, mask: torch.Tensor | None = None, *,
    operator: str = "sobel", penalty: str = "l1",
) -> torch.Tensor:
    """Sobel-gradient matching: ``mean(mask * sum |grad(flow - flow_gt)|)`` (SRFlowNet's gradient loss).

    Zero when the flow differs from the ground truth by a constant: it trains the flow's
    structure (edges of the face, smooth skin), not its offset.

    Args:
        flow, flow_gt: [B, 2, H, W]. mask: [B, 1, H, W] or None. operator, penalty: as
            :func:`pyflowops.gradient_regularization`.
    """
    _check_flow("flow", flow)
    _check_flow("flow_gt", flow_gt, flow)
    return pyflowops.gradient_regularization(flow, None, mask, flow_gt, operator=operator, penalty=penalty)


def srflownet_loss(
    flow_preds: list[torch.Tensor],
    flow_gt: torch.Tensor,
    image1: torch.Tensor,
    valid: torch.Tensor | None = None,
    *,
    gamma: float = 0.8,
    smooth_weight: float = 0.1,
    match_weight: float = 0.5,
    threshold: float = 0.02,
    max_flow: float = MAX_FLOW,
) -> tuple[torch.Tensor, dict[str, float]]:
    """SRFlowNet's training loss: the sequence loss plus, per prediction with the same decay,
    ``smooth_weight * textureless_smoothness + match_weight * gradient_matching``.

    No official code exists (NOTES.md); the default weights are ours: the matching term is
    an L1 on gradients (the scale of the L1 flow term), the smoothness term a prior that must
    not override data, hence the smaller weight. ``image1`` in [0, 255] (RAFT's input) is
    scaled to [0, 1] for the texture threshold.

    Returns:
        (loss, metrics): the sequence loss' metrics plus ``smooth`` and ``match`` of the last prediction.
    """
    loss, metrics = sequence_loss(flow_preds, flow_gt, valid, gamma, max_flow)
    mask = _valid_mask(valid, flow_gt, max_flow)
    image = image1 / 255.0
    n = len(flow_preds)
    smooth = match = flow_gt.new_zeros(())
    for i, p in enumerate(flow_preds):
        smooth = textureless_smoothness(p, image, mask, threshold=threshold)
        match = gradient_matching(p, flow_gt, mask)
        loss = loss + gamma ** (n - 1 - i) * (smooth_weight * smooth + match_weight * match)
    metrics.update(smooth=smooth.item(), match=match.item())
    return loss, metrics
