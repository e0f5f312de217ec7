"""Bad input to the correlation ops: a clear Python error naming the argument, never a crash."""

from __future__ import annotations

import pytest
import torch

import pyflowops
from pyflowops.reference import corr as reference


def fmaps(batch=2, dim=3, height=8, width=9, **kw):
    return torch.randn(batch, dim, height, width, **kw), torch.randn(batch, dim, height, width, **kw)


def coords(batch=2, height=8, width=9, **kw):
    return torch.rand(batch, 2, height, width, **kw) * 6


PYRAMID = reference.corr_pyramid(*fmaps(), 2)

# (description, call, exception, message pattern)
BAD_CALLS = [
    ("fmap rank", lambda: pyflowops.corr_pyramid(torch.randn(3, 8, 9), torch.randn(3, 8, 9)), ValueError, r"fmap1 must have 4 dimensions, got shape \(3, 8, 9\)"),
    ("fmap type", lambda: pyflowops.corr_pyramid([1.0], fmaps()[1]), TypeError, r"fmap1 must be a torch.Tensor, got list"),
    ("batch mismatch", lambda: pyflowops.corr_pyramid(fmaps()[0], fmaps(batch=3)[1]), ValueError, r"fmap2 must have shape .*\(2, 3, 8, 9\), got \(3, 3, 8, 9\)"),
    ("channel mismatch", lambda: pyflowops.corr_lookup_onthefly(fmaps()[0], fmaps(dim=4)[1], coords()), ValueError, r"fmap2 must have shape"),
    ("int dtype", lambda: pyflowops.corr_pyramid(*(f.to(torch.int32) for f in fmaps())), TypeError, r"fmap1 must be float32, float64, float16 or bfloat16, got torch.int32"),
    ("dtype mismatch", lambda: pyflowops.corr_pyramid(fmaps()[0], fmaps()[1].double()), TypeError, r"fmap2 has dtype torch.float64 but fmap1 has torch.float32"),
    ("levels too deep", lambda: pyflowops.corr_pyramid(*fmaps(height=5), num_levels=4), ValueError, r"num_levels=4 is too deep for 5x9 .* at most 3 levels"),
    ("levels zero", lambda: pyflowops.corr_pyramid(*fmaps(), num_levels=0), ValueError, r"num_levels must be >= 1, got 0"),
    ("levels float", lambda: pyflowops.corr_pyramid(*fmaps(), num_levels=2.0), TypeError, r"num_levels must be an int, got float"),
    ("coords channels", lambda: pyflowops.corr_lookup(PYRAMID, torch.rand(2, 3, 8, 9)), ValueError, r"coords must have shape \[B, 2, H, W\] .*\(2, 2, 8, 9\), got \(2, 3, 8, 9\)"),
    ("coords size", lambda: pyflowops.corr_lookup_onthefly(*fmaps(), coords(width=10)), ValueError, r"coords must have shape \[B, 2, H, W\] from fmap1"),
    ("coords rank", lambda: pyflowops.corr_lookup(PYRAMID, torch.rand(2, 8, 9)), ValueError, r"coords must have 4 dimensions"),
    ("coords dtype", lambda: pyflowops.corr_lookup(PYRAMID, coords().double()), TypeError, r"coords has dtype torch.float64 but pyramid\[0\] has torch.float32"),
    ("mixed devices", lambda: pyflowops.corr_lookup(PYRAMID, coords(device="meta")), ValueError, r"coords is on meta but pyramid\[0\] is on cpu"),
    ("mixed devices fmaps", lambda: pyflowops.corr_lookup_onthefly(fmaps()[0], fmaps(device="meta")[1], coords()), ValueError, r"fmap2 is on meta but fmap1 is on cpu"),
    ("radius too big", lambda: pyflowops.corr_lookup(PYRAMID, coords(), radius=9), ValueError, r"radius must be in \[0, 8\], got 9"),
    ("radius negative", lambda: pyflowops.corr_lookup_onthefly(*fmaps(), coords(), radius=-1), ValueError, r"radius must be in \[0, 8\], got -1"),
    ("pyramid not a list", lambda: pyflowops.corr_lookup(PYRAMID[0], coords()), TypeError, r"pyramid must be a non-empty list of tensors, got Tensor"),
    ("pyramid empty", lambda: pyflowops.corr_lookup([], coords()), TypeError, r"pyramid must be a non-empty list"),
    ("pyramid level shape", lambda: pyflowops.corr_lookup([PYRAMID[0], PYRAMID[0]], coords()), ValueError, r"pyramid\[1\] must have shape \[B, H, W, H_l, W_l\], halved per level = \(2, 8, 9, 4, 4\)"),
    ("pyramid not square", lambda: pyflowops.corr_lookup([PYRAMID[1]], coords()), ValueError, r"pyramid\[0\] must have shape \[B, H, W, H, W\]"),
    ("unknown backend", lambda: pyflowops.corr_pyramid(*fmaps(), backend="metal"), ValueError, r"backend must be one of .*'metal'"),
    ("cuda on cpu tensors", lambda: pyflowops.corr_lookup(PYRAMID, coords(), backend="cuda"), pyflowops.BackendUnavailableError, r"corr_lookup: backend 'cuda' cannot run"),
]


@pytest.mark.parametrize("call, error, pattern", [c[1:] for c in BAD_CALLS], ids=[c[0] for c in BAD_CALLS])
def test_bad_input_raises_clear_error(call, error, pattern):
    with pytest.raises(error, match=pattern):
        call()


def test_unsupported_device_names_backend_and_device():
    with pytest.raises(pyflowops.BackendUnavailableError, match=r"backend 'cpu' cannot run: runs on cpu tensors, got meta"):
        pyflowops.corr_lookup([p.to("meta") for p in PYRAMID], coords(device="meta"), backend="cpu")


@pytest.mark.parametrize(
    "args",
    [
        lambda: ([PYRAMID[0][0]], coords(), 4),  # rank-4 level
        lambda: (PYRAMID, coords(batch=1), 4),  # batch mismatch
        lambda: (PYRAMID, coords(), 9),  # radius past the kernel's patch
        lambda: (PYRAMID, coords().double(), 4),  # dtype mismatch
    ],
    ids=["rank", "batch", "radius", "dtype"],
)
def test_cpp_checks_are_the_last_line_of_defence(args):
    """Calling the registered op directly bypasses Python validation: TORCH_CHECK must still catch it."""
    with pytest.raises(RuntimeError):
        torch.ops.pyflowops.corr_lookup(*args())


def test_cpp_onthefly_checks():
    fmap1, fmap2 = fmaps()
    fmap1_cl, levels = pyflowops.ops.corr.prepare_onthefly(fmap1, fmap2, 2)
    with pytest.raises(RuntimeError):  # channel mismatch between fmap1 and a level
        torch.ops.pyflowops.corr_lookup_onthefly(fmap1_cl, [levels[0][..., :2].contiguous()], coords(), 2)
