"""Softmax cross-entropy, smooth L1, and the Fast R-CNN multi-task loss.

Each forward returns a scalar loss and a cache; each backward takes ``dloss`` (the
upstream gradient of the scalar, 1.0 when the loss is the objective) and the cache.
Derivations: docs/layers/losses.md.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from minircnn.backend import get_array_module
from minircnn.utils.validate import (
    as_array,
    check_array,
    check_number,
    check_positive,
    check_scalar_grad,
)


def _check_finite(name: str, a) -> None:
    xp = get_array_module(a)
    if not bool(xp.isfinite(a).all()):
        raise ValueError(f"{name} contains NaN or inf values (shape {tuple(a.shape)})")


def _check_labels(labels, num_rows: int, num_classes: int, name: str = "labels") -> None:
    if labels.ndim != 1 or labels.shape[0] != num_rows:
        raise ValueError(f"{name} must have shape ({num_rows},), got {tuple(labels.shape)}")
    if labels.dtype.kind not in "iu":
        raise TypeError(f"{name} must be an integer array, got dtype {labels.dtype}")
    if num_rows and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(f"{name} must lie in 0..{num_classes - 1}, got values in "
                         f"{int(labels.min())}..{int(labels.max())}")


# --- softmax cross-entropy -------------------------------------------------------------
class CrossEntropyCache(NamedTuple):
    probs: np.ndarray   # (R, C) softmax probabilities
    labels: np.ndarray  # (R,) integer targets


def softmax_cross_entropy_forward(logits: np.ndarray,
                                  labels: np.ndarray) -> tuple[np.ndarray, CrossEntropyCache]:
    """Mean softmax cross-entropy over rows (torch.nn.functional.cross_entropy).

    loss = -1/R sum_i log softmax(logits_i)[labels_i], with the log-sum-exp computed
    after subtracting each row's max, so large logits do not overflow.

    Args:
        logits: (R, C) float scores, R >= 1.
        labels: (R,) integers in 0..C-1.
    Returns:
        loss (a 0-d array) and a CrossEntropyCache.
    """
    logits = as_array("logits", logits, op="softmax_cross_entropy")
    labels = as_array("labels", labels, op="softmax_cross_entropy", like=logits)
    if logits.ndim != 2 or logits.shape[0] == 0:
        raise ValueError(f"logits must be 2-D (R, C) with R >= 1, got {tuple(logits.shape)}")
    if logits.dtype.kind != "f":
        raise TypeError(f"logits must be a float array, got dtype {logits.dtype}")
    _check_finite("logits", logits)
    _check_labels(labels, logits.shape[0], logits.shape[1])
    xp = get_array_module(logits)
    rows = xp.arange(logits.shape[0])
    shifted = logits - logits.max(axis=1, keepdims=True)  # (R, C), max of each row is 0
    exp = xp.exp(shifted)  # (R, C), in (0, 1]
    sum_exp = exp.sum(axis=1, keepdims=True)  # (R, 1), >= 1
    log_probs = shifted - xp.log(sum_exp)  # (R, C) log softmax
    loss = -log_probs[rows, labels].mean()
    return loss, CrossEntropyCache(exp / sum_exp, labels)


def softmax_cross_entropy_backward(dloss, cache: CrossEntropyCache) -> np.ndarray:
    """dloss (scalar) -> dlogits (R, C) = dloss · (softmax − onehot(labels)) / R."""
    check_scalar_grad("dloss", dloss, op="softmax_cross_entropy_backward")
    xp = get_array_module(cache.probs)
    num_rows = cache.probs.shape[0]
    dlogits = cache.probs.copy()  # (R, C)
    dlogits[xp.arange(num_rows), cache.labels] -= 1  # p − onehot (one entry per row)
    dlogits *= dloss / num_rows  # mean over rows: dL/dz = dloss·(p − y)/R
    return dlogits


# --- smooth L1 -------------------------------------------------------------------------
class SmoothL1Cache(NamedTuple):
    diff: np.ndarray  # pred - target, any shape
    beta: float
    normalizer: float


def smooth_l1_forward(pred: np.ndarray, target: np.ndarray, *, beta: float = 1.0,
                      normalizer: float = 1.0) -> tuple[np.ndarray, SmoothL1Cache]:
    """Summed smooth L1 divided by ``normalizer``.

    With d = pred - target, each element costs 0.5 d² / beta if |d| < beta, else
    |d| - 0.5 beta (torch.nn.functional.smooth_l1_loss(reduction="sum") / normalizer;
    Fast R-CNN eq. 3 is beta = 1). beta = 0 is exactly L1, |d|.

    Args:
        pred, target: arrays of the same shape (any, may be empty).
        beta: >= 0, where the quadratic part turns linear.
        normalizer: > 0, the sum is divided by it.
    Returns:
        loss (a 0-d array) and a SmoothL1Cache.
    """
    pred = check_array("pred", pred, op="smooth_l1", kinds="f")
    target = check_array("target", target, op="smooth_l1", kinds="fiu", like=pred)
    beta = check_number("beta", beta, op="smooth_l1", low=0.0)
    normalizer = check_positive("normalizer", normalizer, op="smooth_l1")
    if pred.shape != target.shape:
        raise ValueError(f"smooth_l1: pred {tuple(pred.shape)} and target "
                         f"{tuple(target.shape)} must have the same shape")
    if beta < 0 or normalizer <= 0:
        raise ValueError(f"smooth_l1: need beta >= 0 and normalizer > 0, got beta={beta}, "
                         f"normalizer={normalizer}")
    xp = get_array_module(pred)
    diff = pred - target
    abs_diff = xp.abs(diff)
    if beta == 0:
        per_element = abs_diff  # L1, no division by beta
    else:
        quadratic = 0.5 * diff * diff / beta
        per_element = xp.where(abs_diff < beta, quadratic, abs_diff - 0.5 * beta)
    loss = per_element.sum() / normalizer
    return loss, SmoothL1Cache(diff, float(beta), float(normalizer))


def smooth_l1_backward(dloss, cache: SmoothL1Cache) -> np.ndarray:
    """dloss (scalar) -> dpred (shape of pred); d loss / d target is -dpred.

    Per element: d / beta inside |d| < beta, sign(d) outside (sign(0) = 0 for L1).
    """
    check_scalar_grad("dloss", dloss, op="smooth_l1_backward")
    xp = get_array_module(cache.diff)
    d, beta = cache.diff, cache.beta
    if beta == 0:
        slope = xp.sign(d)  # d|d|/dd = sign(d), 0 at d = 0
    else:
        slope = xp.where(xp.abs(d) < beta, d / beta, xp.sign(d))  # d(½d²/β)/dd = d/β
    dpred = slope * (dloss / cache.normalizer)  # the sum was divided by the normalizer
    return dpred


# --- Fast R-CNN multi-task loss --------------------------------------------------------
class FastRCNNLossCache(NamedTuple):
    cls: CrossEntropyCache  # classification part
    box: SmoothL1Cache      # box part, over the (F, 4) foreground deltas
    fg_rows: np.ndarray     # (F,) indices of foreground RoIs
    fg_cols: np.ndarray     # (F, 4) their class's columns 4c:4c+4 in bbox_deltas
    bbox_shape: tuple       # (R, 4(K+1))
    loss_cls: float         # the terms, for logging
    loss_box: float
    accuracy: float         # fraction of RoIs whose argmax score is their label


def _check_fast_rcnn_inputs(cls_scores, bbox_deltas, labels, bbox_targets) -> None:
    if cls_scores.ndim != 2 or cls_scores.shape[0] == 0:
        raise ValueError(f"cls_scores must be 2-D (R, K+1) with R >= 1, got "
                         f"{tuple(cls_scores.shape)}")
    r, k1 = cls_scores.shape
    if bbox_deltas.shape != (r, 4 * k1):
        raise ValueError(f"bbox_deltas must have shape (R, 4*(K+1)) = ({r}, {4 * k1}), got "
                         f"{tuple(bbox_deltas.shape)}")
    if bbox_targets.shape != (r, 4):
        raise ValueError(f"bbox_targets must have shape ({r}, 4), got {tuple(bbox_targets.shape)}")
    _check_labels(labels, r, k1)
    for name, a in (("cls_scores", cls_scores), ("bbox_deltas", bbox_deltas),
                    ("bbox_targets", bbox_targets)):
        if a.dtype.kind != "f":
            raise TypeError(f"{name} must be a float array, got dtype {a.dtype}")
        _check_finite(name, a)


def fast_rcnn_loss_forward(cls_scores: np.ndarray, bbox_deltas: np.ndarray,
                           labels: np.ndarray, bbox_targets: np.ndarray, *,
                           beta: float = 1.0) -> tuple[np.ndarray, FastRCNNLossCache]:
    """Fast R-CNN multi-task loss (paper eq. 1), normalised as detectron2's FastRCNNOutputLayers.

    loss = CE(cls_scores, labels) averaged over all R RoIs
         + sum over foreground RoIs i (labels_i = c >= 1) of
           smoothL1(bbox_deltas[i, 4c:4c+4] - bbox_targets[i]), divided by R.
    Background RoIs have no box loss, and the background columns 0:4 never get a
    gradient (py-faster-rcnn, torchvision and detectron2 all do the same).

    Args:
        cls_scores: (R, K+1) logits, column 0 is background.
        bbox_deltas: (R, 4(K+1)) predicted deltas, class c in columns 4c:4c+4.
        labels: (R,) integers in 0..K.
        bbox_targets: (R, 4) encoded targets for each RoI's own class (rows of
            background RoIs are ignored).
        beta: smooth L1 beta (1.0 in the Fast R-CNN paper).
    Returns:
        total loss (a 0-d array) and a FastRCNNLossCache, whose ``loss_cls``,
        ``loss_box`` and ``accuracy`` are floats for logging.
    """
    cls_scores, bbox_deltas, labels, bbox_targets = (
        as_array(name, a, op="fast_rcnn_loss") for name, a in
        (("cls_scores", cls_scores), ("bbox_deltas", bbox_deltas), ("labels", labels),
         ("bbox_targets", bbox_targets)))
    check_number("beta", beta, op="fast_rcnn_loss", low=0.0)
    _check_fast_rcnn_inputs(cls_scores, bbox_deltas, labels, bbox_targets)
    xp = get_array_module(cls_scores)
    num_rois = cls_scores.shape[0]
    loss_cls, cls_cache = softmax_cross_entropy_forward(cls_scores, labels)
    fg_rows = xp.nonzero(labels > 0)[0]  # (F,)
    fg_cols = 4 * labels[fg_rows][:, None] + xp.arange(4)  # (F, 1) + (4,) -> (F, 4)
    fg_pred = bbox_deltas[fg_rows[:, None], fg_cols]  # (F, 4): each RoI's own class
    loss_box, box_cache = smooth_l1_forward(fg_pred, bbox_targets[fg_rows], beta=beta,
                                            normalizer=num_rois)
    accuracy = float((cls_scores.argmax(axis=1) == labels).mean())
    cache = FastRCNNLossCache(cls_cache, box_cache, fg_rows, fg_cols, bbox_deltas.shape,
                              float(loss_cls), float(loss_box), accuracy)
    return loss_cls + loss_box, cache


def fast_rcnn_loss_backward(dloss, cache: FastRCNNLossCache) -> tuple[np.ndarray, np.ndarray]:
    """dloss (scalar) -> dcls (R, K+1), dbbox (R, 4(K+1)) (zero outside the fg columns)."""
    check_scalar_grad("dloss", dloss, op="fast_rcnn_loss_backward")
    dcls = softmax_cross_entropy_backward(dloss, cache.cls)  # (R, K+1)
    dfg = smooth_l1_backward(dloss, cache.box)  # (F, 4)
    xp = get_array_module(dcls)
    dbbox = xp.zeros(cache.bbox_shape, dtype=dfg.dtype)  # (R, 4(K+1))
    # Each (row, column) pair appears once, so plain assignment scatters (no add.at needed).
    dbbox[cache.fg_rows[:, None], cache.fg_cols] = dfg  # total = loss_cls + loss_box
    return dcls, dbbox
