"""Benchmark setups for the whole detector (used by ``minircnn bench``, see bench.py).

Everything is the default ``minircnn train`` model and recipe (``TrainConfig()``), so
the table times what users run. A training step as in the paper's minibatch: 2 images
of 128x128, 128 RoIs sampled hierarchically from selective-search-like proposals (here
dense boxes, to keep the setup fast), forward + loss + backward + SGD update. Then the
same step split into its parts, timed separately, so the table shows where the time
goes: the backbone (convolutions on whole images), the RoI op, the head (fc6, fc7, the
two output layers and the loss) and the SGD update. Detection: ``detect`` on one image
with 300 proposals through the test pyramid of ``TrainConfig.test_scales`` (what
``minircnn detect`` and the evaluation run), and its parts: the backbone at each
scale, the RoI op and the head over every level, and the postprocessing, each run as
``detect`` runs it (inside ``no_grad``: no caches, value-only ReLU and pooling).

Each setup takes an ``np.random.Generator`` and returns ``(run, flops)`` (flops None).
"""

from __future__ import annotations

import weakref
from functools import partial

import numpy as np

from minircnn.data.shapes import ShapesDataset
from minircnn.detection.inference import (
    detect,
    postprocess,
    pyramid_levels,
    rescale_batch,
)
from minircnn.detection.proposals import dense_boxes
from minircnn.detection.sampling import hierarchical_batch
from minircnn.layers.losses import fast_rcnn_loss_backward, fast_rcnn_loss_forward
from minircnn.layers.module import no_grad
from minircnn.training.config import TrainConfig, make_detector
from minircnn.training.data_parallel import ImageWorkers
from minircnn.training.frozen_cache import FrozenFeatures
from minircnn.training.optim import SGD
from minircnn.training.step import parallel_train_step, train_slot, train_step

NUM_TEST_PROPOSALS = 300                       # TrainConfig.max_proposals
CONFIG = TrainConfig()
TEST_SCALES = tuple(CONFIG.test_scales)        # the test pyramid (1x, 2x)
PYRAMID = "pyramid " + "+".join(f"{s:g}x" for s in TEST_SCALES)
ROI_OP = {"align": "RoIAlign", "pool": "RoIPool"}[CONFIG.roi_op]
STORE_KEYS = [(0, False, 1.0), (1, False, 1.0)]   # the two images: (index, flipped, scale)


def _setup(rng: np.random.Generator):
    """The default model, two shapes images and a 128-RoI minibatch."""
    model = make_detector(CONFIG)
    ds = ShapesDataset(2, image_size=CONFIG.image_size)
    images = np.stack([ds[i]["image"] for i in range(2)])                  # (2, 3, H, W)
    props = dense_boxes(CONFIG.image_size)
    batch = hierarchical_batch([ds[0], ds[1]], [props, props],
                               rois_per_batch=CONFIG.rois_per_batch, rng=rng)
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


def setup_train_step_stored(rng):
    """The step as the training loop runs it once it has seen both images: their frozen
    blocks' output read from the store (``FrozenFeatures.lookup``, timed too), the
    forward pass started from it."""
    model, images, batch = _setup(rng)
    opt = SGD(model.parameters(), 1e-4)
    store = FrozenFeatures(model.backbone)
    store.lookup(STORE_KEYS, images)               # the first sight: computed and kept

    def run():
        frozen = store.lookup(STORE_KEYS, images)  # (2, C, h, w), read from the store
        return train_step(model, opt, images, *batch, frozen=frozen)
    return run, None


def open_workers(model, slot, run):
    """``ImageWorkers(model, slot, 2)`` entered, stopped once ``run`` (the timed function
    that uses them) is gone: the bench keeps an entry's function until its next entry."""
    workers = ImageWorkers(model, slot, CONFIG.train_workers).__enter__()
    weakref.finalize(run, workers.__exit__, None, None, None)
    return workers


def setup_train_step_slots(rng):
    """The stored-output step as ``minircnn train`` runs it: one image per slot, image 1
    in a worker process (training/data_parallel.py). Timed on the wall clock: two
    processes work."""
    model, images, batch = _setup(rng)
    opt = SGD(model.parameters(), 1e-4)
    store = FrozenFeatures(model.backbone)
    store.lookup(STORE_KEYS, images)               # the first sight: computed and kept
    seeds = rng.integers(0, 2**63 - 1, size=len(images))

    def run():
        frozen = store.lookup(STORE_KEYS, images)  # (2, C, h, w), read from the store
        return parallel_train_step(workers, opt, images, batch, seeds=seeds, frozen=frozen)
    workers = open_workers(model, partial(train_slot, box_weight=CONFIG.box_loss_weight), run)
    return run, None


