"""GMA's global motion aggregation (Jiang et al., ICCV 2021) without the (HW)^2 matrix.

The official ``Attention`` returns the softmax matrix [B, heads, HW, HW] and
``Aggregate`` multiplies it into the motion features: 16 GiB per sample at a
2048^2 input. Here ``Attention`` returns only the queries and keys and
``Aggregate`` calls ``torch.nn.functional.scaled_dot_product_attention``, whose
fused kernels (flash / memory-efficient, CPU and CUDA) never store the matrix.
``softmax="explicit"`` keeps the official formulation (the reference the
benchmarks compare against). Module names follow the official ``core/gma.py``
(``att.to_qk``, ``att.pos_emb``, ``aggregator.to_v``, ``aggregator.gamma``) so
official checkpoints load.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["Attention", "Aggregate", "QueryKey", "RelPosEmb", "SOFTMAX_MODES"]

SOFTMAX_MODES = ("fused", "explicit")


class QueryKey(NamedTuple):
    """What :class:`Attention` hands to every :class:`Aggregate`: q, k [B, heads, HW, dim_head] and the grid."""

    q: torch.Tensor
    k: torch.Tensor
    height: int
    width: int


class RelPosEmb(nn.Module):
    """The official relative position embedding, kept so GMA checkpoints load strictly.

    GMA's published models (and DecFlow, SKFlow) use content-only attention, so
    these tables are never read: they are frozen (``requires_grad=False``).
    """

    def __init__(self, max_pos_size: int, dim_head: int) -> None:
        super().__init__()
        self.rel_height = nn.Embedding(2 * max_pos_size - 1, dim_head)
        self.rel_width = nn.Embedding(2 * max_pos_size - 1, dim_head)
        deltas = torch.arange(max_pos_size).view(1, -1) - torch.arange(max_pos_size).view(-1, 1)
        self.register_buffer("rel_ind", deltas + max_pos_size - 1)
        self.requires_grad_(False)


class Attention(nn.Module):
    """Self-attention queries and keys over the context features.

    Args:
        dim: channels of the context features.
        heads: attention heads (GMA's networks use 1).
        dim_head: channels per head.
        max_pos_size: size of the (unused, checkpoint-only) position tables.

    forward(fmap [B, dim, H, W]) -> QueryKey with q, k [B, heads, H*W, dim_head].
    """

    def __init__(self, dim: int, heads: int = 1, dim_head: int = 128, max_pos_size: int = 160) -> None:
        super().__init__()
        self.heads, self.dim_head = heads, dim_head
        self.to_qk = nn.Conv2d(dim, heads * dim_head * 2, 1, bias=False)
        self.pos_emb = RelPosEmb(max_pos_size, dim_head)

    def forward(self, fmap: torch.Tensor) -> QueryKey:
        b, _, h, w = fmap.shape
        q, k = self.to_qk(fmap).chunk(2, dim=1)  # [B, heads*dim_head, H, W] each
        # contiguous [B, heads, HW, d]: with a strided last dim, CPU SDPA falls back to its math path,
        # which stores the (HW)^2 matrix (2.3 GiB instead of 12 MiB at 16384 tokens).
        q, k = (t.reshape(b, self.heads, self.dim_head, h * w).transpose(2, 3).contiguous() for t in (q, k))
        return QueryKey(q, k, h, w)


class Aggregate(nn.Module):
    """Attention-weighted global motion: ``fmap + gamma * project(softmax(q k^T / sqrt(d)) to_v(fmap))``.

    Args:
        dim: channels of the motion features.
        heads, dim_head: as the :class:`Attention` that made the QueryKey.
        softmax: ``fused`` (scaled_dot_product_attention, no HW x HW matrix) or
            ``explicit`` (the official matrix; for reference and tests).

    forward(attention: QueryKey, fmap [B, dim, H, W]) -> [B, dim, H, W].
    ``gamma`` starts at 0, so a fresh block passes the motion features through.
    """

    def __init__(self, dim: int, heads: int = 1, dim_head: int = 128, softmax: str = "fused") -> None:
        super().__init__()
        if softmax not in SOFTMAX_MODES:
            raise ValueError(f"Aggregate: softmax must be one of {SOFTMAX_MODES}, got {softmax!r}")
        self.heads, self.dim_head, self.softmax = heads, dim_head, softmax
        inner = heads * dim_head
        self.to_v = nn.Conv2d(dim, inner, 1, bias=False)
        self.gamma = nn.Parameter(torch.zeros(1))
        self.project = nn.Conv2d(inner, dim, 1, bias=False) if dim != inner else None

    def forward(self, attention: QueryKey, fmap: torch.Tensor) -> torch.Tensor:
        b, _, h, w = fmap.shape
        if (attention.height, attention.width) != (h, w):
            raise ValueError(
                f"Aggregate: attention was built for {attention.height}x{attention.width}, features are {h}x{w}"
            )
        v = self.to_v(fmap).reshape(b, self.heads, self.dim_head, h * w).transpose(2, 3).contiguous()  # [B, h, HW, d]
        q, k = attention.q.to(v.dtype), attention.k.to(v.dtype)  # autocast may leave them in another dtype
        if self.softmax == "fused":
            out = F.scaled_dot_product_attention(q, k, v)
        else:
            attn = torch.softmax((q * q.shape[-1] ** -0.5) @ k.transpose(2, 3), dim=-1)  # [B, heads, HW, HW]
            out = attn @ v
        out = out.transpose(2, 3).reshape(b, self.heads * self.dim_head, h, w)
        if self.project is not None:
            out = self.project(out)
        return fmap + self.gamma * out
