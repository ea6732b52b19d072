"""Test-time detection (minircnn/detection/inference.py) with a scripted fake model."""

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
