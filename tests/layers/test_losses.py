import numpy as np
import pytest

from minircnn.gradcheck import check_layer
from minircnn.layers import (
    fast_rcnn_loss_backward,
    fast_rcnn_loss_forward,
    smooth_l1_backward,
    smooth_l1_forward,
    softmax_cross_entropy_backward,
    softmax_cross_entropy_forward,
)


# --- softmax cross-entropy ---------------------------------------------------------------
def test_cross_entropy_2x3_by_hand():
    logits = np.array([[0.0, 0.0, 0.0], [1.0, 2.0, 3.0]])
    labels = np.array([0, 2])
    loss, cache = softmax_cross_entropy_forward(logits, labels)
    # row 0: log 3; row 1: log(e + e^2 + e^3) - 3 = log(1 + e^-1 + e^-2)
    expected = (np.log(3.0) + np.log(1 + np.exp(-1) + np.exp(-2))) / 2
    assert float(loss) == pytest.approx(expected, rel=1e-12)
    assert float(loss) == pytest.approx(0.7531091, abs=1e-7)
    dlogits = softmax_cross_entropy_backward(1.0, cache)
    np.testing.assert_allclose(dlogits[0], [(1 / 3 - 1) / 2, 1 / 6, 1 / 6])
    p = np.exp([1.0, 2.0, 3.0]) / np.exp([1.0, 2.0, 3.0]).sum()
    np.testing.assert_allclose(dlogits[1], (p - [0, 0, 1]) / 2)
    np.testing.assert_allclose(softmax_cross_entropy_backward(3.0, cache), 3 * dlogits)


def test_cross_entropy_is_stable_for_huge_logits():
    logits = np.array([[1000.0, 0.0], [0.0, 1000.0]], dtype=np.float32)
    loss, cache = softmax_cross_entropy_forward(logits, np.array([0, 0]))
    assert float(loss) == pytest.approx(500.0)  # (0 + 1000) / 2, no overflow
    assert loss.dtype == np.float32
    dlogits = softmax_cross_entropy_backward(1.0, cache)
    np.testing.assert_allclose(dlogits, [[0, 0], [-0.5, 0.5]], atol=1e-6)


def test_cross_entropy_gradcheck():
    rng = np.random.default_rng(0)
    inputs = {"logits": rng.standard_normal((6, 5)), "labels": rng.integers(0, 5, 6)}
    errors = check_layer(softmax_cross_entropy_forward, softmax_cross_entropy_backward,
                         inputs, wrt=["logits"], seed=1)
    assert errors["logits"] < 1e-7


def test_cross_entropy_bad_inputs():
    logits = np.zeros((2, 3))
    with pytest.raises(TypeError, match="labels must be an integer array, got dtype float64"):
        softmax_cross_entropy_forward(logits, np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"labels must lie in 0..2, got values in 0..3"):
        softmax_cross_entropy_forward(logits, np.array([0, 3]))
    with pytest.raises(ValueError, match=r"labels must have shape \(2,\), got \(3,\)"):
        softmax_cross_entropy_forward(logits, np.array([0, 1, 2]))
    with pytest.raises(ValueError, match=r"logits must be 2-D"):
        softmax_cross_entropy_forward(np.zeros(3), np.array([0]))
    with pytest.raises(ValueError, match="logits contains NaN"):
        softmax_cross_entropy_forward(np.array([[0.0, np.nan]]), np.array([0]))


# --- smooth L1 ---------------------------------------------------------------------------
@pytest.mark.parametrize("beta, d, expected", [
    (1.0, 0.5, 0.125),    # 0.5 * 0.25 / 1
    (1.0, -2.0, 1.5),     # 2 - 0.5
    (1.0, 1.0, 0.5),      # both pieces meet at |d| = beta
    (0.5, 0.25, 0.0625),  # 0.5 * 0.0625 / 0.5
    (0.5, 1.0, 0.75),     # 1 - 0.25
    (0.0, -0.3, 0.3),     # L1
    (0.0, 0.0, 0.0),
])
def test_smooth_l1_points(beta, d, expected):
    loss, _ = smooth_l1_forward(np.array([d + 1.0]), np.array([1.0]), beta=beta)
    assert float(loss) == pytest.approx(expected, rel=1e-12)


