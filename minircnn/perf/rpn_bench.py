"""Benchmark setups for the Region Proposal Network (used by ``minircnn bench``).

At test time: the shipped Faster R-CNN (``minircnn train --proposals rpn``; trained
weights, so NMS sees a trained RPN's scores) on one held-out 128x128 image, timed as
``minircnn train --proposals rpn`` reports its proposals' time per image
(training/rpn_eval.py): the whole (backbone, then the RPN head, decoding and NMS) and
its two parts, each inside ``no_grad`` as at test time. The detector reuses the
backbone's features, so the Faster R-CNN paper counts the proposals' cost without it.

In training: one iteration of approximate joint training (training/rpn_step.py) as
``minircnn train --proposals rpn`` runs it from its second epoch on (the frozen blocks'
output read from the store), on two training images, and its parts: the trainable
backbone blocks forward + backward, the RPN head's forward, anchor labelling, loss and
backward, the proposals (decoding, top-k, NMS), the Fast R-CNN part (RoI sampling from
the proposals, the RoI op and the head, forward + loss + backward) and the SGD update;
then the same iteration as the command runs it, one image per process (wall clock).
The model carries the shipped weights, so that NMS sees a trained RPN's scores.

Each setup takes an ``np.random.Generator`` and returns ``(run, flops)`` (flops None).
"""

from __future__ import annotations

import dataclasses
from functools import partial

import numpy as np

from minircnn.data.shapes import ShapesDataset
from minircnn.layers.losses import fast_rcnn_loss_backward
from minircnn.layers.module import no_grad
from minircnn.perf.detector_bench import STORE_KEYS, open_workers, without_grad
from minircnn.training.config import TrainConfig, make_detector
from minircnn.training.frozen_cache import FrozenFeatures
from minircnn.training.optim import SGD
from minircnn.training.rpn_step import (
    detector_head_loss,
    joint_slot,
    parallel_rpn_step,
    rpn_head_backward,
    rpn_head_loss,
    rpn_train_step,
)
from minircnn.training.step import weighted

CONFIG = TrainConfig()
RPN_CONFIG = dataclasses.replace(CONFIG, proposal_method="rpn")   # joint training


def _setup():
    """The shipped FasterRCNN in eval mode, the backbone its RPN reads, one held-out image."""
    from minircnn.models.pretrained import pretrained_faster_rcnn

    model = pretrained_faster_rcnn()
    model.eval()
    backbone = model.proposal_backbone
    held_out = ShapesDataset(1, image_size=CONFIG.image_size, seed=CONFIG.data_seed + 1)
    image = held_out[0]["image"][None]                                  # (1, 3, H, W)
    return model, backbone, image


def setup_rpn_proposals(rng):
    """Backbone, RPN head, decoding and NMS: ``FasterRCNN.propose`` on one image."""
    model, _, image = _setup()
    return (lambda: model.propose(image)), None


def setup_rpn_backbone(rng):
    model, backbone, image = _setup()
    return without_grad(model, lambda: backbone.forward(image)), None


def setup_rpn_head(rng):
    """The RPN head's convolutions, decoding, top-k and NMS on features already made."""
    model, backbone, image = _setup()
    with no_grad(model):
        features = backbone.forward(image)                              # (1, C, H/s, W/s)
    return without_grad(model, lambda: model.rpn.proposals(features, image.shape[2:])), None


# --- one iteration of approximate joint training ------------------------------------------
def _train_setup():
    """The RPN recipe's model in training mode with the shipped weights, two training
    images, their targets, the store of their frozen blocks' output and that output."""
    from minircnn.models.pretrained import pretrained_faster_rcnn

    model = make_detector(RPN_CONFIG)
    model.load_state_dict(pretrained_faster_rcnn().state_dict())
    model.train()
    ds = ShapesDataset(2, image_size=CONFIG.image_size, seed=CONFIG.data_seed)
    images = np.stack([ds[i]["image"] for i in range(2)])             # (2, 3, H, W)
    targets = [{"boxes": ds[i]["boxes"], "labels": ds[i]["labels"]} for i in range(2)]
    store = FrozenFeatures(model.backbone)
    frozen = store.lookup(STORE_KEYS, images)    # (2, C, h, w): the first sight computes it
    return model, images, targets, store, frozen