def setup_train_backbone(rng):
    model, images, _ = _setup(rng)

    def run():
        model.zero_grad()              # as in the step: the new gradients are kept, not added
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
        model.zero_grad()              # as in the step: the new gradients are kept, not added
        cls_scores, deltas = _head_forward(model, pooled)
        _, cache = fast_rcnn_loss_forward(cls_scores, deltas, batch.labels, batch.bbox_targets)
        dcls, dbbox = fast_rcnn_loss_backward(1.0, cache)
        dx = model.cls_score.backward(dcls) + model.bbox_pred.backward(dbbox)
        for layer in (model.drop7, model.relu7, model.fc7, model.drop6, model.relu6,
                      model.fc6, model.flatten):
            dx = layer.backward(dx)
        return dx
    return run, None


def setup_train_update(rng):
    """The SGD step over every parameter (the frozen ones are skipped)."""
    model, images, batch = _setup(rng)
    opt = SGD(model.parameters(), 1e-4, momentum=CONFIG.momentum,
              weight_decay=CONFIG.weight_decay)
    train_step(model, opt, images, *batch)           # gradients and momentum to update

    def run():
        opt.step()
        return opt
    return run, None


def _inference_setup(rng):
    """The eval-mode model with the shipped trained weights (its scores, hence the
    postprocessing's work, are a trained detector's), one image, its proposals and their
    RoIs at every level."""
    from minircnn.models.pretrained import pretrained_detector

    model, images, _ = _setup(rng)
    model.load_state_dict(pretrained_detector().state_dict())
    model.eval()
    image = images[:1]                                                    # (1, 3, H, W)
    props = dense_boxes(image.shape[-1])
    props = props[rng.choice(len(props), NUM_TEST_PROPOSALS, replace=False)]
    rois = np.concatenate([np.zeros((len(props), 1), np.float32), props], axis=1)  # (P, 5)
    level = pyramid_levels(rois, TEST_SCALES, CONFIG.pyramid_target)      # (P,)
    stride = model.backbone.feature_stride
    levels = [rescale_batch(image, rois[level == j], s, stride)           # (image_j, rois_j)
              for j, s in enumerate(TEST_SCALES)]
    return model, image, props, levels


def _detect(model, image, props, scales):
    return detect(model, image[0], props, scales=scales, target=CONFIG.pyramid_target,
                  score_thresh=CONFIG.score_thresh, nms_thresh=CONFIG.nms_thresh,
                  max_dets=CONFIG.max_dets)


def setup_inference(rng):
    model, image, props, _ = _inference_setup(rng)
    return (lambda: _detect(model, image, props, TEST_SCALES)), None


def setup_inference_one_scale(rng):
    model, image, props, _ = _inference_setup(rng)
    return (lambda: _detect(model, image, props, (1.0,))), None


def without_grad(model, run):
    """``run`` inside no_grad(model), as detect runs the model (no layer keeps a cache,
    ReLU and pooling compute values only)."""
    def run_without_grad():
        with no_grad(model):
            return run()
    return run_without_grad


def setup_inference_backbone(rng, level: int = 0):
    model, _, _, levels = _inference_setup(rng)
    scaled = levels[level][0]                                # (1, 3, s H, s W)
    return without_grad(model, lambda: model.backbone.forward(scaled)), None


def setup_inference_roi(rng):
    model, _, _, levels = _inference_setup(rng)
    with no_grad(model):
        features = [(model.backbone.forward(im), r) for im, r in levels if len(r)]
    return without_grad(model, lambda: [model.roi.forward(f, r) for f, r in features]), None


def setup_inference_head(rng):
    """The head once over the RoIs of every level, as FastRCNN.forward_levels runs it."""
    model, _, _, levels = _inference_setup(rng)
    with no_grad(model):
        pooled = np.concatenate([model.roi.forward(model.backbone.forward(im), r)
                                 for im, r in levels if len(r)])     # (R, C, PH, PW)
    return without_grad(model, lambda: _head_forward(model, pooled)), None


def setup_inference_postprocess(rng):
    model, image, props, levels = _inference_setup(rng)
    rois = np.concatenate([np.zeros((len(props), 1), np.float32), props], axis=1)
    with no_grad(model):
        cls_scores, deltas = model.forward(image, rois)
    return (lambda: postprocess(cls_scores, deltas, props, image.shape[2:],
                                score_thresh=CONFIG.score_thresh, nms_thresh=CONFIG.nms_thresh,
                                max_dets=CONFIG.max_dets)), None
