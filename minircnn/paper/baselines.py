"""R-CNN's and SPP-net's training after fine-tuning, as the papers ran it (Table 4).

Fast R-CNN trains in one stage. R-CNN (and SPP-net after it) trained in three:

1. fine-tune the network with a softmax on warped proposals (SPP-net: its fc layers
   only, the convolutions fixed) -- the `minircnn train` run of the ``rcnn`` or
   ``sppnet`` variant;
2. run the fine-tuned network on *every* proposal of every training image and write
   the fc7 features to disk (``cache_features``: R-CNN's cache of VOC 2007 trainval
   took hundreds of gigabytes);
3. from that cache, train one linear SVM per class with hard-negative mining
   (minircnn/paper/svm.py) and one box regressor per class (``train_box_regressors``:
   ridge regression, R-CNN's appendix C).

At test time the network computes each proposal's features, the SVMs score them and
the regressors move the boxes (``detect_with_stages``). The toy's regressors read the
fc7 features (the paper's read pool5) with the SVMs' feature scale.
"""

from __future__ import annotations

import os
import time
from typing import NamedTuple

import numpy as np

from minircnn.detection.boxes import decode_boxes, encode_boxes
from minircnn.detection.inference import pyramid_levels, rescale_batch
from minircnn.paper.svm import best_iou_per_class, postprocess_svm, train_svms_on_features

REGRESS_IOU = 0.6                 # R-CNN: regress proposals with IoU > 0.6 to a GT box
RIDGE = 1000.0                    # R-CNN's lambda
BOX_WEIGHTS = (1.0, 1.0, 1.0, 1.0)   # R-CNN's targets: (Gx - Px) / Pw, ..., log(Gh / Ph)


class FeatureCache(NamedTuple):
    """Every row (a GT box or a proposal of a training image) and its fc7 features."""
    features: np.ndarray    # (n, d) float32, a memory map of features.npy
    labels: np.ndarray      # (n,) the class of a ground-truth row, 0 for a proposal
    boxes: np.ndarray       # (n, 4) the row's box
    best_iou: np.ndarray    # (n, K) largest IoU with a GT box of class k
    targets: np.ndarray     # (n, K, 4) that GT box of class k (zeros if none)
    bytes: int              # size of features.npy on disk


def roi_features(model, image, boxes, scales=(1.0,), target: float = 48.0) -> np.ndarray:
    """fc7 features (P, hidden) of boxes (P, 4) on one image (3, H, W), each scored at
    its pyramid scale (the one that brings its area closest to target^2)."""
    dtype = model.dtype
    batch = np.asarray(image, dtype)[None]                                  # (1, 3, H, W)
    rois = np.concatenate([np.zeros((len(boxes), 1)), boxes], axis=1).astype(dtype)  # (P, 5)
    level = pyramid_levels(rois, scales, target)                            # (P,)
    out = np.zeros((len(boxes), model.hidden), dtype)
    stride = model.backbone.feature_stride
    for j, s in enumerate(scales):
        pick = np.flatnonzero(level == j)
        if len(pick):
            images, r = rescale_batch(batch, rois[pick], s, stride)
            out[pick] = model.features(images, r)                          # (P_j, hidden)
    return out


def _matched_targets(boxes, gt_boxes, gt_labels, num_classes: int) -> np.ndarray:
    """(P, K, 4): for each box and class k, the class-k GT box it overlaps most."""
    from minircnn.detection.boxes import box_iou

    out = np.zeros((len(boxes), num_classes, 4))
    for k in range(1, num_classes + 1):
        gt = np.asarray(gt_boxes, np.float64)[np.asarray(gt_labels) == k]
        if len(gt):
            out[:, k - 1] = gt[box_iou(boxes, gt).argmax(axis=1)]
    return out


def cache_features(model, dataset, proposals, folder: str, *, scales=(1.0,),
                   target: float = 48.0) -> FeatureCache:
    """Write the fc7 features of every GT box and proposal of ``dataset`` to
    ``folder/features.npy`` (float32, one row each) and their labels, IoUs and matched
    GT boxes to ``folder/rows.npz``; return the cache (features memory-mapped)."""
    model.eval()
    os.makedirs(folder, exist_ok=True)
    K = model.num_classes
    counts = [len(dataset[i]["boxes"]) + len(proposals[i]) for i in range(len(dataset))]
    tmp = os.path.join(folder, f".tmp-{os.getpid()}-features.npy")
    features = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32,
                                         shape=(sum(counts), model.hidden))
    labels, boxes, best, targets, start = [], [], [], [], 0
    for i in range(len(dataset)):
        item = dataset[i]
        rows = np.concatenate([item["boxes"], proposals[i]]).astype(np.float64)   # (n_i, 4)
        features[start:start + len(rows)] = roi_features(model, item["image"], rows,
                                                         scales, target)
        start += len(rows)
        labels.append(np.concatenate([item["labels"], np.zeros(len(proposals[i]), np.int64)]))
        boxes.append(rows)
        best.append(best_iou_per_class(rows, item["boxes"], item["labels"], K))
        targets.append(_matched_targets(rows, item["boxes"], item["labels"], K))
    features.flush()
    del features
    path = os.path.join(folder, "features.npy")
    os.replace(tmp, path)
    arrays = dict(labels=np.concatenate(labels), boxes=np.concatenate(boxes),
                  best_iou=np.concatenate(best), targets=np.concatenate(targets))
    np.savez(os.path.join(folder, "rows.npz"), **arrays)
    return FeatureCache(np.load(path, mmap_mode="r"), **arrays, bytes=os.path.getsize(path))


