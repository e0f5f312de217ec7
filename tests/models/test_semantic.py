"""DecFlow's frozen semantic encoders: shapes, freezing, the two stride layouts, and
loading torchvision / pytorchcv (official) / our own weights.

No real checkpoint is reachable here, so the pytorchcv layout is built by renaming a
torchvision state dict with the inverse of the documented mapping (written out below).
"""

import re

import pytest
import torch
import torchvision

from pyflowops_models.semantic import (
    SEMANTIC_ENCODERS,
    FacePartsEncoder,
    FrozenEncoder,
    ResNet50Stage2,
    make_semantic_encoder,
    pytorchcv_to_torchvision,
)

H, W = 64, 96  # not square, so a transposed H/W shows up


def _image(batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, H, W, generator=g) * 2 - 1


@pytest.fixture(scope="module")
def tv_model():
    """A random torchvision ResNet-50 with non-trivial batch-norm statistics (so BN is not ~identity)."""
    torch.manual_seed(0)
    model = torchvision.models.resnet50(weights=None).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    return model


@pytest.fixture(scope="module")
def tv_state(tv_model):
    return {k: v.clone() for k, v in tv_model.state_dict().items()}


@pytest.fixture(scope="module")
def tv_loaded(tv_state):
    """Our encoder holding the torchvision weights (stride on conv2), for comparisons."""
    enc = ResNet50Stage2()
    enc.load_weights(tv_state)
    return enc


def _torchvision_to_pytorchcv(key: str) -> str | None:
    """The inverse of the documented mapping, spelled out independently of the module."""
    if key == "conv1.weight":
        return "0.conv.conv.weight"
    if key.startswith("bn1."):
        return "0.conv.bn." + key[4:]
    m = re.match(r"^layer([12])\.(\d+)\.(.+)$", key)
    if m is None:
        return None  # layer3 / layer4 / fc
    stage, unit, rest = m.group(1), int(m.group(2)) + 1, m.group(3)
    p = f"{stage}.unit{unit}."
    if rest.startswith("downsample.0."):
        return p + "identity_conv.conv." + rest[len("downsample.0."):]
    if rest.startswith("downsample.1."):
        return p + "identity_conv.bn." + rest[len("downsample.1."):]
    kind, k, param = re.match(r"^(conv|bn)([123])\.(\w+)$", rest).groups()
    return f"{p}body.conv{k}.{kind}.{param}"


def _pytorchcv_state(tv_state, prefix="dad_encoder.model."):
    out = {}
    for key, value in tv_state.items():
        mapped = _torchvision_to_pytorchcv(key)
        if mapped is not None:
            out[prefix + mapped] = value
    # a few stage-3 keys, stored in the official checkpoints but never run
    stage3 = [
        "3.unit1.body.conv1.conv.weight",
        "3.unit1.body.conv1.bn.running_var",
        "3.unit1.identity_conv.conv.weight",
    ]
    for key in stage3:
        out[prefix + key] = torch.zeros(1)
    return out, [prefix + k for k in stage3]


def _tv_stage2(model, x):
    """torchvision's own conv1..layer2."""
    x = model.maxpool(model.relu(model.bn1(model.conv1(x))))
    return model.layer2(model.layer1(x))