def _optimizer(model):
    return SGD(model.parameters(), 1e-4, momentum=RPN_CONFIG.momentum,
               weight_decay=RPN_CONFIG.weight_decay)


def setup_joint_step(rng):
    """``rpn_train_step`` at a joint-training epoch as the loop runs it: the frozen
    blocks' output read from the store (timed too), the step started from it."""
    model, images, targets, store, _ = _train_setup()
    optimizer = _optimizer(model)

    def run():
        frozen = store.lookup(STORE_KEYS, images)                      # (2, C, h, w)
        return rpn_train_step(model, optimizer, images, targets, RPN_CONFIG, rng,
                              epoch=1, frozen=frozen)
    return run, None


def setup_joint_step_slots(rng):
    """``setup_joint_step`` as ``minircnn train --proposals rpn`` runs it: one image per
    slot, image 1 in a worker process (training/data_parallel.py); wall clock."""
    model, images, targets, store, _ = _train_setup()
    optimizer = _optimizer(model)
    seeds = rng.integers(0, 2**63 - 1, size=len(images))

    def run():
        frozen = store.lookup(STORE_KEYS, images)                      # (2, C, h, w)
        return parallel_rpn_step(workers, model, optimizer, images, targets, RPN_CONFIG,
                                 seeds=seeds, frozen=frozen)
    workers = open_workers(model, partial(joint_slot, config=RPN_CONFIG), run)
    return run, None


def setup_joint_backbone(rng):
    model, _, _, _, frozen = _train_setup()

    def run():
        model.zero_grad()              # as in the step: the new gradients are kept, not added
        features = model.backbone.forward_trainable(frozen)          # blocks 3-4
        return model.backbone.backward(np.ones_like(features))
    return run, None


def setup_joint_rpn(rng):
    """The RPN head's forward, anchor labels and sampling, loss and backward."""
    model, _, targets, _, frozen = _train_setup()
    features = model.backbone.forward_trainable(frozen)

    def run():
        model.zero_grad()              # as in the step: the new gradients are kept, not added
        cache, objectness, _ = rpn_head_loss(model, features, targets, RPN_CONFIG, rng)
        return rpn_head_backward(model, cache, objectness.shape, RPN_CONFIG)
    return run, None


def setup_joint_proposals(rng):
    """Decoding, top-k and NMS of both images' anchors (the RPN's outputs made once)."""
    model, images, _, _, frozen = _train_setup()
    features = model.backbone.forward_trainable(frozen)
    objectness, deltas = model.rpn.forward(features)                  # (N, A), (N, A, 4)
    return (lambda: model.rpn.proposals(features, images.shape[2:], objectness, deltas)), None


def setup_joint_detector(rng):
    """RoIs sampled from the proposals, the RoI op and head forward, the loss and the
    backward down to the features."""
    model, images, targets, _, frozen = _train_setup()
    features = model.backbone.forward_trainable(frozen)
    objectness, deltas = model.rpn.forward(features)
    proposals = model.rpn.proposals(features, images.shape[2:], objectness, deltas)

    def run():
        model.zero_grad()              # as in the step: the new gradients are kept, not added
        cache = detector_head_loss(model, features, proposals, targets, RPN_CONFIG, rng)
        dcls, dbbox = fast_rcnn_loss_backward(1.0, cache)
        return model.detector.backward_head(dcls, weighted(dbbox, RPN_CONFIG.box_loss_weight))
    return run, None


def setup_joint_update(rng):
    """The SGD step over every parameter (the frozen ones are skipped)."""
    model, images, targets, _, frozen = _train_setup()
    optimizer = _optimizer(model)
    rpn_train_step(model, optimizer, images, targets, RPN_CONFIG, rng, epoch=1,
                   frozen=frozen)                                     # gradients, momentum

    def run():
        optimizer.step()
        return optimizer
    return run, None
