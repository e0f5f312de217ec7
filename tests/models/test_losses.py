"""Losses: hand-computed values, masking, the decomposition, and the regularization terms."""

from __future__ import annotations

import pytest
import torch

from pyflowops_models.losses import (
    decflow_loss,
    gradient_matching,
    sequence_loss,
    srflownet_loss,
    textureless_smoothness,
)


def test_sequence_loss_hand_computed():
    gt = torch.zeros(1, 2, 4, 4)
    preds = [gt + 1.0, gt + 0.5]  # |.|_1 mean: 1 and 0.5; weights 0.8, 1
    loss, metrics = sequence_loss(preds, gt, gamma=0.8)
    assert loss.item() == pytest.approx(0.8 * 1.0 + 0.5)
    assert metrics["epe"] == pytest.approx(0.5 * 2**0.5)
    assert metrics["1px"] == 1.0


def test_sequence_loss_masks_invalid_and_huge_ground_truth():
    gt = torch.zeros(1, 2, 2, 2)
    gt[0, 0, 0, 0] = 500.0  # beyond max_flow
    valid = torch.ones(1, 2, 2)
    valid[0, 1, 1] = 0
    pred = gt.clone()
    pred[0, :, 0, 1] = 3.0  # the one valid pixel with an error: |3| + |3| over 8 values
    loss, metrics = sequence_loss([pred], gt, valid)
    assert loss.item() == pytest.approx(6.0 / 8)
    assert metrics["epe"] == pytest.approx(3 * 2**0.5 / 2)  # 2 valid pixels: 0 and 3*sqrt(2)
    assert metrics["3px"] == 0.5


def test_decflow_loss_is_the_weighted_sum_with_expression_as_difference():
    torch.manual_seed(0)
    fac_gt, head_gt = torch.randn(2, 2, 6, 5), torch.randn(2, 2, 6, 5)
    fac = [torch.randn(2, 2, 6, 5, requires_grad=True) for _ in range(3)]
    head = [torch.randn(2, 2, 6, 5, requires_grad=True) for _ in range(3)]
    loss, m = decflow_loss(fac, head, fac_gt, head_gt, gamma=0.85)
    exp_loss, _ = sequence_loss([f - h for f, h in zip(fac, head)], fac_gt - head_gt, gamma=0.85)
    fac_loss, _ = sequence_loss(fac, fac_gt, gamma=0.85)
    head_loss, _ = sequence_loss(head, head_gt, gamma=0.85)
    torch.testing.assert_close(loss, fac_loss + 0.8 * head_loss + 1.5 * exp_loss)
    assert m["expression"] == pytest.approx(exp_loss.item())
    loss.backward()
    assert all(t.grad is not None and t.grad.abs().sum() > 0 for t in fac + head)


def test_gradient_matching_ignores_constant_offsets():
    torch.manual_seed(0)
    gt = torch.randn(1, 2, 9, 8)
    assert gradient_matching(gt + torch.tensor([3.0, -1.0]).view(1, 2, 1, 1), gt).item() == pytest.approx(0, abs=1e-6)
    assert gradient_matching(gt + 0.1 * torch.randn_like(gt), gt).item() > 0.01


def test_textureless_smoothness_spares_image_edges():
    image = torch.zeros(1, 3, 16, 16)
    image[..., 8:] = 1.0  # an edge between columns 7 and 8
    step = torch.zeros(1, 2, 16, 16)
    at_edge, in_flat = step.clone(), step.clone()
    at_edge[:, :, :, 8:] = 2.0  # the flow jumps where the image does
    in_flat[:, :, :, 4:] = 2.0  # the same jump inside a flat region
    floor = textureless_smoothness(step, image, threshold=0.05).item()  # charbonnier's eps on a constant flow
    assert textureless_smoothness(at_edge, image, threshold=0.05).item() == pytest.approx(floor, abs=1e-6)
    assert textureless_smoothness(in_flat, image, threshold=0.05).item() > floor + 0.01
    assert textureless_smoothness(at_edge, image, threshold=0.05, penalty="l1").item() == 0


def test_srflownet_loss_adds_the_terms_and_reaches_the_predictions():
    torch.manual_seed(0)
    gt = torch.randn(1, 2, 12, 10)
    image = torch.rand(1, 3, 12, 10) * 255
    preds = [torch.randn(1, 2, 12, 10, requires_grad=True) for _ in range(2)]
    base, _ = sequence_loss(preds, gt)
    loss, m = srflownet_loss(preds, gt, image, smooth_weight=0.1, match_weight=0.5)
    assert loss.item() > base.item() and m["match"] > 0
    loss.backward()
    assert all(p.grad.abs().sum() > 0 for p in preds)


def test_bad_shapes_name_the_argument():
    gt = torch.zeros(1, 2, 4, 4)
    with pytest.raises(ValueError, match="flow_preds"):
        sequence_loss([], gt)
    with pytest.raises(ValueError, match=r"flow_preds\[0\]"):
        sequence_loss([torch.zeros(1, 2, 4, 5)], gt)
    with pytest.raises(ValueError, match="flow_gt"):
        sequence_loss([gt], torch.zeros(1, 3, 4, 4))
    with pytest.raises(ValueError, match="valid"):
        sequence_loss([gt], gt, torch.ones(1, 5, 5))
    with pytest.raises(ValueError, match="head_preds"):
        decflow_loss([gt], [], gt, gt)
