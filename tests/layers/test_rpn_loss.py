"""The RPN loss (minircnn/layers/rpn_loss.py): BCE with logits + smooth L1 over sampled anchors."""

import numpy as np
import pytest

from minircnn.gradcheck import check_layer
from minircnn.layers.rpn_loss import (
    RPN_BETA,
    bce_with_logits_backward,
    bce_with_logits_forward,
    rpn_loss_backward,
    rpn_loss_backward_naive,
    rpn_loss_forward,
    rpn_loss_forward_naive,
)


def test_bce_by_hand():
    loss, cache = bce_with_logits_forward(np.array([0.0, np.log(3.0)]), np.array([1, 0]))
    # z = 0: -log(1/2) = log 2;  z = log 3, y = 0: -log(1 - 3/4) = log 4
    assert float(loss) == pytest.approx((np.log(2) + np.log(4)) / 2, rel=1e-12)
    np.testing.assert_allclose(bce_with_logits_backward(1.0, cache), [(0.5 - 1) / 2, 0.75 / 2])


def test_bce_is_stable_for_huge_logits():
    loss, cache = bce_with_logits_forward(np.array([1000.0, -1000.0], np.float32),
                                          np.array([0, 1]))
    assert float(loss) == pytest.approx(1000.0) and loss.dtype == np.float32
    np.testing.assert_allclose(bce_with_logits_backward(1.0, cache), [0.5, -0.5])


def _inputs():
    objectness = np.array([0.0, np.log(3.0), 5.0, -2.0])
    deltas = np.array([[0.1, 0.0, 0.0, 0.0], [0, 0, 0, 0], [0.0, 1.0, 0, 0], [9, 9, 9, 9]])
    labels = np.array([1, 0, -1, 1])
    targets = np.array([[0.0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [9, 9, 9, 8]])
    return objectness, deltas, labels, targets


def test_rpn_loss_by_hand():
    # S = 3 sampled anchors (0, 1, 3); positives 0 and 3; anchor 2 is not sampled.
    loss, cache = rpn_loss_forward(*_inputs())
    bce = np.log(2) + np.log(4) + np.log(1 + np.exp(2.0))   # -log sigmoid(-2) for y = 1
    # anchor 0: |d| = 0.1 < 1/9: 0.5 * 0.01 * 9;  anchor 3: |d| = 1 >= 1/9: 1 - 1/18
    box = 0.5 * 0.01 / RPN_BETA + (1 - 0.5 * RPN_BETA)
    assert cache.loss_objectness == pytest.approx(bce / 3, rel=1e-12)
    assert cache.loss_box == pytest.approx(box / 3, rel=1e-12)
    assert float(loss) == pytest.approx((bce + box) / 3, rel=1e-12)
    dobj, ddeltas = rpn_loss_backward(1.0, cache)
    sig = 1 / (1 + np.exp(2.0))
    np.testing.assert_allclose(dobj, [(0.5 - 1) / 3, 0.75 / 3, 0, (sig - 1) / 3])
    np.testing.assert_allclose(ddeltas, [[0.1 / RPN_BETA / 3, 0, 0, 0], [0] * 4, [0] * 4,
                                         [0, 0, 0, 1 / 3]])


def test_naive_equals_fast():
    rng = np.random.default_rng(0)
    labels = rng.integers(-1, 2, 50)
    args = (rng.standard_normal(50) * 4, rng.standard_normal((50, 4)), labels,
            rng.standard_normal((50, 4)))
    loss, cache = rpn_loss_forward(*args)
    loss_n, cache_n = rpn_loss_forward_naive(*args)
    assert float(loss) == pytest.approx(loss_n, rel=1e-12)
    for fast, naive in zip(rpn_loss_backward(0.7, cache), rpn_loss_backward_naive(0.7, cache_n),
                           strict=True):
        np.testing.assert_allclose(fast, naive, rtol=1e-12, atol=1e-15)


def test_gradcheck_and_a_broken_backward_fails():
    rng = np.random.default_rng(3)
    objectness, deltas, labels, targets = _inputs()
    targets = deltas - np.where(rng.random((4, 4)) < 0.5, 0.05, 0.5)   # off |d| == 1/9
    inputs = {"objectness": objectness, "bbox_deltas": deltas, "labels": labels,
              "bbox_targets": targets}
    errors = check_layer(rpn_loss_forward, rpn_loss_backward, inputs,
                         wrt=["objectness", "bbox_deltas"])
    assert max(errors.values()) < 1e-7

    def broken(dloss, cache):            # forgets that S divides the box term
        dobj, ddeltas = rpn_loss_backward(dloss, cache)
        return dobj, ddeltas * len(cache.sampled)
    errors = check_layer(rpn_loss_forward, broken, inputs, wrt=["objectness", "bbox_deltas"],
                         threshold=np.inf)
    assert errors["bbox_deltas"] > 1e-2


def test_matches_the_formulas_written_out():
    """torchvision's RPN loss, written out independently: binary cross-entropy with
    logits, log(1 + e^x) - y x (F.binary_cross_entropy_with_logits), averaged over the
    sampled anchors, plus smooth L1 with beta 1/9 (|d| < beta: 0.5 d^2 / beta, else
    |d| - 0.5 beta) summed over the positives and divided by the sampled count."""
    objectness, deltas, labels, targets = _inputs()
    loss, _ = rpn_loss_forward(objectness, deltas, labels, targets)
    sampled, pos = labels >= 0, labels == 1
    x, y = objectness[sampled], labels[sampled].astype(np.float64)
    bce = np.mean(np.logaddexp(0.0, x) - y * x)
    beta = 1 / 9
    d = np.abs(deltas[pos] - targets[pos])
    smooth_l1 = np.where(d < beta, 0.5 * d ** 2 / beta, d - 0.5 * beta).sum()
    assert float(loss) == pytest.approx(bce + smooth_l1 / sampled.sum(), rel=1e-12)


def test_bad_inputs():
    objectness, deltas, labels, targets = _inputs()
    with pytest.raises(ValueError, match="no anchor is sampled"):
        rpn_loss_forward(objectness, deltas, -np.ones(4, dtype=np.int64), targets)
    with pytest.raises(ValueError, match=r"bbox_deltas must have shape \(4, 4\)"):
        rpn_loss_forward(objectness, deltas[:2], labels, targets)
    with pytest.raises(ValueError, match="labels must be -1"):
        rpn_loss_forward(objectness, deltas, labels + 1, targets)
    with pytest.raises(TypeError, match="labels must be integers"):
        rpn_loss_forward(objectness, deltas, labels.astype(float), targets)
