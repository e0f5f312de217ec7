"""Flow visualisation: colour wheel against the flow_vis package, error maps, panels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from pyflowops.flow import error_map, flow_to_color, make_colorwheel, make_panel, write_panel

flow_vis = pytest.importorskip("flow_vis")


def _flows(dtype, n=6, seed=0):
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal((23, 31, 2)) * rng.uniform(0.05, 40)).astype(dtype) for _ in range(n)]


class TestViz:
    def test_colorwheel_matches_flow_vis(self):
        wheel = make_colorwheel()
        assert wheel.shape == (55, 3)
        np.testing.assert_array_equal(wheel, flow_vis.make_colorwheel())

    def test_matches_flow_vis_exactly_float64(self):
        for flow in _flows(np.float64):
            np.testing.assert_array_equal(flow_to_color(flow), flow_vis.flow_to_color(flow, convert_to_bgr=False))

    def test_matches_flow_vis_float32_within_one_level(self):
        # flow_vis computes in float32 for float32 input, we in float64: rare floor() boundary flips
        for flow in _flows(np.float32, seed=1):
            ours = flow_to_color(flow).astype(int)
            ref = flow_vis.flow_to_color(flow, convert_to_bgr=False).astype(int)
            assert np.abs(ours - ref).max() <= 1
            assert (ours != ref).mean() < 1e-3

    def test_max_flow_matches_flow_vis(self):
        # flow_vis's clip_flow clips u, v to [0, clip] (dropping negative motion), so compare with its
        # colouring of the flow divided by max_flow, which is what max_flow means here.
        for flow in _flows(np.float64, n=3, seed=2):
            ours = flow_to_color(flow, max_flow=3.5)
            np.testing.assert_array_equal(ours, flow_vis.flow_uv_to_colors(flow[..., 0] / 3.5, flow[..., 1] / 3.5))

    def test_zero_flow_is_white(self):
        zero = np.zeros((3, 4, 2))
        np.testing.assert_array_equal(flow_to_color(zero), 255)
        np.testing.assert_array_equal(flow_to_color(zero), flow_vis.flow_to_color(zero, convert_to_bgr=False))

    def test_torch_chw_and_nan(self):
        flow = _flows(np.float64, n=1)[0]
        chw = torch.from_numpy(flow).permute(2, 0, 1)
        np.testing.assert_array_equal(flow_to_color(chw), flow_to_color(flow))
        flow[0, 0] = np.nan
        image = flow_to_color(flow)
        np.testing.assert_array_equal(image[0, 0], 0)  # non-finite -> black
        np.testing.assert_array_equal(image[1:], flow_to_color(np.nan_to_num(flow))[1:])

    @pytest.mark.parametrize(
        "bad, err", [(0.0, ValueError), (-1.0, ValueError), (float("inf"), ValueError), ("2", TypeError)]
    )
    def test_bad_max_flow(self, bad, err):
        with pytest.raises(err, match="max_flow must"):
            flow_to_color(np.zeros((2, 2, 2)), max_flow=bad)

    def test_error_map(self):
        gt = np.zeros((6, 8, 2), np.float32)
        flow = gt.copy()
        flow[..., 0] = np.arange(8)  # error grows along x
        valid = np.ones((6, 8), bool)
        valid[2, 3] = False
        image = error_map(flow, gt, valid=valid)
        assert image.dtype == np.uint8 and image.shape == (6, 8, 3)
        np.testing.assert_array_equal(image[2, 3], 0)
        assert image[0, 7].sum() > image[0, 1].sum()  # magma: brighter = larger error
        # a fixed scale saturates everything beyond it
        fixed = error_map(torch.from_numpy(flow), torch.from_numpy(gt), max_error=2.0)
        np.testing.assert_array_equal(fixed[0, 3], fixed[0, 7])

    def test_error_map_shape_mismatch(self):
        with pytest.raises(ValueError, match="gt must have the shape of flow"):
            error_map(np.zeros((4, 5, 2)), np.zeros((5, 4, 2)))

    def test_make_panel_size(self):
        images = [np.zeros((10, 12, 3), np.uint8), np.ones((8, 5, 3), np.float32), np.zeros((10, 7), np.uint8)]
        panel = make_panel(images, ["a", "bb", "a long title"], gap=3)
        assert panel.dtype == np.uint8 and panel.ndim == 3 and panel.shape[2] == 3
        strip = panel.shape[0] - 10
        assert strip > 5 and panel.shape[1] == 12 + 5 + 7 + 2 * 3
        np.testing.assert_array_equal(panel[strip : strip + 8, 15:20], 255)  # float 1.0 -> 255
        assert panel[:strip].max() > 128  # some title text drawn (antialiased)

    def test_make_panel_errors(self):
        with pytest.raises(ValueError, match=r"titles must have one entry per image \(1\), got 2"):
            make_panel([np.zeros((2, 2, 3), np.uint8)], ["a", "b"])
        with pytest.raises(ValueError, match=r"images\[0\] must have shape \[H, W, 3\] or \[H, W\]"):
            make_panel([np.zeros((2, 2, 4), np.uint8)], ["a"])

    def test_write_panel(self, tmp_path):
        rng = np.random.default_rng(3)
        facial = rng.standard_normal((12, 10, 2))
        head = torch.from_numpy(3 * rng.standard_normal((2, 12, 10)))  # [2, H, W] torch
        panel = write_panel(tmp_path / "p.png", image=rng.random((12, 10, 3)), facial=facial, head=head,
                            expression=facial - 0.5)
        with Image.open(tmp_path / "p.png") as im:
            back = np.asarray(im.convert("RGB"))
        np.testing.assert_array_equal(back, panel)
        assert panel.shape[1] == 4 * 10 + 3 * 4
        # shared scale: the facial tile equals flow_to_color with the max over all three flows
        mags = [np.linalg.norm(f, axis=-1).max() for f in (facial, head.permute(1, 2, 0).numpy(), facial - 0.5)]
        strip = panel.shape[0] - 12
        np.testing.assert_array_equal(
            panel[strip:, 14:24], flow_to_color(facial, max_flow=max(mags) + 1e-5)
        )

    def test_write_panel_needs_something(self, tmp_path):
        with pytest.raises(ValueError, match="needs at least one of"):
            write_panel(tmp_path / "p.png")
