"""pyflowops.nn.CorrBlock / AlternateCorrBlock against RAFT's own core/corr.py (the GPU table's peer).

The drop-in claim checked on RAFT's code itself (../shared/peers/raft), not on our reading of it:
same constructor, same call, the same numbers.
"""

from __future__ import annotations

import pytest
import torch

from benchmarks import _raft_peer
from pyflowops.nn import AlternateCorrBlock, CorrBlock

pytestmark = pytest.mark.skipif(_raft_peer.available() is not None, reason=str(_raft_peer.available()))


def _inputs(b=2, d=24, h=19, w=17, seed=0):
    # every level at least 2x2: RAFT's grid_sample wrapper divides by (W - 1), NaN on a 1-wide level
    g = torch.Generator().manual_seed(seed)
    f1 = torch.randn(b, d, h, w, generator=g, dtype=torch.float64)
    f2 = torch.randn(b, d, h, w, generator=g, dtype=torch.float64)
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64),
                            indexing="ij")
    coords = torch.stack([xs, ys])[None].repeat(b, 1, 1, 1) + 3 * torch.randn(b, 2, h, w, generator=g,
                                                                             dtype=torch.float64)
    return f1, f2, coords


@pytest.mark.parametrize("levels, radius", [(4, 4), (2, 3), (3, 1)])
def test_corr_block_equals_rafts(levels, radius):
    f1, f2, coords = _inputs()
    theirs = _raft_peer.corr_module().CorrBlock(f1, f2, num_levels=levels, radius=radius)(coords)
    ours = CorrBlock(f1, f2, num_levels=levels, radius=radius)(coords)
    assert ours.shape == theirs.shape == (2, levels * (2 * radius + 1) ** 2, 19, 17)
    # RAFT returns float32 (`.float()`) and offsets its windows in float32: float32 agreement
    torch.testing.assert_close(ours.float(), theirs, rtol=1e-5, atol=1e-5)
    # and the on-the-fly block gives the same numbers without the volume
    torch.testing.assert_close(AlternateCorrBlock(f1, f2, num_levels=levels, radius=radius)(coords).float(), theirs,
                               rtol=1e-5, atol=1e-5)


def test_peer_gradients_match_ours():
    f1, f2, coords = _inputs(b=1, d=8, h=18, w=20, seed=1)
    cot = torch.randn(1, 4 * 81, 18, 20, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    grads = []
    for block in (_raft_peer.corr_module().CorrBlock, CorrBlock):
        a, b = f1.clone().requires_grad_(), f2.clone().requires_grad_()
        (block(a, b)(coords) * cot).sum().backward()
        grads.append((a.grad, b.grad))
    for theirs, ours in zip(*grads):  # RAFT's float32 output rounds the cotangent to float32
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
        assert ours.abs().max() > 1e-2


def test_loading_the_peer_leaves_sys_path_alone():
    import sys

    before = list(sys.path)
    _raft_peer.corr_module.cache_clear()
    _raft_peer.corr_module()
    assert sys.path == before and "utils.utils" not in sys.modules
