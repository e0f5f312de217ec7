"""SKFlow's super-kernel update blocks: shapes, official checkpoint keys and shapes,
a functional reference for the super-kernel block, gradients, errors, gradcheck.

Grids are 5x7 (odd, not square) so a transposed H/W or a padding slip shows up.
"""

import pytest
import torch
import torch.nn.functional as F

from pyflowops_models.attention import Attention
from pyflowops_models.skflow import SKMotionEncoder, SKUpdateBlock, SuperKernelBlock

H, W = 5, 7

FULL = dict(corr_levels=4, corr_radius=4, hidden_dim=128, context_dim=128)
SMALL = dict(
    corr_levels=4,
    corr_radius=3,
    hidden_dim=96,
    context_dim=64,
    kernels=(1, 7),
    update_kernels=(1, 5),
    motion_dims=((96, 64), (64, 32), 82),
)
# (config, corr channels L(2r+1)^2, motion channels)
CONFIGS = {"full": (FULL, 4 * 81, 128), "small": (SMALL, 4 * 49, 82)}


def _inputs(cfg, corr_dim, batch=2, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    net = torch.randn(batch, cfg["hidden_dim"], H, W, generator=g, dtype=dtype)
    inp = torch.randn(batch, cfg["context_dim"], H, W, generator=g, dtype=dtype)
    corr = torch.randn(batch, corr_dim, H, W, generator=g, dtype=dtype)
    flow = torch.randn(batch, 2, H, W, generator=g, dtype=dtype) * 3
    return net, inp, corr, flow


def _block_and_attention(name, seed=0):
    cfg, corr_dim, motion_dim = CONFIGS[name]
    torch.manual_seed(seed)
    block = SKUpdateBlock(**cfg)
    att = Attention(cfg["context_dim"], heads=1, dim_head=motion_dim)
    return cfg, corr_dim, motion_dim, block, att


@pytest.mark.parametrize("name", ["full", "small"])
def test_update_block_shapes(name):
    cfg, corr_dim, motion_dim, block, att = _block_and_attention(name)
    net, inp, corr, flow = _inputs(cfg, corr_dim)
    with torch.no_grad():
        motion = block.encoder(flow, corr)
        new_net, mask, delta = block(net, inp, corr, flow, att(inp))
    assert motion.shape == (2, motion_dim, H, W)
    torch.testing.assert_close(motion[:, -2:], flow)  # the flow rides along as the last 2 channels
    assert new_net.shape == (2, cfg["hidden_dim"], H, W)
    assert mask.shape == (2, 576, H, W)
    assert delta.shape == (2, 2, H, W)
    assert all(torch.isfinite(t).all() for t in (new_net, mask, delta))


def test_motion_encoder_defaults_shape():
    torch.manual_seed(0)
    enc = SKMotionEncoder(corr_levels=2, corr_radius=1, kernels=(3,), corr_dims=(8, 6), flow_dims=(4, 4), out_dim=10)
    with torch.no_grad():
        out = enc(torch.randn(1, 2, H, W), torch.randn(1, 2 * 9, H, W))
    assert out.shape == (1, 10, H, W)


# The official SKUpdateBlock6_Deep_nopoolres_AllDecoder keys, written out per super-kernel block.
_SK_SUFFIXES = [
    "conv_list.0.weight",
    "conv_list.0.bias",
    "conv_list.1.weight",
    "conv_list.1.bias",
    "ffn1.0.weight",
    "ffn1.0.bias",
    "ffn1.2.weight",
    "ffn1.2.bias",
    "pw.weight",
    "pw.bias",
    "ffn2.0.weight",
    "ffn2.0.bias",
    "ffn2.2.weight",
    "ffn2.2.bias",
]
_SK_PREFIXES = ["encoder.convc1", "encoder.convc2", "encoder.convf2", "encoder.conv", "gru", "flow_head"]
OFFICIAL_KEYS = {f"{p}.{s}" for p in _SK_PREFIXES for s in _SK_SUFFIXES} | {
    "encoder.convf1.weight",
    "encoder.convf1.bias",
    "mask.0.weight",
    "mask.0.bias",
    "mask.2.weight",
    "mask.2.bias",
    "aggregator.gamma",
    "aggregator.to_v.weight",
}

OFFICIAL_SHAPES = {
    "encoder.convc1.conv_list.0.weight": (324, 1, 1, 1),
    "encoder.convc1.conv_list.1.weight": (324, 1, 15, 15),
    "encoder.convc1.ffn1.0.weight": (486, 324, 1, 1),
    "encoder.convc1.ffn2.2.weight": (256, 486, 1, 1),
    "encoder.convc2.ffn2.2.weight": (192, 384, 1, 1),
    "encoder.convf1.weight": (128, 2, 1, 1),
    "encoder.convf2.ffn2.2.weight": (64, 192, 1, 1),
    "encoder.conv.ffn1.0.weight": (384, 256, 1, 1),
    "encoder.conv.ffn2.2.weight": (126, 384, 1, 1),
    "gru.conv_list.1.weight": (512, 1, 7, 7),
    "gru.ffn1.0.weight": (768, 512, 1, 1),
    "gru.pw.weight": (512, 512, 1, 1),
    "gru.ffn2.2.weight": (128, 768, 1, 1),
    "flow_head.conv_list.1.weight": (128, 1, 15, 15),
    "flow_head.ffn2.2.weight": (2, 192, 1, 1),
    "mask.0.weight": (256, 128, 3, 3),
    "mask.2.weight": (576, 256, 1, 1),
    "aggregator.gamma": (1,),
    "aggregator.to_v.weight": (128, 128, 1, 1),
}


def test_full_state_dict_matches_official_keys_and_shapes():
    state = SKUpdateBlock().state_dict()
    assert set(state) == OFFICIAL_KEYS
    assert len(state) == len(OFFICIAL_KEYS) == 6 * 14 + 8
    for key, shape in OFFICIAL_SHAPES.items():
        assert tuple(state[key].shape) == shape, key


def _reference_superkernel(block, x):
    """PCBlock4_Deep_nopool_res written with F.conv2d and the block's own weights."""

    def conv(mod, t, groups=1):
        return F.conv2d(t, mod.weight, mod.bias, padding=mod.weight.shape[-1] // 2, groups=groups)

    def ffn(seq, t):
        return conv(seq[2], F.gelu(conv(seq[0], t)))

    x = F.gelu(x + ffn(block.ffn1, x))
    for c in block.conv_list:
        x = F.gelu(x + conv(c, x, groups=x.shape[1]))
    x = F.gelu(x + conv(block.pw, x))
    return ffn(block.ffn2, x)


def test_superkernel_matches_functional_reference():
    torch.manual_seed(0)
    block = SuperKernelBlock(6, 5, kernels=(1, 3, 5)).double()
    x = torch.randn(2, 6, H, W, dtype=torch.float64)
    with torch.no_grad():
        out = block(x)
        ref = _reference_superkernel(block, x)
    assert out.shape == (2, 5, H, W)
    assert block.ffn1[0].out_channels == 9  # int(1.5 * 6)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)


def test_superkernel_odd_width_truncates_like_official():
    block = SuperKernelBlock(7, 3, kernels=(1,))
    assert block.ffn1[0].out_channels == block.ffn2[0].out_channels == 10  # int(10.5)


def test_gradients_reach_every_parameter():
    cfg, corr_dim, _, block, att = _block_and_attention("small")
    with torch.no_grad():
        block.aggregator.gamma.fill_(0.5)  # at 0 (the init) to_v and to_qk would get exactly zero gradient
    net, inp, corr, flow = _inputs(cfg, corr_dim, batch=1)
    new_net, mask, delta = block(net, inp, corr, flow, att(inp))
    g = torch.Generator().manual_seed(1)
    loss = sum((t * torch.randn(t.shape, generator=g)).sum() for t in (new_net, mask, delta))
    loss.backward()
    params = list(block.named_parameters()) + [("att.to_qk.weight", att.to_qk.weight)]
    for name, p in params:
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("kernels", [(1, 4), (2,), (), (0,), (-3,)])
def test_bad_kernels_raise(kernels):
    with pytest.raises(ValueError, match="kernels"):
        SuperKernelBlock(4, 4, kernels=kernels)
    with pytest.raises(ValueError, match="kernels"):
        SKUpdateBlock(**{**SMALL, "update_kernels": kernels})


def test_superkernel_gradcheck():
    torch.manual_seed(0)
    block = SuperKernelBlock(3, 2, kernels=(1, 3)).double()
    x = torch.randn(1, 3, 4, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(block, (x,))
    # and through a weight: the large depthwise kernel, via a functional call
    w = block.conv_list[1].weight.detach().clone().requires_grad_(True)

    def f(weight, inp):
        return torch.func.functional_call(block, {"conv_list.1.weight": weight}, (inp,))

    assert torch.autograd.gradcheck(f, (w, x))


def test_explicit_and_fused_softmax_agree():
    cfg, corr_dim, _, fused, att = _block_and_attention("small")
    explicit = SKUpdateBlock(**cfg, softmax="explicit")
    explicit.load_state_dict(fused.state_dict())
    with torch.no_grad():
        for b in (fused, explicit):
            b.aggregator.gamma.fill_(0.5)
        net, inp, corr, flow = _inputs(cfg, corr_dim, batch=1)
        qk = att(inp)
        for a, b in zip(fused(net, inp, corr, flow, qk), explicit(net, inp, corr, flow, qk)):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
