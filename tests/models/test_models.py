"""Properties every model of ``create`` has: shapes at sizes that are not multiples of 8,
gradients to every trainable parameter and to no frozen one, the two correlation modes
agreeing, determinism, bfloat16 autocast, ``torch.compile`` of one update iteration,
and the official GMA / FacialFlowNet checkpoint layouts loading strictly.

Small configurations, 2 iterations, 44x60 images (padded inside to 64x64).
"""

from __future__ import annotations

import warnings

import pytest
import torch

import _official_keys as official
import pyflowops_models
from pyflowops_models.attention import Aggregate

H, W = 44, 60
NAMES = ["raft", "gma", "decflow", "srflownet"]


def _images(batch=1, h=H, w=W, seed=1):
    g = torch.Generator().manual_seed(seed)
    image1 = torch.rand(batch, 3, h, w, generator=g) * 255
    return image1, torch.roll(image1, shifts=(1, 2), dims=(2, 3))


def _model(name, size="small", corr="allpairs", seed=0, **options):
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # DecFlow's untrained-semantics warning has its own test
        model = pyflowops_models.create(name, size=size, corr=corr, **options)
    for module in model.modules():  # GMA's gamma starts at 0, which would hide the attention path
        if isinstance(module, Aggregate):
            module.gamma.data.fill_(0.5)
    return model


def _flows(out):
    """The flows of any model's output as one list (DecFlow's dict of flows or of lists)."""
    if isinstance(out, dict):
        return [f for v in out.values() for f in (v if isinstance(v, list) else [v])]
    return out if isinstance(out, list) else [out]


@pytest.mark.parametrize("size", ["small", "full"])
@pytest.mark.parametrize("name", NAMES)
def test_shapes_train_and_eval(name, size):
    model = _model(name, size)
    image1, image2 = _images(batch=2)
    preds = model.train()(image1, image2, iters=2)
    with torch.no_grad():
        final = model.eval()(image1, image2, iters=2)
    if name == "decflow":
        assert set(preds) == {"facial", "head"} and all(len(v) == 2 for v in preds.values())
        assert set(final) == {"facial", "head", "expression"}
    else:
        assert isinstance(preds, list) and len(preds) == 2 and isinstance(final, torch.Tensor)
    for flow in _flows(preds) + _flows(final):
        assert flow.shape == (2, 2, H, W) and flow.dtype == torch.float32 and torch.isfinite(flow).all()


