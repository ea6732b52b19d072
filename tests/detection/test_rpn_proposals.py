"""RPN proposal decoding (minircnn/detection/rpn_proposals.py): torchvision's filter_proposals."""

import numpy as np
import pytest

from minircnn.detection.boxes import nms
from minircnn.detection.rpn_proposals import nms_first, rpn_proposals, rpn_proposals_naive, top_k


def _scene():
    anchors = np.array([[-5, -5, 5, 5],          # 0: crosses the border, clipped
                        [130, 130, 140, 140],    # 1: outside: clipped to zero width
                        [10, 10, 20, 20],        # 2
                        [10, 10, 20, 21],        # 3: IoU 100/110 = 0.91 with 2
                        [10, 10, 20, 17],        # 4: IoU 70/100 = 0.7 with 2: kept (not > 0.7)
                        [60, 60, 80, 80]], dtype=np.float64)  # 5
    objectness = np.array([5.0, 4.0, 3.0, 2.5, 2.0, -1.0])
    return objectness, np.zeros((6, 4)), anchors


def test_clip_drop_tiny_nms_by_hand():
    objectness, deltas, anchors = _scene()
    boxes, scores = rpn_proposals(objectness, deltas, anchors, (100, 100))
    np.testing.assert_allclose(boxes, [[0, 0, 5, 5], [10, 10, 20, 20],
                                       anchors[4], [60, 60, 80, 80]])
    np.testing.assert_allclose(scores, 1 / (1 + np.exp(-objectness[[0, 2, 4, 5]])))


def test_top_k_before_nms_and_top_n_after():
    objectness, deltas, anchors = _scene()
    boxes, _ = rpn_proposals(objectness, deltas, anchors, (100, 100), pre_nms_top_n=3)
    np.testing.assert_allclose(boxes, [[0, 0, 5, 5], [10, 10, 20, 20]])
    boxes, _ = rpn_proposals(objectness, deltas, anchors, (100, 100), post_nms_top_n=2)
    assert len(boxes) == 2


def test_deltas_move_anchors_with_unit_weights():
    anchors = np.array([[10.0, 10.0, 30.0, 20.0]])        # w 20, h 10, centre (20, 15)
    deltas = np.array([[0.5, -1.0, np.log(2.0), 0.0]])    # centre +10, -10; width x2
    boxes, _ = rpn_proposals(np.zeros(1), deltas, anchors, (100, 100))
    np.testing.assert_allclose(boxes, [[10, 0, 50, 10]])


def test_naive_equals_fast_on_random_outputs():
    rng = np.random.default_rng(0)
    from minircnn.detection.anchors import AnchorGenerator
    anchors = AnchorGenerator((12, 24, 48), (0.5, 1.0, 2.0), 4)((12, 12))
    for _ in range(3):
        objectness = rng.standard_normal(len(anchors)) * 3
        deltas = rng.standard_normal((len(anchors), 4)) * 0.3
        fast = rpn_proposals(objectness, deltas, anchors, (48, 48), pre_nms_top_n=400,
                             post_nms_top_n=100)
        naive = rpn_proposals_naive(objectness, deltas, anchors, (48, 48),
                                    pre_nms_top_n=400, post_nms_top_n=100)
        np.testing.assert_allclose(fast[0], naive[0], atol=1e-9)
        np.testing.assert_allclose(fast[1], naive[1], atol=1e-12)


@pytest.mark.parametrize("chunk", [1, 7, 128])
def test_nms_first_is_nms_truncated(chunk):
    rng = np.random.default_rng(1)
    for _ in range(10):
        xy = rng.uniform(0, 100, (200, 2))
        boxes = np.concatenate([xy, xy + rng.uniform(1, 30, (200, 2))], axis=1)
        scores = rng.integers(0, 20, 200).astype(float)      # many ties: stable order
        for top in (1, 30, 500):
            np.testing.assert_array_equal(nms_first(boxes, scores, 0.5, top, chunk=chunk),
                                          nms(boxes, scores, 0.5)[:top])


def test_nms_first_settles_a_chain_of_suppressions_inside_one_chunk():
    """Box i overlaps box i + 1 (IoU 9/11 > 0.7) but not box i + 2 (8/12): greedy NMS
    keeps every other box, which the block's fixed point must find in one chunk."""
    x = np.arange(20, dtype=np.float64)[:, None]
    boxes = np.concatenate([x, 0 * x, x + 10, 0 * x + 10], axis=1)   # shifted by 1 px
    scores = np.linspace(1.0, 0.0, 20)                               # left to right
    np.testing.assert_array_equal(nms_first(boxes, scores, 0.7, 100), np.arange(0, 20, 2))
    np.testing.assert_array_equal(nms_first(boxes, scores, 0.7, 3), [0, 2, 4])


@pytest.mark.parametrize("n, k", [(1, 1), (5, 1), (50, 7), (50, 49), (50, 50), (50, 80),
                                  (6144, 1000)])
def test_top_k_is_stable_argsort_truncated(n, k):
    rng = np.random.default_rng(n + k)
    for values in (rng.standard_normal(n),                     # distinct
                   rng.integers(0, 4, n).astype(np.float32),    # ties at the k-th value
                   np.zeros(n)):                                # all tied
        np.testing.assert_array_equal(top_k(values, k),
                                      np.argsort(-values, kind="stable")[:k])


def test_top_k_with_nan_logits_is_the_argsort_too():
    values = np.array([1.0, np.nan, 3.0, np.nan, 2.0, 0.0])
    for k in range(1, 7):
        np.testing.assert_array_equal(top_k(values, k), np.argsort(-values, kind="stable")[:k])


def test_bad_inputs_name_the_argument():
    objectness, deltas, anchors = _scene()
    with pytest.raises(ValueError, match="deltas"):
        rpn_proposals(objectness, deltas[:3], anchors, (100, 100))
    with pytest.raises(ValueError, match="nms_thresh"):
        rpn_proposals(objectness, deltas, anchors, (100, 100), nms_thresh=1.5)


def test_proposals_on_the_fake_gpu_match_the_cpu(monkeypatch):
    """The partial sort and the NMS use only what CuPy has (the fake CuPy refuses the
    rest), and give the CPU's proposals."""
    from minircnn import backend
    from minircnn.detection.anchors import AnchorGenerator
    from minircnn.testing import fake_cupy

    monkeypatch.setattr(backend, "FAKE_GPU", True)
    monkeypatch.setattr(backend, "_cupy", fake_cupy.module)
    rng = np.random.default_rng(3)
    anchors = AnchorGenerator((12, 24, 48), (1.0,), 4)((16, 16))
    objectness = rng.integers(0, 5, len(anchors)).astype(np.float32)   # ties at the k-th
    deltas = (0.2 * rng.standard_normal((len(anchors), 4))).astype(np.float32)
    cpu = rpn_proposals(objectness, deltas, anchors, (64, 64), pre_nms_top_n=300,
                        post_nms_top_n=100, nms_thresh=0.5)
    gpu = rpn_proposals(*(backend.to_device(a, "gpu") for a in (objectness, deltas, anchors)),
                        (64, 64), pre_nms_top_n=300, post_nms_top_n=100, nms_thresh=0.5)
    assert not isinstance(gpu[0], np.ndarray)
    np.testing.assert_array_equal(backend.asnumpy(gpu[0]), cpu[0])
    np.testing.assert_array_equal(backend.asnumpy(gpu[1]), cpu[1])
