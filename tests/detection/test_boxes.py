"""Tests for minircnn/detection/boxes.py: hand-computed values, properties, bad input."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minircnn.backend import asnumpy, to_device
from minircnn.detection import (
    batched_nms,
    box_area,
    box_iou,
    check_boxes,
    clip_boxes,
    decode_boxes,
    encode_boxes,
    nms,
)

SETTINGS = settings(max_examples=60, deadline=None)


@st.composite
def boxes_st(draw, min_size=0.0, max_size=60.0, min_n=0, max_n=12):
    """(N, 4) float64 boxes with sizes in [min_size, max_size], on a 0.5 grid to make ties."""
    n = draw(st.integers(min_n, max_n))
    corner = st.integers(0, 160).map(lambda v: v / 2)
    size = st.integers(int(2 * min_size), int(2 * max_size)).map(lambda v: v / 2)
    rows = [draw(st.tuples(corner, corner, size, size)) for _ in range(n)]
    out = np.array(rows, dtype=np.float64).reshape(n, 4)
    out[:, 2:] += out[:, :2]  # (x1, y1, w, h) -> (x1, y1, x2, y2)
    return out


def scores_for(n, draw):
    return np.array(draw(st.lists(st.sampled_from([0.1, 0.5, 0.7, 0.9]), min_size=n,
                                  max_size=n)), dtype=np.float64)


def iou_py(a, b):
    """Plain-Python IoU with box_iou's operation order; 0 when the union is empty."""
    w = max(min(a[2], b[2]) - max(a[0], b[0]), 0.0)
    h = max(min(a[3], b[3]) - max(a[1], b[1]), 0.0)
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def nms_reference(boxes, scores, thr):
    """torchvision's CPU nms kernel as loops: visit by score, suppress IoU > thr."""
    order = sorted(range(len(boxes)), key=lambda i: (-scores[i], i))
    suppressed = [False] * len(boxes)
    keep = []
    for pos, i in enumerate(order):
        if suppressed[i]:
            continue
        keep.append(i)
        for j in order[pos + 1:]:
            if not suppressed[j] and iou_py(boxes[i], boxes[j]) > thr:
                suppressed[j] = True
    return keep


# ---------------------------------------------------------------- hand-computed values

def test_box_area_hand_computed():
    boxes = np.array([[0, 0, 2, 3], [1, 1, 1, 5], [0.5, 0.5, 1.0, 2.5]])
    np.testing.assert_allclose(box_area(boxes), [6.0, 0.0, 1.0])


def test_box_iou_hand_computed():
    a = np.array([[0.0, 0.0, 2.0, 2.0]])
    b = np.array([[1, 1, 3, 3], [2, 0, 4, 2], [0, 0, 2, 2], [0, 0, 1, 1], [5, 5, 6, 6]], float)
    # overlap 1x1 of union 4+4-1; touching edge; identical; inside (1/4); disjoint
    np.testing.assert_allclose(box_iou(a, b), [[1 / 7, 0.0, 1.0, 0.25, 0.0]])
    assert box_iou(a, b).shape == (1, 5)
    assert box_iou(b, np.zeros((0, 4))).shape == (5, 0)


def test_degenerate_boxes_give_zero_iou_not_nan():
    point = np.array([[1.0, 1.0, 1.0, 1.0]])
    line = np.array([[0.0, 1.0, 3.0, 1.0]])
    iou = box_iou(np.concatenate([point, line]), np.concatenate([point, line, [[0, 0, 2, 2]]]))
    assert np.all(np.isfinite(iou))
    np.testing.assert_array_equal(iou, np.zeros((2, 3)))


def test_clip_boxes_hand_computed():
    boxes = np.array([[-1.0, -2.0, 5.0, 130.0], [1.0, 2.0, 3.0, 4.0]])
    out = clip_boxes(boxes, (100, 4))  # (H, W): x in [0, 4], y in [0, 100]
    np.testing.assert_array_equal(out, [[0, 0, 4, 100], [1, 2, 3, 4]])
    assert boxes[0, 0] == -1.0  # the input is not modified


def test_encode_hand_computed():
    ref = np.array([[0.0, 0.0, 10.0, 20.0]])  # w 10, h 20, center (5, 10)
    gt = np.array([[2.0, 4.0, 12.0, 44.0]])  # w 10, h 40, center (7, 24)
    deltas = encode_boxes(ref, gt)
    # dx = 10 * 2 / 10, dy = 10 * 14 / 20, dw = 5 log(10/10), dh = 5 log(40/20)
    np.testing.assert_allclose(deltas, [[2.0, 7.0, 0.0, 5 * math.log(2)]], rtol=1e-12)
    np.testing.assert_allclose(encode_boxes(ref, gt, weights=(1, 1, 1, 1)),
                               [[0.2, 0.7, 0.0, math.log(2)]], rtol=1e-12)
    np.testing.assert_allclose(decode_boxes(deltas, ref), gt, rtol=1e-12)


