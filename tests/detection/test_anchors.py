"""Anchors (minircnn/detection/anchors.py): torchvision's generation, Matcher and sampler."""

import numpy as np
import pytest

from minircnn.detection.anchors import (
    IGNORE,
    NEGATIVE,
    POSITIVE,
    AnchorGenerator,
    AnchorLabelCache,
    anchor_targets,
    base_anchors,
    grid_anchors,
    grid_anchors_naive,
    label_anchors,
    label_anchors_naive,
    sample_anchors,
)
from minircnn.detection.boxes import box_iou, decode_boxes


def test_base_anchors_by_hand_torchvision_rounding():
    # r = h / w: w = s / sqrt(r), h = s * sqrt(r); (-w/2, -h/2, w/2, h/2) rounded.
    base = base_anchors((16, 32), (0.5, 1.0, 2.0))
    # scale 16, r 0.5: w = 22.63, h = 11.31 -> halves 11.31, 5.66 -> 11, 6
    expected = [[-11, -6, 11, 6], [-23, -11, 23, 11],      # ratio 0.5: scales 16, 32
                [-8, -8, 8, 8], [-16, -16, 16, 16],        # ratio 1
                [-6, -11, 6, 11], [-11, -23, 11, 23]]      # ratio 2 (tall)
    np.testing.assert_array_equal(base, expected)


def test_base_anchors_round_half_to_even_like_torch_round():
    # 17 / 2 = 8.5 -> 8 (even), 13 / 2 = 6.5 -> 6, 15 / 2 = 7.5 -> 8
    np.testing.assert_array_equal(base_anchors((17, 13, 15), (1.0,))[:, 2], [8, 6, 8])


def test_grid_order_is_location_major_then_anchor():
    base = base_anchors((8, 16), (1.0,))                   # [-4,-4,4,4], [-8,-8,8,8]
    anchors = grid_anchors(base, (2, 3), stride=4)
    assert anchors.shape == (2 * 3 * 2, 4)
    np.testing.assert_array_equal(anchors[0], [-4, -4, 4, 4])        # (y0, x0), anchor 0
    np.testing.assert_array_equal(anchors[1], [-8, -8, 8, 8])        # (y0, x0), anchor 1
    np.testing.assert_array_equal(anchors[2], [0, -4, 8, 4])         # (y0, x1): x + 4
    np.testing.assert_array_equal(anchors[(1 * 3 + 2) * 2 + 1], [0, -4, 16, 12])  # (y1, x2)
    np.testing.assert_array_equal(anchors, grid_anchors_naive(base, (2, 3), 4))


def test_generator_caches_and_counts():
    gen = AnchorGenerator((12, 24), (0.5, 1.0, 2.0), stride=4)
    assert gen.num_anchors == 6
    a = gen((5, 7))
    assert a.shape == (5 * 7 * 6, 4) and gen((5, 7)) is a
    with pytest.raises(ValueError, match="scales"):
        AnchorGenerator((), (1.0,), 4)
    with pytest.raises(ValueError, match="aspect_ratios"):
        AnchorGenerator((8,), (0.0,), 4)


def _labelling_scene():
    gt = np.array([[0, 0, 10, 10], [100, 100, 120, 120], [0, 0, 30, 30]], dtype=np.float64)
    anchors = np.array([
        [0, 0, 10, 10],       # 0: IoU 1 with gt0                   -> positive
        [0, 0, 10, 7],        # 1: IoU 70/100 = 0.7 exactly         -> positive (>=)
        [0, 0, 10, 3],        # 2: IoU 0.3 exactly                  -> ignored (>= 0.3)
        [0, 0, 10, 2.9],      # 3: IoU 0.29                         -> negative
        [0, 0, 10, 5],        # 4: IoU 0.5                          -> ignored
        [50, 50, 60, 60],     # 5: no overlap                       -> negative
        [100, 100, 110, 110],  # 6: IoU 100/400 = 0.25 with gt1, its best -> positive
        [110, 110, 120, 120],  # 7: the same IoU, a tie              -> positive too
    ], dtype=np.float64)
    return anchors, gt


def test_labelling_rule_by_hand():
    anchors, gt = _labelling_scene()
    labels, matched = label_anchors(anchors, gt)
    P, N, I = POSITIVE, NEGATIVE, IGNORE
    np.testing.assert_array_equal(labels, [P, P, I, N, I, N, P, P])
    np.testing.assert_array_equal(matched[[0, 1, 6, 7]], [0, 0, 1, 1])
    # gt2's best anchor is anchor 0 (IoU 100/900), but anchor 0 keeps its own best GT,
    # gt0 (torchvision's Matcher): gt2 ends up with no anchor of its own.
    assert box_iou(anchors, gt)[:, 2].argmax() == 0 and 2 not in matched[labels == P]


