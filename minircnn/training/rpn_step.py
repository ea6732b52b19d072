"""Training Faster R-CNN: one iteration of approximate joint or 4-step alternating training.

Faster R-CNN (arXiv 1506.01497, section 3.2) trains the RPN and Fast R-CNN to share
the backbone in one of two ways, both here (``TrainConfig.rpn_training``):

- **approximate joint** ("joint", torchvision's and this toy's default): every iteration
  runs the backbone once, the RPN loss and the Fast R-CNN loss are summed, and the
  backbone gets both gradients. The proposals are treated as constants: no gradient
  flows through their coordinates into the RPN (which is what makes it approximate).
- **4-step alternating** ("alternating", the paper's main method): the run's epochs are
  cut into four stages: (1) the RPN on its own copy of the pretrained backbone; (2) Fast
  R-CNN on the pretrained backbone with stage 1's proposals; (3) the RPN's own layers
  only, on stage 2's backbone, now fixed and shared; (4) Fast R-CNN's own layers only,
  with stage 3's proposals. The learning-rate schedule runs over the whole run.

Every iteration takes N images (flipped at random), labels and samples their anchors
(256 per image, up to half positive) and, where Fast R-CNN trains, samples 128 RoIs
from the RPN's proposals plus the GT boxes (Fast R-CNN's section 2.3 sampling), with
one change: background RoIs have IoU in [0, 0.5), not [0.1, 0.5). The 0.1 floor suits
selective search's boxes, spread over the image; the RPN's top proposals crowd around
the objects, and at test time its low-scoring ones lie on plain background, which the
head must then have seen (py-faster-rcnn's faster_rcnn_end2end.yml sets BG_THRESH_LO 0;
torchvision's RoI sampler has no floor either).
"""

from __future__ import annotations

import weakref
from typing import NamedTuple

import numpy as np

from minircnn.backend import asnumpy, get_array_module
from minircnn.detection.anchors import AnchorLabelCache, anchor_targets
from minircnn.detection.sampling import hierarchical_batch
from minircnn.layers.losses import fast_rcnn_loss_backward, fast_rcnn_loss_forward
from minircnn.layers.rpn_loss import rpn_loss_backward, rpn_loss_forward
from minircnn.training.data_parallel import ImageWorkers, seed_slot
from minircnn.training.step import flip_horizontal, weighted

RPN_BG_IOU_LO = 0.0   # background RoIs from IoU 0 (module docstring)
STAGES = ("rpn", "detector", "rpn_head", "detector_head")   # the paper's steps 1..4
_TRAINABLE_AT_START: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_LABELS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()   # model -> its label cache
_STAGE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()    # model -> its stage set


def rpn_minibatch(config, items, idx, rng):
    """Images (N, 3, H, W), their targets [{boxes, labels}], each flipped w.p. 1/2, and
    a key per image, (index, flipped, scale 1.0), as ``sample_minibatch``'s (the key of
    the frozen blocks' output: training/frozen_cache.py)."""
    images, targets = [], []
    flips = rng.random(len(idx)) < 0.5 if config.flip else np.zeros(len(idx), bool)
    for i, flip in zip(idx, flips, strict=True):
        image, boxes = items[i]["image"], items[i]["boxes"]
        if flip:
            image, boxes, _ = flip_horizontal(image, boxes, np.zeros((0, 4), np.float32))
        images.append(image)
        targets.append({"boxes": boxes, "labels": items[i]["labels"]})
    keys = [(int(i), bool(flip), 1.0) for i, flip in zip(idx, flips, strict=True)]
    return np.stack(images), targets, keys


