"""R-CNN's and SPP-net's later stages (minircnn/paper/baselines.py): the feature cache,
the ridge box regressors, detection with SVMs + regressors."""

import os

import numpy as np
import pytest

from minircnn.data import ShapesDataset
from minircnn.detection.boxes import encode_boxes
from minircnn.models import RCNN, SmallVGG, SPPNet
from minircnn.paper.baselines import (
    BOX_WEIGHTS,
    FeatureCache,
    cache_features,
    detect_with_stages,
    regress_boxes,
    roi_features,
    train_box_regressors,
    train_later_stages,
)
from minircnn.training.config import TrainConfig


def _model(kind):
    rng = np.random.default_rng(0)
    backbone = SmallVGG((4, 8), num_pools=1, rng=rng)
    if kind == "rcnn":
        return RCNN(3, backbone, crop_size=8, hidden=6, rng=rng)
    return SPPNet(3, backbone, levels=(2, 1), hidden=6, rng=rng)


def _proposals(n, size, count=5):
    rng = np.random.default_rng(1)
    out = []
    for _ in range(n):
        xy = rng.uniform(0, size / 2, (count, 2))
        out.append(np.concatenate([xy, xy + rng.uniform(6, size / 2, (count, 2))], axis=1))
    return out


@pytest.mark.parametrize("kind", ["rcnn", "spp"])
def test_the_cache_holds_one_float32_row_per_box_and_reports_its_bytes(kind, tmp_path):
    model = _model(kind)
    data = ShapesDataset(3, image_size=32, max_objects=2)
    props = _proposals(3, 32)
    scales = (1.0,) if kind == "rcnn" else (1.0, 2.0)
    cache = cache_features(model, data, props, str(tmp_path), scales=scales, target=16.0)
    rows = sum(len(data[i]["boxes"]) + len(props[i]) for i in range(3))
    assert cache.features.shape == (rows, 6) and cache.features.dtype == np.float32
    assert cache.bytes == os.path.getsize(tmp_path / "features.npy")
    assert rows * 6 * 4 < cache.bytes <= rows * 6 * 4 + 256           # data + .npy header
    assert sorted(os.listdir(tmp_path)) == ["features.npy", "rows.npz"]  # no temp file left
    first = data[0]
    expected = roi_features(model, first["image"],
                            np.concatenate([first["boxes"], props[0]]).astype(np.float64),
                            scales, 16.0)
    np.testing.assert_array_equal(cache.features[:len(expected)], expected)
    assert (cache.labels[:len(first["boxes"])] == first["labels"]).all()
    assert not cache.labels[len(first["boxes"]):len(expected)].any()   # proposals: 0


def _synthetic_cache(n=400, seed=0):
    """Proposals scattered around one GT box; the features hold their offsets
    t = encode(P, G) (and one column of noise), so a linear regressor can be exact."""
    rng = np.random.default_rng(seed)
    gt = np.array([20.0, 20.0, 60.0, 50.0])
    boxes = gt + rng.uniform(-4, 4, (n, 4))                      # (n, 4) proposals
    t = encode_boxes(boxes, np.tile(gt, (n, 1)), weights=BOX_WEIGHTS)   # (n, 4)
    x = np.concatenate([t, rng.standard_normal((n, 1))], axis=1)        # (n, 5)
    targets = np.zeros((n, 2, 4))
    targets[:, 0] = gt
    best = np.zeros((n, 2))
    best[:, 0] = 0.8
    return FeatureCache(x, np.zeros(n, np.int64), boxes, best, targets, bytes=0), gt


def test_ridge_regressors_learn_the_box_offsets_and_leave_a_class_without_data_alone():
    cache, gt = _synthetic_cache()
    w = train_box_regressors(cache, 1.0, ridge=1e-3)
    assert w.shape == (2, 6, 4) and not w[1].any()       # class 2 has no overlapping boxes
    moved = regress_boxes(cache.features, 1.0, w, cache.boxes)
    before = np.abs(cache.boxes - gt).mean()
    after = np.abs(moved[:, 0] - gt).mean()
    assert after < 1e-3 * before                         # the boxes land on the GT box
    t = encode_boxes(cache.boxes, cache.targets[:, 0], weights=BOX_WEIGHTS)
    heavy = train_box_regressors(cache, 1.0, ridge=1e9)  # only the (free) bias survives
    np.testing.assert_allclose(heavy[0, -1], t.mean(axis=0), atol=1e-6)
    assert np.abs(heavy[0, :-1]).max() < 1e-6


def test_regression_only_uses_proposals_overlapping_enough():
    cache, _ = _synthetic_cache()
    far = cache._replace(best_iou=np.full_like(cache.best_iou, 0.59))
    assert not train_box_regressors(far, 1.0).any()      # below R-CNN's 0.6: no data


def test_later_stages_train_and_detect(tmp_path):
    model = _model("rcnn")
    data = ShapesDataset(4, image_size=32, max_objects=2)
    props = _proposals(4, 32, count=8)
    stages, measured = train_later_stages(model, data, props, str(tmp_path), seed=0)
    assert stages.svm_w.shape == (3, 6) and stages.regressors.shape == (3, 7, 4)
    assert measured["feature_bytes"] == os.path.getsize(tmp_path / "features.npy")
    config = TrainConfig(image_size=32, test_scales=(1.0,))
    dets = detect_with_stages(model, stages, [data[0]["image"]], props[:1], config)
    assert set(dets[0]) == {"boxes", "scores", "labels"}
    assert (dets[0]["scores"] > -1).all()                # beyond the margin only
