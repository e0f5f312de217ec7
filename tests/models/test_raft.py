"""RAFT in pyflowops_models: shapes, train/eval agreement, gradients, correlation modes,
determinism, autocast, official checkpoint keys and ``create``'s errors.

Small configuration, 2-3 iterations, 60x44 images (not multiples of 8, and under
the 64 pixels the 4-level pyramid needs, so the padding path is exercised).
"""

import pytest
import torch

import pyflowops_models
from pyflowops_models.correlation import allpairs_bytes, make_corr_block
from pyflowops_models.upsample import InputPadder, convex_upsample
from pyflowops.nn import AlternateCorrBlock, CorrBlock

H, W = 44, 60


def _images(batch=1, h=H, w=W, seed=1):
    g = torch.Generator().manual_seed(seed)
    image1 = torch.rand(batch, 3, h, w, generator=g) * 255
    # image 2: image 1 shifted by 2 pixels, so the flow is not arbitrary
    image2 = torch.roll(image1, shifts=(1, 2), dims=(2, 3))
    return image1, image2


def _model(size="small", corr="allpairs", seed=0):
    torch.manual_seed(seed)
    return pyflowops_models.create("raft", size=size, corr=corr)


@pytest.mark.parametrize("size", ["small", "full"])
def test_shapes_train_and_eval(size):
    model = _model(size)
    image1, image2 = _images(batch=2)
    with torch.no_grad():
        preds = model.train()(image1, image2, iters=2)
        final = model.eval()(image1, image2, iters=2)
    assert isinstance(preds, list) and len(preds) == 2
    for p in preds:
        assert p.shape == (2, 2, H, W) and p.dtype == torch.float32
    assert final.shape == (2, 2, H, W) and torch.isfinite(final).all()


def test_eval_equals_last_train_prediction():
    # small config: instance norm (no running stats) and no norm in cnet, no dropout
    model = _model("small")
    image1, image2 = _images()
    with torch.no_grad():
        preds = model.train()(image1, image2, iters=3)
        final = model.eval()(image1, image2, iters=3)
    assert not torch.equal(preds[0], preds[-1])  # iterations do change the flow
    torch.testing.assert_close(final, preds[-1], rtol=0, atol=0)


@pytest.mark.parametrize("size", ["small", "full"])
def test_gradients_reach_every_parameter(size):
    model = _model(size).train()
    image1, image2 = _images()
    preds = model(image1, image2, iters=2)
    sum(p.abs().mean() for p in preds).backward()
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    missing = [n for n, p in trainable if p.grad is None or p.grad.abs().sum() == 0]
    assert missing == []


def test_allpairs_and_onthefly_agree():
    model = _model("small", "allpairs").eval()
    image1, image2 = _images()
    with torch.no_grad():
        flow_a = model(image1, image2, iters=3)
        model.corr = "onthefly"
        flow_o = model(image1, image2, iters=3)
    assert flow_a.abs().max() > 1e-3
    torch.testing.assert_close(flow_o, flow_a, rtol=1e-4, atol=1e-4 * flow_a.abs().max().item())


def test_auto_picks_by_memory_budget():
    f1, f2 = torch.randn(2, 1, 32, 8, 8).unbind(0)
    need = allpairs_bytes(1, 8, 8, num_levels=4)
    assert need == 4 * 64 * (64 + 16 + 4 + 1)
    assert isinstance(make_corr_block(f1, f2, "auto", memory_budget_bytes=need), CorrBlock)
    assert isinstance(make_corr_block(f1, f2, "auto", memory_budget_bytes=need - 1), AlternateCorrBlock)
    assert isinstance(make_corr_block(f1, f2, "auto"), CorrBlock)  # 2 GiB default
    with pytest.raises(ValueError, match="mode"):
        make_corr_block(f1, f2, "dense")


def test_deterministic_under_fixed_seed():
    image1, image2 = _images()
    flows = []
    for _ in range(2):
        with torch.no_grad():
            flows.append(_model("small", seed=123).eval()(image1, image2, iters=2))
    torch.testing.assert_close(flows[0], flows[1], rtol=0, atol=0)
    with torch.no_grad():
        other = _model("small", seed=124).eval()(image1, image2, iters=2)
    assert not torch.equal(other, flows[0])


def test_bfloat16_autocast_cpu_stays_finite():
    model = _model("small").train()
    image1, image2 = _images()
    seen = []  # dtypes of (corr, flow) entering the update block: both computed in float32 outside autocast
    model.update_block.register_forward_pre_hook(lambda m, args: seen.append((args[2].dtype, args[3].dtype)))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        preds = model(image1, image2, iters=2)
    assert seen == [(torch.float32, torch.float32)] * 2
    for p in preds:
        assert p.dtype == torch.float32  # coordinates and upsampled flow stay float32
        assert torch.isfinite(p).all()
    sum(p.abs().mean() for p in preds).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_flow_init_shifts_the_start():
    model = _model("small").eval()
    image1, image2 = _images()
    init = torch.full((1, 2, 8, 8), 0.5)  # 60x44 pads to 64x64 -> 8x8 at 1/8
    with torch.no_grad():
        a = model(image1, image2, iters=1)
        b = model(image1, image2, iters=1, flow_init=init)
    assert not torch.allclose(a, b)
    with pytest.raises(ValueError, match="flow_init"):
        model(image1, image2, iters=1, flow_init=torch.zeros(1, 2, 6, 8))


