"""State-dict key sets of the official RAFT / GMA / FacialFlowNet models, rebuilt from their module structure.

The official checkpoints are not stored anywhere this suite can reach, so the key
sets are spelled out from the public code (princeton-vl/RAFT ``core/extractor.py``,
``core/update.py``; zacjiang/GMA ``core/gma.py``, ``core/network.py``;
RIA1159/FacialFlowNet ``core/network.py`` and pytorchcv's ``resnet50`` that its
``dad_encoder`` wraps), one helper per official module.
"""

from __future__ import annotations

BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
WB = ("weight", "bias")


def _keys(prefix: str, names, params=WB) -> list[str]:
    return [f"{prefix}{n}.{p}" for n in names for p in params]


def _norm(prefix: str, norm_fn: str) -> list[str]:
    """RAFT's norms: batch has affine + running stats; instance (affine=False) has none."""
    return [f"{prefix}.{p}" for p in BN] if norm_fn == "batch" else []


def basic_encoder(prefix: str, norm_fn: str) -> list[str]:
    """RAFT ``BasicEncoder``: conv1, norm1, layer1..3 of two ResidualBlocks, conv2.

    A ResidualBlock with stride 2 adds norm3 and ``downsample = Sequential(conv, norm3)``:
    the same norm is registered twice, so its keys appear under both names.
    """
    keys = _keys(prefix, ["conv1"]) + _norm(prefix + "norm1", norm_fn) + _keys(prefix, ["conv2"])
    for layer, strided in ((1, False), (2, True), (3, True)):
        for block in (0, 1):
            p = f"{prefix}layer{layer}.{block}."
            keys += _keys(p, ["conv1", "conv2"]) + _norm(p + "norm1", norm_fn) + _norm(p + "norm2", norm_fn)
            if strided and block == 0:
                keys += _norm(p + "norm3", norm_fn) + _keys(p, ["downsample.0"]) + _norm(p + "downsample.1", norm_fn)
    return keys


def gma_update_block(prefix: str) -> list[str]:
    """GMA ``GMAUpdateBlock``: BasicMotionEncoder, SepConvGRU, FlowHead, mask, Aggregate (heads=1, no project)."""
    return (
        _keys(prefix + "encoder.", ["convc1", "convc2", "convf1", "convf2", "conv"])
        + _keys(prefix + "gru.", [f"conv{g}{i}" for g in "zrq" for i in (1, 2)])
        + _keys(prefix + "flow_head.", ["conv1", "conv2"])
        + _keys(prefix + "mask.", ["0", "2"])
        + [prefix + "aggregator.to_v.weight", prefix + "aggregator.gamma"]
    )


def gma_attention(prefix: str = "att.") -> list[str]:
    """GMA ``Attention``: to_qk (no bias) and the relative-position tables with their index buffer."""
    return [
        prefix + "to_qk.weight",
        prefix + "pos_emb.rel_height.weight",
        prefix + "pos_emb.rel_width.weight",
        prefix + "pos_emb.rel_ind",
    ]


def gma() -> set[str]:
    """``RAFTGMA`` (zacjiang/GMA core/network.py)."""
    return set(
        basic_encoder("fnet.", "instance")
        + basic_encoder("cnet.", "batch")
        + gma_update_block("update_block.")
        + gma_attention()
    )


def _conv_bn(prefix: str) -> list[str]:
    """pytorchcv ``conv{1x1,3x3,7x7}_block``: ``.conv`` (no bias) and ``.bn``."""
    return [prefix + "conv.weight"] + [f"{prefix}bn.{p}" for p in BN]


def pytorchcv_resnet50_stages(prefix: str = "dad_encoder.model.") -> list[str]:
    """``nn.Sequential(init_block, stage1, stage2, stage3)`` of pytorchcv's resnet50 features."""
    keys = _conv_bn(prefix + "0.conv.")
    for stage, units in ((1, 3), (2, 4), (3, 6)):
        for unit in range(1, units + 1):
            p = f"{prefix}{stage}.unit{unit}."
            for conv in (1, 2, 3):
                keys += _conv_bn(f"{p}body.conv{conv}.")
            if unit == 1:
                keys += _conv_bn(p + "identity_conv.")
    return keys


def facialflownet() -> set[str]:
    """FacialFlowNet ``RAFTGMA`` (DecFlow): GMA + update_block_head, dad_encoder, change_dim, res1."""
    res1 = (
        ["res1.conv1.weight", "res1.conv2.weight", "res1.adjustment.0.weight"]
        + [f"res1.{bn}.{p}" for bn in ("bn1", "bn2", "adjustment.1") for p in BN]
    )
    return gma() | set(
        gma_update_block("update_block_head.") + pytorchcv_resnet50_stages() + _keys("", ["change_dim"]) + res1
    )
