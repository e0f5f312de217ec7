"""MER core: optical strain, face box, flow representation, metrics, LOSO, the network, training, plots."""

import warnings

import numpy as np
import pytest
import torch
from pyflowops_models.mer.network import MicroExpressionNet
from pyflowops_models.mer.plots import plot_confusion, plot_representation
from pyflowops_models.mer.protocol import (
    TrainOptions,
    confusion_matrix,
    flip_horizontal,
    loso_evaluate,
    loso_splits,
    predict,
    train_classifier,
    uar,
    uf1,
)
from pyflowops_models.mer.representation import face_box, flow_representation, optical_strain


def _grid(h=20, w=30):
    return np.mgrid[0:h, 0:w].astype(np.float64)  # y (rows), x (columns)


# ---------------------------------------------------------------- representation


def test_strain_of_linear_flow_is_the_symmetric_gradient_norm():
    y, x = _grid()
    a, b, c, d, e, f = 0.3, -0.7, 0.2, 1.1, 5.0, -3.0
    flow = np.stack([a * x + b * y + e, c * x + d * y + f], axis=-1)
    expected = np.sqrt(a**2 + d**2 + 2 * ((b + c) / 2) ** 2)
    strain = optical_strain(flow, dtype=np.float64)
    assert strain.shape == (20, 30) and strain.dtype == np.float64
    np.testing.assert_allclose(strain, expected, rtol=1e-12, atol=1e-12)
    assert optical_strain(flow).dtype == np.float32  # the default
    np.testing.assert_allclose(optical_strain(flow), expected, rtol=1e-6)


def test_rigid_motion_has_no_strain():
    y, x = _grid()
    theta = 0.05
    rotation = np.stack([-theta * y + 2.0, theta * x - 1.0], axis=-1)  # rotation + translation
    np.testing.assert_allclose(optical_strain(rotation, dtype=np.float64), 0.0, atol=1e-12)
    translation = np.broadcast_to(np.array([3.0, -2.0]), (20, 30, 2))
    np.testing.assert_allclose(optical_strain(translation), 0.0, atol=1e-7)


def test_strain_validation_and_nan():
    for bad in (np.zeros((5, 5)), np.zeros((5, 5, 3)), np.zeros((1, 5, 2))):
        with pytest.raises(ValueError):
            optical_strain(bad)
    flow = np.zeros((9, 9, 2))
    flow[4, 4, 0] = np.nan
    strain = optical_strain(flow)
    nan = np.isnan(strain)
    assert nan[4, 4] and nan[3, 4] and nan[5, 4] and nan[4, 3] and nan[4, 5]
    assert nan.sum() == 5 and np.all(strain[~nan] == 0)


def test_flow_representation_scales_displacements():
    flow = np.broadcast_to(np.array([3.0, -2.0], np.float32), (120, 130, 2)).copy()
    rep = flow_representation(flow, (10, 110, 20, 120), size=50)
    assert rep.shape == (3, 50, 50) and rep.dtype == np.float32
    np.testing.assert_allclose(rep[0], 1.5, rtol=1e-6)
    np.testing.assert_allclose(rep[1], -1.0, rtol=1e-6)
    np.testing.assert_allclose(rep[2], 0.0, atol=1e-6)
    rect = flow_representation(flow, (0, 100, 0, 25), size=50)  # x scaled by 2, y by 1/2
    np.testing.assert_allclose(rect[0], 6.0, rtol=1e-6)
    np.testing.assert_allclose(rect[1], -1.0, rtol=1e-6)


def test_flow_representation_strain_is_scale_free():
    y, x = _grid(96, 96)
    flow = np.stack([0.02 * x, -0.01 * y], axis=-1)
    rep = flow_representation(flow, (0, 96, 0, 96), size=48)
    np.testing.assert_allclose(rep[2][2:-2, 2:-2], np.hypot(0.02, 0.01), rtol=1e-4)


