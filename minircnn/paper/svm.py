"""Table 8 of the paper: one-vs-rest linear SVMs on fc7 features instead of the softmax.

R-CNN and SPP-net trained an SVM per class on the fine-tuned network's features, after
fine-tuning: positives are the ground-truth boxes of the class, negatives the proposals
with IoU < 0.3 to every one of them, and "hard negatives" (those the current SVM scores
above -1, inside the margin) are added over rounds (hard-negative mining). Fast R-CNN
asks whether the softmax trained end to end does as well (it does, slightly better).

Each SVM minimises the L2-regularised squared hinge loss (liblinear's L2-SVM, which
R-CNN used): ``0.5 * reg * |w|^2 + sum_i max(0, 1 - y_i (w . x_i + b))^2``, with
L-BFGS. Features are scaled so their mean L2 norm is 20, as R-CNN does.
``train_svms_on_features`` trains them from any feature rows, in memory or on disk:
Table 8 passes a Fast R-CNN's fc7 features; R-CNN and SPP-net (Table 4) pass the
features they cached to disk (minircnn/paper/baselines.py).
"""

from __future__ import annotations

import time

import numpy as np

from minircnn.detection.boxes import batched_nms, box_iou, clip_boxes, decode_boxes

FEATURE_NORM = 20.0
NEG_IOU = 0.3            # R-CNN's negative threshold for SVM training
MINING_ROUNDS = 2        # rounds of adding hard negatives
REG = 1e-2               # weight of 0.5 |w|^2


def head_outputs(model, image, rois):
    """fc7 features (R, hidden), cls scores (R, K+1) and box deltas (R, 4(K+1)), eval mode.

    image (3, H, W), rois (R, 4) in pixels. Dropout is the identity at test time.
    """
    dtype = model.fc6.w.data.dtype
    batch = np.asarray(image, dtype)[None]                        # (1, 3, H, W)
    rois5 = np.concatenate([np.zeros((len(rois), 1)), rois], axis=1).astype(dtype)
    pooled = model.roi.forward(model.backbone.forward(batch), rois5)   # (R, C, PH, PW)
    x = np.maximum(model.fc6.forward(model.flatten.forward(pooled)), 0)
    fc7 = np.maximum(model.fc7.forward(x), 0)                     # (R, hidden)
    return fc7, model.cls_score.forward(fc7), model.bbox_pred.forward(fc7)


