"""Benchmark setups for the whole detector (used by ``minircnn bench``, see bench.py).

A training step as in the paper's minibatch: 2 images of 128x128, 128 RoIs sampled
hierarchically from selective-search-like proposals (here dense boxes, to keep the
setup fast), forward + loss + backward + SGD step of the default ``minircnn train``
model. Then the same step split into its three parts, timed separately, so the table
shows where the time goes: the backbone (convolutions on whole images), RoI pooling,
and the head (fc6, fc7, the two output layers and the loss). Inference: ``detect`` on
one image with 300 proposals, and its parts.

Each setup takes an ``np.random.Generator`` and returns ``(run, flops)`` (flops None).
"""

from __future__ import annotations

import numpy as np

from minircnn.data.shapes import ShapesDataset
from minircnn.detection.inference import detect, postprocess
from minircnn.detection.proposals import dense_boxes
from minircnn.detection.sampling import hierarchical_batch
from minircnn.layers.losses import fast_rcnn_loss_backward, fast_rcnn_loss_forward
from minircnn.training.config import TrainConfig, make_detector
from minircnn.training.optim import SGD
from minircnn.training.step import train_step

NUM_TEST_PROPOSALS = 300


def _setup(rng: np.random.Generator):
    """The default model, two shapes images and a 128-RoI minibatch."""
    config = TrainConfig()
    model = make_detector(config)
    ds = ShapesDataset(2, image_size=config.image_size)
    images = np.stack([ds[i]["image"] for i in range(2)])                  # (2, 3, H, W)
    props = dense_boxes(config.image_size)
    batch = hierarchical_batch([ds[0], ds[1]], [props, props],
                               rois_per_batch=config.rois_per_batch, rng=rng)
    return model, images, batch


def _head_forward(model, pooled):
    x = pooled
    for layer in (model.flatten, model.fc6, model.relu6, model.drop6, model.fc7,
                  model.relu7, model.drop7):
        x = layer.forward(x)
    return model.cls_score.forward(x), model.bbox_pred.forward(x)


def setup_train_step(rng):
    model, images, batch = _setup(rng)
    opt = SGD(model.parameters(), 1e-4)
    return (lambda: train_step(model, opt, images, *batch)), None


def setup_train_backbone(rng):
    model, images, _ = _setup(rng)

    def run():
        features = model.backbone.forward(images)
        return model.backbone.backward(np.ones_like(features))
    return run, None


def setup_train_roi(rng):
    model, images, batch = _setup(rng)
    features = model.backbone.forward(images)

    def run():
        pooled = model.roi.forward(features, batch.rois)
        return model.roi.backward(np.ones_like(pooled))
    return run, None


def setup_train_head(rng):
    model, images, batch = _setup(rng)
    pooled = model.roi.forward(model.backbone.forward(images), batch.rois)

    def run():
        cls_scores, deltas = _head_forward(model, pooled)
        _, cache = fast_rcnn_loss_forward(cls_scores, deltas, batch.labels, batch.bbox_targets)
        dcls, dbbox = fast_rcnn_loss_backward(1.0, cache)
        dx = model.cls_score.backward(dcls) + model.bbox_pred.backward(dbbox)
        for layer in (model.drop7, model.relu7, model.fc7, model.drop6, model.relu6,
                      model.fc6, model.flatten):
            dx = layer.backward(dx)
        return dx
    return run, None


def _inference_setup(rng):
    model, images, _ = _setup(rng)
    model.eval()
    props = dense_boxes(images.shape[-1])
    props = props[rng.choice(len(props), NUM_TEST_PROPOSALS, replace=False)]
    rois = np.concatenate([np.zeros((len(props), 1), np.float32), props], axis=1)  # (P, 5)
    return model, images[:1], props, rois


def setup_inference(rng):
    model, image, props, _ = _inference_setup(rng)
    return (lambda: detect(model, image[0], props)), None


def setup_inference_backbone(rng):
    model, image, _, _ = _inference_setup(rng)
    return (lambda: model.backbone.forward(image)), None


def setup_inference_roi(rng):
    model, image, _, rois = _inference_setup(rng)
    features = model.backbone.forward(image)
    return (lambda: model.roi.forward(features, rois)), None


def setup_inference_head(rng):
    model, image, _, rois = _inference_setup(rng)
    pooled = model.roi.forward(model.backbone.forward(image), rois)
    return (lambda: _head_forward(model, pooled)), None


def setup_inference_postprocess(rng):
    model, image, props, rois = _inference_setup(rng)
    cls_scores, deltas = model.forward(image, rois)
    return (lambda: postprocess(cls_scores, deltas, props, image.shape[2:])), None