def test_output_shapes_and_names():
    torch.manual_seed(0)
    assert SEMANTIC_ENCODERS == ("resnet50", "faceparts")
    for name, channels in (("resnet50", 512), ("faceparts", 64)):
        enc = make_semantic_encoder(name)
        assert isinstance(enc, FrozenEncoder) and enc.out_channels == channels
        with torch.no_grad():
            assert enc(_image()).shape == (2, channels, H // 8, W // 8)
    parts = FacePartsEncoder(out_channels=32, num_parts=5)
    with torch.no_grad():
        assert parts(_image(1)).shape == (1, 32, H // 8, W // 8)
        assert parts.part_logits(_image(1)).shape == (1, 5, H // 8, W // 8)
    with pytest.raises(ValueError, match="name must be one of"):
        make_semantic_encoder("vgg")
    with pytest.raises(ValueError, match="multiples of 8"):
        parts(torch.zeros(1, 3, 60, 96))


@pytest.mark.parametrize("cls", [ResNet50Stage2, FacePartsEncoder])
def test_frozen_and_train_keeps_eval(cls):
    torch.manual_seed(0)
    enc = cls()
    assert all(not p.requires_grad for p in enc.parameters())
    before = {k: v.clone() for k, v in enc.state_dict().items()}
    container = torch.nn.Sequential(enc).train()  # a parent's train() reaches it too
    assert not container[0].training and not any(m.training for m in enc.modules())
    assert enc.train(True) is enc and not enc.training
    out = enc(_image())
    assert not out.requires_grad
    for k, v in enc.state_dict().items():
        assert torch.equal(v, before[k]), k  # running stats and num_batches_tracked unchanged


def test_stride_layouts_differ_at_the_same_size(tv_loaded):
    enc = tv_loaded  # torchvision weights, stride on conv2
    assert not enc.stride_in_1x1 and enc.layer2[0].conv1.stride == (1, 1) and enc.layer2[0].conv2.stride == (2, 2)
    x = _image(1)
    try:
        with torch.no_grad():
            v15 = enc(x)
            enc.set_stride_in_1x1(True)
            assert enc.stride_in_1x1 and enc.layer2[0].conv1.stride == (2, 2) and enc.layer2[0].conv2.stride == (1, 1)
            v1 = enc(x)
    finally:
        enc.set_stride_in_1x1(False)
    assert v15.shape == v1.shape == (1, 512, H // 8, W // 8)
    assert not torch.allclose(v15, v1, atol=1e-3)


def test_torchvision_state_dict_matches_torchvision(tv_model, tv_state):
    enc = ResNet50Stage2()  # default True: the torchvision load must switch it off
    report = enc.load_weights(tv_state)
    assert report.layout == "torchvision" and not enc.stride_in_1x1
    assert report.loaded == len(enc.state_dict())
    assert report.ignored and all(k.startswith(("layer3.", "layer4.", "fc.")) for k in report.ignored)
    assert len(report.ignored) == len([k for k in tv_state if k.startswith(("layer3.", "layer4.", "fc."))])
    x = _image()
    with torch.no_grad():
        torch.testing.assert_close(enc(x), _tv_stage2(tv_model, x), rtol=0, atol=0)


@pytest.mark.parametrize("prefix", ["module.dad_encoder.model.", "model.", ""])
def test_pytorchcv_layout_loads_like_torchvision_names(tv_state, tv_loaded, prefix):
    cv_state, stage3 = _pytorchcv_state(tv_state, prefix)
    outside = []
    if "dad_encoder" in prefix:  # a whole official DecFlow checkpoint: only the encoder part is read
        outside = [prefix.replace("dad_encoder.model.", "fnet.conv1.weight")]
        cv_state[outside[0]] = torch.zeros(1)
    enc = ResNet50Stage2(stride_in_1x1=False)
    report = enc.load_weights(cv_state)
    assert report.layout == "pytorchcv" and enc.stride_in_1x1
    assert sorted(report.ignored) == sorted(stage3 + outside)
    assert report.loaded == len(enc.state_dict())

    for k, v in tv_loaded.state_dict().items():
        assert torch.equal(enc.state_dict()[k], v), k
    x = _image(1)
    try:
        tv_loaded.set_stride_in_1x1(True)
        with torch.no_grad():
            torch.testing.assert_close(enc(x), tv_loaded(x), rtol=0, atol=0)
    finally:
        tv_loaded.set_stride_in_1x1(False)


def test_pytorchcv_to_torchvision_by_hand():
    cases = {
        "0.conv.conv.weight": "conv1.weight",
        "0.conv.bn.running_mean": "bn1.running_mean",
        "1.unit1.body.conv1.conv.weight": "layer1.0.conv1.weight",
        "1.unit3.body.conv3.bn.bias": "layer1.2.bn3.bias",
        "2.unit4.body.conv2.bn.num_batches_tracked": "layer2.3.bn2.num_batches_tracked",
        "2.unit1.identity_conv.conv.weight": "layer2.0.downsample.0.weight",
        "2.unit1.identity_conv.bn.running_var": "layer2.0.downsample.1.running_var",
        "stage2.unit2.body.conv1.conv.weight": "layer2.1.conv1.weight",
        "init_block.conv.bn.weight": "bn1.weight",
        "3.unit1.body.conv1.conv.weight": None,
        "3.unit6.body.conv3.bn.running_mean": None,
    }
    for key, expected in cases.items():
        assert pytorchcv_to_torchvision(key) == expected, key
    for bad in ("fc.weight", "1.unit1.body.conv4.conv.weight", "2.unit1.body.conv1.conv.bias", "0.pool.weight"):
        with pytest.raises(ValueError, match="not a pytorchcv ResNet key"):
            pytorchcv_to_torchvision(bad)


def test_missing_key_and_shape_mismatch_raise(tv_state, tv_loaded):
    enc = tv_loaded  # the checks run before anything is copied, so it is left as it was
    lacking = {k: v for k, v in tv_state.items() if k != "layer2.3.bn3.running_var"}
    with pytest.raises(ValueError, match=r"lacks 1 needed weight.*layer2\.3\.bn3\.running_var"):
        enc.load_weights(lacking)
    cv_state, _ = _pytorchcv_state(tv_state)
    del cv_state["dad_encoder.model.1.unit2.body.conv2.conv.weight"]
    with pytest.raises(ValueError, match=r"layer1\.1\.conv2\.weight"):
        enc.load_weights(cv_state)
    bad = dict(tv_state)
    bad["layer1.0.conv1.weight"] = torch.zeros(64, 64, 3, 3)
    with pytest.raises(ValueError, match=r"layer1\.0\.conv1\.weight.*\(64, 64, 1, 1\).*\(64, 64, 3, 3\)"):
        enc.load_weights(bad)
    cv_state["dad_encoder.model.1.unit2.body.conv2.conv.weight"] = torch.zeros(64, 64, 1, 1)
    file_key = r"layer1\.1\.conv2\.weight \(file: dad_encoder\.model\.1\.unit2\.body\.conv2\.conv\.weight\)"
    with pytest.raises(ValueError, match=file_key + r": expected \(64, 64, 3, 3\), got \(64, 64, 1, 1\)"):
        enc.load_weights(cv_state)
    with pytest.raises(ValueError, match="lacks"):
        FacePartsEncoder().load_weights(tv_state)


def test_old_checkpoint_without_num_batches_tracked_loads(tv_state, tv_loaded):
    report = tv_loaded.load_weights({k: v for k, v in tv_state.items() if not k.endswith("num_batches_tracked")})
    assert report.layout == "torchvision"


def test_load_by_path_and_checkpoint_wrappers(tmp_path, tv_state, tv_loaded):
    path = tmp_path / "resnet50.pth"
    torch.save({"state_dict": tv_state, "epoch": torch.tensor(3)}, path)
    enc = make_semantic_encoder("resnet50", str(path))
    assert not enc.stride_in_1x1
    for k, v in tv_loaded.state_dict().items():
        assert torch.equal(enc.state_dict()[k], v), k

    # a missing key in a file names the file
    lacking = tmp_path / "lacking.pth"
    torch.save({k: v for k, v in tv_state.items() if not k.startswith("bn1.weight")}, lacking)
    with pytest.raises(ValueError, match=re.escape(str(lacking)) + r".*bn1\.weight"):
        enc.load_weights(lacking)
    with pytest.raises(FileNotFoundError):
        enc.load_weights(tmp_path / "nope.pth")

    # our own FacePartsEncoder round trip, under a "model" wrapper
    torch.manual_seed(1)
    parts = FacePartsEncoder()
    with torch.no_grad():
        for m in parts.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
    torch.save({"model": parts.state_dict()}, tmp_path / "parts.pth")
    torch.manual_seed(2)
    other = make_semantic_encoder("faceparts", tmp_path / "parts.pth")
    x = _image(1)
    with torch.no_grad():
        torch.testing.assert_close(other.part_logits(x), parts.part_logits(x), rtol=0, atol=0)
    assert all(not p.requires_grad for p in other.parameters())


def test_own_state_dict_keeps_stride_setting(tv_loaded):
    enc = ResNet50Stage2(stride_in_1x1=True)
    report = enc.load_weights(tv_loaded.state_dict())
    assert report.layout == "ours" and report.ignored == [] and enc.stride_in_1x1