def stage_of(config, epoch: int) -> str:
    """The alternating stage an epoch belongs to ("joint" for joint training)."""
    if config.rpn_training == "joint":
        return "joint"
    return STAGES[min(3, epoch * 4 // config.epochs)]


# --- the two losses --------------------------------------------------------------------------
def rpn_head_loss(model, features, targets, config, rng):
    """RPN forward + loss on ``features``: (loss cache, objectness, deltas)."""
    objectness, deltas = model.rpn.forward(features)          # (N, A), (N, A, 4)
    anchors = model.rpn.anchors(features)                     # (A, 4)
    xp = get_array_module(features)
    labels_of = _LABELS.get(model)                             # IoU once per image
    if labels_of is None or (labels_of.fg_iou, labels_of.bg_iou) != (config.rpn_fg_iou,
                                                                     config.rpn_bg_iou):
        labels_of = _LABELS[model] = AnchorLabelCache(fg_iou=config.rpn_fg_iou,
                                                      bg_iou=config.rpn_bg_iou)
    parts = []
    for t in targets:
        gt = xp.asarray(t["boxes"])
        parts.append(anchor_targets(anchors, gt, rng=rng, labelled=labels_of(anchors, gt),
                                    batch_size=config.rpn_batch_size,
                                    positive_fraction=config.rpn_positive_fraction))
    labels = xp.concatenate([p.labels for p in parts])        # (N*A,)
    bbox_targets = xp.concatenate([p.bbox_targets for p in parts])   # (N*A, 4)
    _, cache = rpn_loss_forward(objectness.reshape(-1), deltas.reshape(-1, 4), labels,
                                bbox_targets)
    return cache, objectness, deltas


def rpn_head_backward(model, cache, shape, config, weight: float = 1.0):
    """The RPN's backward; its box term weighted by ``config.rpn_box_weight`` (lambda),
    the whole loss by ``weight`` (an image's share of a minibatch: joint_slot)."""
    dloss = config.rpn_loss_weight * weight
    dobj, ddeltas = rpn_loss_backward(dloss, cache)            # (N*A,), (N*A, 4)
    n, a = shape
    ddeltas = weighted(ddeltas, config.rpn_box_weight)       # L = L_cls + lambda L_box
    return model.rpn.backward(dobj.reshape(n, a), ddeltas.reshape(n, a, 4))


def detector_head_loss(model, features, proposals, targets, config, rng, rois_per_batch=None):
    """RoIs sampled from the proposals (+ GT), the head's forward and loss: its cache.
    ``rois_per_batch``: R of these images (default ``config.rois_per_batch``)."""
    batch = hierarchical_batch(targets, [asnumpy(p) for p in proposals],
                               rois_per_batch=rois_per_batch or config.rois_per_batch, rng=rng,
                               fg_fraction=config.fg_fraction, fg_iou=config.fg_iou,
                               bg_iou=(RPN_BG_IOU_LO, config.bg_iou[1]))
    xp = get_array_module(features)
    cls, bbox = model.detector.forward_head(features, xp.asarray(batch.rois))
    _, cache = fast_rcnn_loss_forward(cls, bbox, xp.asarray(batch.labels),
                                      xp.asarray(batch.bbox_targets))
    return cache


def _stats(rpn_cache=None, det_cache=None) -> dict:
    rpn = (rpn_cache.loss_objectness, rpn_cache.loss_box) if rpn_cache else (0.0, 0.0)
    det = (det_cache.loss_cls, det_cache.loss_box, det_cache.accuracy) if det_cache \
        else (0.0, 0.0, 0.0)
    return {"loss": sum(rpn) + det[0] + det[1], "loss_cls": det[0], "loss_box": det[1],
            "accuracy": det[2], "loss_rpn_objectness": rpn[0], "loss_rpn_box": rpn[1]}


# --- one iteration of each kind -----------------------------------------------------------------
def joint_step(model, images, targets, config, rng, frozen=None, weight: float = 1.0,
               rois_per_batch: int | None = None) -> dict:
    """Approximate joint training: one backbone pass, the two losses summed. ``frozen``:
    the backbone's frozen blocks' output on ``images``, kept from an earlier pass.
    ``weight`` scales both losses' gradients and ``rois_per_batch`` is R of these images
    (an image's share of a minibatch: joint_slot)."""
    if frozen is None:
        features = model.backbone.forward(images)             # (N, C, h, w)
    else:
        features = model.backbone.forward_trainable(frozen)   # the same, from blocks 3-4
    rpn_cache, objectness, deltas = rpn_head_loss(model, features, targets, config, rng)
    proposals = model.rpn.proposals(features, images.shape[2:], objectness, deltas)
    det_cache = detector_head_loss(model, features, proposals, targets, config, rng,
                                   rois_per_batch)
    dcls, dbbox = fast_rcnn_loss_backward(weight, det_cache)
    dfeatures = model.detector.backward_head(dcls, weighted(dbbox, config.box_loss_weight))
    dfeatures += rpn_head_backward(model, rpn_cache, objectness.shape,
                                   config, weight)    # both heads read the features
    model.backbone.backward(dfeatures)
    return _stats(rpn_cache, det_cache)


def rpn_stage_step(model, images, targets, config, rng, *, backbone, train_backbone) -> dict:
    """Stages 1 and 3: the RPN loss alone, on ``backbone``'s features."""
    features = backbone.forward(images)
    rpn_cache, objectness, _ = rpn_head_loss(model, features, targets, config, rng)
    dfeatures = rpn_head_backward(model, rpn_cache, objectness.shape, config)
    if train_backbone:
        backbone.backward(dfeatures)
    return _stats(rpn_cache=rpn_cache)


def detector_stage_step(model, images, targets, config, rng, *, train_backbone) -> dict:
    """Stages 2 and 4: Fast R-CNN on the current RPN's proposals (the RPN is not trained)."""
    proposals = model.propose(images)                         # with the RPN's own backbone
    features = model.backbone.forward(images)
    det_cache = detector_head_loss(model, features, proposals, targets, config, rng)
    dcls, dbbox = fast_rcnn_loss_backward(1.0, det_cache)
    dfeatures = model.detector.backward_head(dcls, weighted(dbbox, config.box_loss_weight))
    if train_backbone:
        model.backbone.backward(dfeatures)
    return _stats(det_cache=det_cache)


# --- what each stage trains ----------------------------------------------------------------------
def set_stage(model, stage: str) -> None:
    """Freeze every parameter the stage does not train (those frozen from the start stay
    frozen); at stage 3 the RPN's own backbone becomes a copy of the shared one."""
    params = model.parameters()
    start = _TRAINABLE_AT_START.setdefault(model, [p.requires_grad for p in params])
    trains = {"joint": (model,), "rpn": (model.rpn, model.rpn_backbone),
              "detector": (model.detector,), "rpn_head": (model.rpn,),
              "detector_head": tuple(m for name, m in model.detector.named_children()
                                     if name != "backbone")}[stage]
    trained = {id(p) for m in trains if m is not None for p in m.parameters()}
    for p, was in zip(params, start, strict=True):
        p.requires_grad = was and id(p) in trained
    if stage in ("rpn_head", "detector_head") and model.rpn_backbone is not None:
        model.rpn_backbone.load_state_dict(model.backbone.state_dict())   # now shared
    _STAGE[model] = stage


def rpn_train_step(model, optimizer, images, targets, config, rng, epoch: int, *,
                   frozen=None) -> dict:
    """One SGD iteration of the run's RPN training at ``epoch`` (see the module docstring).

    ``frozen``: the output of the backbone's frozen blocks on ``images``
    (training/frozen_cache.py), for joint training; the forward pass starts from it.

    Raises:
        FloatingPointError: a loss is not finite (the weights are left as they were).
    """
    stage = stage_of(config, epoch)
    if _STAGE.get(model) != stage:       # set_stage walks every parameter: at a new stage only
        set_stage(model, stage)
    optimizer.zero_grad()
    with np.errstate(over="ignore", invalid="ignore"):   # divergence -> the clear error below
        if stage == "joint":
            stats = joint_step(model, images, targets, config, rng, frozen)
        elif stage in ("rpn", "rpn_head"):
            backbone = model.rpn_backbone if stage == "rpn" else model.backbone
            stats = rpn_stage_step(model, images, targets, config, rng, backbone=backbone,
                                   train_backbone=stage == "rpn")
        else:
            stats = detector_stage_step(model, images, targets, config, rng,
                                        train_backbone=stage == "detector")
        if not np.isfinite(stats["loss"]):
            raise FloatingPointError(f"the loss is {stats['loss']}")
        optimizer.step()
    return stats


# --- joint training, one image per slot (training/data_parallel.py) -------------------------
class JointJob(NamedTuple):
    """One image's share of a joint-training minibatch."""

    images: np.ndarray            # (1, 3, H, W) the image
    frozen: np.ndarray | None     # (1, C, h, w) its frozen blocks' output, or None
    target: dict                  # its {boxes, labels}
    weight: float                 # 1 / N: its share of the minibatch's losses
    rois: int                     # R / N: the RoIs it samples (the minibatch's R in all)
    seed: int                     # its anchor and RoI sampling, its dropout masks


def joint_slot(model, job: JointJob, *, config) -> dict:
    """``joint_step`` on one image with its losses weighted 1 / N: the RPN's averages its
    own 256 sampled anchors, Fast R-CNN's its own RoIs, so the minibatch's loss is the
    mean of its images' (torchvision's and the batched step's whenever every image fills
    its 256 anchors and its R / N RoIs, as the shapes' images do)."""
    rng = seed_slot(model, job.seed)
    with np.errstate(over="ignore", invalid="ignore"):   # divergence -> the caller's error
        return joint_step(model, job.images, [job.target], config, rng, job.frozen,
                          weight=job.weight, rois_per_batch=job.rois)


def parallel_rpn_step(workers: ImageWorkers, model, optimizer, images, targets, config, *,
                      seeds, frozen=None) -> dict:
    """``rpn_train_step`` of joint training, one image per slot (``workers``, built
    with ``joint_slot``); ``seeds``: one per image. Returns the mean of the images' stats.

    Raises:
        FloatingPointError: a loss is not finite (the weights are left as they were).
    """
    optimizer.zero_grad()
    n = len(images)
    if config.rois_per_batch % n:
        raise ValueError(f"rois_per_batch ({config.rois_per_batch}) must be divisible by "
                         f"the images per minibatch ({n})")
    jobs = [JointJob(images[i:i + 1], None if frozen is None else frozen[i:i + 1],
                     targets[i], 1.0 / n, config.rois_per_batch // n, int(seed))
            for i, seed in enumerate(seeds)]
    with np.errstate(over="ignore", invalid="ignore"):  # divergence -> the clear error below
        stats = workers.run(jobs)
        total = {k: sum(s[k] for s in stats) / n for k in stats[0]}   # the images' mean
        if not np.isfinite(total["loss"]):
            raise FloatingPointError(f"the loss is {total['loss']}")
        optimizer.step()
    return total