@pytest.mark.parametrize("box", [(0, 0, 0, 10), (5, 4, 0, 10), (-1, 10, 0, 10), (0, 10, 0, 31), (0, 10, 0),
                                 "abcd"])
def test_flow_representation_box_errors(box):
    with pytest.raises(ValueError):
        flow_representation(np.zeros((20, 30, 2), np.float32), box)


def test_flow_representation_other_errors():
    with pytest.raises(ValueError):
        flow_representation(np.zeros((20, 30, 3), np.float32), (0, 10, 0, 10))
    with pytest.raises(ValueError):
        flow_representation(np.zeros((20, 30, 2), np.float32), (0, 10, 0, 10), size=1)


def test_face_box_from_mask():
    image = np.zeros((100, 120, 3), np.uint8)
    mask = np.zeros((100, 120), bool)
    mask[20:60, 30:50] = True  # 40 x 20, centre (40, 40): side 40 * 1.2 = 48
    assert face_box(image, mask, margin=0.1) == (16, 64, 16, 64)
    assert face_box(image, mask, margin=0.0) == (20, 60, 20, 60)
    corner = np.zeros((100, 120), bool)
    corner[0:40, 0:20] = True  # centre (20, 10), side 48: clipped at the top and left
    assert face_box(image, corner, margin=0.1) == (0, 44, 0, 34)
    with pytest.raises(ValueError):
        face_box(image, mask[:50])
    with pytest.raises(ValueError):
        face_box(image, mask, margin=-0.1)


def test_face_box_without_a_face_is_the_centred_square():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # OpenCV builds without a Haar cascade warn
        assert face_box(np.zeros((100, 120, 3), np.uint8)) == (0, 100, 10, 110)
        assert face_box(np.zeros((90, 60), np.uint8), np.zeros((90, 60))) == (15, 75, 0, 60)  # empty mask


def test_face_box_haar_path(monkeypatch):
    import pyflowops_models.mer.representation as rep

    with pytest.warns(RuntimeWarning, match="Haar"):  # a missing cascade file: warned, then the centred square
        assert face_box(np.zeros((100, 120), np.uint8), cascade_path="/nonexistent/cascade.xml") == (0, 100, 10, 110)
    detections = np.array([[10, 10, 20, 20], [40, 30, 50, 50]])  # (x, y, w, h): the second is the largest
    monkeypatch.setattr(rep, "_haar_faces", lambda grey, path: detections)
    assert face_box(np.zeros((100, 120), np.uint8), margin=0.1) == (25, 85, 35, 95)  # side 60 about (55, 65)


# ---------------------------------------------------------------- metrics and splits

Y_TRUE = [0, 0, 0, 1, 1, 2, 2, 2, 2]
Y_PRED = [0, 1, 0, 1, 2, 2, 2, 0, 1]


def test_metrics_by_hand():
    cm = confusion_matrix(Y_TRUE, Y_PRED, 3)
    assert cm.dtype == np.int64 and cm.tolist() == [[2, 1, 0], [0, 1, 1], [1, 1, 2]]
    # TP = (2, 1, 2), FP = (1, 2, 1), FN = (1, 1, 2)
    assert uf1(Y_TRUE, Y_PRED, 3) == pytest.approx((4 / 6 + 2 / 5 + 4 / 7) / 3)
    assert uar(Y_TRUE, Y_PRED, 3) == pytest.approx((2 / 3 + 1 / 2 + 2 / 4) / 3)
    # a 4th class nobody has and nobody predicts is left out of both means
    assert uf1(Y_TRUE, Y_PRED, 4) == pytest.approx(uf1(Y_TRUE, Y_PRED, 3))
    assert uar(Y_TRUE, Y_PRED, 4) == pytest.approx(uar(Y_TRUE, Y_PRED, 3))
    # a class that is predicted but never true has F1 = 0 (counted) and no recall (left out)
    assert uf1([0, 0, 1, 1], [0, 2, 1, 1], 3) == pytest.approx((2 / 3 + 1 + 0) / 3)
    assert uar([0, 0, 1, 1], [0, 2, 1, 1], 3) == pytest.approx(0.75)
    assert uf1(Y_TRUE, Y_TRUE, 3) == 1.0 and uar(Y_TRUE, Y_TRUE, 3) == 1.0


