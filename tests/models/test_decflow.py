"""DecFlow: the facial / head / expression split, the pluggable semantic encoder and its
one-time warning, stage-2 freezing and the decomposed loss on the model's own output."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn as nn

import pyflowops_models
from pyflowops_models import decflow as decflow_module
from pyflowops_models.decflow import DecFlow
from pyflowops_models.losses import decflow_loss
from pyflowops_models.semantic import FacePartsEncoder, ResNet50Stage2

H, W = 44, 60


def _images(seed=1):
    g = torch.Generator().manual_seed(seed)
    image1 = torch.rand(1, 3, H, W, generator=g) * 255
    return image1, torch.roll(image1, shifts=(1, 2), dims=(2, 3))


def _model(**options):
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pyflowops_models.create("decflow", size="small", corr="allpairs", **options)


def test_expression_is_facial_minus_head_exactly():
    model = _model().eval()
    model.update_block_head.flow_head.conv2.bias.data += 0.5  # the two decoders must differ
    with torch.no_grad():
        out = model(*_images(), iters=2)
    assert torch.equal(out["expression"], out["facial"] - out["head"])
    assert not torch.equal(out["facial"], out["head"])


def test_decoders_share_correlation_and_attention_but_not_state():
    model = _model().eval()
    model.update_block_head.load_state_dict(model.update_block.state_dict())  # same weights -> same flow
    with torch.no_grad():
        out = model(*_images(), iters=2)
    torch.testing.assert_close(out["facial"], out["head"])


def test_default_semantic_encoders_and_the_one_time_warning(monkeypatch):
    monkeypatch.setattr(decflow_module, "_warned_untrained", False)
    with pytest.warns(UserWarning, match="random weights") as record:
        small = DecFlow(size="small")
        DecFlow(size="small")  # said once per process, not per model
    assert len([w for w in record if "random weights" in str(w.message)]) == 1
    assert isinstance(small.semantic_encoder, FacePartsEncoder)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        full = DecFlow(size="full")
    assert isinstance(full.semantic_encoder, ResNet50Stage2)
    assert full.change_dim.weight.shape == (256, 512, 1, 1)  # the official 1x1 conv 512 -> 256
    assert full.res1.conv1.weight.shape == (256, 512, 3, 3)  # the official ResidualBlock(512, 256)


def test_semantic_weights_from_a_file_silence_the_warning(tmp_path, monkeypatch):
    monkeypatch.setattr(decflow_module, "_warned_untrained", False)
    torch.manual_seed(5)
    trained = FacePartsEncoder()
    path = tmp_path / "faceparts.pth"
    torch.save(trained.state_dict(), path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = DecFlow(size="small", semantic="faceparts", semantic_weights=path)
    for k, v in trained.state_dict().items():
        assert torch.equal(model.semantic_encoder.state_dict()[k], v)


class _Edges(nn.Module):
    """A user's semantic module: any [B, 3, H, W] -> [B, C, H/8, W/8] with ``out_channels``."""

    out_channels = 5

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 5, 8, stride=8)

    def forward(self, x):
        return self.conv(x)


def test_any_module_plugs_in_and_is_frozen():
    model = _model(semantic=_Edges()).train()
    assert not any(p.requires_grad for p in model.semantic_encoder.parameters())
    assert model.change_dim.in_channels == 5
    out = model(*_images(), iters=1)
    sum(f.abs().mean() for f in out["facial"] + out["head"]).backward()
    assert model.change_dim.weight.grad is not None and model.semantic_encoder.conv.weight.grad is None


@pytest.mark.parametrize(
    "options, match",
    [
        (dict(semantic="clip"), "semantic must be one of"),
        (dict(semantic=3), "semantic must be a name or an nn.Module"),
        (dict(semantic=nn.Identity()), "out_channels"),
        (dict(semantic=_Edges(), semantic_weights="x.pth"), "semantic_weights is for a named encoder"),
    ],
)
def test_bad_semantic_options(options, match):
    with pytest.raises(ValueError, match=match):
        _model(**options)


def test_semantic_encoder_stays_in_eval_mode():
    model = _model().train()
    assert model.training and not model.semantic_encoder.training
    stats = [b.running_mean.clone() for b in model.semantic_encoder.modules() if isinstance(b, nn.BatchNorm2d)]
    model(*_images(), iters=1)
    after = [b.running_mean for b in model.semantic_encoder.modules() if isinstance(b, nn.BatchNorm2d)]
    assert all(torch.equal(a, b) for a, b in zip(stats, after))


def test_freeze_stage2_trains_only_the_head_decoder_and_the_semantic_conv():
    model = _model().train()
    model.freeze_stage2()
    out = model(*_images(), iters=2)
    gt = torch.randn(1, 2, H, W)
    loss, _ = decflow_loss(out["facial"], out["head"], gt, 0.5 * gt)
    loss.backward()
    with_grad = {n.split(".")[0] for n, p in model.named_parameters() if p.grad is not None}
    assert with_grad == {"update_block_head", "change_dim"}
    assert all(p.grad is not None for p in model.update_block_head.parameters())
    assert not any(m.training for m in model.cnet.modules() if isinstance(m, nn.BatchNorm2d))


def test_decflow_loss_on_the_models_training_output():
    model = _model().train()
    out = model(*_images(), iters=3)
    assert len(out["facial"]) == len(out["head"]) == 3
    gt = torch.randn(1, 2, H, W)
    loss, metrics = decflow_loss(out["facial"], out["head"], gt, 0.5 * gt)
    assert torch.isfinite(loss) and set(metrics) >= {"facial", "head", "expression", "epe"}
    loss.backward()
    assert model.res1.conv1.weight.grad is not None  # trained here; the official block is frozen by a bug


def test_official_layout_sets_the_pytorchcv_stride():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = DecFlow(size="full")
    state = {"dad_encoder.model.0.conv.conv.weight": model.semantic_encoder.conv1.weight.clone()}
    translated, ignored = model.translate_official_state(state)
    assert set(translated) == {"semantic_encoder.conv1.weight"} and ignored == []
    assert model.semantic_encoder.layer2[0].conv1.stride == (2, 2)
    ours = {"fnet.conv1.weight": torch.zeros(1)}
    assert model.translate_official_state(ours) == (ours, [])  # our own layout passes through
