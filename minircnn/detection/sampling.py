"""RoI sampling for Fast R-CNN training: which proposals make a minibatch, and their targets.

Fast R-CNN (section 2.3, "Mini-batch sampling") trains on minibatches of R = 128 RoIs
taken *hierarchically*: N = 2 images, R/N = 64 RoIs from each, so the backbone runs on
only two images and the RoIs share its computation. Per image:

- the ground-truth boxes are added to the proposals (py-faster-rcnn's roidb does this);
- foreground: candidates with IoU >= 0.5 with some GT box, at most 25% of the RoIs,
  labelled with that GT's class and given box regression targets towards it;
- background: candidates with max IoU in [0.1, 0.5), label 0 (the 0.1 floor is a
  heuristic hard-example mining, as the paper says);
- sampling is uniform without replacement (``rng.choice(..., replace=False)``).

When there are fewer candidates than wanted the image contributes fewer RoIs, exactly
as py-faster-rcnn's ``roi_data_layer/minibatch.py`` ``_sample_rois`` (the minibatch is
then smaller than R; detectron2 does the same). So ``len(rois)`` may be < R.

``region_wise_batch`` is the alternative the paper argues against (R-CNN / SPP-net
style): the R RoIs come from many different images, so the backbone must run on all of
them; lesson 05 compares the two.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from minircnn.backend import asnumpy
from minircnn.detection.boxes import _pairwise_iou, check_boxes, encode_boxes
from minircnn.utils.validate import check_array, check_count, check_number, check_rng


def sample_rois(proposals, gt_boxes, gt_labels, *, rois_per_image: int = 64,
                fg_fraction: float = 0.25, fg_iou: float = 0.5,
                bg_iou: tuple[float, float] = (0.1, 0.5), rng: np.random.Generator):
    """Sample one image's RoIs and compute their labels and box regression targets.

    Args:
        proposals: (P, 4) candidate boxes (x1, y1, x2, y2); boxes with zero width or
            height are dropped.
        gt_boxes: (G, 4) ground-truth boxes.  gt_labels: (G,) their classes in 1..K.
        rois_per_image: how many RoIs to return at most.
        fg_fraction: at most ``round(fg_fraction * rois_per_image)`` foreground RoIs.
        fg_iou: a candidate is foreground when its max IoU with the GT is >= this.
        bg_iou: (lo, hi): background when lo <= max IoU < hi.
        rng: np.random.Generator used for the sampling.
    Returns:
        rois (R, 4) float32, foreground first; labels (R,) int64 (0 = background);
        bbox_targets (R, 4) float32: ``encode_boxes(rois, matched_gt)`` for the
        foreground rows, zeros for background. R <= rois_per_image.
    """
    _check_sampling("sample_rois", rois_per_image, fg_fraction, fg_iou, bg_iou, rng)
    proposals = _as_boxes(proposals, "proposals")
    gt_boxes = _as_boxes(gt_boxes, "gt_boxes")
    gt_labels = _as_labels(gt_labels, len(gt_boxes), "gt_labels")
    candidates, max_iou, matched = _match(proposals, gt_boxes)
    fg_inds, bg_inds = _pick(max_iou, rois_per_image, fg_fraction=fg_fraction, fg_iou=fg_iou,
                             bg_iou=bg_iou, rng=rng)
    return _targets(candidates, matched, gt_boxes, gt_labels, fg_inds, bg_inds)


class RoIBatch(NamedTuple):
    """A training minibatch of RoIs over several images."""
    rois: np.ndarray          # (R, 5) float32 [batch_index, x1, y1, x2, y2]
    labels: np.ndarray        # (R,) int64 in 0..K
    bbox_targets: np.ndarray  # (R, 4) float32, zeros for background rows


def hierarchical_batch(targets: Sequence[dict], proposals: Sequence, *,
                       rois_per_batch: int = 128, rng: np.random.Generator,
                       **kwargs) -> RoIBatch:
    """Fast R-CNN's hierarchical sampling: R/N RoIs from each of the N images.

    Args:
        targets: N dicts with ``boxes`` (G, 4) and ``labels`` (G,) (dataset samples).
        proposals: N arrays (P_i, 4), one per image.
        rois_per_batch: R in total (must be divisible by N).
        rng: generator for the sampling.
        **kwargs: fg_fraction, fg_iou, bg_iou as ``sample_rois``.
    Returns:
        RoIBatch whose ``rois[:, 0]`` is the image's index in ``targets``.
    """
    n = len(targets)
    check_count("rois_per_batch", rois_per_batch, op="hierarchical_batch")
    if n == 0 or len(proposals) != n or rois_per_batch % n:
        raise ValueError(f"hierarchical_batch: need N >= 1 images with one proposal array "
                         f"each and rois_per_batch divisible by N; got {n} targets, "
                         f"{len(proposals)} proposal arrays, rois_per_batch={rois_per_batch}")
    parts = []
    for i, (t, p) in enumerate(zip(targets, proposals, strict=True)):
        _check_target(t, i, "hierarchical_batch")
        rois, labels, bbox_targets = sample_rois(p, t["boxes"], t["labels"],
                                                 rois_per_image=rois_per_batch // n,
                                                 rng=rng, **kwargs)
        parts.append((_with_index(rois, i), labels, bbox_targets))
    return RoIBatch(*(np.concatenate(arrays, axis=0) for arrays in zip(*parts, strict=True)))


def region_wise_batch(targets: Sequence[dict], proposals: Sequence, *,
                      rois_per_batch: int = 128, fg_fraction: float = 0.25,
                      fg_iou: float = 0.5, bg_iou: tuple[float, float] = (0.1, 0.5),
                      rng: np.random.Generator) -> RoIBatch:
    """Region-wise sampling (R-CNN / SPP-net): R RoIs drawn from the pool of all images.

    All candidates of all M images are labelled, then the foreground (25%) and the
    background are sampled uniformly from that pool, so the RoIs come from many
    images and the backbone must run on each of them (the cost the paper avoids).

    Returns:
        RoIBatch whose ``rois[:, 0]`` indexes ``targets``.
    """
    if len(targets) == 0 or len(proposals) != len(targets):
        raise ValueError(f"region_wise_batch: need one proposal array per image, got "
                         f"{len(targets)} targets and {len(proposals)} proposal arrays")
    _check_sampling("region_wise_batch", rois_per_batch, fg_fraction, fg_iou, bg_iou, rng)
    for i, t in enumerate(targets):
        _check_target(t, i, "region_wise_batch")
    matches = [_match(_as_boxes(p, "proposals"), _as_boxes(t["boxes"], "gt_boxes"))
               for t, p in zip(targets, proposals, strict=True)]
    image_of = np.concatenate([np.full(len(m[0]), i) for i, m in enumerate(matches)])
    max_iou = np.concatenate([m[1] for m in matches])               # (sum P_i,)
    fg_inds, bg_inds = _pick(max_iou, rois_per_batch, fg_fraction=fg_fraction,
                             fg_iou=fg_iou, bg_iou=bg_iou, rng=rng)
    offsets = np.cumsum([0] + [len(m[0]) for m in matches])          # pool index -> image
    parts = []
    for i, (t, (cands, _, matched)) in enumerate(zip(targets, matches, strict=True)):
        fg = fg_inds[image_of[fg_inds] == i] - offsets[i]            # this image's picks
        bg = bg_inds[image_of[bg_inds] == i] - offsets[i]
        gt = _as_boxes(t["boxes"], f"targets[{i}]['boxes']")
        labels = _as_labels(t["labels"], len(gt), f"targets[{i}]['labels']")
        rois, lab, tgt = _targets(cands, matched, gt, labels, fg, bg)
        parts.append((_with_index(rois, i), lab, tgt))
    rois, labels, bbox_targets = (np.concatenate(a, axis=0) for a in zip(*parts, strict=True))
    order = np.argsort(labels == 0, kind="stable")                    # foreground rows first
    return RoIBatch(rois[order], labels[order], bbox_targets[order])


# --- shared steps ------------------------------------------------------------------------
def _check_target(target, i: int, op: str) -> None:
    """targets[i] must be a dict (a dataset sample) with ``boxes`` and ``labels``."""
    if not hasattr(target, "keys") or not {"boxes", "labels"} <= set(target.keys()):
        found = sorted(map(str, target.keys())) if hasattr(target, "keys") else \
            type(target).__name__
        raise ValueError(f"{op}: targets[{i}] must be a dict with 'boxes' (G, 4) and "
                         f"'labels' (G,), got {found}")


def _as_boxes(boxes, name: str) -> np.ndarray:
    return np.asarray(asnumpy(check_boxes(boxes, name)), dtype=np.float64)


def _as_labels(labels, count: int, name: str) -> np.ndarray:
    """(G,) int64 class labels >= 1 (0 is the background, never a GT class)."""
    labels = check_array(name, labels, kinds="iu", shape=(count,))
    labels = np.asarray(asnumpy(labels)).astype(np.int64)
    if bool((labels < 1).any()):
        raise ValueError(f"{name} must be object classes >= 1 (0 is the background), "
                         f"got {labels[labels < 1][0]}")
    return labels


def _check_sampling(op: str, num, fg_fraction, fg_iou, bg_iou, rng) -> None:
    check_count("rois_per_image" if op == "sample_rois" else "rois_per_batch", num, op=op)
    check_number("fg_fraction", fg_fraction, op=op, low=0.0, high=1.0)
    check_number("fg_iou", fg_iou, op=op, low=0.0, high=1.0)
    if isinstance(bg_iou, (str, bytes)) or not hasattr(bg_iou, "__len__") or len(bg_iou) != 2:
        raise ValueError(f"{op}: bg_iou must be a pair (lo, hi), got {bg_iou!r}")
    lo, hi = (check_number("bg_iou", v, op=op, low=0.0, high=1.0) for v in bg_iou)
    if not lo <= hi <= fg_iou:      # background below the foreground threshold
        raise ValueError(f"{op}: bg_iou must be (lo, hi) with lo <= hi <= fg_iou={fg_iou}, "
                         f"got {bg_iou!r}")
    check_rng("rng", rng, op=op)


def _match(proposals: np.ndarray, gt_boxes: np.ndarray):
    """Candidates = valid proposals + GT boxes; each one's max IoU and best GT index.
    Both arrays come from ``_as_boxes`` (checked), so box_iou's checks are skipped."""
    keep = (proposals[:, 2] > proposals[:, 0]) & (proposals[:, 3] > proposals[:, 1])
    candidates = np.concatenate([proposals[keep], gt_boxes], axis=0)  # (P' + G, 4)
    if gt_boxes.shape[0] == 0:  # an image without objects: everything is IoU 0
        return candidates, np.zeros(len(candidates)), np.zeros(len(candidates), np.int64)
    ious = _pairwise_iou(candidates, gt_boxes)                         # (P' + G, G)
    return candidates, ious.max(axis=1), ious.argmax(axis=1)