def test_decode_clamps_dw_dh():
    ref = np.array([[0.0, 0.0, 16.0, 16.0]])
    boxes = decode_boxes(np.array([[0.0, 0.0, 100.0, 100.0]]), ref)
    # exp(log(1000/16)) * 16 = 1000 wide, centered on 8
    np.testing.assert_allclose(boxes, [[8 - 500, 8 - 500, 8 + 500, 8 + 500]], rtol=1e-12)


def test_decode_per_class_deltas():
    rng = np.random.default_rng(0)
    ref = np.array([[0, 0, 10, 10], [5, 5, 30, 20]], dtype=np.float32)
    deltas = rng.normal(size=(2, 12)).astype(np.float32)  # K + 1 = 3 classes
    out = decode_boxes(deltas, ref)
    assert out.shape == (2, 12) and out.dtype == np.float32
    for c in range(3):
        np.testing.assert_allclose(out[:, 4 * c:4 * c + 4],
                                   decode_boxes(deltas[:, 4 * c:4 * c + 4], ref), rtol=1e-6)


def test_nms_hand_computed():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30], [0, 0, 10, 10.0]])
    scores = np.array([0.9, 0.8, 0.7, 0.95])
    keep = nms(boxes, scores, 0.5)
    assert keep.dtype == np.int64
    np.testing.assert_array_equal(keep, [3, 2])  # 0 and 1 overlap box 3 by 1.0 and 9/11
    np.testing.assert_array_equal(nms(boxes, scores, 0.95), [3, 1, 2])  # 0 has IoU 1 > .95
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.5).shape == (0,)


def test_nms_suppresses_strictly_above_threshold():
    boxes = np.array([[0.0, 0, 2, 1], [1, 0, 3, 1]])  # IoU exactly 1/3
    np.testing.assert_array_equal(nms(boxes, np.array([0.9, 0.8]), 1 / 3), [0, 1])
    np.testing.assert_array_equal(nms(boxes, np.array([0.9, 0.8]), 0.33), [0])


def test_batched_nms_hand_computed():
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10], [1, 1, 10, 10.0]])
    scores = np.array([0.5, 0.9, 0.6, 0.7])
    labels = np.array([1, 2, 1, 1])
    np.testing.assert_array_equal(batched_nms(boxes, scores, labels, 0.5), [1, 3])


# ---------------------------------------------------------------- properties

@SETTINGS
@given(boxes_st(), boxes_st())
def test_iou_symmetric_and_bounded(a, b):
    iou = box_iou(a, b)
    assert iou.shape == (len(a), len(b))
    np.testing.assert_array_equal(iou, box_iou(b, a).T)
    assert np.all((iou >= 0) & (iou <= 1))


@SETTINGS
@given(boxes_st(min_size=0.5, min_n=1))
def test_iou_with_itself_is_one(a):
    np.testing.assert_allclose(np.diag(box_iou(a, a)), 1.0, rtol=0, atol=1e-12)


@SETTINGS
@given(st.data())
def test_encode_decode_invert(data):
    ref = data.draw(boxes_st(min_size=1.0, max_size=50.0, min_n=1))
    gt = data.draw(boxes_st(min_size=1.0, max_size=50.0, min_n=len(ref), max_n=len(ref)))
    np.testing.assert_allclose(decode_boxes(encode_boxes(ref, gt), ref), gt, atol=1e-9)
    deltas = data.draw(st.lists(st.floats(-3, 3), min_size=4 * len(ref), max_size=4 * len(ref)))
    deltas = np.array(deltas).reshape(-1, 4)
    np.testing.assert_allclose(encode_boxes(ref, decode_boxes(deltas, ref)), deltas, atol=1e-9)


@SETTINGS
@given(st.data(), st.sampled_from([0.0, 0.3, 0.5, 0.7]))
def test_nms_properties(data, thr):
    boxes = data.draw(boxes_st(max_n=15))
    scores = scores_for(len(boxes), data.draw)
    keep = nms(boxes, scores, thr)
    assert keep.tolist() == nms_reference(boxes, scores, thr)
    assert len(set(keep.tolist())) == len(keep) and set(keep.tolist()) <= set(range(len(boxes)))
    assert np.all(np.diff(scores[keep]) <= 0)  # descending score
    iou = box_iou(boxes[keep], boxes[keep])
    assert np.all(iou[~np.eye(len(keep), dtype=bool)] <= thr)


