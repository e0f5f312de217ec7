"""Random inputs and checks shared by the Gaussian-splatting tests (test_splat_project.py,
test_splat_rasterize.py, test_splat_errors.py). The exact math is docs/splat_kernel_contract.md."""

from __future__ import annotations

import math

import torch
from _utils import assert_close, noncontiguous

F64 = torch.float64

# Under the Triton interpreter every program iteration is simulated in numpy (~1 ms per Gaussian):
# keep N <= 30 and images <= 24 x 20 there.
INTERP_N, INTERP_SIZE = 24, (20, 16)  # N, (width, height)


def camera(width: int, height: int, dtype=F64, device="cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """(viewmat [4, 4], K [3, 3]): a slightly rotated, translated camera; fx != fy, off-center principal point."""
    ax, ay, az = 0.1, -0.15, 0.05
    rx = torch.tensor([[1, 0, 0], [0, math.cos(ax), -math.sin(ax)], [0, math.sin(ax), math.cos(ax)]], dtype=F64)
    ry = torch.tensor([[math.cos(ay), 0, math.sin(ay)], [0, 1, 0], [-math.sin(ay), 0, math.cos(ay)]], dtype=F64)
    rz = torch.tensor([[math.cos(az), -math.sin(az), 0], [math.sin(az), math.cos(az), 0], [0, 0, 1]], dtype=F64)
    viewmat = torch.eye(4, dtype=F64)
    viewmat[:3, :3] = rz @ ry @ rx
    viewmat[:3, 3] = torch.tensor([0.2, -0.1, 0.3], dtype=F64)
    fx, fy = 1.1 * width, 1.0 * width
    K = torch.tensor([[fx, 0.0, width / 2 + 0.3], [0.0, fy, height / 2 - 0.2], [0.0, 0.0, 1.0]], dtype=F64)
    return viewmat.to(dtype=dtype, device=device), K.to(dtype=dtype, device=device)


def world_gaussians(n: int, width: int, height: int, channels: int = 3, dtype=F64, device="cpu") -> dict:
    """3D Gaussians that mostly land on the image (some overhang it, ~10% project off it), 0.3-3 px wide.

    Keys: means [N,3], quats [N,4] (random norm), scales [N,3] (some negative), opacities [N], features [N,C].
    """
    viewmat, K = camera(width, height)
    fx = K[0, 0]
    z = torch.rand(n, dtype=F64) * 6 + 2
    u = torch.rand(n, dtype=F64) * 1.4 * width - 0.2 * width
    v = torch.rand(n, dtype=F64) * 1.4 * height - 0.2 * height
    cam = torch.stack([(u - K[0, 2]) * z / fx, (v - K[1, 2]) * z / K[1, 1], z], -1)
    means = (cam - viewmat[:3, 3]) @ viewmat[:3, :3]  # world = R^T (t - T)
    pixels = torch.exp(torch.empty(n, 3, dtype=F64).uniform_(math.log(0.3), math.log(3.0)))
    scales = pixels * z.unsqueeze(-1) / fx
    scales[::5, 1] *= -1  # the sign of a scale must not matter
    quats = torch.randn(n, 4, dtype=F64) * (torch.rand(n, 1, dtype=F64) * 2 + 0.2)
    opacities = torch.rand(n, dtype=F64) * 0.9 + 0.05
    features = torch.rand(n, channels, dtype=F64)
    out = {"means": means, "quats": quats, "scales": scales, "opacities": opacities, "features": features}
    return {k: v.to(dtype=dtype, device=device) for k, v in out.items()}


def screen_gaussians(
    n: int, width: int, height: int, channels: int = 3, dtype=F64, device="cpu", faint: bool = False
) -> dict:
    """Screen-space Gaussians as project_gaussians returns them, 0.5-4 px wide, some overhanging the image,
    opaque enough that pixels reach the early stop (``faint``: opacities * 0.3, pixels stay far from
    opaque); a few depth ties and a few radius-0 (skipped) ones.

    Keys: means2d [N,2], conics [N,3], opacities [N], features [N,C], depths [N], radii [N] int32.
    """
    size = torch.tensor([width, height], dtype=F64)
    means2d = torch.rand(n, 2, dtype=F64) * (size + 6) - 3
    angle = torch.rand(n, dtype=F64) * math.pi
    sd = torch.exp(torch.empty(n, 2, dtype=F64).uniform_(math.log(0.5), math.log(4.0)))
    rot = torch.stack([torch.cos(angle), -torch.sin(angle), torch.sin(angle), torch.cos(angle)], -1).view(n, 2, 2)
    cov = rot @ torch.diag_embed(sd**2) @ rot.transpose(-1, -2) + 0.3 * torch.eye(2, dtype=F64)
    inv = torch.linalg.inv(cov)
    conics = torch.stack([inv[:, 0, 0], inv[:, 0, 1], inv[:, 1, 1]], -1)
    radii = torch.ceil(3 * torch.sqrt(torch.linalg.eigvalsh(cov)[:, 1])).to(torch.int32)
    radii[3::11] = 0
    opaque = torch.rand(n, dtype=F64) < 0.7
    opacities = torch.where(opaque, torch.rand(n, dtype=F64) * 0.1 + 0.89, torch.rand(n, dtype=F64))
    opacities = opacities * 0.3 if faint else opacities
    depths = torch.rand(n, dtype=F64) * 9 + 1
    depths[1::7] = depths[0]  # ties: resolved by index
    features = torch.rand(n, channels, dtype=F64) * 2 - 0.5
    out = {"means2d": means2d, "conics": conics, "opacities": opacities, "features": features, "depths": depths}
    out = {k: v.to(dtype=dtype, device=device) for k, v in out.items()}
    out["radii"] = radii.to(device)
    return out


def leaves(*tensors: torch.Tensor, dtype=None, device=None, noncontig: bool = False) -> list[torch.Tensor]:
    """Fresh leaf copies (optionally converted, non-contiguous) that require grad."""
    out = []
    for t in tensors:
        t = t.detach().to(dtype=dtype or t.dtype, device=device or t.device)
        if noncontig:
            t = noncontiguous(t)
        out.append(t.requires_grad_())
    return out


def grads(outputs, inputs, cotangents, retain_graph: bool = False) -> tuple:
    """Gradients of sum <output, cotangent> w.r.t. inputs (zeros where unused)."""
    result = torch.autograd.grad(outputs, inputs, cotangents, retain_graph=retain_graph, allow_unused=True)
    return tuple(torch.zeros_like(x) if g is None else g for g, x in zip(result, inputs))


def cotangents_like(outputs) -> list[torch.Tensor]:
    """One random cotangent per floating output."""
    return [torch.randn(o.shape, dtype=o.dtype, device=o.device) for o in outputs]


def assert_all_close(actual, expected, names, dtype=None, scale: float = 1.0) -> None:
    """assert_close per pair, naming the tensor that differs."""
    for a, e, name in zip(actual, expected, names):
        try:
            assert_close(a, e, dtype, scale)
        except AssertionError as exc:
            raise AssertionError(f"{name}: {exc}") from None
