"""project_gaussians: every kernel backend against the PyTorch reference (float64, forward and
backward), culling, sign of scales, gradcheck and opcheck. Bad inputs are in test_splat_errors.py."""

from __future__ import annotations

import math

import pytest
import torch
from _splat_cases import F64, assert_all_close, camera, cotangents_like, grads, leaves, world_gaussians
from _utils import assert_close

import pyflowops
from pyflowops.reference import splat as reference

OUTPUTS = ("means2d", "conics", "depths")
INPUTS = ("means", "quats", "scales")
W, H = 37, 23


def project(backend, tensors, viewmat, K, width=W, height=H, **kw):
    return pyflowops.project_gaussians(*tensors, viewmat, K, width, height, backend=backend, **kw)


def check_against_reference(backend, device, n, *, dtype=F64, noncontig=False, scale=1.0):
    """Forward (radii exactly) and the VJP of one random cotangent, kernel vs float64 reference."""
    g = world_gaussians(n, W, H)
    # The reference sees exactly what the kernel sees: inputs, camera and cotangents rounded to dtype.
    values = [g[k].to(dtype).to(F64) for k in INPUTS]
    viewmat, K = (x.to(dtype).to(F64) for x in camera(W, H))
    inputs = leaves(*values, dtype=dtype, device=device, noncontig=noncontig)
    expected_inputs = leaves(*values)
    out = project(backend, inputs, viewmat, K)
    expected = reference.project_gaussians(*expected_inputs, viewmat, K, W, H)
    assert out[3].dtype == torch.int32 and out[0].dtype == dtype
    torch.testing.assert_close(out[3].cpu(), expected[3])
    assert (expected[3] > 0).sum() > 0.7 * n and (expected[3] == 0).sum() >= (n >= 50)  # most visible, some culled
    assert_all_close(out[:3], expected[:3], OUTPUTS, dtype, scale)
    cot = [c.to(dtype).to(F64) for c in cotangents_like(expected[:3])]
    actual_grads = grads(out[:3], inputs, [c.to(dtype=dtype, device=device) for c in cot])
    assert_all_close(actual_grads, grads(expected[:3], expected_inputs, cot), INPUTS, dtype, scale)


