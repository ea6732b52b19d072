"""Binary cross-entropy with logits and the Region Proposal Network's two-part loss.

The RPN (Faster R-CNN, arXiv 1506.01497, eq. 1) scores every anchor "object or not"
and regresses the positive anchors onto their GT boxes. The paper writes the
classification as a 2-way softmax; torchvision (and this toy) use one logit per anchor
and binary cross-entropy, which is the same model: a 2-way softmax over (z0, z1) depends
only on z1 - z0, and sigmoid(z1 - z0) is its "object" probability. Normalisation is
torchvision's: both terms are divided by the number S of sampled anchors (the paper
divides the box term by the number of anchor locations and weights it by lambda = 10,
roughly the same scale), and smooth L1 has beta = 1/9 (torchvision's RPN).
Derivations: docs/layers/rpn.md.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from minircnn.backend import get_array_module
from minircnn.layers.losses import SmoothL1Cache, smooth_l1_backward, smooth_l1_forward
from minircnn.utils.validate import as_array, check_number, check_scalar_grad

RPN_BETA = 1.0 / 9.0   # torchvision RegionProposalNetwork's smooth L1 beta


# --- binary cross-entropy with logits ------------------------------------------------------
class BCECache(NamedTuple):
    probs: np.ndarray    # (S,) sigmoid(logits)
    targets: np.ndarray  # (S,) 0 or 1 (any value in [0, 1])


def _sigmoid(z):
    """1 / (1 + exp(-z)) without overflow: exp of -|z| only, never of a large positive."""
    xp = get_array_module(z)
    e = xp.exp(-xp.abs(z))                                # in (0, 1]
    return xp.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def bce_with_logits_forward(logits, targets) -> tuple[np.ndarray, BCECache]:
    """Mean binary cross-entropy of sigmoid(logits) against targets.

    loss = 1/S sum_i [max(z_i, 0) - z_i y_i + log(1 + exp(-|z_i|))], the overflow-free
    form of -[y log p + (1 - y) log(1 - p)] with p = sigmoid(z)
    (torch.nn.functional.binary_cross_entropy_with_logits, reduction "mean").

    Args:
        logits: (S,) float, S >= 1.  targets: (S,) in [0, 1].
    Returns:
        loss (0-d array) and a BCECache.
    """
    logits = as_array("logits", logits, op="bce_with_logits")
    targets = as_array("targets", targets, op="bce_with_logits", like=logits)
    if logits.ndim != 1 or logits.shape[0] == 0 or targets.shape != logits.shape:
        raise ValueError(f"bce_with_logits: logits must be (S,) with S >= 1 and targets the "
                         f"same shape, got {tuple(logits.shape)} and {tuple(targets.shape)}")
    if logits.dtype.kind != "f":
        raise TypeError(f"bce_with_logits: logits must be float, got dtype {logits.dtype}")
    xp = get_array_module(logits)
    y = targets.astype(logits.dtype)
    per_anchor = xp.maximum(logits, 0) - logits * y + xp.log1p(xp.exp(-xp.abs(logits)))
    return per_anchor.mean(), BCECache(_sigmoid(logits), y)


def bce_with_logits_backward(dloss, cache: BCECache) -> np.ndarray:
    """dloss (scalar) -> dlogits (S,) = dloss · (sigmoid(z) - y) / S."""
    check_scalar_grad("dloss", dloss, op="bce_with_logits_backward")
    return (cache.probs - cache.targets) * (dloss / cache.probs.shape[0])


# --- the RPN loss ----------------------------------------------------------------------------
class RPNLossCache(NamedTuple):
    bce: BCECache            # over the S sampled anchors
    box: SmoothL1Cache       # over the P positive anchors' (P, 4) deltas
    sampled: np.ndarray      # (S,) indices of the anchors with label >= 0
    positive: np.ndarray     # (P,) indices of the anchors with label 1
    num_anchors: int         # A
    loss_objectness: float   # the two terms, for logging
    loss_box: float


def _check_rpn_inputs(objectness, bbox_deltas, labels, bbox_targets) -> None:
    if objectness.ndim != 1:
        raise ValueError(f"rpn_loss: objectness must be (A,), got {tuple(objectness.shape)}")
    a = objectness.shape[0]
    for name, arr, shape in (("bbox_deltas", bbox_deltas, (a, 4)), ("labels", labels, (a,)),
                             ("bbox_targets", bbox_targets, (a, 4))):
        if tuple(arr.shape) != shape:
            raise ValueError(f"rpn_loss: {name} must have shape {shape}, got {tuple(arr.shape)}")
    for name, arr in (("objectness", objectness), ("bbox_deltas", bbox_deltas)):
        if arr.dtype.kind != "f":
            raise TypeError(f"rpn_loss: {name} must be float, got dtype {arr.dtype}")
    if labels.dtype.kind not in "iu":
        raise TypeError(f"rpn_loss: labels must be integers in {{-1, 0, 1}}, got {labels.dtype}")
    if a and (int(labels.min()) < -1 or int(labels.max()) > 1):
        raise ValueError("rpn_loss: labels must be -1 (ignored), 0 or 1")
    if not bool((labels >= 0).any()):
        raise ValueError("rpn_loss: no anchor is sampled (every label is -1); sample some "
                         "with minircnn.detection.sample_anchors")


def rpn_loss_forward(objectness, bbox_deltas, labels, bbox_targets, *,
                     beta: float = RPN_BETA) -> tuple[np.ndarray, RPNLossCache]:
    """The RPN loss over a minibatch's anchors (torchvision RegionProposalNetwork.compute_loss).

    loss = 1/S sum_{i sampled} BCE(z_i, y_i) + 1/S sum_{i positive} smoothL1_beta(t_i - t*_i)

    Args:
        objectness: (A,) logits of every anchor of the minibatch's images.
        bbox_deltas: (A, 4) predicted (dx, dy, dw, dh).
        labels: (A,) 1 positive, 0 negative, -1 not sampled (no loss).
        bbox_targets: (A, 4) encoded GT of the positives (other rows unused).
        beta: smooth L1 beta (torchvision's 1/9).
    Returns:
        total loss (0-d array) and an RPNLossCache (its two terms as floats).
    """
    objectness, bbox_deltas, labels, bbox_targets = (
        as_array(n, v, op="rpn_loss") for n, v in (("objectness", objectness),
        ("bbox_deltas", bbox_deltas), ("labels", labels), ("bbox_targets", bbox_targets)))
    beta = check_number("beta", beta, op="rpn_loss", low=0.0)
    _check_rpn_inputs(objectness, bbox_deltas, labels, bbox_targets)
    xp = get_array_module(objectness)
    sampled = xp.flatnonzero(labels >= 0)                    # (S,)
    positive = xp.flatnonzero(labels == 1)                   # (P,)
    loss_obj, bce_cache = bce_with_logits_forward(objectness[sampled], labels[sampled])
    loss_box, box_cache = smooth_l1_forward(bbox_deltas[positive],
                                            bbox_targets[positive].astype(bbox_deltas.dtype),
                                            beta=beta, normalizer=sampled.shape[0])
    cache = RPNLossCache(bce_cache, box_cache, sampled, positive, objectness.shape[0],
                         float(loss_obj), float(loss_box))
    return loss_obj + loss_box, cache


def rpn_loss_backward(dloss, cache: RPNLossCache) -> tuple[np.ndarray, np.ndarray]:
    """dloss -> dobjectness (A,), dbbox_deltas (A, 4); zero on anchors without a loss."""
    check_scalar_grad("dloss", dloss, op="rpn_loss_backward")
    dsampled = bce_with_logits_backward(dloss, cache.bce)   # (S,) (p - y) / S
    dpositive = smooth_l1_backward(dloss, cache.box)        # (P, 4) slope / S
    xp = get_array_module(dsampled)
    dobj = xp.zeros(cache.num_anchors, dtype=dsampled.dtype)
    dobj[cache.sampled] = dsampled                          # indices distinct: plain scatter
    ddeltas = xp.zeros((cache.num_anchors, 4), dtype=dpositive.dtype)
    ddeltas[cache.positive] = dpositive
    return dobj, ddeltas


# --- the same loss as loops (the specification) -------------------------------------------------
def _sigmoid_scalar(z: float) -> float:
    """sigmoid(z) for one float, exp of a non-positive number only (no overflow)."""
    import math

    e = math.exp(-abs(z))
    return 1 / (1 + e) if z >= 0 else e / (1 + e)


class RPNLossNaiveCache(NamedTuple):
    objectness: np.ndarray
    bbox_deltas: np.ndarray
    labels: np.ndarray
    bbox_targets: np.ndarray
    beta: float


def rpn_loss_forward_naive(objectness, bbox_deltas, labels, bbox_targets, *,
                           beta: float = RPN_BETA) -> tuple[float, RPNLossNaiveCache]:
    """``rpn_loss_forward`` one anchor at a time, with math.exp / math.log."""
    import math

    num_sampled = sum(1 for y in labels if y >= 0)
    if num_sampled == 0:
        raise ValueError("rpn_loss: no anchor is sampled (every label is -1)")
    loss = 0.0
    for i, y in enumerate(labels):
        if y < 0:
            continue                                         # not sampled: no loss
        p = _sigmoid_scalar(float(objectness[i]))
        loss += -(y * math.log(p) + (1 - y) * math.log(1 - p)) / num_sampled
        if y == 1:
            for j in range(4):
                d = abs(float(bbox_deltas[i, j]) - float(bbox_targets[i, j]))
                loss += (0.5 * d * d / beta if d < beta else d - 0.5 * beta) / num_sampled
    return loss, RPNLossNaiveCache(objectness, bbox_deltas, labels, bbox_targets, float(beta))


def rpn_loss_backward_naive(dloss, cache: RPNLossNaiveCache):
    """``rpn_loss_backward`` one anchor at a time: dz = (p - y)/S, dt = slope/S."""
    import math

    obj, deltas, labels, targets, beta = cache
    num_sampled = sum(1 for y in labels if y >= 0)
    dobj = np.zeros(obj.shape, dtype=obj.dtype)
    ddeltas = np.zeros(deltas.shape, dtype=deltas.dtype)
    for i, y in enumerate(labels):
        if y < 0:
            continue
        dobj[i] = dloss * (_sigmoid_scalar(float(obj[i])) - y) / num_sampled
        if y == 1:
            for j in range(4):
                d = float(deltas[i, j]) - float(targets[i, j])
                slope = d / beta if abs(d) < beta else math.copysign(1.0, d)
                ddeltas[i, j] = dloss * slope / num_sampled
    return dobj, ddeltas
