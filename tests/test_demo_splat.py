"""The splatting demo (`make demo`): its head, its rigid turn, and its flow check, small and fast."""

from __future__ import annotations

import torch

from benchmarks import demo_splat as demo
from pyflowops.reference.splat import quat_to_rotmat


def test_turn_is_rigid_and_keeps_the_gaussians_tangent():
    head = demo.gaussian_head(300, torch.Generator().manual_seed(0))
    moved, rot = demo.turn(head, yaw_deg=10.0, nod_deg=5.0)
    torch.testing.assert_close(rot @ rot.T, torch.eye(3), atol=1e-6, rtol=0)
    torch.testing.assert_close(moved.means, head.means @ rot.T)
    # each Gaussian's frame turns with the head: Rq(t+1) = rot Rq(t)
    before = quat_to_rotmat(head.quats)
    after = quat_to_rotmat(moved.quats)
    torch.testing.assert_close(after, rot @ before, atol=1e-5, rtol=0)
    # thin axis along the ellipsoid's normal at the mean
    normal = torch.nn.functional.normalize(head.means / torch.tensor(demo.HEAD_AXES) ** 2, dim=1)
    assert (before[:, :, 2] * normal).sum(1).abs().min() > 0.999


def test_order_one_flow_matches_the_surface_and_the_figure_is_written(tmp_path):
    result = demo.run(size=96, gaussians=6000, out=tmp_path)
    assert result["epe_order1"] < 0.1  # px; the turn moves the surface by up to ~3 px here
    assert result["epe_order1"] < 0.5 * result["epe_order0"]
    assert (tmp_path / "splat_demo.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "head.ply").stat().st_size > 6000 * 14 * 4
