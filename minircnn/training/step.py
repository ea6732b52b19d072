"""One training iteration: sample a minibatch, one SGD step on the multi-task loss.

One training iteration: a minibatch of N images and R RoIs (sample_batch, the paper's
hierarchical sampling, section 2.3) and one SGD step on the multi-task loss: in one
forward and backward pass over the whole minibatch (train_step), or one image at a time,
each image's gradient on a core of its own and the gradients added
(parallel_train_step; training/data_parallel.py)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from minircnn.backend import get_array_module
from minircnn.detection.inference import rescale_batch
from minircnn.detection.sampling import hierarchical_batch, region_wise_batch
from minircnn.layers.losses import fast_rcnn_loss_backward, fast_rcnn_loss_forward
from minircnn.training.data_parallel import ImageWorkers, seed_slot
from minircnn.training.optim import SGD


def flip_horizontal(image: np.ndarray, boxes: np.ndarray, proposals: np.ndarray):
    """Mirror an image (3, H, W) and its (G, 4) boxes and (P, 4) proposals left-right."""
    width = image.shape[-1]
    def mirror(b):  # x1' = W - x2, x2' = W - x1
        return np.stack([width - b[:, 2], b[:, 1], width - b[:, 0], b[:, 3]], axis=1)
    return image[:, :, ::-1].copy(), mirror(boxes), mirror(proposals)


def weighted(grad, weight: float):
    """``grad * weight``, the gradient of a loss term scaled by ``weight`` (a lambda);
    ``grad`` itself when the weight is 1 (no copy)."""
    return grad if weight == 1 else grad * weight


def train_step(model, optimizer: SGD, images, rois, labels, bbox_targets, *,
               box_weight: float = 1.0, frozen=None) -> dict:
    """One SGD iteration on one minibatch; returns loss, loss_cls, loss_box, accuracy.

    ``box_weight`` scales the box regression term (the paper's lambda, 1 by default;
    0 trains classification only, the first stage of stage-wise training). ``frozen``,
    when given, is the output of the backbone's frozen blocks on ``images``
    (training/frozen_cache.py): the forward pass starts from it.

    Raises:
        FloatingPointError: the scores or the loss are not finite (the weights are
            left as they were before this step's update).
    """
    optimizer.zero_grad()
    with np.errstate(over="ignore", invalid="ignore"):  # divergence -> the clear error below
        stats = forward_backward(model, images, rois, labels, bbox_targets, frozen=frozen,
                                 box_weight=box_weight)
        if not np.isfinite(stats["loss"]):
            raise FloatingPointError(f"the loss is {stats['loss']}")
        optimizer.step()
    return stats


def forward_backward(model, images, rois, labels, bbox_targets, *, frozen=None,
                     box_weight: float = 1.0, dloss: float = 1.0) -> dict:
    """Forward, the multi-task loss and backward (``p.grad`` += dloss * dL/dp): the work of
    train_step and of train_slot. Returns loss, loss_cls, loss_box and accuracy.

    Raises:
        FloatingPointError: the scores are not finite.
    """
    xp = get_array_module(images)
    if frozen is None:
        cls_scores, bbox_deltas = model.forward(images, rois)
    else:
        cls_scores, bbox_deltas = model.forward_from_frozen(frozen, rois)
    if not (bool(xp.isfinite(cls_scores).all()) and bool(xp.isfinite(bbox_deltas).all())):
        raise FloatingPointError("the network outputs are not finite (nan/inf)")
    loss, cache = fast_rcnn_loss_forward(cls_scores, bbox_deltas, labels, bbox_targets)
    dcls, dbbox = fast_rcnn_loss_backward(dloss, cache)
    model.backward(dcls, weighted(dbbox, box_weight))
    return {"loss": float(loss), "loss_cls": cache.loss_cls, "loss_box": cache.loss_box,
            "accuracy": cache.accuracy}


class ImageJob(NamedTuple):
    """One image's share of a minibatch: a slot of training/data_parallel.py."""

    images: np.ndarray            # (1, 3, H, W) the image
    frozen: np.ndarray | None     # (1, C, h, w) its frozen blocks' output, or None
    rois: np.ndarray              # (R_i, 5) its RoIs, batch index 0
    labels: np.ndarray            # (R_i,)
    bbox_targets: np.ndarray      # (R_i, 4)
    weight: float                 # R_i / R: its share of the minibatch's loss
    seed: int                     # its dropout masks (data_parallel.seed_slot)


def image_jobs(images, batch, frozen, seeds) -> list[ImageJob]:
    """The minibatch split into one job per image that has RoIs: image i's RoIs
    (renumbered to image 0 of its own batch of one) and its weight R_i / R."""
    num_rois = len(batch.rois)
    jobs = []
    for i, seed in enumerate(seeds):
        mine = batch.rois[:, 0] == i                        # (R,) image i's RoIs
        if not bool(mine.any()):
            continue
        rois = batch.rois[mine].copy()                      # (R_i, 5)
        rois[:, 0] = 0
        jobs.append(ImageJob(images[i:i + 1], None if frozen is None else frozen[i:i + 1],
                             rois, batch.labels[mine], batch.bbox_targets[mine],
                             float(mine.sum()) / num_rois, int(seed)))
    return jobs


def train_slot(model, job: ImageJob, *, box_weight: float = 1.0) -> dict:
    """One image of a minibatch: forward, its loss, and backward with dloss = R_i / R, so
    the slots' gradients add up to the minibatch's (training/data_parallel.py).

    Returns the image's own loss terms and accuracy (averaged over its RoIs).
    Raises:
        FloatingPointError: the scores are not finite.
    """
    seed_slot(model, job.seed)                              # its dropout masks
    with np.errstate(over="ignore", invalid="ignore"):  # divergence -> the caller's error
        return forward_backward(model, job.images, job.rois, job.labels, job.bbox_targets,
                                frozen=job.frozen, box_weight=box_weight,
                                dloss=job.weight)              # d(w_i L_i) = w_i dL_i


def parallel_train_step(workers: ImageWorkers, optimizer: SGD, images, batch, *, seeds,
                        frozen=None) -> dict:
    """``train_step`` one image per slot (``workers``, built with ``train_slot``): the
    gradient of each image on its own, added, then one SGD step. ``seeds``: one per
    image, for its dropout masks. Returns the minibatch's loss, loss_cls, loss_box and
    accuracy (the images' weighted by R_i / R).

    Raises:
        FloatingPointError: the scores or the loss are not finite (the weights are
            left as they were before this step's update).
    """
    optimizer.zero_grad()
    jobs = image_jobs(images, batch, frozen, seeds)
    with np.errstate(over="ignore", invalid="ignore"):  # divergence -> the clear error below
        stats = workers.run(jobs)
        total = {k: sum(job.weight * s[k] for job, s in zip(jobs, stats, strict=True))
                 for k in stats[0]}                      # sum_i (R_i / R) L_i
        if not np.isfinite(total["loss"]):
            raise FloatingPointError(f"the loss is {total['loss']}")
        optimizer.step()
    return total


def sample_batch(config, items, props, idx, rng, *, stride: int = 1):
    """Images (n, 3, H', W') and an RoIBatch for the training images ``idx``.

    Each image is flipped with probability 1/2 (``config.flip``); RoIs are sampled
    hierarchically or region-wise (``config.sampling``). With several
    ``config.train_scales`` (multi-scale training, paper section 2.4), the minibatch is
    then resized by one of them, drawn at random, and padded to a multiple of ``stride``
    (the backbone's). The paper draws a scale per image; one per minibatch keeps its
    images one array. Box targets are relative to the RoI, so they stay as they are.
    """
    images, batch, _ = sample_minibatch(config, items, props, idx, rng, stride=stride)
    return images, batch


def sample_minibatch(config, items, props, idx, rng, *, stride: int = 1):
    """``sample_batch``, and a key per image naming what made it: (index, flipped,
    scale), the same key for the same pixels (training/frozen_cache.py keeps by it)."""
    images, targets, proposals = [], [], []
    flips = rng.random(len(idx)) < 0.5 if config.flip else np.zeros(len(idx), bool)
    for i, flip in zip(idx, flips, strict=True):
        image, boxes, p = items[i]["image"], items[i]["boxes"], props[i]
        if flip:
            image, boxes, p = flip_horizontal(image, boxes, p)
        images.append(image)
        targets.append({"boxes": boxes, "labels": items[i]["labels"]})
        proposals.append(p)
    sampler = hierarchical_batch if config.sampling == "hierarchical" else region_wise_batch
    batch = sampler(targets, proposals, rois_per_batch=config.rois_per_batch, rng=rng,
                    fg_fraction=config.fg_fraction, fg_iou=config.fg_iou,
                    bg_iou=tuple(config.bg_iou))
    images = np.stack(images)                                   # (n, 3, H, W)
    scale = 1.0
    if tuple(config.train_scales) != (1.0,):
        scale = config.train_scales[rng.integers(len(config.train_scales))]
        images, rois = rescale_batch(images, batch.rois, scale, stride)
        batch = batch._replace(rois=rois)
    keys = [(int(i), bool(flip), float(scale)) for i, flip in zip(idx, flips, strict=True)]
    return images, batch, keys
