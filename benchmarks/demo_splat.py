"""Gaussian-splatting demo: render a Gaussian head turning, with its exact optical flow.

``python -m benchmarks.demo_splat`` (part of ``make demo``), on built-in data:

1. builds a head of Gaussians (an ellipsoid of skin with eyes, brows, lips and hair),
   writes it to ``demo_out/head.ply`` in the 3DGS layout and reads it back;
2. turns it by a few degrees (yaw and a nod) and renders frames t and t+1, the
   forward flow t -> t+1 (order 0 and order 1), the backward flow and the
   forward-backward occlusion mask, timing each on the CPU kernels;
3. checks the rendered flow against the exact flow of the ellipsoid the Gaussians lie
   on (each pixel's ray hits it, the hit point turns with the head and is projected
   again): the end-point error of order 0 and order 1 is printed;
4. writes ``demo_out/splat_demo.png``: both frames, the flow (hue = direction,
   brightness = magnitude), and the occlusion mask.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

import pyflowops
from pyflowops.flow_render import flow_occlusion, render_flow
from pyflowops.gaussians import Gaussians

OUT_DIR = Path("demo_out")
HEAD_AXES = (0.75, 1.0, 0.85)  # the ellipsoid the head's Gaussians lie on (world units)


def gaussian_head(n: int, generator: torch.Generator) -> Gaussians:
    """``n`` flat Gaussians on the ellipsoid ``HEAD_AXES`` at the origin, tangent to it; the face looks towards -z."""
    u = torch.rand(n, generator=generator) * 2 - 1  # sin(latitude)
    phi = torch.rand(n, generator=generator) * 2 * math.pi
    r = torch.sqrt(1 - u**2)
    unit = torch.stack([r * torch.cos(phi), -u, r * torch.sin(phi)], dim=1)  # y down, z away from camera
    axes = torch.tensor(HEAD_AXES)
    means = unit * axes
    normal = torch.nn.functional.normalize(unit / axes, dim=1)
    # A quaternion turning +z onto the normal: the Gaussian's thin axis (z) along the normal.
    z = torch.tensor([0.0, 0.0, 1.0]).expand(n, 3)
    half = torch.nn.functional.normalize(z + normal + 1e-9 * torch.tensor([1.0, 0.0, 0.0]), dim=1)
    quats = torch.cat([(z * half).sum(1, keepdim=True), torch.linalg.cross(z, half)], dim=1)
    spacing = math.sqrt(4 * math.pi * 0.85 / n)  # mean distance between neighbours on the surface
    scales = torch.tensor([1.0, 1.0, 0.05]) * spacing * (0.8 + 0.4 * torch.rand(n, 1, generator=generator))
    # Colours: skin, then the features of the front (z < 0 faces the camera) in the image-plane position.
    x, y, front = unit[:, 0], unit[:, 1], unit[:, 2] < 0
    colors = torch.tensor([0.88, 0.68, 0.56]).expand(n, 3).clone() * (0.9 + 0.1 * torch.rand(n, 1, generator=generator))

    def spot(cx, cy, rx, ry):
        return front & (((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 < 1)

    colors[spot(-0.3, -0.12, 0.12, 0.06) | spot(0.3, -0.12, 0.12, 0.06)] = torch.tensor([0.12, 0.1, 0.1])  # eyes
    colors[spot(-0.3, -0.27, 0.16, 0.03) | spot(0.3, -0.27, 0.16, 0.03)] = torch.tensor([0.3, 0.2, 0.15])  # brows
    colors[spot(0.0, 0.45, 0.22, 0.06)] = torch.tensor([0.7, 0.25, 0.25])  # lips
    hair = y < -0.45 + 0.25 * (~front).float()
    colors[hair] = torch.tensor([0.22, 0.14, 0.08]) * (0.7 + 0.6 * torch.rand(int(hair.sum()), 1, generator=generator))
    return Gaussians(means, quats, scales, torch.full((n,), 0.95), colors.clamp(0, 1))


def turn(g: Gaussians, yaw_deg: float, nod_deg: float) -> tuple[Gaussians, torch.Tensor]:
    """The head rotated about its centre (yaw about y, then a nod about x) and that rotation [3, 3]."""
    a, b = math.radians(yaw_deg), math.radians(nod_deg)
    yaw = torch.tensor([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])
    nod = torch.tensor([[1, 0, 0], [0, math.cos(b), -math.sin(b)], [0, math.sin(b), math.cos(b)]])
    rot = nod @ yaw
    # quaternion of rot (w, x, y, z), composed with each Gaussian's: q' = q_rot * q
    w = math.sqrt(max(0.0, 1 + rot[0, 0] + rot[1, 1] + rot[2, 2])) / 2
    q = torch.tensor([w, (rot[2, 1] - rot[1, 2]) / (4 * w), (rot[0, 2] - rot[2, 0]) / (4 * w),
                      (rot[1, 0] - rot[0, 1]) / (4 * w)])  # fmt: skip
    qw, qv = q[0], q[1:]
    pw, pv = g.quats[:, :1], g.quats[:, 1:]
    quats = torch.cat([qw * pw - (pv * qv).sum(1, keepdim=True), qw * pv + pw * qv + torch.linalg.cross(qv.expand_as(pv), pv)], 1)
    return Gaussians(g.means @ rot.T, quats, g.scales, g.opacities, g.colors), rot


def camera(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    viewmat = torch.eye(4)
    viewmat[2, 3] = 4.0  # the head's centre 4 units in front of the camera
    focal = 1.6 * size
    K = torch.tensor([[focal, 0.0, size / 2], [0.0, focal, size / 2], [0.0, 0.0, 1.0]])
    return viewmat, K


def surface_flow(rot: torch.Tensor, viewmat: torch.Tensor, K: torch.Tensor, size: int) -> torch.Tensor:
    """[H, W, 2] exact flow of the head's surface: each pixel's ray hits the ellipsoid (NaN where it misses),
    the hit point turns with the head and is projected again."""
    ys, xs = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij")
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    ray_cam = torch.stack([(xs - cx) / fx, (ys - cy) / fy, torch.ones_like(xs)], -1)
    rot_w, trans = viewmat[:3, :3], viewmat[:3, 3]
    origin, ray = -(rot_w.T @ trans), ray_cam @ rot_w  # the camera centre and the rays, in world space
    axes = torch.tensor(HEAD_AXES)
    o, d = origin / axes, ray / axes  # the ellipsoid becomes the unit sphere: |o + s d|^2 = 1
    a, b, c = (d * d).sum(-1), 2 * (d * o).sum(-1), (o * o).sum() - 1
    s = (-b - torch.sqrt(b * b - 4 * a * c)) / (2 * a)  # nearest hit (NaN: no hit)
    moved = (origin + s.unsqueeze(-1) * ray) @ rot.T @ rot_w.T + trans
    proj = torch.stack([fx * moved[..., 0] / moved[..., 2] + cx, fy * moved[..., 1] / moved[..., 2] + cy], -1)
    return proj - torch.stack([xs, ys], -1)


def flow_picture(flow: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """[H, W, 3] in [0, 1]: hue = direction, value = magnitude / its 99th percentile (black where nothing is hit)."""
    from matplotlib.colors import hsv_to_rgb

    mag = flow.norm(dim=-1)
    hit = alpha[..., 0] > 0.5
    scale = torch.quantile(mag[hit], 0.99).clamp_min(1e-9) if hit.any() else 1.0
    hue = (torch.atan2(flow[..., 1], flow[..., 0]) / (2 * math.pi)) % 1.0
    value = (mag / scale).clamp(max=1.0) * hit
    return torch.from_numpy(hsv_to_rgb(torch.stack([hue, torch.ones_like(hue), value], -1).numpy()))


def _timed(label: str, fn):
    t0 = time.perf_counter()
    out = fn()
    print(f"  {label:<44s} {1e3 * (time.perf_counter() - t0):8.1f} ms")
    return out


def run(size: int, gaussians: int, out: Path) -> dict[str, float]:
    """Steps 1-4 of the module docstring; returns the mean end-point errors (order 0 and 1) and the occluded share."""
    out.mkdir(parents=True, exist_ok=True)
    backend = "cpu" if "cpu" in pyflowops.available_backends() else "torch"
    print(f"pyflowops Gaussian-splatting demo: a {gaussians:,}-Gaussian head at {size}², backend {backend}")

    head = gaussian_head(gaussians, torch.Generator().manual_seed(0))
    head.save_ply(out / "head.ply")
    head = Gaussians.load_ply(out / "head.ply")
    moved, rot = turn(head, yaw_deg=4.0, nod_deg=1.5)
    viewmat, K = camera(size)

    def render(g: Gaussians):
        return pyflowops.render(g.means, g.quats, g.scales, g.opacities, g.colors, viewmat, K, size, size,
                                backend=backend)

    def flow(a: Gaussians, b: Gaussians, order: int):
        return render_flow(a.means, a.quats, a.scales, a.opacities, b.means, b.quats, b.scales, viewmat, K,
                           size, size, order=order, backend=backend)

    with torch.no_grad():
        image0, alpha0, depth0 = _timed("render frame t (image, alpha, depth)", lambda: render(head))
        image1, _, _ = _timed("render frame t+1", lambda: render(moved))
        fw1, alpha_fw, _ = _timed("forward flow t -> t+1, order 1", lambda: flow(head, moved, 1))
        fw0, _, _ = _timed("forward flow t -> t+1, order 0", lambda: flow(head, moved, 0))
        bw1, _, _ = _timed("backward flow t+1 -> t, order 1", lambda: flow(moved, head, 1))
        occluded = _timed("forward-backward occlusion mask", lambda: flow_occlusion(fw1, bw1))

    truth = surface_flow(rot, viewmat, K, size)
    opaque = (alpha0[..., 0] > 0.99) & truth.isfinite().all(-1)
    result = {"occluded": float(occluded[opaque].float().mean())}
    for order, f in ((0, fw0), (1, fw1)):
        epe = (f - truth).norm(dim=-1)[opaque]
        result[f"epe_order{order}"] = float(epe.mean())
        print(f"  order {order}: end-point error vs the surface's exact flow, opaque pixels: mean {epe.mean():.3f} px, "
              f"median {epe.median():.3f} px (flow up to {truth[opaque].norm(dim=-1).max():.1f} px)")
    print(f"  occluded (forward-backward check): {result['occluded']:.1%} of the head's pixels")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 5, figsize=(20, 4.4))
    error = torch.where(opaque, (fw1 - truth).norm(dim=-1), torch.nan)
    panels = [(image0.clamp(0, 1), "frame t", None), (image1.clamp(0, 1), "frame t+1 (yaw 4°, nod 1.5°)", None),
              (flow_picture(fw1, alpha_fw), "flow t → t+1 (order 1)", None),
              (error, "order-1 error vs the exact surface flow (px)", "magma"),
              (occluded.float(), "occluded (forward-backward check)", "gray")]
    for ax, (img, title, cmap) in zip(axes, panels):
        shown = ax.imshow(img.numpy(), cmap=cmap)
        if cmap == "magma":
            fig.colorbar(shown, ax=ax, fraction=0.046)
        ax.set_title(title, fontsize=10)
        ax.axis("off")
    fig.tight_layout()
    path = out / "splat_demo.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    print(f"  wrote {path} and {out / 'head.ply'}")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.demo_splat", description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512, help="image side (pixels)")
    parser.add_argument("--gaussians", type=int, default=60_000)
    parser.add_argument("--out", type=Path, default=OUT_DIR)
    args = parser.parse_args(argv)
    run(args.size, args.gaussians, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