def test_labelling_naive_equals_vectorised():
    rng = np.random.default_rng(0)
    anchors = AnchorGenerator((12, 17, 24, 34), (0.5, 1.0, 2.0), 4)((16, 16))
    for _ in range(5):
        xy = rng.uniform(0, 50, (4, 2))
        gt = np.concatenate([xy, xy + rng.uniform(8, 40, (4, 2))], axis=1)
        fast = label_anchors(anchors, gt)
        naive = label_anchors_naive(anchors, gt)
        np.testing.assert_array_equal(fast[0], naive[0])
        np.testing.assert_array_equal(fast[1], naive[1])


def test_no_gt_makes_every_anchor_negative():
    anchors, _ = _labelling_scene()
    labels, matched = label_anchors(anchors, np.zeros((0, 4)))
    assert (labels == NEGATIVE).all() and (matched == 0).all()


def test_thresholds_are_checked():
    anchors, gt = _labelling_scene()
    with pytest.raises(ValueError, match="bg_iou"):
        label_anchors(anchors, gt, fg_iou=0.3, bg_iou=0.7)


@pytest.mark.parametrize("num_pos,num_neg,exp_pos,exp_neg",
                         [(300, 1000, 128, 128), (10, 1000, 10, 246), (300, 20, 128, 20)])
def test_sampling_256_at_most_half_positive(num_pos, num_neg, exp_pos, exp_neg):
    labels = np.array([POSITIVE] * num_pos + [NEGATIVE] * num_neg + [IGNORE] * 50)
    out = sample_anchors(labels, rng=np.random.default_rng(0))
    assert (out == POSITIVE).sum() == exp_pos and (out == NEGATIVE).sum() == exp_neg
    assert (labels[out == POSITIVE] == POSITIVE).all()       # only relabels to -1
    assert (labels[out == NEGATIVE] == NEGATIVE).all()
    again = sample_anchors(labels, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(out, again)


def test_anchor_targets_encode_with_unit_weights():
    anchors, gt = _labelling_scene()
    t = anchor_targets(anchors, gt[:2], rng=np.random.default_rng(0))
    pos = np.flatnonzero(t.labels == POSITIVE)
    assert set(pos) == {0, 1, 6, 7}
    # decoding the targets with weights (1, 1, 1, 1) gives back each positive's GT
    decoded = decode_boxes(t.bbox_targets[pos], anchors[pos], weights=(1, 1, 1, 1))
    np.testing.assert_allclose(decoded, gt[[0, 0, 1, 1]], atol=1e-12)
    np.testing.assert_array_equal(t.bbox_targets[1], [0, 1.5 / 7, 0, np.log(10 / 7)])
    assert (t.bbox_targets[t.labels != POSITIVE] == 0).all()


def test_label_cache_labels_each_set_of_boxes_once_and_as_label_anchors():
    anchors = AnchorGenerator((12, 24), (0.5, 1.0), 4)((8, 8))          # (256, 4)
    rng = np.random.default_rng(3)
    scenes = [np.sort(rng.uniform(0, 32, (g, 2, 2)), axis=1).reshape(g, 4)
              for g in (1, 3, 0)]                                      # (G, 4) x1 y1 x2 y2
    cache = AnchorLabelCache()
    for gt in scenes + scenes:                                         # the second pass hits
        labels, matched = cache(anchors, gt)
        want_labels, want_matched = label_anchors(anchors, gt)
        np.testing.assert_array_equal(labels, want_labels)
        positive = want_labels == POSITIVE
        np.testing.assert_array_equal(matched[positive], want_matched[positive])
    assert len(cache) == len(scenes)
    flipped = scenes[1].copy()
    flipped[:, [0, 2]] = 32 - scenes[1][:, [2, 0]]                      # a flipped image
    cache(anchors, flipped)
    assert len(cache) == len(scenes) + 1


def test_anchor_targets_from_cached_labels_are_the_same_draw():
    anchors, gt = _labelling_scene()
    fresh = anchor_targets(anchors, gt, rng=np.random.default_rng(5), batch_size=4)
    cached = anchor_targets(anchors, gt, rng=np.random.default_rng(5), batch_size=4,
                            labelled=AnchorLabelCache()(anchors, gt))
    np.testing.assert_array_equal(fresh.labels, cached.labels)
    np.testing.assert_array_equal(fresh.bbox_targets, cached.bbox_targets)
