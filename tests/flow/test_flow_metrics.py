"""Flow metrics on hand-computed tiny cases."""

from __future__ import annotations

import math

import pytest
import torch

from pyflowops.flow import epe, flow_metrics, masked_epe, official_ffn_epe, sparse_epe


def _flow(u, v):
    """[1, 2, H, W] from two [H, W] nested lists."""
    return torch.tensor([u, v], dtype=torch.float64).unsqueeze(0)


# 2x2 image; errors (3,4) -> 5, (0,0) -> 0, (1,0) -> 1, (0,2) -> 2
GT = _flow([[0.0, 0.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]])
PRED = _flow([[3.0, 0.0], [1.0, 0.0]], [[4.0, 0.0], [0.0, 2.0]])
MASK = torch.tensor([[[True, True], [False, False]]])  # covers the errors 5 and 0


class TestMetrics:
    def test_epe(self):
        torch.testing.assert_close(epe(PRED, GT), torch.tensor([[[5.0, 0.0], [1.0, 2.0]]], dtype=torch.float64))

    def test_flow_metrics(self):
        m = flow_metrics(PRED, GT)
        assert m == pytest.approx({"epe": 2.0, "1px": 0.25, "3px": 0.75, "5px": 0.75})
        m = flow_metrics(PRED, GT, valid=MASK.float().unsqueeze(1))  # [B, 1, H, W] float
        assert m == pytest.approx({"epe": 2.5, "1px": 0.5, "3px": 0.5, "5px": 0.5})

    def test_masked_vs_official(self):
        masked = masked_epe(PRED, GT, MASK)
        official = official_ffn_epe(PRED, GT, MASK)
        assert masked.item() == pytest.approx((5 + 0) / 2)
        assert official.item() == pytest.approx((5 + 0 + 1 + 2) / 2)  # all pixels over the mask area
        # the difference is exactly the error outside the mask over the mask area
        outside = (epe(PRED, GT) * ~MASK).sum() / MASK.sum()
        assert (official - masked).item() == pytest.approx(outside.item())

    def test_batch_reduction(self):
        pred = torch.cat([PRED, 2 * PRED])  # second element: errors 10, 0, 2, 4
        gt = torch.cat([GT, GT])
        mask = torch.stack([MASK[0], torch.tensor([[False, False], [True, True]])]).float()
        per = masked_epe(pred, gt, mask, reduction="none")
        torch.testing.assert_close(per, torch.tensor([2.5, 3.0], dtype=torch.float64))
        assert masked_epe(pred, gt, mask).item() == pytest.approx(2.75)  # mean of per-element means
        # not the pooled mean over all masked pixels of the batch, (5 + 0 + 2 + 4) / 4
        torch.testing.assert_close(
            official_ffn_epe(pred, gt, mask, reduction="none"), torch.tensor([4.0, 8.0], dtype=torch.float64)
        )

    def test_empty_mask_is_nan(self):
        empty = torch.zeros(1, 2, 2, dtype=torch.bool)
        assert math.isnan(masked_epe(PRED, GT, empty).item())
        assert math.isnan(official_ffn_epe(PRED, GT, empty).item())
        assert all(math.isnan(x) for x in flow_metrics(PRED, GT, valid=empty).values())
        # a batch with one empty element: the mean skips it
        two = masked_epe(torch.cat([PRED, PRED]), torch.cat([GT, GT]), torch.cat([empty, MASK]))
        assert two.item() == pytest.approx(2.5)

    def test_nan_outside_mask_ignored(self):
        gt = GT.clone()
        gt[0, :, 1, 1] = float("nan")  # undefined ground truth outside the mask
        assert masked_epe(PRED, gt, MASK.float()).item() == pytest.approx(2.5)

    def test_sparse_constant_flow(self):
        flow = torch.zeros(1, 2, 5, 6)
        flow[:, 0], flow[:, 1] = 1.5, -0.5
        p0 = torch.tensor([[[0.0, 0.0], [2.3, 3.7], [5.0, 4.0]]])
        p1 = p0 + torch.tensor([1.5, -0.5])
        p1[0, 1] += torch.tensor([3.0, 4.0])  # one point off by (3, 4): EPE 5
        torch.testing.assert_close(sparse_epe(flow, p0, p1, reduction="none"), torch.tensor([[0.0, 5.0, 0.0]]))
        assert sparse_epe(flow, p0, p1).item() == pytest.approx(5 / 3)

    def test_sparse_linear_flow(self):
        # u = 0.1 x + 0.2 y + 1, v = -0.3 x + 0.05 y: bilinear sampling is exact on linear fields,
        # so an off-grid point pins down the x = column, y = row convention
        h, w = 7, 9
        f64 = torch.float64
        y, x = torch.meshgrid(torch.arange(h, dtype=f64), torch.arange(w, dtype=f64), indexing="ij")
        flow = torch.stack([0.1 * x + 0.2 * y + 1, -0.3 * x + 0.05 * y]).unsqueeze(0)
        p0 = torch.tensor([[[2.25, 5.5], [7.9, 0.1]]], dtype=torch.float64)
        px, py = p0[..., 0], p0[..., 1]
        exact = p0 + torch.stack([0.1 * px + 0.2 * py + 1, -0.3 * px + 0.05 * py], -1)
        torch.testing.assert_close(sparse_epe(flow, p0, exact, reduction="none"), torch.zeros(1, 2, dtype=f64))
        # hand value at (2.25, 5.5): flow = (2.325, -0.4); predicted end (4.575, 5.1)
        target = torch.tensor([[[4.575 + 0.6, 5.1 + 0.8], [0.0, 0.0]]], dtype=f64)
        target[0, 1] = exact[0, 1]
        expected = torch.tensor([[1.0, 0.0]], dtype=f64)
        torch.testing.assert_close(sparse_epe(flow, p0, target, reduction="none"), expected)

    def test_errors(self):
        with pytest.raises(ValueError, match=r"flow must have shape \[B, 2, H, W\], got \(2, 2, 2\)"):
            epe(PRED[0], GT[0])
        with pytest.raises(ValueError, match="gt must have the shape of flow"):
            epe(PRED, GT[..., :1])
        with pytest.raises(ValueError, match=r"mask must have shape \[B, H, W\] or \[B, 1, H, W\]"):
            masked_epe(PRED, GT, MASK[0])
        with pytest.raises(TypeError, match="mask must be bool or floating point, got torch.int64"):
            masked_epe(PRED, GT, MASK.long())
        with pytest.raises(ValueError, match=r"gt_points_t must have shape \[B, K, 2\] with B = 1"):
            sparse_epe(PRED, torch.zeros(3, 2), torch.zeros(3, 2))
        with pytest.raises(ValueError, match="reduction must be one of"):
            masked_epe(PRED, GT, MASK, reduction="sum")
