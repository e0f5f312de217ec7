"""Pure PyTorch twins of the gradient-regularization ops (the ``torch`` backend).

Written for clarity, not speed: each op is a chain of ``F.pad`` (replicate) +
``conv2d`` with the stencils below and pointwise torch ops, so autograd gives
the backward. The exact math every backend implements is
``docs/gradreg_kernel_contract.md``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = [
    "STENCILS",
    "edge_strength",
    "gradient_regularization",
    "regularization_weight",
    "spatial_gradient",
    "stencil",
    "textureless_mask",
]

# (operator, order) -> (integer taps [K][3][3] correlated with the image, normalizers [K]).
# Direction 0 is x (columns). The same kernels as kornia's get_spatial_gradient_kernel2d;
# normalized=True divides each by its response to a unit derivative (kornia's convention).
STENCILS: dict[tuple[str, int], tuple[list, list[int]]] = {
    ("sobel", 1): (
        [[[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], [[-1, -2, -1], [0, 0, 0], [1, 2, 1]]],
        [8, 8],
    ),
    ("diff", 1): (
        [[[0, 0, 0], [-1, 0, 1], [0, 0, 0]], [[0, -1, 0], [0, 0, 0], [0, 1, 0]]],
        [2, 2],
    ),
    ("diff", 2): (
        [
            [[0, 0, 0], [1, -2, 1], [0, 0, 0]],  # dxx
            [[1, 0, -1], [0, 0, 0], [-1, 0, 1]],  # dxy
            [[0, 1, 0], [0, -2, 0], [0, 1, 0]],  # dyy
        ],
        [1, 4, 1],
    ),
}


def stencil(operator: str, order: int, normalized: bool, dtype: torch.dtype, device) -> torch.Tensor:
    """The conv2d weight [K, 1, 3, 3] of ``(operator, order)``, scaled when ``normalized``."""
    taps, norms = STENCILS[(operator, order)]
    weight = torch.tensor(taps, dtype=torch.float64)
    if normalized:
        weight = weight / torch.tensor(norms, dtype=torch.float64).view(-1, 1, 1)
    return weight.unsqueeze(1).to(dtype=dtype, device=device)


def spatial_gradient(x: torch.Tensor, operator: str = "sobel", normalized: bool = True, order: int = 1) -> torch.Tensor:
    """x [B, C, H, W] -> [B, C, K, H, W]: K = 2 (dx, dy) or 3 (dxx, dxy, dyy), replicate padding."""
    batch, channels, height, width = x.shape
    weight = stencil(operator, order, normalized, x.dtype, x.device)
    directions = weight.shape[0]
    if x.numel() == 0:  # nothing to pad; still a function of x, so autograd reaches it
        return x.unsqueeze(2).expand(batch, channels, directions, height, width) * 0
    padded = F.pad(x.reshape(batch * channels, 1, height, width), (1, 1, 1, 1), mode="replicate")
    return F.conv2d(padded, weight).reshape(batch, channels, directions, height, width)


def edge_strength(image: torch.Tensor, operator: str = "sobel") -> torch.Tensor:
    """image [B, C, H, W] -> e [B, H, W]: mean over channels and (dx, dy) of |normalized gradient|."""
    return spatial_gradient(image, operator).abs().mean(dim=(1, 2))


def textureless_mask(image: torch.Tensor, threshold: float, operator: str = "sobel") -> torch.Tensor:
    """image [B, C, H, W] -> [B, 1, H, W] bool: True where the edge strength is below ``threshold``."""
    return (edge_strength(image, operator) < threshold).unsqueeze(1)


def regularization_weight(
    flow: torch.Tensor,
    image: torch.Tensor | None,
    mask: torch.Tensor | None,
    operator: str,
    edge_weight: float,
    textureless_threshold: float | None,
) -> torch.Tensor:
    """w [B, H, W] = mask * exp(-edge_weight * e) * [e < threshold] (factors absent when not asked for)."""
    batch, _, height, width = flow.shape
    weight = torch.ones(batch, height, width, dtype=flow.dtype, device=flow.device)
    if mask is not None:
        weight = weight * mask[:, 0].to(flow.dtype)
    if image is not None and (edge_weight != 0.0 or textureless_threshold is not None):
        strength = edge_strength(image, operator)
        if edge_weight != 0.0:  # exactly 1 otherwise, even where e is inf
            weight = weight * torch.exp(-edge_weight * strength)
        if textureless_threshold is not None:
            weight = torch.where(strength < textureless_threshold, weight, torch.zeros_like(weight))
    return weight


def gradient_regularization(
    flow: torch.Tensor,
    image: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    target: torch.Tensor | None = None,
    *,
    operator: str = "sobel",
    order: int = 1,
    penalty: str = "charbonnier",
    eps: float = 1e-3,
    edge_weight: float = 0.0,
    textureless_threshold: float | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """sum over flow channels and directions of rho(spatial_gradient(flow - target)), weighted per pixel.

    Shapes as :func:`pyflowops.gradient_regularization`; returns [B, H, W] for
    ``reduction="none"``, else a 0-dim tensor.
    """
    diff = flow - target if target is not None else flow
    grad = spatial_gradient(diff, operator, True, order)  # [B, 2, K, H, W]
    if penalty == "l1":
        rho = grad.abs()
    elif penalty == "charbonnier":
        rho = torch.sqrt(grad * grad + eps * eps)
    else:
        rho = grad * grad
    weight = regularization_weight(flow, image, mask, operator, edge_weight, textureless_threshold)
    loss = weight * rho.sum(dim=(1, 2))  # [B, H, W]
    if reduction == "none":
        return loss
    total = loss.sum()
    return total / loss.numel() if reduction == "mean" else total
