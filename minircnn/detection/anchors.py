"""Anchors for a Region Proposal Network: generation, labelling, sampling (Faster R-CNN).

Faster R-CNN (Ren et al., 2015, arXiv 1506.01497, section 3.1.1) places k reference
boxes, *anchors*, at every cell of the backbone's feature map: one per (scale, aspect
ratio) pair, centred on the cell. The RPN predicts, for each anchor, an objectness score
and four deltas that move it onto an object. Everything here follows torchvision's
``AnchorGenerator`` and ``RegionProposalNetwork`` exactly:

- base anchors (``base_anchors``): ratio r = h / w, w = scale / sqrt(r), h = scale * sqrt(r),
  the box (-w/2, -h/2, w/2, h/2) **rounded to integers** (torch.round: half to even);
  ratio-major order (all scales of the first ratio, then the next ratio);
- the grid (``grid_anchors``): cell (y, x) of an (h, w) map shifts every base anchor by
  (x * stride, y * stride), so anchors are centred on the cells' top-left pixels (not
  their centres); order location-major (y, then x), then the k base anchors;
- labelling (``label_anchors``): torchvision's Matcher(0.7, 0.3,
  allow_low_quality_matches=True) - IoU >= 0.7 positive, < 0.3 negative, in between
  ignored (-1), and for every GT box the anchors of highest IoU with it are positive too,
  ties included (they keep their own best GT);
- sampling (``sample_anchors``): torchvision's BalancedPositiveNegativeSampler(256, 0.5),
  at most 128 positives, negatives fill the rest.

Each step has a naive loop version (the specification, to step through) next to the
vectorised one; tests check they agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from minircnn.backend import asnumpy, get_array_module
from minircnn.detection.boxes import _pairwise_iou, check_boxes, encode_boxes
from minircnn.utils.validate import check_count, check_number, check_rng

POSITIVE, NEGATIVE, IGNORE = 1, 0, -1   # anchor labels (torchvision's 1 / 0 / -1)
RPN_WEIGHTS = (1.0, 1.0, 1.0, 1.0)      # torchvision's RPN BoxCoder weights


def _check_sequence(name: str, values, op: str) -> tuple[float, ...]:
    if isinstance(values, (str, bytes)) or not hasattr(values, "__len__") or len(values) == 0:
        raise ValueError(f"{op}: {name} must be a non-empty sequence of numbers, got {values!r}")
    return tuple(check_number(name, v, op=op, low=0.0, low_open=True) for v in values)


# --- generation --------------------------------------------------------------------------
def base_anchors(scales: Sequence[float], aspect_ratios: Sequence[float]) -> np.ndarray:
    """The k = len(ratios) * len(scales) anchors of one cell, centred at (0, 0).

    torchvision AnchorGenerator.generate_anchors: for ratio r = h / w and scale s,
    w = s / sqrt(r), h = s * sqrt(r) (area s², whatever r), the box
    (-w/2, -h/2, w/2, h/2) rounded to integers (half to even, as torch.round).

    Returns:
        (k, 4) float64, ratio-major: row i * len(scales) + j is (ratio i, scale j).
    """
    scales = np.asarray(_check_sequence("scales", scales, "base_anchors"))
    ratios = np.asarray(_check_sequence("aspect_ratios", aspect_ratios, "base_anchors"))
    h_ratios = np.sqrt(ratios)                               # (R,)
    w_ratios = 1.0 / h_ratios                                # (R,)
    ws = (w_ratios[:, None] * scales[None, :]).reshape(-1)   # (R, 1) * (1, S) -> (R*S,)
    hs = (h_ratios[:, None] * scales[None, :]).reshape(-1)
    return np.round(np.stack([-ws, -hs, ws, hs], axis=1) / 2)  # (k, 4)


def grid_anchors_naive(base: np.ndarray, feature_size, stride: int) -> np.ndarray:
    """``grid_anchors`` as loops: for y, for x, for each base anchor, shift it."""
    height, width = feature_size
    out = []
    for y in range(height):
        for x in range(width):
            for a in base:                                   # a = (x1, y1, x2, y2) at (0, 0)
                out.append([a[0] + x * stride, a[1] + y * stride,
                            a[2] + x * stride, a[3] + y * stride])
    return np.asarray(out, dtype=np.float64).reshape(-1, 4)


def grid_anchors(base, feature_size, stride: int):
    """Every anchor of an (h, w) feature map, torchvision AnchorGenerator.grid_anchors.

    Args:
        base: (k, 4) anchors of one cell (``base_anchors``), NumPy or CuPy.
        feature_size: (h, w) of the feature map.
        stride: image pixels per feature cell.
    Returns:
        (h * w * k, 4): row (y * w + x) * k + a is base anchor a shifted to
        (x * stride, y * stride).
    """
    height = check_count("feature_size", feature_size[0], op="grid_anchors")
    width = check_count("feature_size", feature_size[1], op="grid_anchors")
    stride = check_count("stride", stride, op="grid_anchors")
    xp = get_array_module(base)
    shift_x = xp.arange(width, dtype=base.dtype) * stride   # (w,)
    shift_y = xp.arange(height, dtype=base.dtype) * stride  # (h,)
    sy, sx = xp.meshgrid(shift_y, shift_x, indexing="ij")   # (h, w) each, y-major
    shifts = xp.stack([sx, sy, sx, sy], axis=-1).reshape(-1, 1, 4)  # (h*w, 1, 4)
    return (shifts + base.reshape(1, -1, 4)).reshape(-1, 4)  # (h*w, k, 4) -> (h*w*k, 4)


class AnchorGenerator:
    """Anchors of a feature map: ``AnchorGenerator(scales, ratios, stride)((h, w))``.

    One feature map, as torchvision's AnchorGenerator with ``sizes=(scales,)``; the
    grid of each (h, w) is computed once and kept.
    """

    def __init__(self, scales: Sequence[float], aspect_ratios: Sequence[float], stride: int):
        self.scales = _check_sequence("scales", scales, "AnchorGenerator")
        self.aspect_ratios = _check_sequence("aspect_ratios", aspect_ratios, "AnchorGenerator")
        self.stride = check_count("stride", stride, op="AnchorGenerator")
        self.base = base_anchors(self.scales, self.aspect_ratios)   # (k, 4)
        self._grids: dict = {}

    @property
    def num_anchors(self) -> int:
        """k, the anchors per feature cell."""
        return len(self.base)

    def __call__(self, feature_size) -> np.ndarray:
        """(h * w * k, 4) float64 anchors of an (h, w) map (see ``grid_anchors``)."""
        key = (int(feature_size[0]), int(feature_size[1]))
        if key not in self._grids:
            self._grids[key] = grid_anchors(self.base, key, self.stride)
        return self._grids[key]


# --- labelling -----------------------------------------------------------------------------
def label_anchors_naive(anchors, gt_boxes, *, fg_iou: float = 0.7, bg_iou: float = 0.3):
    """``label_anchors`` as loops over anchors and GT boxes (the rule, spelled out)."""
    iou = _pairwise_iou(np.asarray(anchors, np.float64), np.asarray(gt_boxes, np.float64))
    num_anchors, num_gt = iou.shape
    labels = np.full(num_anchors, NEGATIVE, dtype=np.int64)
    matched = np.zeros(num_anchors, dtype=np.int64)
    if num_gt == 0:
        return labels, matched
    for a in range(num_anchors):
        best = 0
        for g in range(1, num_gt):
            if iou[a, g] > iou[a, best]:            # first GT wins a tie (argmax)
                best = g
        matched[a] = best
        if iou[a, best] >= fg_iou:
            labels[a] = POSITIVE
        elif iou[a, best] >= bg_iou:
            labels[a] = IGNORE
    for g in range(num_gt):                         # low-quality matches
        highest = max(iou[a, g] for a in range(num_anchors))
        for a in range(num_anchors):
            if iou[a, g] == highest:                # every tie
                labels[a] = POSITIVE                # matched[a] stays its own best GT
    return labels, matched


def label_anchors(anchors, gt_boxes, *, fg_iou: float = 0.7, bg_iou: float = 0.3):
    """Label each anchor positive (1), negative (0) or ignored (-1), and its matched GT.

    torchvision's Matcher(fg_iou, bg_iou, allow_low_quality_matches=True), as its RPN:
    with m = max IoU of the anchor over the GT boxes, positive if m >= fg_iou, negative
    if m < bg_iou, ignored in between; then, for every GT box, each anchor whose IoU with
    it equals that GT's highest IoU (ties included) becomes positive, matched to the GT
    of *its own* highest IoU (the paper's rule (i), section 3.1.2). Like torchvision, a GT
    box that overlaps no anchor (highest IoU 0) would make every IoU-0 anchor positive;
    anchors that tile the image never leave a GT box without overlap.

    Args:
        anchors: (A, 4).  gt_boxes: (G, 4); G = 0 makes every anchor negative.
        fg_iou, bg_iou: the thresholds (0.7 and 0.3 in the paper).
    Returns:
        labels (A,) int64 in {-1, 0, 1}; matched (A,) int64 index of the anchor's GT
        (0 where G = 0; only meaningful for positives).
    """
    anchors = check_boxes(anchors, "anchors")
    gt_boxes = check_boxes(gt_boxes, "gt_boxes")
    check_number("fg_iou", fg_iou, op="label_anchors", low=0.0, high=1.0)
    check_number("bg_iou", bg_iou, op="label_anchors", low=0.0, high=fg_iou)
    xp = get_array_module(anchors)
    labels = xp.full(anchors.shape[0], NEGATIVE, dtype=xp.int64)
    if gt_boxes.shape[0] == 0:
        return labels, xp.zeros(anchors.shape[0], dtype=xp.int64)
    iou = _pairwise_iou(anchors.astype(xp.float64), gt_boxes.astype(xp.float64))  # (A, G)
    best = iou.max(axis=1)                                  # (A,) m
    matched = iou.argmax(axis=1).astype(xp.int64)           # (A,) first GT wins ties
    labels[best >= bg_iou] = IGNORE
    labels[best >= fg_iou] = POSITIVE
    highest = iou.max(axis=0)                               # (G,) each GT's best anchor IoU
    low_quality = (iou == highest[None, :]).any(axis=1)     # (A, G) -> (A,): ties included
    labels[low_quality] = POSITIVE
    return labels, matched


def sample_anchors(labels, *, batch_size: int = 256, positive_fraction: float = 0.5,
                   rng: np.random.Generator):
    """Keep ``batch_size`` labelled anchors, at most ``positive_fraction`` positive.

    torchvision BalancedPositiveNegativeSampler: num_pos = min(int(batch_size *
    positive_fraction), #positives), num_neg = min(batch_size - num_pos, #negatives),
    both drawn uniformly without replacement; every other anchor becomes -1 (ignored),
    so the loss sees exactly the sampled ones (the paper's 256 anchors at up to 1:1).

    Returns:
        (A,) int64 labels in {-1, 0, 1}, a copy.
    """
    check_count("batch_size", batch_size, op="sample_anchors")
    check_number("positive_fraction", positive_fraction, op="sample_anchors", low=0, high=1)
    check_rng("rng", rng, op="sample_anchors")
    xp = get_array_module(labels)
    host = np.asarray(asnumpy(labels))
    positive = np.flatnonzero(host == POSITIVE)
    negative = np.flatnonzero(host == NEGATIVE)
    num_pos = min(int(batch_size * positive_fraction), positive.size)
    num_neg = min(batch_size - num_pos, negative.size)
    out = np.full(host.shape, IGNORE, dtype=np.int64)
    out[rng.choice(positive, size=num_pos, replace=False)] = POSITIVE
    out[rng.choice(negative, size=num_neg, replace=False)] = NEGATIVE
    return xp.asarray(out)


class AnchorTargets(NamedTuple):
    """What the RPN loss needs for one image's anchors."""
    labels: np.ndarray        # (A,) int64 in {-1, 0, 1}, after sampling
    bbox_targets: np.ndarray  # (A, 4) encoded GT of each positive, zeros elsewhere


def anchor_targets(anchors, gt_boxes, *, rng: np.random.Generator, fg_iou: float = 0.7,
                   bg_iou: float = 0.3, batch_size: int = 256,
                   positive_fraction: float = 0.5, labelled: tuple | None = None
                   ) -> AnchorTargets:
    """Label, sample and encode: the targets of one image's anchors.

    bbox_targets[i] = encode_boxes(anchors[i], gt[matched[i]], weights=(1, 1, 1, 1)) for
    the sampled positives (torchvision's RPN box coding), zeros elsewhere.
    ``labelled``: ``label_anchors(anchors, gt_boxes, ...)`` already computed (the
    training keeps each image's in an ``AnchorLabelCache``); only the sampling is new.
    """
    if labelled is None:
        labelled = label_anchors(anchors, gt_boxes, fg_iou=fg_iou, bg_iou=bg_iou)
    labels, matched = labelled
    labels = sample_anchors(labels, batch_size=batch_size,
                            positive_fraction=positive_fraction, rng=rng)
    xp = get_array_module(anchors)
    targets = xp.zeros((anchors.shape[0], 4), dtype=xp.float64)
    pos = xp.flatnonzero(labels == POSITIVE)
    if pos.size:
        gt = xp.asarray(gt_boxes, dtype=xp.float64)[matched[pos]]
        targets[pos] = encode_boxes(anchors[pos], gt, weights=RPN_WEIGHTS)
    return AnchorTargets(labels, targets)


class AnchorLabelCache:
    """``label_anchors`` of each image, computed once per training run.

    The labels depend only on the anchors and the image's GT boxes, and neither changes
    from one epoch to the next (a flipped image has its own flipped boxes: one more
    entry), so the (A, G) IoU matrix of an image is computed once, not at every step;
    only the sampling is drawn anew. Entries are kept compactly (int8 labels; most
    anchors are negative) under the key (number of anchors, the GT boxes' bytes).
    """

    def __init__(self, *, fg_iou: float = 0.7, bg_iou: float = 0.3):
        self.fg_iou, self.bg_iou = fg_iou, bg_iou
        self._entries: dict = {}

    def __len__(self) -> int:
        return len(self._entries)

    def __call__(self, anchors, gt_boxes) -> tuple:
        """(labels (A,), matched (A,)) as ``label_anchors(anchors, gt_boxes)``."""
        key = (anchors.shape[0], asnumpy(gt_boxes).tobytes())
        if key not in self._entries:
            labels, matched = label_anchors(anchors, gt_boxes, fg_iou=self.fg_iou,
                                            bg_iou=self.bg_iou)
            index = np.min_scalar_type(max(gt_boxes.shape[0] - 1, 0))   # fits every GT
            self._entries[key] = (labels.astype(np.int8), matched.astype(index))
        return self._entries[key]