def _squared_hinge_svm(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    """Linear L2-SVM on rows x (n, d) with labels y in {-1, +1}: returns (w (d,), b)."""
    from scipy.optimize import minimize

    def loss(theta):
        w, b = theta[:-1], theta[-1]
        margin = np.maximum(0.0, 1.0 - y * (x @ w + b))            # (n,)
        g = -2.0 * margin * y                                      # d loss / d score
        value = 0.5 * REG * w @ w + margin @ margin
        return value, np.concatenate([REG * w + x.T @ g, [g.sum()]])

    theta = minimize(loss, np.zeros(x.shape[1] + 1), jac=True, method="L-BFGS-B",
                     options={"maxiter": 200}).x
    return theta[:-1], float(theta[-1])


def _training_features(model, dataset, proposals, max_images: int):
    """fc7 features of GT boxes (positives) and of proposals, with each proposal's
    best IoU per class (for picking negatives)."""
    feats, labels, best_iou = [], [], []
    for i in range(min(len(dataset), max_images)):
        item = dataset[i]
        boxes = np.concatenate([item["boxes"], proposals[i]]).astype(np.float64)
        f, _, _ = head_outputs(model, item["image"], boxes)
        gt_labels = np.concatenate([item["labels"], np.zeros(len(proposals[i]), np.int64)])
        feats.append(f)
        labels.append(gt_labels)
        best_iou.append(best_iou_per_class(boxes, item["boxes"], item["labels"],
                                           model.num_classes))
    return np.concatenate(feats), np.concatenate(labels), np.concatenate(best_iou)


def best_iou_per_class(boxes, gt_boxes, gt_labels, num_classes: int) -> np.ndarray:
    """(P, K): each box's largest IoU with a ground-truth box of class k (0 if none)."""
    ious = np.zeros((len(boxes), num_classes))
    for k in range(1, num_classes + 1):
        gt = np.asarray(gt_boxes, np.float64)[np.asarray(gt_labels) == k]
        if len(gt):
            ious[:, k - 1] = box_iou(np.asarray(boxes, np.float64), gt).max(axis=1)
    return ious


def feature_scale(features, chunk: int = 65536) -> float:
    """The factor that makes the rows' mean L2 norm FEATURE_NORM (R-CNN's 20)."""
    norms = [np.linalg.norm(np.asarray(features[i:i + chunk], np.float64), axis=1).sum()
             for i in range(0, len(features), chunk)]
    return FEATURE_NORM / max(sum(norms) / max(len(features), 1), 1e-12)


def _scores(features, rows, w, b, scale, chunk: int = 65536) -> np.ndarray:
    """SVM scores (len(rows),) of feature rows, read in chunks (features may be on disk)."""
    out = np.empty(len(rows))
    for i in range(0, len(rows), chunk):
        x = np.asarray(features[rows[i:i + chunk]], np.float64) * scale   # (n, d)
        out[i:i + chunk] = x @ w + b
    return out


def mine_hard_negatives(features, positives, negatives, *, scale: float,
                        rng: np.random.Generator, first: int = 2000,
                        rounds: int = MINING_ROUNDS):
    """One class's SVM with hard-negative mining (R-CNN section 2.3).

    Start from ``first`` random negatives; after each fit, add every negative the SVM
    scores above -1 (inside the margin: "hard"), and fit again; ``rounds`` times.

    Args:
        features: (n, d) rows (an array or a memory map); positives, negatives: row
            indices into it.
    Returns:
        (w (d,), b, active): the last fit and the negatives it was fitted on, sorted.
    """
    active = np.sort(rng.permutation(negatives)[:first])
    for r in range(rounds + 1):
        idx = np.concatenate([positives, active])
        y = np.concatenate([np.ones(len(positives)), -np.ones(len(active))])
        x = np.asarray(features[idx], np.float64) * scale           # (n, d)
        w, b = _squared_hinge_svm(x, y)
        if r == rounds:
            break
        hard = negatives[_scores(features, negatives, w, b, scale) > -1.0]   # in the margin
        active = np.union1d(active, hard)
    return w, b, active


def train_svms_on_features(features, labels, best_iou, num_classes: int, *, seed: int = 0,
                           first_negatives: int = 2000):
    """One SVM per class: positives are the class's ground-truth rows (label k),
    negatives the proposal rows (label 0) with IoU < NEG_IOU to every box of the class.

    Returns (W (K, d), b (K,), scale): score = (scale * x) @ W.T + b.
    """
    scale = feature_scale(features)
    rng = np.random.default_rng([seed, 8])
    weights, biases = [], []
    for k in range(1, num_classes + 1):
        pos = np.flatnonzero(labels == k)
        negatives = np.flatnonzero((labels == 0) & (best_iou[:, k - 1] < NEG_IOU))
        w, b, _ = mine_hard_negatives(features, pos, negatives, scale=scale, rng=rng,
                                      first=first_negatives)
        weights.append(w)
        biases.append(b)
    return np.stack(weights), np.array(biases), scale


def train_svms(model, dataset, proposals, *, seed: int = 0, max_images: int = 200,
               first_negatives: int = 2000):
    """Table 8: SVMs on a Fast R-CNN's fc7 features of ``max_images`` training images,
    kept in memory; returns (W (K, d), b (K,), scale)."""
    feats, labels, best_iou = _training_features(model, dataset, proposals, max_images)
    return train_svms_on_features(feats, labels, best_iou, model.num_classes, seed=seed,
                                  first_negatives=first_negatives)


def svm_detections(model, config, dataset, proposals, *, seed: int = 0):
    """Detections on ``dataset`` scored by SVMs trained on the training split.

    Returns (one detections dict per image, seconds spent training the SVMs). Boxes
    come from the network's class-specific regression, as in the paper's comparison.
    """
    from minircnn.training.config import make_datasets
    from minircnn.training.proposals import load_proposals

    train, _ = make_datasets(config)
    start = time.perf_counter()
    w, b, scale = train_svms(model, train, load_proposals(train, config), seed=seed)
    train_s = time.perf_counter() - start
    dets = []
    for i in range(len(dataset)):
        image, props = dataset[i]["image"], proposals[i].astype(np.float64)
        fc7, _, deltas = head_outputs(model, image, props)
        scores = (fc7 * scale) @ w.T + b                                # (P, K)
        dets.append(_postprocess_svm(scores, deltas, props, image.shape[1:], config))
    return dets, train_s


def _postprocess_svm(scores, deltas, props, size, config) -> dict:
    """Per-class boxes from the network's deltas (P, 4(K+1)), then ``postprocess_svm``."""
    P, K = scores.shape
    boxes = decode_boxes(deltas.astype(np.float64), props).reshape(P, K + 1, 4)[:, 1:]
    return postprocess_svm(scores, boxes, size, config)


def postprocess_svm(scores, boxes, size, config) -> dict:
    """SVM scores (P, K) and per-class boxes (P, K, 4): boxes clipped, scores above -1
    (the margin) kept, class-wise NMS, the top ``config.max_dets``."""
    P, K = scores.shape
    boxes = clip_boxes(np.asarray(boxes, np.float64).reshape(-1, 4), size)   # (P K, 4)
    labels = np.broadcast_to(np.arange(1, K + 1), (P, K)).reshape(-1)
    scores = scores.reshape(-1)
    keep = (scores > -1.0) & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
    keep = batched_nms(boxes, scores, labels, config.nms_thresh)[:config.max_dets]
    return dict(boxes=boxes[keep].astype(np.float32), scores=scores[keep].astype(np.float32),
                labels=labels[keep].astype(np.int64))