@pytest.mark.parametrize("args", [([0, 1], [0], 3), ([0, 3], [0, 1], 3), ([0, -1], [0, 1], 3),
                                  ([0, 1.5], [0, 1], 3), ([0, 1], [0, 1], 1), ([], [], 3), ([[0, 1]], [[0, 1]], 3)])
def test_metric_errors(args):
    for fn in (uf1, uar):
        with pytest.raises(ValueError):
            fn(*args)


def test_loso_splits():
    rng = np.random.default_rng(0)
    subjects = list(rng.choice(["s3", "s1", "s10", "s2"], size=40))
    splits = loso_splits(subjects)
    assert [s for s, _, _ in splits] == sorted(set(subjects))
    seen = np.zeros(40, int)
    for subject, train, test in splits:
        assert set(train).isdisjoint(test) and len(train) + len(test) == 40
        assert all(subjects[i] == subject for i in test) and all(subjects[i] != subject for i in train)
        seen[test] += 1
    assert np.all(seen == 1)
    with pytest.raises(ValueError):
        loso_splits(["a", "a"])


# ---------------------------------------------------------------- network


@pytest.mark.parametrize("shape", [(2, 3, 16, 16), (4, 3, 48, 48), (1, 3, 33, 33), (2, 3, 20, 40)])
def test_network_shapes(shape):
    net = MicroExpressionNet().eval()
    assert net(torch.zeros(shape)).shape == (shape[0], 3)


def test_network_size_and_errors():
    assert sum(p.numel() for p in MicroExpressionNet(width=32).parameters()) < 80_000
    assert MicroExpressionNet(num_classes=5, in_channels=2, width=8).eval()(torch.zeros(1, 2, 16, 16)).shape == (1, 5)
    assert {"mean", "std"} <= set(MicroExpressionNet().state_dict())
    with pytest.raises(ValueError):
        MicroExpressionNet()(torch.zeros(2, 3, 15, 15))
    with pytest.raises(ValueError):
        MicroExpressionNet()(torch.zeros(2, 2, 32, 32))
    with pytest.raises(ValueError):
        MicroExpressionNet(num_classes=1)


# ---------------------------------------------------------------- training


def test_flip_horizontal():
    x = np.random.default_rng(0).normal(size=(2, 3, 5, 7)).astype(np.float32)
    for flipped in (flip_horizontal(x), flip_horizontal(torch.from_numpy(x)).numpy()):
        np.testing.assert_array_equal(flipped[:, 0], -x[:, 0, :, ::-1])
        np.testing.assert_array_equal(flipped[:, 1:], x[:, 1:, :, ::-1])
    np.testing.assert_array_equal(flip_horizontal(flip_horizontal(x[0])), x[0])
    assert np.any(x != flip_horizontal(x))  # a copy, the input is untouched
    np.testing.assert_array_equal(flip_horizontal(x), flip_horizontal(x))