class TestProjectGaussians:
    @pytest.mark.parametrize("n", [1, 7, 200])
    def test_against_reference(self, kernel_case, n):
        check_against_reference(*kernel_case, n)

    def test_noncontiguous(self, kernel_case):
        check_against_reference(*kernel_case, 31, noncontig=True)

    def test_float32(self, kernel_case):
        """float32 kernels against the float64 reference; radii may differ only where 3 sqrt(lambda) rounds."""
        check_against_reference(*kernel_case, 60, dtype=torch.float32, scale=20)

    @pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["f16", "bf16"])
    def test_low_precision(self, kernel_case, dtype):
        """Math in float32, stored in dtype: against the float64 reference on the same rounded inputs."""
        check_against_reference(*kernel_case, 60, dtype=dtype)

    def test_hand_values(self, any_case):
        """An isotropic Gaussian on the optical axis: mean2d = (cx, cy), cov = (fx s / z)^2 + 0.3."""
        backend, device = any_case
        s, z, fx, fy = 0.05, 4.0, 80.0, 60.0
        K = torch.tensor([[fx, 0, 10.5], [0, fy, 7.25], [0, 0, 1]], dtype=F64)
        means = torch.tensor([[0.0, 0.0, z]], dtype=F64, device=device)
        quats = torch.tensor([[0.3, 0.0, 0.0, 0.0]], dtype=F64, device=device)  # identity, not normalized
        scales = torch.full((1, 3), s, dtype=F64, device=device)
        means2d, conics, depths, radii = project(backend, (means, quats, scales), torch.eye(4, dtype=F64), K, 21, 15)
        cxx, cyy = (fx * s / z) ** 2 + 0.3, (fy * s / z) ** 2 + 0.3
        assert means2d.tolist() == [[10.5, 7.25]] and depths.tolist() == [z]
        assert_close(conics.cpu(), torch.tensor([[1 / cxx, 0.0, 1 / cyy]], dtype=F64))
        assert radii.tolist() == [math.ceil(3 * math.sqrt(cxx))]

    def test_culling(self, any_case):
        """Behind the camera, beyond far, off-image on each side, zero quaternion, NaN mean: radius 0,
        means2d and conics 0, depths = z, zero (finite) gradient; the one visible Gaussian is untouched."""
        backend, device = any_case
        viewmat, K = torch.eye(4, dtype=F64), torch.tensor([[20.0, 0, 10], [0, 20.0, 8], [0, 0, 1]], dtype=F64)
        rows = {
            "visible": [0.0, 0.0, 3.0],
            "behind": [0.0, 0.0, -2.0],
            "too near": [0.0, 0.0, 0.005],
            "beyond far": [0.0, 0.0, 60.0],
            "left": [-3.0, 0.0, 3.0],  # x = -10 px: r ~ 2 px cannot reach pixel 0's center at 0.5
            "right": [3.0, 0.0, 3.0],
            "top": [0.0, -3.0, 3.0],
            "bottom": [0.0, 3.0, 3.0],
            "zero quat": [0.0, 0.0, 3.0],
            "nan mean": [float("nan"), 0.0, 3.0],
        }
        means = torch.tensor(list(rows.values()), dtype=F64)
        quats = torch.randn(len(rows), 4, dtype=F64)
        quats[list(rows).index("zero quat")] = 0.0
        scales = torch.full((len(rows), 3), 0.1, dtype=F64)
        inputs = leaves(means, quats, scales, device=device)
        out = project(backend, inputs, viewmat, K, 20, 16, far=50.0)
        radii = out[3].cpu()
        assert radii[0] > 0 and (radii[1:] == 0).all(), dict(zip(rows, radii.tolist()))
        assert (out[0][1:] == 0).all() and (out[1][1:] == 0).all()
        torch.testing.assert_close(out[2][:-1].cpu(), means[:-1, 2])
        assert out[2][-1].isnan()  # z of a NaN mean is NaN (documented: depths = z as computed)
        gm, gq, gs = grads(out[:3], inputs, cotangents_like(out[:3]))
        for g in (gm, gq, gs):
            assert torch.isfinite(g).all() and (g[1:] == 0).all() and (g[0] != 0).any()

    def test_negative_scales(self, any_case):
        """s and -s give the same Sigma: same outputs, gradients of opposite sign."""
        backend, device = any_case
        g = world_gaussians(20, W, H)
        viewmat, K = camera(W, H)
        flips = torch.tensor([[1.0, -1.0, 1.0], [-1.0, -1.0, -1.0]], dtype=F64).repeat(10, 1)
        plain = leaves(g["means"], g["quats"], g["scales"].abs(), device=device)
        flipped = leaves(g["means"], g["quats"], g["scales"].abs() * flips, device=device)
        a, b = project(backend, plain, viewmat, K), project(backend, flipped, viewmat, K)
        for x, y in zip(a, b):
            torch.testing.assert_close(x, y, rtol=0, atol=0)
        cot = cotangents_like(a[:3])
        ga, gb = grads(a[:3], plain, cot), grads(b[:3], flipped, cot)
        assert_close(gb[2], ga[2] * flips.to(device))
        assert_close(gb[0], ga[0])

    def test_empty(self, any_case):
        backend, device = any_case
        viewmat, K = camera(W, H)
        inputs = leaves(*(torch.zeros(0, k, dtype=F64) for k in (3, 4, 3)), device=device)
        out = project(backend, inputs, viewmat, K)
        assert [tuple(o.shape) for o in out] == [(0, 2), (0, 3), (0,), (0,)] and out[3].dtype == torch.int32

    @pytest.mark.parametrize("backend", ["cpu", "torch"])
    def test_gradcheck(self, backend):
        g = world_gaussians(6, W, H)
        viewmat, K = camera(W, H)
        inputs = leaves(*(g[k] for k in INPUTS))
        fn = lambda *x: project(backend, x, viewmat, K)[:3]  # noqa: E731
        assert torch.autograd.gradcheck(fn, inputs)

    @pytest.mark.filterwarnings("ignore:.*an autograd kernel was not registered")  # opcheck probes the backward op
    def test_opcheck(self):
        g = world_gaussians(12, W, H)
        viewmat, K = camera(W, H)
        inputs = leaves(*(g[k] for k in INPUTS))
        args = (*inputs, viewmat, K, W, H, 0.01, 1e10)
        torch.library.opcheck(torch.ops.pyflowops.project_gaussians.default, args)
        radii = torch.ops.pyflowops.project_gaussians(*args)[3]
        backward_args = (*(x.detach() for x in inputs), viewmat, K, radii, torch.randn(12, 2, dtype=F64),
                         torch.randn(12, 3, dtype=F64), torch.randn(12, dtype=F64))  # fmt: skip
        torch.library.opcheck(torch.ops.pyflowops.project_gaussians_backward.default, backward_args)