def train_box_regressors(cache: FeatureCache, scale: float, *, min_iou: float = REGRESS_IOU,
                         ridge: float = RIDGE) -> np.ndarray:
    """One ridge regressor per class: (K, d + 1, 4) weights W_k with t = [scale x, 1] W_k.

    For class k it fits the proposals (not the GT rows) whose IoU with a class-k box is
    at least ``min_iou`` to R-CNN's targets t = encode(P, G); it minimises
    |X W - T|^2 + ridge |W without its bias row|^2, so W = (X^T X + ridge D)^-1 X^T T.
    """
    K, d = cache.best_iou.shape[1], cache.features.shape[1]
    weights = np.zeros((K, d + 1, 4))
    for k in range(K):
        rows = np.flatnonzero((cache.labels == 0) & (cache.best_iou[:, k] >= min_iou))
        if not len(rows):
            continue
        x = np.asarray(cache.features[rows], np.float64) * scale              # (n, d)
        x1 = np.concatenate([x, np.ones((len(rows), 1))], axis=1)            # (n, d + 1)
        t = encode_boxes(cache.boxes[rows], cache.targets[rows, k], weights=BOX_WEIGHTS)
        penalty = np.diag(np.r_[np.full(d, ridge), 0.0])                      # bias: free
        weights[k] = np.linalg.solve(x1.T @ x1 + penalty, x1.T @ t)           # (d + 1, 4)
    return weights


def regress_boxes(features, scale: float, weights, boxes) -> np.ndarray:
    """Per-class boxes (P, K, 4): each proposal (P, 4) moved by class k's regressor."""
    x1 = np.concatenate([features * scale, np.ones((len(features), 1))], axis=1)  # (P, d+1)
    deltas = np.einsum("pd,kdc->pkc", x1, weights)                           # (P, K, 4)
    P, K = deltas.shape[:2]
    moved = decode_boxes(deltas.reshape(-1, 4), np.repeat(boxes, K, axis=0),
                         weights=BOX_WEIGHTS)                                # (P K, 4)
    return moved.reshape(P, K, 4)


class Stages(NamedTuple):
    """What stages 2 and 3 learned: the SVMs and the box regressors."""
    svm_w: np.ndarray       # (K, d)
    svm_b: np.ndarray       # (K,)
    scale: float            # feature scale (mean norm 20)
    regressors: np.ndarray  # (K, d + 1, 4)


def train_later_stages(model, train, proposals, folder: str, *, scales=(1.0,),
                       target: float = 48.0, seed: int = 0) -> tuple[Stages, dict]:
    """Stages 2 and 3 on a fine-tuned model; returns them and their measurements
    (seconds per stage, the feature cache's bytes and rows)."""
    start = time.perf_counter()
    cache = cache_features(model, train, proposals, folder, scales=scales, target=target)
    cached = time.perf_counter()
    w, b, scale = train_svms_on_features(cache.features, cache.labels, cache.best_iou,
                                         model.num_classes, seed=seed)
    svms = time.perf_counter()
    regressors = train_box_regressors(cache, scale)
    done = time.perf_counter()
    return Stages(w, b, scale, regressors), {
        "cache_features_s": cached - start, "svms_s": svms - cached,
        "box_regressors_s": done - svms, "feature_bytes": cache.bytes,
        "feature_rows": int(len(cache.labels))}


def detect_with_stages(model, stages: Stages, images, proposals, config) -> list[dict]:
    """Detections: features of each proposal, SVM scores, regressed boxes, class-wise NMS."""
    model.eval()
    dets = []
    for image, props in zip(images, proposals, strict=True):
        props = np.asarray(props, np.float64)
        x = roi_features(model, image, props, config.test_scales, config.pyramid_target)
        x = x.astype(np.float64)
        scores = (x * stages.scale) @ stages.svm_w.T + stages.svm_b          # (P, K)
        boxes = regress_boxes(x, stages.scale, stages.regressors, props)    # (P, K, 4)
        dets.append(postprocess_svm(scores, boxes, image.shape[1:], config))
    return dets