def test_smooth_l1_sum_normalizer_and_gradient_by_hand():
    pred = np.array([[0.5, -2.0], [0.0, 3.0]])
    target = np.zeros((2, 2))
    loss, cache = smooth_l1_forward(pred, target, beta=1.0, normalizer=4.0)
    assert float(loss) == pytest.approx((0.125 + 1.5 + 0.0 + 2.5) / 4)
    np.testing.assert_allclose(smooth_l1_backward(2.0, cache), [[0.25, -0.5], [0.0, 0.5]])


def test_l1_gradient_is_sign_and_zero_at_zero():
    _, cache = smooth_l1_forward(np.array([-1.0, 0.0, 2.0]), np.zeros(3), beta=0.0)
    np.testing.assert_array_equal(smooth_l1_backward(1.0, cache), [-1.0, 0.0, 1.0])


@pytest.mark.parametrize("beta", [1.0, 1 / 9, 0.0])
def test_smooth_l1_gradcheck_off_the_joins(beta):
    rng = np.random.default_rng(4)
    target = rng.standard_normal((4, 4))
    mag = np.where(rng.random((4, 4)) < 0.5, 0.1 + 0.7 * rng.random((4, 4)),
                   1.2 + rng.random((4, 4))) * (beta or 1.0)
    pred = target + rng.choice([-1.0, 1.0], size=(4, 4)) * mag
    errors = check_layer(smooth_l1_forward, smooth_l1_backward,
                         {"pred": pred, "target": target},
                         kwargs={"beta": beta, "normalizer": 2.0}, wrt=["pred"])
    assert errors["pred"] < 1e-7


def test_smooth_l1_bad_inputs():
    with pytest.raises(ValueError, match=r"pred \(2,\) and target \(3,\)"):
        smooth_l1_forward(np.zeros(2), np.zeros(3))
    with pytest.raises(ValueError, match="beta must be >= 0.0, got -1.0"):
        smooth_l1_forward(np.zeros(2), np.zeros(2), beta=-1.0)
    with pytest.raises(ValueError, match="normalizer must be > 0.0, got 0"):
        smooth_l1_forward(np.zeros(2), np.zeros(2), normalizer=0)


# --- Fast R-CNN loss ---------------------------------------------------------------------
def _three_rois():
    """K = 2 classes (+ background). RoI 0 is background, RoI 1 class 1, RoI 2 class 2."""
    cls_scores = np.zeros((3, 3))
    bbox_deltas = np.zeros((3, 12))
    bbox_deltas[1, 8:12] = 50.0  # another class's columns: must be ignored
    bbox_deltas[0, :] = 7.0      # a background RoI: ignored
    labels = np.array([0, 1, 2])
    bbox_targets = np.array([[9.0, 9.0, 9.0, 9.0],
                             [0.5, -2.0, 0.0, 0.0],
                             [1.0, 0.0, 0.0, 0.2]])
    return cls_scores, bbox_deltas, labels, bbox_targets


