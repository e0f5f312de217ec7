"""GradientRegularization: the module form of pyflowops.gradient_regularization in training losses."""

from __future__ import annotations

import pytest
import torch
from _utils import assert_close

import pyflowops
from pyflowops.nn import GradientRegularization
from pyflowops.reference import gradreg as reference


@pytest.fixture
def batch():
    flow = torch.randn(2, 2, 9, 11, dtype=torch.float64)
    image = torch.rand(2, 3, 9, 11, dtype=torch.float64)
    mask = torch.rand(2, 1, 9, 11) > 0.2
    target = torch.randn(2, 2, 9, 11, dtype=torch.float64)
    return flow, image, mask, target


OPTION_SETS = [
    {},
    {"operator": "diff", "order": 2, "penalty": "l2", "reduction": "sum"},
    {"penalty": "l1", "edge_weight": 10.0, "textureless_threshold": 0.12, "reduction": "none"},
    {"operator": "diff", "penalty": "charbonnier", "eps": 0.05, "edge_weight": 3.0},
]


@pytest.mark.parametrize(
    "options", OPTION_SETS, ids=["defaults", "diff2-l2-sum", "l1-edge-thr-none", "diff-charbonnier"]
)
def test_same_as_the_function(kernel_case, batch, options):
    backend, device = kernel_case
    flow, image, mask, target = (t.to(device) for t in batch)
    module = GradientRegularization(**options, backend=backend)
    got = module(flow, image, mask, target)
    assert_close(got, pyflowops.gradient_regularization(flow, image, mask, target, **options, backend=backend))
    assert_close(got, reference.gradient_regularization(flow, image, mask, target, **options))
    assert_close(module(flow), reference.gradient_regularization(flow, **options))


def test_defaults_match_the_function(batch):
    flow, image, mask, target = batch
    assert_close(
        GradientRegularization()(flow, image, mask, target),
        pyflowops.gradient_regularization(flow, image, mask, target),
    )


@pytest.mark.parametrize(
    "options, error, pattern",
    [
        ({"penalty": "huber"}, ValueError, r"penalty must be one of 'l1', 'charbonnier', 'l2', got 'huber'"),
        ({"operator": "sobel", "order": 2}, ValueError, r"order=2 needs operator='diff'"),
        ({"operator": "scharr"}, ValueError, r"operator must be one of"),
        ({"eps": -1.0}, ValueError, r"eps must be >= 0.0, got -1.0"),
        ({"reduction": "max"}, ValueError, r"reduction must be one of"),
        ({"edge_weight": float("nan")}, ValueError, r"edge_weight must be finite"),
        ({"textureless_threshold": "low"}, TypeError, r"textureless_threshold must be a float, got str"),
        ({"backend": "metal"}, ValueError, r"backend must be one of"),
    ],
    ids=["penalty", "sobel-order2", "operator", "eps", "reduction", "edge_weight", "threshold", "backend"],
)
def test_bad_option_fails_at_construction(options, error, pattern):
    with pytest.raises(error, match=pattern):
        GradientRegularization(**options)


def test_repr():
    assert repr(GradientRegularization()) == (
        "GradientRegularization(operator='sobel', order=1, penalty='charbonnier', eps=0.001, edge_weight=0.0, "
        "reduction='mean')"
    )
    module = GradientRegularization("diff", 2, "l2", edge_weight=5.0, textureless_threshold=0.05, backend="torch")
    assert repr(module) == (
        "GradientRegularization(operator='diff', order=2, penalty='l2', eps=0.001, edge_weight=5.0, "
        "textureless_threshold=0.05, reduction='mean', backend='torch')"
    )


def test_holds_no_parameters():
    module = GradientRegularization(edge_weight=1.0)
    assert list(module.parameters()) == [] and module.state_dict() == {}


class FlowModel(torch.nn.Module):
    """A toy flow network trained with an epe term plus edge-aware smoothness."""

    def __init__(self, backend=None):
        super().__init__()
        self.head = torch.nn.Conv2d(3, 2, 3, padding=1, dtype=torch.float64)
        self.smoothness = GradientRegularization(edge_weight=10.0, textureless_threshold=0.12, backend=backend)
        self.match = GradientRegularization("diff", 2, "l1", reduction="sum", backend=backend)

    def loss(self, image, gt_flow, valid):
        flow = self.head(image)
        epe = (flow - gt_flow).norm(dim=1).mean()
        return epe + 0.5 * self.smoothness(flow, image) + 0.01 * self.match(flow, None, valid, gt_flow)


@pytest.mark.parametrize("backend", ["cpu", "torch"])
def test_inside_a_models_loss(backend, batch):
    _, image, mask, target = batch
    torch.manual_seed(3)
    model = FlowModel(backend)
    torch.manual_seed(3)
    ref_model = FlowModel("torch")
    loss = model.loss(image, target, mask)
    loss.backward()
    ref_loss = ref_model.loss(image, target, mask)
    ref_loss.backward()
    assert_close(loss, ref_loss)
    for p, ref_p in zip(model.parameters(), ref_model.parameters()):
        assert p.grad is not None and p.grad.abs().sum() > 0
        assert_close(p.grad, ref_p.grad)


def test_backend_override(batch, monkeypatch):
    """The module's backend wins over use_backend and PYFLOWOPS_BACKEND; None follows them."""
    flow, image, _, _ = batch
    monkeypatch.setenv("PYFLOWOPS_BACKEND", "cuda")
    with pytest.raises(pyflowops.BackendUnavailableError, match=r"gradient_regularization: backend 'cuda' cannot run"):
        GradientRegularization(edge_weight=1.0)(flow, image)
    pinned = GradientRegularization(edge_weight=1.0, backend="torch")
    want = reference.gradient_regularization(flow, image, edge_weight=1.0)
    assert_close(pinned(flow, image), want)
    with pyflowops.use_backend("cuda"):
        assert_close(pinned(flow, image), want)
    monkeypatch.delenv("PYFLOWOPS_BACKEND")
    with pyflowops.use_backend("torch"):
        assert_close(GradientRegularization(edge_weight=1.0)(flow, image), want)


def test_construction_does_not_need_the_backend():
    """Options are validated with the torch backend: a module for CUDA can be built on a CPU-only machine."""
    module = GradientRegularization(backend="cuda")
    with pytest.raises(pyflowops.BackendUnavailableError):
        module(torch.randn(1, 2, 4, 4))