def _quadrant_problem(subjects=6, per_subject=10, size=24, seed=0):
    """Class k = a +1 blob in quadrant k of u, N(0, 0.5) noise everywhere; per-subject offsets."""
    rng = np.random.default_rng(seed)
    n = subjects * per_subject
    y = np.tile(np.arange(3), n // 3 + 1)[:n]
    rng.shuffle(y)
    x = rng.normal(0, 0.5, size=(n, 3, size, size)).astype(np.float32)
    h = size // 2
    for i, k in enumerate(y):
        r, c = divmod(int(k), 2)
        x[i, 0, r * h:(r + 1) * h, c * h:(c + 1) * h] += 1.0
    ids = np.repeat([f"p{i}" for i in range(subjects)], per_subject)
    x += rng.normal(0, 0.2, size=(subjects, 1, 3, 1, 1)).repeat(per_subject, axis=0).reshape(n, 3, 1, 1).astype(
        np.float32)
    return x, y, list(ids)


def test_loso_separable_problem_is_learned():
    x, y, subjects = _quadrant_problem()
    result = loso_evaluate(x, y, subjects, 3, progress=False)
    assert result["uf1"] >= 0.9 and result["uar"] >= 0.9 and result["accuracy"] >= 0.9, result
    assert result["folds"] == 6 and len(result["predictions"]) == len(y)
    assert np.array(result["confusion"]).sum() == len(y)
    assert sum(v["n"] for v in result["per_subject"].values()) == len(y)
    correct = np.array(result["predictions"]) == y
    assert sum(v["correct"] for v in result["per_subject"].values()) == correct.sum()


def test_loso_shuffled_labels_are_near_chance():
    x, y, subjects = _quadrant_problem(seed=1)
    y = np.random.default_rng(2).permutation(y)
    result = loso_evaluate(x, y, subjects, 3, TrainOptions(epochs=20), progress=False)
    assert result["uf1"] < 0.6 and result["accuracy"] < 0.6, result


def test_training_is_deterministic_and_keeps_the_global_rng():
    x, y, subjects = _quadrant_problem(subjects=3, per_subject=8, size=16)
    options = TrainOptions(epochs=3, batch_size=8, threads=1)
    torch.manual_seed(123)
    model = train_classifier(x, y, 3, options)
    after = torch.rand(3)
    torch.manual_seed(123)
    assert torch.equal(after, torch.rand(3))  # training forked the RNG
    other = train_classifier(x, y, 3, options)
    for key, value in model.state_dict().items():
        assert torch.equal(value, other.state_dict()[key]), key
    np.testing.assert_allclose(model.mean.numpy(), x.mean(axis=(0, 2, 3)), rtol=1e-5, atol=1e-6)
    assert predict(model, x).dtype == np.int64 and not model.training
    first = loso_evaluate(x, y, subjects, 3, options, progress=False)
    assert first["predictions"] == loso_evaluate(x, y, subjects, 3, options, progress=False)["predictions"]
    different = train_classifier(x, y, 3, TrainOptions(epochs=3, batch_size=8, seed=1))
    assert not torch.equal(different.classifier.weight, model.classifier.weight)


def test_training_errors():
    x, y, subjects = _quadrant_problem(subjects=2, per_subject=3, size=16)
    options = TrainOptions(epochs=1)
    cases = [(x[:, 0], y, subjects, 3), (x, y[:-1], subjects, 3), (x, y, subjects[:-1], 3), (x, y, subjects, 1),
             (x, np.where(y == 0, 3, y), subjects, 3), (np.where(x > 1, np.nan, x), y, subjects, 3),
             (x, y, ["only"] * len(y), 3)]
    for args in cases:
        with pytest.raises(ValueError):
            loso_evaluate(*args, options=options, progress=False)
    with pytest.raises(ValueError):
        train_classifier(x[:1], y[:1], 3, options)


# ---------------------------------------------------------------- plots


def _is_png(path):
    data = path.read_bytes()
    return len(data) > 1000 and data[:8] == b"\x89PNG\r\n\x1a\n"


def test_plots_write_pngs(tmp_path):
    out = plot_confusion(np.array([[5, 1, 0], [2, 3, 1], [0, 0, 0]]), ["negative", "positive", "surprise"],
                         tmp_path / "sub" / "confusion.png", "test")
    assert out == tmp_path / "sub" / "confusion.png" and _is_png(out)
    rep = flow_representation(np.random.default_rng(0).normal(size=(64, 64, 2)), (0, 64, 0, 64), size=32)
    out = plot_representation(rep, tmp_path / "rep.png", "maps")
    assert _is_png(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rep.png", "sub"]  # no temporary files left
    with pytest.raises(ValueError):
        plot_confusion(np.zeros((2, 2)), ["a", "b", "c"], tmp_path / "x.png", "bad")
    with pytest.raises(ValueError):
        plot_representation(rep[:2], tmp_path / "x.png", "bad")
