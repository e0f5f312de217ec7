"""Gradient regularization as an ``nn.Module`` for training losses (SRFlowNet, edge-aware smoothness)."""

from __future__ import annotations

import torch
from torch import nn

from pyflowops import _backend
from pyflowops.ops import gradreg as gradreg_ops

__all__ = ["GradientRegularization"]


class GradientRegularization(nn.Module):
    """Holds the arguments of :func:`pyflowops.gradient_regularization`; call it with the tensors.

    Args:
        operator: ``"sobel"`` or ``"diff"``.
        order: 1 (dx, dy) or 2 (dxx, dxy, dyy; ``"diff"`` only).
        penalty: ``"l1"``, ``"charbonnier"`` or ``"l2"``.
        eps: Charbonnier's epsilon, >= 0.
        edge_weight: decay of the per-pixel weight with the image's edge strength.
        textureless_threshold: regularize only where the edge strength is below it.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        backend: backend of every call (None = the current default).

    Shapes (``forward``): flow [B, 2, H, W], image [B, C, H, W], mask [B, 1, H, W],
    target [B, 2, H, W] -> 0-dim, or [B, H, W] for ``reduction="none"``.

    Example:
        >>> import torch
        >>> from pyflowops.nn import GradientRegularization
        >>> smoothness = GradientRegularization(edge_weight=10.0, textureless_threshold=0.05)
        >>> flow, image = torch.randn(2, 2, 16, 16), torch.rand(2, 3, 16, 16)
        >>> smoothness(flow, image).shape
        torch.Size([])
    """

    def __init__(
        self,
        operator: str = "sobel",
        order: int = 1,
        penalty: str = "charbonnier",
        eps: float = 1e-3,
        edge_weight: float = 0.0,
        textureless_threshold: float | None = None,
        reduction: str = "mean",
        backend: str | None = None,
    ) -> None:
        super().__init__()
        self.options = dict(
            operator=operator,
            order=order,
            penalty=penalty,
            eps=eps,
            edge_weight=edge_weight,
            textureless_threshold=textureless_threshold,
            reduction=reduction,
            backend=backend,
        )
        # Fail at construction, not at the first training step: a tiny call validates every option.
        if backend is not None:
            _backend.check_backend_name(backend)
        probe = torch.zeros(1, 2, 1, 1)
        gradreg_ops.gradient_regularization(probe, **{**self.options, "backend": "torch"})

    def forward(
        self,
        flow: torch.Tensor,
        image: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        target: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return gradreg_ops.gradient_regularization(flow, image, mask, target, **self.options)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.options.items() if v is not None)