def test_fast_rcnn_loss_three_rois_by_hand():
    loss, cache = fast_rcnn_loss_forward(*_three_rois(), beta=1.0)
    # CE: all scores equal -> log 3 per RoI. Box: RoI 1 |d| = .5, 2 -> .125 + 1.5;
    # RoI 2 |d| = 1, .2 -> .5 + .02. Summed (2.145) and divided by R = 3.
    assert cache.loss_cls == pytest.approx(np.log(3.0))
    assert cache.loss_box == pytest.approx(2.145 / 3)
    assert float(loss) == pytest.approx(np.log(3.0) + 0.715)
    assert cache.accuracy == pytest.approx(1 / 3)  # argmax 0 is right only for RoI 0
    dcls, dbbox = fast_rcnn_loss_backward(1.0, cache)
    np.testing.assert_allclose(dcls, (np.full((3, 3), 1 / 3) - np.eye(3)) / 3)
    expected = np.zeros((3, 12))
    expected[1, 4:8] = np.array([-0.5, 1.0, 0.0, 0.0]) / 3  # slope of d = pred - target
    expected[2, 8:12] = np.array([-1.0, 0.0, 0.0, -0.2]) / 3
    np.testing.assert_allclose(dbbox, expected)
    assert np.all(dbbox[:, 0:4] == 0)  # background columns never get a gradient


def test_fast_rcnn_loss_all_background_has_no_box_term():
    cls_scores, bbox_deltas, _, bbox_targets = _three_rois()
    loss, cache = fast_rcnn_loss_forward(cls_scores, bbox_deltas, np.zeros(3, dtype=np.int64),
                                         bbox_targets)
    assert cache.loss_box == 0.0
    assert float(loss) == pytest.approx(np.log(3.0))
    _, dbbox = fast_rcnn_loss_backward(1.0, cache)
    assert np.all(dbbox == 0)


def test_fast_rcnn_loss_gradcheck_and_float32():
    rng = np.random.default_rng(6)
    labels = np.array([1, 0, 2, 2, 0])
    deltas = rng.standard_normal((5, 12))
    own = deltas.reshape(5, 3, 4)[np.arange(5), labels]
    offset = rng.choice([-1.0, 1.0], (5, 4)) * np.where(rng.random((5, 4)) < 0.5, 0.3, 1.6)
    inputs = {"cls_scores": rng.standard_normal((5, 3)), "bbox_deltas": deltas,
              "labels": labels, "bbox_targets": own - offset}
    errors = check_layer(fast_rcnn_loss_forward, fast_rcnn_loss_backward, inputs,
                         wrt=["cls_scores", "bbox_deltas"])
    assert max(errors.values()) < 1e-7
    f32 = {k: v.astype(np.float32) if v.dtype == np.float64 else v for k, v in inputs.items()}
    loss, cache = fast_rcnn_loss_forward(*f32.values())
    dcls, dbbox = fast_rcnn_loss_backward(1.0, cache)
    assert (loss.dtype, dcls.dtype, dbbox.dtype) == (np.float32,) * 3


def test_fast_rcnn_loss_bad_inputs():
    cls_scores, bbox_deltas, labels, bbox_targets = _three_rois()
    with pytest.raises(ValueError, match=r"bbox_deltas must have shape \(R, 4\*\(K\+1\)\) = "
                                         r"\(3, 12\), got \(3, 8\)"):
        fast_rcnn_loss_forward(cls_scores, bbox_deltas[:, :8], labels, bbox_targets)
    with pytest.raises(ValueError, match=r"labels must lie in 0..2, got values in 0..3"):
        fast_rcnn_loss_forward(cls_scores, bbox_deltas, np.array([0, 1, 3]), bbox_targets)
    with pytest.raises(TypeError, match="labels must be an integer array"):
        fast_rcnn_loss_forward(cls_scores, bbox_deltas, labels.astype(float), bbox_targets)
    with pytest.raises(ValueError, match=r"bbox_targets must have shape \(3, 4\), got \(3, 12\)"):
        fast_rcnn_loss_forward(cls_scores, bbox_deltas, labels, bbox_deltas)
    bad = bbox_deltas.copy()
    bad[2, 9] = np.nan
    with pytest.raises(ValueError, match="bbox_deltas contains NaN"):
        fast_rcnn_loss_forward(cls_scores, bad, labels, bbox_targets)
    with pytest.raises(ValueError, match="cls_scores must be 2-D"):
        fast_rcnn_loss_forward(np.zeros((0, 3)), np.zeros((0, 12)), labels[:0], np.zeros((0, 4)))