def _pick(max_iou: np.ndarray, num: int, *, fg_fraction: float, fg_iou: float,
          bg_iou: tuple[float, float], rng: np.random.Generator):
    """Indices of the sampled foreground and background candidates (no replacement);
    the settings were checked where they entered (``_check_sampling``)."""
    lo, hi = bg_iou
    fg_inds = np.flatnonzero(max_iou >= fg_iou)
    bg_inds = np.flatnonzero((max_iou >= lo) & (max_iou < hi))
    num_fg = min(int(np.round(fg_fraction * num)), fg_inds.size)
    fg_inds = rng.choice(fg_inds, size=num_fg, replace=False)
    num_bg = min(num - num_fg, bg_inds.size)
    bg_inds = rng.choice(bg_inds, size=num_bg, replace=False)
    return fg_inds.astype(np.int64), bg_inds.astype(np.int64)


def _targets(candidates, matched, gt_boxes, gt_labels, fg_inds, bg_inds):
    """rois (R, 4), labels (R,), bbox_targets (R, 4) for the picked candidates."""
    rois = candidates[np.concatenate([fg_inds, bg_inds]).astype(np.int64)]  # (R, 4)
    num_fg = len(fg_inds)
    labels = np.zeros(len(rois), dtype=np.int64)
    labels[:num_fg] = gt_labels[matched[fg_inds]]
    bbox_targets = np.zeros((len(rois), 4), dtype=np.float64)
    if num_fg > 0:
        bbox_targets[:num_fg] = encode_boxes(rois[:num_fg], gt_boxes[matched[fg_inds]])
    return rois.astype(np.float32), labels, bbox_targets.astype(np.float32)


def _with_index(rois: np.ndarray, i: int) -> np.ndarray:
    """(R, 4) boxes -> (R, 5) [i, x1, y1, x2, y2]."""
    return np.concatenate([np.full((len(rois), 1), i, dtype=np.float32), rois], axis=1)
