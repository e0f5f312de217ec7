"""CorrBlock / AlternateCorrBlock: RAFT's API and numbers, and torch.compile."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from pyflowops.nn import AlternateCorrBlock, CorrBlock

from _utils import assert_close, random_coords


class RaftCorrBlock:
    """RAFT's CorrBlock as published (align_corners=True grid_sample), the compatibility target."""

    def __init__(self, fmap1, fmap2, num_levels=4, radius=4):
        self.num_levels, self.radius = num_levels, radius
        batch, dim, ht, wd = fmap1.shape
        corr = torch.matmul(fmap1.view(batch, dim, ht * wd).transpose(1, 2), fmap2.view(batch, dim, ht * wd))
        corr = corr.reshape(batch * ht * wd, 1, ht, wd) / torch.sqrt(torch.tensor(dim).float())
        self.corr_pyramid = [corr]
        for _ in range(num_levels - 1):
            corr = F.avg_pool2d(corr, 2, stride=2)
            self.corr_pyramid.append(corr)

    def __call__(self, coords):
        r = self.radius
        coords = coords.permute(0, 2, 3, 1)
        batch, h1, w1, _ = coords.shape
        out_pyramid = []
        for i, corr in enumerate(self.corr_pyramid):
            dx = torch.linspace(-r, r, 2 * r + 1, device=coords.device, dtype=coords.dtype)
            dy = torch.linspace(-r, r, 2 * r + 1, device=coords.device, dtype=coords.dtype)
            delta = torch.stack(torch.meshgrid(dy, dx, indexing="ij"), dim=-1)
            centroid = coords.reshape(batch * h1 * w1, 1, 1, 2) / 2**i
            grid = centroid + delta.view(1, 2 * r + 1, 2 * r + 1, 2)
            h, w = corr.shape[-2:]
            xgrid, ygrid = grid.split([1, 1], dim=-1)
            grid = torch.cat([2 * xgrid / (w - 1) - 1, 2 * ygrid / (h - 1) - 1], dim=-1)
            sampled = F.grid_sample(corr, grid, align_corners=True)
            out_pyramid.append(sampled.view(batch, h1, w1, -1))
        return torch.cat(out_pyramid, dim=-1).permute(0, 3, 1, 2).contiguous().float()


@pytest.fixture
def features():
    fmap1 = torch.randn(2, 32, 16, 20)
    fmap2 = torch.randn(2, 32, 16, 20)
    coords = random_coords(2, 16, 20, spread=1.2, far=False)
    return fmap1, fmap2, coords


@pytest.mark.parametrize("block", [CorrBlock, AlternateCorrBlock])
def test_matches_raft_corrblock(block, features):
    fmap1, fmap2, coords = features
    want = RaftCorrBlock(fmap1, fmap2, num_levels=4, radius=4)(coords)
    got = block(fmap1, fmap2, num_levels=4, radius=4)(coords)
    assert got.shape == (2, 4 * 81, 16, 20)
    assert_close(got, want, scale=5)


def test_alternate_block_reuses_its_pyramid(features):
    fmap1, fmap2, coords = features
    block = AlternateCorrBlock(fmap1, fmap2, num_levels=2, radius=3)
    first = block(coords)
    prepared = block._lookup._prepared
    second = block(coords + 0.5)
    assert block._lookup._prepared is prepared
    assert not torch.equal(first, second)


def test_alternate_block_gradients_reach_features(features):
    fmap1, fmap2, coords = (t.double().requires_grad_() for t in features)
    block = AlternateCorrBlock(fmap1, fmap2, num_levels=3, radius=2)
    (block(coords) ** 2).sum().backward()
    for t in (fmap1, fmap2, coords):
        assert t.grad is not None and t.grad.abs().sum() > 0


class TinyRefinement(torch.nn.Module):
    """RAFT's loop in miniature: build the correlation once, look up twice, convolve."""

    def __init__(self, block):
        super().__init__()
        self.block = block
        self.head = torch.nn.Conv2d(2 * 9, 2, 1)

    def forward(self, fmap1, fmap2, coords):
        corr_fn = self.block(fmap1, fmap2, num_levels=2, radius=1)
        for _ in range(2):
            coords = coords + self.head(corr_fn(coords))
        return coords


@pytest.mark.parametrize("block", [CorrBlock, AlternateCorrBlock])
def test_torch_compile_fullgraph(block, features):
    """One graph (no breaks in backend selection or validation), inductor codegen, gradients."""
    fmap1, fmap2, coords = (t[:, :, :8, :8].contiguous() for t in features)
    model = TinyRefinement(block)
    eager = model(fmap1, fmap2, coords)
    compiled = torch.compile(model, fullgraph=True)
    out = compiled(fmap1, fmap2, coords)
    assert_close(out, eager)
    out.sum().backward()
    assert model.head.weight.grad is not None and model.head.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("block", [CorrBlock, AlternateCorrBlock])
def test_bad_radius_is_caught_at_construction(block, features):
    fmap1, fmap2, _ = features
    with pytest.raises(ValueError, match=r"radius must be in \[0, 8\], got 9"):
        block(fmap1, fmap2, num_levels=2, radius=9)
