"""Test-time detection (minircnn/detection/inference.py) with a scripted fake model."""

from types import SimpleNamespace

import numpy as np
import pytest

from minircnn.detection.boxes import encode_boxes
from minircnn.detection.inference import detect, detect_images
from minircnn.layers.module import Module, Parameter


class FakeModel(Module):
    """Returns fixed logits / deltas per proposal; records the mode it ran in."""

    def __init__(self, logits, deltas):
        self.w = Parameter(np.zeros(1, np.float32))
        self.logits, self.deltas = np.asarray(logits, float), np.asarray(deltas, float)
        self.seen_training = None

    def forward(self, images, rois):
        self.seen_training = self.training
        n = len(self.logits)
        idx = np.arange(len(rois)) % n
        return self.logits[idx], self.deltas[idx]


def test_softmax_threshold_decode_and_nms():
    props = np.array([[10, 10, 50, 50], [12, 12, 52, 52], [60, 60, 100, 100]], np.float32)
    # class 1 strong on the two overlapping boxes, class 2 on the third
    logits = np.log(np.array([[0.1, 0.8, 0.1], [0.2, 0.7, 0.1], [0.08, 0.02, 0.9]]))
    target = np.array([[20, 20, 60, 60]], np.float32)
    deltas = np.zeros((3, 12))
    deltas[2, 8:12] = encode_boxes(props[2:3], target)            # class 2 moves box 3
    model = FakeModel(logits, deltas)
    model.train()
    dets = detect(model, np.zeros((3, 128, 128), np.float32), props, score_thresh=0.05,
                  nms_thresh=0.3)
    assert model.seen_training is False and model.training is True   # eval, then restored
    assert set(dets) == {"boxes", "scores", "labels"}
    np.testing.assert_allclose(dets["scores"][:2], [0.9, 0.8], atol=1e-6)  # descending
    np.testing.assert_array_equal(dets["labels"][:2], [2, 1])
    np.testing.assert_allclose(dets["boxes"][0], target[0], atol=1e-4)     # decoded
    assert not np.any((dets["labels"] == 1) & (dets["scores"] < 0.75))      # box 2 suppressed
    assert np.all(dets["scores"] > 0.05) and np.all(dets["labels"] >= 1)


def test_boxes_clipped_and_max_dets():
    props = np.array([[100, 100, 127, 127]], np.float32)
    deltas = np.zeros((1, 8))
    deltas[0, 4:] = [10.0, 10.0, 0.0, 0.0]                        # push class 1 off the image
    model = FakeModel(np.zeros((1, 2)), deltas)
    dets = detect(model, np.zeros((3, 128, 128), np.float32), props, score_thresh=0.1)
    assert dets["boxes"].max() <= 128
    many = np.stack([np.arange(40), np.zeros(40), np.arange(40) + 1, np.ones(40)], 1)
    dets = detect(FakeModel(np.log([[0.1, 0.9]]), np.zeros((1, 8))),
                  np.zeros((3, 128, 128), np.float32), many.astype(np.float32), max_dets=7)
    assert len(dets["scores"]) == 7


def test_detect_images_matches_detect_per_image():
    rng = np.random.default_rng(0)
    props = [rng.uniform(0, 60, (5, 2)) for _ in range(3)]
    props = [np.concatenate([p, p + 30], axis=1).astype(np.float32) for p in props]
    logits, deltas = rng.standard_normal((5, 4)), 0.1 * rng.standard_normal((5, 16))
    images = [np.zeros((3, 96, 96), np.float32)] * 3
    together = detect_images(FakeModel(logits, deltas), images, props, batch_size=2)
    for img, p, d in zip(images, props, together, strict=True):
        alone = detect(FakeModel(logits, deltas), img, p)
        for k in d:
            np.testing.assert_array_equal(d[k], alone[k])
    with pytest.raises(ValueError, match="proposal"):
        detect_images(FakeModel(logits, deltas), images, props[:2])


def test_resize_bilinear_matches_scipy_zoom_on_pixel_edges():
    """Reference: scipy.ndimage.zoom with grid_mode=True (pixel edges aligned, as torch's
    align_corners=False) and edge clamping."""
    from scipy import ndimage

    from minircnn.detection.inference import resize_bilinear

    x = np.random.default_rng(1).random((2, 3, 9, 7))
    for height, width in [(18, 14), (27, 21), (9, 7), (5, 4)]:
        want = ndimage.zoom(x, (1, 1, height / 9, width / 7), order=1, grid_mode=True,
                            mode="nearest")
        got = resize_bilinear(x, height, width)
        assert got.shape == (2, 3, height, width)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-14)   # weights sum to 1
    ramp = np.arange(4.0)[None, None, None, :].repeat(2, axis=2)   # 0 1 2 3 along x
    np.testing.assert_array_equal(resize_bilinear(ramp, 2, 8)[0, 0, 0],
                                  [0, 0.25, 0.75, 1.25, 1.75, 2.25, 2.75, 3])   # by hand


