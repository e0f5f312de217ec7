"""The random Gaussian scene every splat benchmark renders (one definition: kernels, peers and targets agree).

Like gsplat's random benchmark scene: N Gaussians uniform in a box in front of the camera,
random orientations, per-axis scales log-uniform, opacities uniform. The focal length is
the image width (about 53 degrees field of view), so the box fills most of the frame
and a Gaussian's footprint in pixels grows with the resolution.
"""

from __future__ import annotations

import math

import torch

__all__ = ["random_scene"]


def random_scene(
    n: int,
    width: int,
    height: int,
    *,
    channels: int = 3,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    device: str = "cpu",
) -> dict[str, torch.Tensor | int]:
    """Keyword arguments of ``pyflowops.render`` for a random scene of ``n`` Gaussians.

    Returns:
        means [n, 3] (box [-1.2, 1.2]^2 x [-1, 1], 4 units in front of the camera),
        quats [n, 4], scales [n, 3] (log-uniform in [0.004, 0.03]), opacities [n]
        (uniform in [0.1, 0.9]), features [n, channels] (uniform in [0, 1]),
        viewmat [4, 4], K [3, 3], width, height.
    """
    g = torch.Generator().manual_seed(seed)
    box = torch.tensor([1.2, 1.2, 1.0], dtype=torch.float64)
    means = (torch.rand(n, 3, generator=g, dtype=torch.float64) * 2 - 1) * box
    quats = torch.randn(n, 4, generator=g, dtype=torch.float64)
    low, high = math.log(0.004), math.log(0.03)
    scales = torch.exp(torch.rand(n, 3, generator=g, dtype=torch.float64) * (high - low) + low)
    opacities = torch.rand(n, generator=g, dtype=torch.float64) * 0.8 + 0.1
    features = torch.rand(n, channels, generator=g, dtype=torch.float64)
    viewmat = torch.eye(4, dtype=torch.float64)
    viewmat[2, 3] = 4.0
    focal = float(width)
    K = torch.tensor([[focal, 0.0, width / 2], [0.0, focal, height / 2], [0.0, 0.0, 1.0]], dtype=torch.float64)
    scene = dict(means=means, quats=quats, scales=scales, opacities=opacities, features=features, viewmat=viewmat, K=K)
    scene = {k: v.to(device=device, dtype=dtype) for k, v in scene.items()}
    return {**scene, "width": width, "height": height}