@SETTINGS
@given(st.data(), st.sampled_from([0.0, 0.5]))
def test_batched_nms_never_suppresses_across_classes(data, thr):
    boxes = data.draw(boxes_st(max_n=15))
    scores = scores_for(len(boxes), data.draw)
    labels = np.array(data.draw(st.lists(st.integers(1, 3), min_size=len(boxes),
                                         max_size=len(boxes))), dtype=np.int64)
    keep = batched_nms(boxes, scores, labels, thr)
    expected = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        expected += [int(idx[k]) for k in nms_reference(boxes[idx], scores[idx], thr)]
    assert keep.tolist() == sorted(expected, key=lambda i: (-scores[i], i))
    # the same boxes, each with a class of its own: nothing is suppressed
    all_kept = batched_nms(boxes, scores, np.arange(len(boxes)), thr)
    assert sorted(all_kept.tolist()) == list(range(len(boxes)))


# ---------------------------------------------------------------- bad input

@pytest.mark.parametrize(
    "bad, message",
    [
        (np.array([[2.0, 0, 1, 1]]), "x2 >= x1"),
        (np.array([[0.0, 2, 1, 1]]), "y2 >= y1"),
        (np.array([[0.0, np.nan, 1, 1]]), "finite"),
        (np.array([[0.0, 0, np.inf, 1]]), "finite"),
        (np.array([0.0, 0, 1, 1]), r"shape \(N, 4\)"),
        (np.zeros((2, 5)), r"shape \(N, 4\)"),
    ],
)
def test_bad_boxes_raise_value_error_naming_argument(bad, message):
    good = np.array([[0.0, 0, 1, 1]])
    with pytest.raises(ValueError, match="^b must.*" + message):
        box_iou(good, bad)
    with pytest.raises(ValueError, match="^a must.*" + message):
        box_iou(bad, good)
    with pytest.raises(ValueError, match="^reference must.*" + message):
        decode_boxes(np.zeros((1, 4)), bad)
    with pytest.raises(ValueError, match="^proposals must.*" + message):
        check_boxes(bad, "proposals")
    for fn in (box_area, lambda x: clip_boxes(x, (5, 5)), lambda x: nms(x, np.ones(1), 0.5)):
        with pytest.raises(ValueError, match="^boxes must"):
            fn(bad)


def test_other_bad_arguments():
    boxes = np.array([[0.0, 0, 1, 1], [0, 0, 2, 2]])
    with pytest.raises(ValueError, match="scores must have shape"):
        nms(boxes, np.ones(3), 0.5)
    with pytest.raises(ValueError, match="labels must have shape"):
        batched_nms(boxes, np.ones(2), np.ones((2, 1)), 0.5)
    with pytest.raises(ValueError, match="gt must have the shape"):
        encode_boxes(boxes, boxes[:1])
    with pytest.raises(ValueError, match="reference must have positive width"):
        encode_boxes(np.array([[0.0, 0, 0, 1]]), np.array([[0.0, 0, 1, 1]]))
    with pytest.raises(ValueError, match="deltas must have shape"):
        decode_boxes(np.zeros((2, 5)), boxes)
    with pytest.raises(ValueError, match="deltas must be finite"):
        decode_boxes(np.full((2, 4), np.nan), boxes)
    with pytest.raises(TypeError, match="boxes must hold numbers"):
        box_area(np.array([["a", "b", "c", "d"]]))


def test_check_boxes_returns_array():
    out = check_boxes([[0, 0, 1, 2]], "boxes")
    assert isinstance(out, np.ndarray) and out.shape == (1, 4)


@pytest.mark.gpu
def test_numpy_and_cupy_agree():
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 100, size=(200, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(1, 40, size=(200, 2))], axis=1)
    scores = rng.permutation(200) / 200.0
    labels = rng.integers(1, 4, size=200)
    deltas = rng.normal(size=(200, 8))
    g = [to_device(a, "gpu") for a in (boxes, scores, labels, deltas)]
    np.testing.assert_allclose(asnumpy(box_iou(g[0], g[0][:50])), box_iou(boxes, boxes[:50]),
                               atol=1e-12)
    np.testing.assert_array_equal(asnumpy(nms(g[0], g[1], 0.3)), nms(boxes, scores, 0.3))
    np.testing.assert_array_equal(asnumpy(batched_nms(g[0], g[1], g[2], 0.3)),
                                  batched_nms(boxes, scores, labels, 0.3))
    np.testing.assert_allclose(asnumpy(decode_boxes(g[3], g[0])), decode_boxes(deltas, boxes),
                               rtol=1e-12)
    np.testing.assert_allclose(asnumpy(encode_boxes(g[0][:100], g[0][100:])),
                               encode_boxes(boxes[:100], boxes[100:]), rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(asnumpy(clip_boxes(g[0], (50, 60))), clip_boxes(boxes, (50, 60)))