def test_pyramid_levels_pick_the_scale_closest_to_the_target_area():
    from minircnn.detection.inference import pyramid_levels

    boxes = np.array([[0, 0, 10, 10], [0, 0, 40, 40], [0, 0, 30, 30], [5, 5, 36, 29]])
    # target 48: |100 s^2 - 2304| is least at s = 2 (400), |1600 s^2 - 2304| at s = 1;
    # 900: 1404 at s = 1 vs 1296 at s = 2; 31 x 24 = 744: 1560 vs 672
    np.testing.assert_array_equal(pyramid_levels(boxes, (1.0, 2.0), 48), [1, 0, 1, 1])
    rois = np.concatenate([np.zeros((4, 1)), boxes], axis=1)          # (R, 5) works too
    np.testing.assert_array_equal(pyramid_levels(rois, (1.0, 2.0), 32), [1, 0, 0, 0])


class ScaleReporter(Module):
    """Class-1 logit = image height / 64, deltas 0; records (image shape, rois) per call."""

    def __init__(self):
        self.w = Parameter(np.zeros(1, np.float32))
        self.calls = []

    def forward(self, images, rois):
        self.calls.append((images.shape, rois.copy()))
        logits = np.zeros((len(rois), 2))
        logits[:, 1] = images.shape[2] / 64
        return logits, np.zeros((len(rois), 8))


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))                       # class 1's softmax probability of [0, z]


def test_image_pyramid_scores_each_proposal_at_its_scale():
    props = np.array([[8, 8, 20, 20], [10, 60, 70, 120]], np.float32)   # small, large
    model = ScaleReporter()
    dets = detect(model, np.zeros((3, 128, 128), np.float32), props, scales=(1.0, 2.0),
                  target=48, score_thresh=0.0, nms_thresh=1.0)
    (shape1, rois1), (shape2, rois2) = model.calls
    assert shape1 == (1, 3, 128, 128) and shape2 == (1, 3, 256, 256)
    np.testing.assert_array_equal(rois1[:, 1:], props[1:])             # large: scale 1
    np.testing.assert_array_equal(rois2[:, 1:], 2 * props[:1])         # small: scale 2
    by_box = {tuple(b): s for b, s in zip(dets["boxes"].tolist(), dets["scores"], strict=True)}
    np.testing.assert_allclose(by_box[tuple(props[0].tolist())], _sigmoid(4.0), rtol=1e-6)
    np.testing.assert_allclose(by_box[tuple(props[1].tolist())], _sigmoid(2.0), rtol=1e-6)
    one = detect(ScaleReporter(), np.zeros((3, 128, 128), np.float32), props, scales=(1.0,),
                 score_thresh=0.0, nms_thresh=1.0)
    np.testing.assert_allclose(one["scores"], _sigmoid(2.0), rtol=1e-6)
    for bad in [(), (0.0,), (1.0, float("nan")), "12"]:
        with pytest.raises((ValueError, TypeError)):
            detect(model, np.zeros((3, 128, 128), np.float32), props, scales=bad)


@pytest.mark.parametrize("image, error, words", [
    (np.full((3, 32, 32), 200, np.uint8), TypeError, "image / 255"),
    (np.full((3, 32, 32), 200.0, np.float32), ValueError, "image / 255"),
    (np.full((3, 32, 32), np.nan, np.float32), ValueError, r"in \[0, 1\]"),
    (np.zeros((32, 32, 3), np.float32), ValueError, r"\(3, H, W\)"),
    ("image.png", TypeError, "images"),
])
def test_an_image_outside_0_1_is_refused_never_no_detections(image, error, words):
    """A 0..255 image would score nothing: refused with the fix, not 'no detections'."""
    model = FakeModel(np.log([[0.1, 0.9]]), np.zeros((1, 8)))
    with pytest.raises(error, match=words):
        detect(model, image, np.array([[0, 0, 10, 10]], np.float32))


class OnlyForward(Module):
    """A model seen through ``forward`` only (no ``forward_levels``): detect's generic path."""

    def __init__(self, model):
        self.model = model
        # the feature stride, which pads each level (not the backbone itself: a Module
        # reached twice would be visited twice by no_grad)
        self.backbone = SimpleNamespace(feature_stride=model.backbone.feature_stride)

    def forward(self, images, rois):
        return self.model.forward(images, rois)


def test_pyramid_runs_the_head_once_and_keeps_each_proposal_s_outputs():
    """A FastRCNN scores the levels through one head pass (``forward_levels``); its
    detections equal those of one forward per level, with the proposals of both levels
    interleaved (each proposal must get its own row back)."""
    from minircnn.models import FastRCNN, SmallVGG

    rng = np.random.default_rng(6)
    model = FastRCNN(3, SmallVGG((4, 4)), hidden=16, rng=rng)
    image = rng.random((3, 64, 64), dtype=np.float32)
    xy = rng.uniform(0, 40, (40, 2))
    props = np.concatenate([xy, xy + rng.uniform(4, 24, (40, 2))], axis=1).astype(np.float32)
    kw = dict(scales=(1.0, 2.0), target=16.0, score_thresh=0.0, nms_thresh=1.0, max_dets=1000)
    calls = []
    real = model.forward_levels
    model.forward_levels = lambda levels: calls.append(len(levels)) or real(levels)
    dets = detect(model, image, props, **kw)
    assert calls == [2]                                 # both levels, one call
    expected = detect(OnlyForward(model), image, props, **kw)
    assert len(dets["scores"]) == len(expected["scores"]) == 3 * len(props)
    np.testing.assert_allclose(dets["boxes"], expected["boxes"], atol=1e-4)
    np.testing.assert_allclose(dets["scores"], expected["scores"], atol=1e-6)
    np.testing.assert_array_equal(dets["labels"], expected["labels"])
