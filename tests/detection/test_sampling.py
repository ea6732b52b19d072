"""RoI sampling (minircnn/detection/sampling.py): proportions, IoU ranges, targets."""

import numpy as np
import pytest

from minircnn.detection.boxes import box_iou, encode_boxes
from minircnn.detection.sampling import hierarchical_batch, region_wise_batch, sample_rois


def _scene(seed=0, num=400):
    """Two GT boxes and many random proposals around them and elsewhere."""
    rng = np.random.default_rng(seed)
    gt = np.array([[10, 10, 50, 60], [70, 20, 120, 70]], dtype=np.float32)
    near = gt[rng.integers(0, 2, num // 2)] + rng.normal(0, 8, (num // 2, 4))
    xy = rng.uniform(0, 100, (num // 2, 2))
    wh = rng.uniform(5, 60, (num // 2, 2))
    far = np.concatenate([xy, xy + wh], axis=1)
    props = np.concatenate([near, far]).astype(np.float32)
    props[:, 2:] = np.maximum(props[:, 2:], props[:, :2] + 1)
    return props, gt, np.array([1, 3])


def test_proportions_and_iou_ranges():
    props, gt, labels = _scene()
    rois, lab, targets = sample_rois(props, gt, labels, rois_per_image=64,
                                     rng=np.random.default_rng(0))
    assert rois.shape == (64, 4) and lab.shape == (64,) and targets.shape == (64, 4)
    fg = lab > 0
    assert fg.sum() == 16                                  # round(0.25 * 64)
    assert np.all(fg[:16]) and not np.any(fg[16:])         # foreground first
    max_iou = box_iou(rois, gt).max(axis=1)
    assert np.all(max_iou[fg] >= 0.5)
    assert np.all((max_iou[~fg] >= 0.1) & (max_iou[~fg] < 0.5))
    matched = box_iou(rois[fg], gt).argmax(axis=1)
    np.testing.assert_array_equal(lab[fg], labels[matched])
    np.testing.assert_allclose(targets[fg], encode_boxes(rois[fg], gt[matched]), atol=1e-5)
    assert np.all(targets[~fg] == 0)


def test_gt_boxes_are_candidates_and_no_duplicates():
    gt = np.array([[10, 10, 40, 40]], dtype=np.float32)
    far = np.array([[60, 60, 90, 90], [0, 0, 5, 5]], dtype=np.float32)  # IoU 0: neither fg nor bg
    rois, lab, targets = sample_rois(far, gt, np.array([2]), rng=np.random.default_rng(0))
    np.testing.assert_array_equal(rois, gt)   # only the GT box itself is foreground
    np.testing.assert_array_equal(lab, [2])
    np.testing.assert_allclose(targets, 0, atol=1e-6)


def test_sampling_without_replacement_and_short_supply():
    props, gt, labels = _scene(num=40)
    rois, lab, _ = sample_rois(props, gt, labels, rois_per_image=512,
                               rng=np.random.default_rng(1))
    assert len(np.unique(rois, axis=0)) == len(rois)        # no candidate twice
    assert len(rois) < 512                                 # fewer when short (py-faster-rcnn)


def test_deterministic_for_a_seed():
    props, gt, labels = _scene()
    a = sample_rois(props, gt, labels, rng=np.random.default_rng(5))
    b = sample_rois(props, gt, labels, rng=np.random.default_rng(5))
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)


def test_hierarchical_batch_takes_r_over_n_from_each_image():
    props, gt, labels = _scene()
    targets = [{"boxes": gt, "labels": labels}, {"boxes": gt + 5, "labels": labels[::-1]}]
    batch = hierarchical_batch(targets, [props, props + 5], rois_per_batch=128,
                               rng=np.random.default_rng(0))
    assert batch.rois.shape == (128, 5)
    np.testing.assert_array_equal(np.bincount(batch.rois[:, 0].astype(int)), [64, 64])
    assert (batch.labels > 0).sum() == 32
    with pytest.raises(ValueError, match="divisible"):
        hierarchical_batch(targets, [props, props], rois_per_batch=127,
                           rng=np.random.default_rng(0))


def test_region_wise_batch_draws_from_many_images():
    targets, proposals = [], []
    for i in range(16):
        props, gt, labels = _scene(seed=i)
        targets.append({"boxes": gt, "labels": labels})
        proposals.append(props)
    batch = region_wise_batch(targets, proposals, rois_per_batch=128,
                              rng=np.random.default_rng(0))
    assert batch.rois.shape == (128, 5)
    assert np.all(batch.labels[:32] > 0) and np.all(batch.labels[32:] == 0)  # fg first
    assert len(np.unique(batch.rois[:, 0])) >= 12            # many images contribute
    for i in range(16):                                       # targets per own image
        rows = (batch.rois[:, 0] == i) & (batch.labels > 0)
        gt = targets[i]["boxes"]
        iou = box_iou(batch.rois[rows, 1:], gt)
        assert np.all(iou.max(axis=1) >= 0.5)


def test_bad_arguments():
    props, gt, labels = _scene()
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="gt_labels"):
        sample_rois(props, gt, labels[:1], rng=rng)
    with pytest.raises(ValueError, match="bg_iou"):
        sample_rois(props, gt, labels, bg_iou=(0.6, 0.7), rng=rng)
    with pytest.raises(ValueError, match="proposals"):
        sample_rois(props[:, :3], gt, labels, rng=rng)
