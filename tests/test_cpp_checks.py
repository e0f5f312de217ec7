"""Direct torch.ops calls with a bad radius or level count: a RuntimeError with the C++ message, never a crash.

These bypass the Python validation, so the TORCH_CHECKs of csrc/corr/corr_checks.cpp format the error
(issue 9, item 5: a CUDA build once segfaulted while formatting "radius must be in [0, 8], got 9").
Every device the extension was built for is tried, forward and backward ops alike.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

import pyflowops
from pyflowops.ops.corr import prepare_onthefly
from pyflowops.reference import corr as reference

DEVICES = ["cpu"]
if torch.cuda.is_available() and pyflowops.build_info()["cuda_compiled"]:
    DEVICES.append("cuda")

B, D, H, W = 1, 3, 8, 8


def _inputs(device, levels=2):
    fmap1, fmap2 = torch.randn(B, D, H, W, device=device), torch.randn(B, D, H, W, device=device)
    coords = torch.rand(B, 2, H, W, device=device) * 6
    pyramid = reference.corr_pyramid(fmap1, fmap2, levels)
    fmap1_cl, fmap2_levels = prepare_onthefly(fmap1, fmap2, levels)
    return pyramid, coords, fmap1_cl, fmap2_levels


def _calls(device, radius, levels):
    """(op name, call) of the four correlation ops with `radius` and `levels` map levels."""
    pyramid, coords, fmap1, fmap2_levels = _inputs(device)
    pyramid = (list(pyramid) * 8)[:levels]  # 0 to 16 levels: the count is checked before any shape
    fmap2_levels = (list(fmap2_levels) * 8)[:levels]
    k = (2 * radius + 1) ** 2 if 0 <= radius <= 8 else 1  # grad_out is checked after radius and levels
    grad_out = torch.zeros(B, max(levels, 1) * k, H, W, device=device)
    ops = torch.ops.pyflowops
    return [
        ("corr_lookup", lambda: ops.corr_lookup(pyramid, coords, radius)),
        ("corr_lookup_backward", lambda: ops.corr_lookup_backward(grad_out, pyramid, coords, radius, True)),
        ("corr_lookup_onthefly", lambda: ops.corr_lookup_onthefly(fmap1, fmap2_levels, coords, radius)),
        (
            "corr_lookup_onthefly_backward",
            lambda: ops.corr_lookup_onthefly_backward(grad_out, fmap1, fmap2_levels, coords, radius),
        ),
    ]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("radius", [9, -1, 100, -(2**40), 2**62])
def test_bad_radius_raises_with_message(device, radius):
    for op, call in _calls(device, radius, levels=2):
        with pytest.raises(RuntimeError, match=rf"{op}: radius must be in \[0, 8\], got {radius}\b"):
            call()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("levels", [0, 9, 16])
def test_bad_level_count_raises_with_message(device, levels):
    for op, call in _calls(device, radius=2, levels=levels):
        name = "fmap2_levels" if "onthefly" in op else "pyramid"
        with pytest.raises(RuntimeError, match=rf"{op}: {name} must hold between 1 and 8 levels, got {levels}\b"):
            call()


def test_checks_are_compiled_once_and_never_by_nvcc():
    """The check headers only declare (definitions in *_checks.cpp), and no .cu file reaches them.

    So the error formatting has one definition, built by the C++ compiler: nvcc never emits a weak
    copy of it for the linker to pick (see csrc/common/checks.h).
    """
    csrc = Path(__file__).resolve().parents[1] / "csrc"
    include = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)
    for header in csrc.glob("**/*checks.h"):
        assert "TORCH_CHECK(" not in header.read_text(), f"{header}: define checks in the .cpp"
    for cu in csrc.glob("**/*.cu"):
        seen, todo = set(), [cu]
        while todo:
            for name in include.findall(todo.pop().read_text()):
                path = csrc / name
                if path.is_file() and path not in seen:
                    seen.add(path)
                    todo.append(path)
        reached = sorted(p.name for p in seen if p.name.endswith("checks.h"))
        assert not reached, f"{cu.name} includes {reached}"
