"""The gradient-regularization demo (`make demo`): its built-in data and its denoising step, small and fast."""

from __future__ import annotations

import torch

from benchmarks import demo_gradreg as demo


def test_synthetic_face_has_skin_and_texture():
    image, head = demo.synthetic_face(64, torch.Generator().manual_seed(0))
    assert image.shape == (1, 3, 64, 64) and head.shape == (1, 1, 64, 64) and head.dtype == torch.bool
    assert 0 <= image.min() and image.max() <= 1
    texture_less = demo.pyflowops.textureless_mask(image, demo.THRESHOLD)
    on_head = texture_less[head]
    assert 0.5 < on_head.float().mean() < 0.95  # mostly smooth skin, some edges and hair


def test_regularization_quiets_the_skin_and_the_figure_is_written(tmp_path):
    gen = torch.Generator().manual_seed(0)
    image, head = demo.synthetic_face(64, gen)
    truth = demo.facial_motion(64, head)
    noisy = truth + 0.6 * torch.randn(truth.shape, generator=gen)
    regularized = demo.regularize(noisy, image, head, steps=60, weight=demo.REG_WEIGHT)
    skin = demo.pyflowops.textureless_mask(image, demo.THRESHOLD) & head

    def epe(flow):
        return torch.sqrt(((flow - truth) ** 2).sum(1, keepdim=True))[skin].mean()

    assert epe(regularized) < 0.75 * epe(noisy)
    path = tmp_path / "demo.png"
    demo.save_figure(path, image, skin, noisy, regularized, truth)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
