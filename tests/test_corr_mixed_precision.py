"""Mixed precision (issue 9, item 4): float16/bfloat16 maps with float32 coordinates.

The positions are never rounded to half: the remaining error is the maps' own
rounding and the output's (the output takes the maps' dtype), not the 0.25 px
steps bfloat16 coordinates have at x = 32. Both blocks also run under autocast.
"""

from __future__ import annotations

import pytest
import torch

import pyflowops
from pyflowops.nn import AlternateCorrBlock, CorrBlock
from pyflowops.reference import corr as reference

from _utils import assert_close

DTYPES = [torch.float16, torch.bfloat16]


def _inputs(device, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    f1, f2 = (torch.randn(2, 2, 8, 12, 10, generator=g, dtype=torch.float64) * 2).unbind(0)
    # far from the origin, with fractions half cannot hold: x in [30, 60) has bfloat16 steps of 0.25
    coords = 30 + torch.rand(2, 2, 12, 10, generator=g, dtype=torch.float64) * 30
    coords[:, 0] -= 25  # x also near the map (10 wide), so the windows are not all padding
    coords[:, 1] -= 25
    return f1.to(device, dtype), f2.to(device, dtype), coords.to(device, torch.float32)


@pytest.mark.parametrize("dtype", DTYPES)
def test_lookup_float32_coords_with_half_pyramid(kernel_case, dtype):
    backend, device = kernel_case
    f1, f2, coords = _inputs(device, dtype)
    pyramid = [p.to(dtype) for p in reference.corr_pyramid(f1.double(), f2.double(), 3)]
    leaves = [p.detach().requires_grad_() for p in pyramid]
    c = coords.detach().requires_grad_()
    got = pyflowops.corr_lookup(leaves, c, 2, backend=backend)
    assert got.dtype == dtype
    want_leaves = [p.detach().double().requires_grad_() for p in pyramid]
    wc = coords.detach().double().requires_grad_()
    want = reference.corr_lookup(want_leaves, wc, 2)  # exact maps' values, exact float32 positions
    assert_close(got, want, dtype)
    cot = torch.randn_like(want)
    got.backward(cot.to(dtype))
    want.backward(cot.to(dtype).double())
    assert c.grad.dtype == torch.float32 and leaves[0].grad.dtype == dtype
    assert_close(c.grad, wc.grad, dtype, scale=4)
    for g, w in zip(leaves, want_leaves):
        assert_close(g.grad, w.grad, dtype)
    # the motivation: the same maps with half coordinates miss by the coordinates' rounding
    rounded = pyflowops.corr_lookup(pyramid, coords.to(dtype), 2, backend=backend)
    assert (rounded.double() - want).abs().max() > 2 * (got.double() - want).abs().max()


@pytest.mark.parametrize("dtype", DTYPES)
def test_onthefly_float32_coords_with_half_features(kernel_case, dtype):
    backend, device = kernel_case
    f1, f2, coords = _inputs(device, dtype, seed=1)
    a, b, c = (t.detach().requires_grad_() for t in (f1, f2, coords))
    got = pyflowops.corr_lookup_onthefly(a, b, c, 2, 3, backend=backend)
    assert got.dtype == dtype
    wa, wb, wc = (t.detach().double().requires_grad_() for t in (f1, f2, coords))
    want = reference.corr_lookup_onthefly(wa, wb, wc, 2, 3)
    assert_close(got, want, dtype, scale=2)
    cot = torch.randn_like(want).to(dtype)
    got.backward(cot)
    want.backward(cot.double())
    assert c.grad.dtype == torch.float32 and a.grad.dtype == dtype and b.grad.dtype == dtype
    assert_close(c.grad, wc.grad, dtype, scale=8)
    assert_close(a.grad, wa.grad, dtype, scale=4)
    assert_close(b.grad, wb.grad, dtype, scale=4)


@pytest.mark.parametrize("block", [CorrBlock, AlternateCorrBlock])
def test_blocks_under_cpu_autocast(block):
    """RAFT's pattern: features from an autocast region, coordinates in float32."""
    f1, f2, coords = _inputs("cpu", torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = block(f1.bfloat16(), f2.bfloat16(), num_levels=3, radius=2)(coords)
    want = block(f1.bfloat16().float(), f2.bfloat16().float(), num_levels=3, radius=2)(coords)
    assert out.dtype == torch.bfloat16
    assert_close(out, want, torch.bfloat16, scale=2)


def test_other_coordinate_dtypes_are_still_rejected():
    f1, f2, _ = _inputs("cpu", torch.float16)
    pyramid = pyflowops.corr_pyramid(f1, f2, 2)
    with pytest.raises(TypeError, match="float32 with float16/bfloat16 maps"):
        pyflowops.corr_lookup(pyramid, torch.zeros(2, 2, 12, 10, dtype=torch.float64), 1)
    with pytest.raises(TypeError, match="coords has dtype torch.float16"):
        pyflowops.corr_lookup([p.float() for p in pyramid], torch.zeros(2, 2, 12, 10, dtype=torch.float16), 1)