# Keys of the official princeton-vl/RAFT checkpoints (raft-things.pth etc., after stripping "module.").
OFFICIAL_FULL_KEYS = [
    "fnet.conv1.weight",
    "fnet.layer1.0.conv1.weight",
    "fnet.layer2.0.downsample.0.weight",
    "fnet.conv2.bias",
    "cnet.norm1.weight",
    "cnet.norm1.running_mean",
    "cnet.layer2.0.norm3.running_var",
    "cnet.layer2.0.downsample.1.num_batches_tracked",
    "update_block.encoder.convc1.weight",
    "update_block.encoder.convc2.weight",
    "update_block.encoder.convf1.weight",
    "update_block.encoder.convf2.weight",
    "update_block.encoder.conv.weight",
    "update_block.gru.convz1.weight",
    "update_block.gru.convr2.bias",
    "update_block.gru.convq2.weight",
    "update_block.flow_head.conv1.weight",
    "update_block.flow_head.conv2.bias",
    "update_block.mask.0.weight",
    "update_block.mask.2.bias",
]
OFFICIAL_SMALL_KEYS = [
    "fnet.layer1.0.conv3.weight",
    "fnet.layer2.0.downsample.0.weight",
    "cnet.conv2.weight",
    "update_block.encoder.convc1.weight",
    "update_block.gru.convz.weight",
    "update_block.flow_head.conv2.weight",
]


def test_official_checkpoint_keys():
    full = _model("full").state_dict()
    assert set(OFFICIAL_FULL_KEYS) <= set(full)
    assert not any(k.startswith("fnet.norm1.") for k in full)  # instance norm: no parameters, as RAFT
    # official widths: 5.26M parameters (RAFT), 0.99M (RAFT-small)
    assert sum(p.numel() for p in _model("full").parameters()) == 5_257_536
    small = _model("small")
    assert set(OFFICIAL_SMALL_KEYS) <= set(small.state_dict())
    assert not any(k.startswith("update_block.mask") for k in small.state_dict())
    assert sum(p.numel() for p in small.parameters()) == 990_162
    shapes = {k: tuple(v.shape) for k, v in full.items()}
    assert shapes["update_block.mask.2.weight"] == (576, 256, 1, 1)
    assert shapes["update_block.encoder.convc1.weight"] == (256, 324, 1, 1)
    assert shapes["update_block.gru.convz1.weight"] == (128, 384, 1, 5)
    assert shapes["cnet.conv2.weight"] == (256, 128, 1, 1)


def test_input_padder_round_trip():
    x = torch.randn(2, 3, 37, 50)
    padder = InputPadder(x.shape)
    (y,) = padder.pad(x)
    assert y.shape == (2, 3, 40, 56)
    assert torch.equal(padder.unpad(y), x)
    padder = InputPadder(x.shape, min_size=64)
    (y,) = padder.pad(x)
    assert y.shape == (2, 3, 64, 64) and torch.equal(padder.unpad(y), x)
    x8 = torch.randn(1, 3, 48, 64)  # already multiples of 8: untouched
    padder = InputPadder(x8.shape)
    assert padder.pad(x8)[0] is x8 and torch.equal(padder.unpad(x8), x8)


def test_convex_upsample_of_constant_flow_is_constant():
    flow = torch.tensor([1.5, -2.0]).view(1, 2, 1, 1).expand(1, 2, 4, 5).contiguous()
    mask = torch.randn(1, 576, 4, 5)
    up = convex_upsample(flow, mask)
    assert up.shape == (1, 2, 32, 40)
    # interior pixels: a convex combination of equal neighbours (x8); borders see the zero padding
    torch.testing.assert_close(up[:, :, 8:-8, 8:-8], 8 * flow[:, :, :1, :1].expand(1, 2, 16, 24))


@pytest.mark.parametrize(
    "kwargs, arg",
    [
        (dict(name="flownet"), "name"),
        (dict(name="raft", size="tiny"), "size"),
        (dict(name="raft", corr="dense"), "corr"),
    ],
)
def test_create_errors_name_the_argument(kwargs, arg):
    with pytest.raises(ValueError, match=rf"{arg} must be one of .*got"):
        pyflowops_models.create(**kwargs)


def test_bad_images():
    model = _model("small")
    image1, image2 = _images()
    with pytest.raises(ValueError, match="image2"):
        model(image1, image2[:, :, :40])
    with pytest.raises(ValueError, match="image1"):
        model(image1[:, :2], image2[:, :2])
    with pytest.raises(TypeError):
        pyflowops_models.create("raft", size="small", no_such_option=1)