@pytest.mark.parametrize("name", NAMES)
def test_gradients_reach_every_trainable_parameter_and_no_frozen_one(name):
    model = _model(name).train()
    loss = sum(f.abs().mean() for f in _flows(model(*_images(), iters=2)))
    loss.backward()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert not [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not [n for n, p in model.named_parameters() if not p.requires_grad and p.grad is not None]
    assert trainable and all(
        model.get_parameter(n).grad.abs().sum() > 0 for n in trainable if n.endswith("conv1.weight")
    )


@pytest.mark.parametrize("name", ["gma", "decflow", "srflownet"])
def test_allpairs_and_onthefly_agree(name):
    image1, image2 = _images()
    with torch.no_grad():
        a = _flows(_model(name, corr="allpairs").eval()(image1, image2, iters=2))
        b = _flows(_model(name, corr="onthefly").eval()(image1, image2, iters=2))
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("name", ["gma", "srflownet"])
def test_fused_attention_equals_explicit_softmax(name):
    image1, image2 = _images()
    with torch.no_grad():
        fused = _model(name, softmax="fused").eval()(image1, image2, iters=2)
        explicit = _model(name, softmax="explicit").eval()(image1, image2, iters=2)
    torch.testing.assert_close(fused, explicit, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("size", ["small", "full"])
@pytest.mark.parametrize("name", ["gma", "decflow", "srflownet"])
def test_fused_attention_never_builds_the_matrix(name, size):
    """SDPA takes its math path (which stores the (HW)^2 matrix: 16 GiB at 2048^2) when q/k/v are
    strided or their head dims differ; the models must always reach the flash kernel."""
    from torch.profiler import profile

    model = _model(name, size).eval()
    with torch.no_grad(), profile() as prof:
        model(*_images(), iters=1)
    kernels = {e.name for e in prof.events() if "scaled_dot_product" in e.name}
    assert "aten::_scaled_dot_product_flash_attention_for_cpu" in kernels, kernels
    assert "aten::_scaled_dot_product_attention_math" not in kernels, kernels


@pytest.mark.parametrize("name", ["gma", "decflow", "srflownet"])
def test_deterministic_under_fixed_seed(name):
    image1, image2 = _images()
    runs = []
    for _ in range(2):
        model = _model(name, seed=3).train()
        flows = _flows(model(image1, image2, iters=2))
        sum(f.square().mean() for f in flows).backward()
        runs.append(flows + [p.grad for p in model.parameters() if p.grad is not None])
    assert len(runs[0]) == len(runs[1])
    for x, y in zip(*runs):
        assert torch.equal(x, y)


@pytest.mark.parametrize("name", ["gma", "decflow", "srflownet"])
def test_bfloat16_autocast_cpu_stays_finite(name):
    model = _model(name).train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        flows = _flows(model(*_images(), iters=2))
    assert all(f.dtype == torch.float32 and torch.isfinite(f).all() for f in flows)
    sum(f.abs().mean() for f in flows).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_torch_compile_of_one_update_iteration():
    """Correlation lookup (a pyflowops op) + GMA update block, compiled whole, equals eager."""
    model = _model("gma").eval()
    with torch.no_grad():
        state = model.encode(*_images())

        def step(coords1):
            corr = state.corr_fn(coords1)
            return model.update_block(state.net, state.inp, corr, coords1 - state.coords0, *state.update_inputs)

        coords1 = state.coords1 + 0.3
        eager = step(coords1)
        compiled = torch.compile(step, fullgraph=True)(coords1)
    for x, y in zip(eager, compiled):
        if x is not None:
            torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name, keys", [("gma", official.gma), ("decflow", official.facialflownet)])
def test_official_checkpoint_layout_loads_strictly(tmp_path, name, keys):
    """A state dict with exactly the official key set (``module.``-prefixed, as the official
    train.py saves it) loads with nothing missing or unexpected; DecFlow ignores only the
    official semantic encoder's unused stage 3."""
    source = _model(name, "full", seed=1)
    target = _model(name, "full", seed=2)
    ours = source.state_dict()
    expected = keys()
    if name == "decflow":
        from pyflowops_models.semantic import pytorchcv_to_torchvision

        def value(key):
            if key.startswith("dad_encoder.model."):
                mapped = pytorchcv_to_torchvision(key[len("dad_encoder.model."):])
                return ours[f"semantic_encoder.{mapped}"] if mapped else torch.zeros(1)
            return ours[key]
    else:
        value = ours.__getitem__
    path = tmp_path / f"{name}.pth"
    torch.save({f"module.{k}": value(k) for k in sorted(expected)}, path)
    report = pyflowops_models.load_checkpoint(target, path)
    assert report.ok
    assert all(k.startswith("dad_encoder.model.3.") for k in report.ignored)
    assert len(report.ignored) == (len([k for k in expected if k.startswith("dad_encoder.model.3.")]))
    for k, v in ours.items():
        assert torch.equal(target.state_dict()[k], v), k


def test_gma_official_shapes():
    shapes = {k: tuple(v.shape) for k, v in _model("gma", "full").state_dict().items()}
    assert shapes["update_block.gru.convz1.weight"] == (128, 128 + 128 + 128 + 128, 1, 5)  # h + inp + motion + global
    assert shapes["att.to_qk.weight"] == (256, 128, 1, 1)
    assert shapes["update_block.aggregator.to_v.weight"] == (128, 128, 1, 1)
    assert shapes["att.pos_emb.rel_height.weight"] == (319, 128)


@pytest.mark.parametrize("name", ["gma", "srflownet"])
def test_bad_options_name_themselves(name):
    with pytest.raises(ValueError, match="softmax must be one of"):
        pyflowops_models.create(name, size="small", softmax="sparse")
    with pytest.raises(ValueError, match="iters must be >= 1"):
        _model(name)(*_images(), iters=0)
