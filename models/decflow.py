"""DecFlow (FacialFlowNet, ACM MM 2024): GMA with a facial-semantic context and two decoders.

Facial flow (everything that moved) and head flow (the rigid head motion) are
predicted by two update blocks that share one correlation block and one
attention; expression flow = facial - head. Module names follow the official
``core/network.py`` (fnet, cnet, update_block = facial decoder,
update_block_head, att, change_dim, res1); the semantic encoder is
``semantic_encoder`` (official ``dad_encoder``, renamed on load, see
:meth:`DecFlow.translate_official_state`).

One deliberate difference: the official ``ResidualBlock`` calls
``requires_grad_(False)`` in its constructor, so the official ``res1`` stays at
its random initialization for all of training. Ours trains it.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn as nn

from .gma import GMA
from .raft import FlowState
from .semantic import SEMANTIC_ENCODERS, make_semantic_encoder, pytorchcv_to_torchvision

__all__ = ["DecFlow", "ContextFusion"]

_warned_untrained = False


def _warn_untrained_once(name: str) -> None:
    global _warned_untrained
    if not _warned_untrained:
        _warned_untrained = True
        warnings.warn(
            f"DecFlow: the {name!r} semantic encoder has random weights (no semantic_weights= given). "
            "Its features carry no facial semantics until you pass weights (a torchvision ResNet-50 state dict, "
            "the official FacialFlowNet layout, or a FacePartsEncoder trained on face-part labels) "
            "or load a full DecFlow checkpoint.",
            UserWarning,
            stacklevel=3,
        )


class ContextFusion(nn.Module):
    """The official ``ResidualBlock(in, out)``: two 3x3 conv-BN-ReLU with a 1x1 conv-BN shortcut.

    forward([B, in_channels, H, W]) -> [B, out_channels, H, W].
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.adjustment = (
            nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels))
            if in_channels != out_channels
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return self.relu(out + self.adjustment(x))


class DecFlow(GMA):
    """Decomposed facial flow: facial, head and expression flow from one image pair.

    Args:
        size: ``full`` (the paper: BasicEncoders, hidden/context 128, radius 4,
            ResNet-50 semantic encoder) or ``small`` (RAFT-small widths,
            FacePartsEncoder; for CPU work).
        corr, corr_memory_budget, dropout, corr_block, softmax: as :class:`GMA`.
        semantic: ``resnet50``, ``faceparts`` or any module mapping the [-1, 1]
            image [B, 3, H, W] to [B, C, H/8, W/8] with an ``out_channels``
            attribute; it is frozen here. None = ``resnet50`` (full) / ``faceparts`` (small).
        semantic_weights: a path or state dict for a named encoder. Without it
            the model warns once that the semantic features are untrained.

    forward(image1, image2, iters=12, flow_init=None), images [B, 3, H, W] 0..255:
        eval mode: ``{"facial", "head", "expression"}`` flows [B, 2, H, W] with
        expression = facial - head; train mode: ``{"facial": [...], "head": [...]}``,
        the per-iteration flows that :func:`pyflowops_models.losses.decflow_loss` takes.
    """

    def __init__(
        self,
        size: str = "full",
        corr: str = "auto",
        semantic: str | nn.Module | None = None,
        semantic_weights=None,
        **options,
    ) -> None:
        super().__init__(size=size, corr=corr, **options)
        cfg = self.config
        cdim = cfg.hidden_dim + cfg.context_dim
        if semantic is None:
            semantic = "faceparts" if cfg.small else "resnet50"
        if isinstance(semantic, str):
            if semantic not in SEMANTIC_ENCODERS:
                raise ValueError(f"DecFlow: semantic must be one of {SEMANTIC_ENCODERS} or a module, got {semantic!r}")
            if semantic_weights is None:
                _warn_untrained_once(semantic)
            semantic = make_semantic_encoder(semantic, semantic_weights)
        elif isinstance(semantic, nn.Module):
            if semantic_weights is not None:
                raise ValueError("DecFlow: semantic_weights is for a named encoder; load a module's weights yourself")
            if not isinstance(getattr(semantic, "out_channels", None), int):
                raise ValueError("DecFlow: a semantic module needs an int attribute out_channels (its C)")
            semantic.requires_grad_(False)
        else:
            raise ValueError(f"DecFlow: semantic must be a name or an nn.Module, got {type(semantic).__name__}")
        self.update_block_head = self._make_update_block()
        self.semantic_encoder = semantic
        self.change_dim = nn.Conv2d(semantic.out_channels, cdim, 1)
        self.res1 = ContextFusion(2 * cdim, cdim)

    def train(self, mode: bool = True) -> DecFlow:
        super().train(mode)
        self.semantic_encoder.eval()  # frozen: its batch-norm statistics never move
        return self

    def context(self, image1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """cat(cnet(image1), change_dim(semantic(image1))) -> res1 -> (net tanh, inp relu)."""
        semantic = self.semantic_encoder(image1)  # [B, C, H/8, W/8]
        fused = self.res1(torch.cat([self.cnet(image1), self.change_dim(semantic)], dim=1))
        net, inp = torch.split(fused, [self.hidden_dim, self.context_dim], dim=1)
        return torch.tanh(net), torch.relu(inp)

    def forward(
        self, image1: torch.Tensor, image2: torch.Tensor, iters: int = 12, flow_init: torch.Tensor | None = None
    ):
        if iters < 1:
            raise ValueError(f"DecFlow: iters must be >= 1, got {iters}")
        state: FlowState = self.encode(image1, image2, flow_init)
        # The decoders only share the correlation block and the attention, so running
        # one after the other equals the official interleaved loop.
        facial = self.decode(self.update_block, state, iters)
        head = self.decode(self.update_block_head, state, iters)
        if self.training:
            return {"facial": facial, "head": head}
        return {"facial": facial, "head": head, "expression": facial - head}

    def freeze_stage2(self) -> None:
        """FacialFlowNet's stage 2: only the head decoder and the semantic 1x1 conv keep training.

        Freezes fnet, cnet, the fusion block, the attention and the facial
        decoder (the semantic encoder is always frozen) and puts their batch
        norms in eval mode, so call it after ``model.train()``.
        """
        for module in (self.fnet, self.cnet, self.res1, self.att, self.update_block):
            module.requires_grad_(False)
        self.freeze_bn()

    def translate_official_state(self, state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
        """Rename an official checkpoint's ``dad_encoder.model.*`` keys to ours.

        Returns (state, ignored keys): stage 3 of the official ResNet-50 is stored
        but never run, so its keys are ignored. Loading the official layout also
        moves the stride to the 1x1 conv, as pytorchcv's ResNet-50 has it.
        """
        prefix = "dad_encoder.model."
        if not any(k.startswith(prefix) for k in state):
            return state, []
        out, ignored = {}, []
        for key, value in state.items():
            if not key.startswith(prefix):
                out[key] = value
                continue
            mapped = pytorchcv_to_torchvision(key[len(prefix):])
            if mapped is None:
                ignored.append(key)
            else:
                out["semantic_encoder." + mapped] = value
        if hasattr(self.semantic_encoder, "set_stride_in_1x1"):
            self.semantic_encoder.set_stride_in_1x1(True)
        return out, ignored

