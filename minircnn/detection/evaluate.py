"""Detection metrics: PASCAL VOC AP (11-point and area), COCO AP@[.5:.95], proposal recall.

``evaluate`` follows two references exactly:

- ``metric="voc07"`` / ``"voc"``: the VOC devkit (py-faster-rcnn's ``voc_eval.py`` without
  "difficult" flags and with IoU from :func:`box_iou`, no +1). Detections of a class are
  visited by descending score; each takes the ground truth (GT) of its class, in its
  image, with the highest IoU; it is a true positive if that IoU > ``iou_threshold``
  and the GT is not yet taken, else a false positive. voc07 averages the interpolated
  precision at recall 0, 0.1, ..., 1; voc integrates the interpolated curve.
- ``metric="coco"``: pycocotools ``COCOeval`` for bbox with area range "all" and maxDets
  100: per image and class, detections sorted by score (mergesort), the top 100 kept,
  each matched to the best still-unmatched GT with IoU >= t; precision made monotone and
  read at 101 recall points (searchsorted, side="left"); AP averaged over t in .5:.05:.95.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from minircnn.backend import asnumpy
from minircnn.detection.boxes import _pairwise_iou, check_boxes
from minircnn.utils.validate import check_array, check_count, check_number

# pycocotools Params.setDetParams, verbatim, so the float values are identical.
COCO_IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1)
COCO_RECALL_POINTS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1)
COCO_MAX_DETS = 100
# pycocotools Params.areaRng (box areas in pixels^2; ends inclusive).
COCO_AREA_RANGES = {"all": (0.0, 1e5 ** 2), "small": (0.0, 32.0 ** 2),
                    "medium": (32.0 ** 2, 96.0 ** 2), "large": (96.0 ** 2, 1e5 ** 2)}
METRICS = ("voc07", "voc", "coco")


class Match(NamedTuple):
    order: np.ndarray  # (D,) indices of the detections, by descending score (stable)
    tp: np.ndarray  # (D,) bool: true positive, in `order`
    gt_index: np.ndarray  # (D,) int: matched GT (-1 for a false positive), in `order`


def _match_voc(ious: np.ndarray, iou_threshold: float):
    """VOC devkit greedy matching. ious (D, G), rows by descending score -> tp (D,), gt (D,)."""
    num_dets, num_gt = ious.shape
    tp = np.zeros(num_dets, dtype=bool)
    gt_index = np.full(num_dets, -1, dtype=np.int64)
    taken = np.zeros(num_gt, dtype=bool)
    for d in range(num_dets):
        if num_gt == 0:
            break
        j = int(np.argmax(ious[d]))  # best GT, taken or not (first one on ties)
        if ious[d, j] > iou_threshold and not taken[j]:
            tp[d], gt_index[d], taken[j] = True, j, True
    return tp, gt_index


def _match_coco(ious: np.ndarray, thresholds: np.ndarray, eligible: np.ndarray | None = None):
    """pycocotools evaluateImg matching for all thresholds at once.

    ious (D, G), rows by descending score; thresholds (T,). Each detection takes the
    still-unmatched GT with the highest IoU >= t (on ties the later GT, as pycocotools'
    loop does). ``eligible`` (T, D) bool: only these detections try to match (default
    all). Returns tp (T, D) bool and gt_index (T, D) int (-1: unmatched).
    """
    num_dets, num_gt = ious.shape
    thr = np.minimum(thresholds, 1 - 1e-10)  # pycocotools: iou = min([t, 1-1e-10])
    tp = np.zeros((len(thr), num_dets), dtype=bool)
    gt_index = np.full((len(thr), num_dets), -1, dtype=np.int64)
    taken = np.zeros((len(thr), num_gt), dtype=bool)
    rows = np.arange(len(thr))
    for d in range(num_dets):
        if num_gt == 0:
            break
        cand = np.where(taken, -1.0, ious[d][None, :])  # (T, G): taken GTs cannot match
        best = num_gt - 1 - np.argmax(cand[:, ::-1], axis=1)  # (T,) last index of the max
        ok = cand[rows, best] >= thr  # (T,)
        if eligible is not None:
            ok &= eligible[:, d]
        tp[ok, d] = True
        gt_index[ok, d] = best[ok]
        taken[rows[ok], best[ok]] = True
    return tp, gt_index


def match_detections(det_boxes, det_scores, gt_boxes, *, iou_threshold: float = 0.5,
                     rule: str = "voc", max_dets: int | None = None) -> Match:
    """Match one image's detections of one class to its GT boxes.

    Args:
        det_boxes: (D, 4) detections.  det_scores: (D,) scores.  gt_boxes: (G, 4).
        iou_threshold: IoU needed for a match (rule "voc": > t; rule "coco": >= t).
        rule: "voc" (devkit: best GT overall, FP if already taken) or "coco"
            (pycocotools: best still-unmatched GT).
        max_dets: keep only the top ``max_dets`` detections (pycocotools maxDets).
    Returns:
        Match(order, tp, gt_index), all in descending-score (mergesort) order.
    """
    det_boxes = asnumpy(check_boxes(det_boxes, "det_boxes"))
    gt_boxes = asnumpy(check_boxes(gt_boxes, "gt_boxes"))
    det_scores = asnumpy(check_array("det_scores", det_scores, op="match_detections",
                                     shape=(len(det_boxes),), kinds="fiu", finite=True))
    if rule not in ("voc", "coco"):
        raise ValueError(f"rule must be 'voc' or 'coco', got {rule!r}")
    check_number("iou_threshold", iou_threshold, op="match_detections", low=0, high=1)
    if max_dets is not None:
        check_count("max_dets", max_dets, op="match_detections")
    order = np.argsort(-det_scores, kind="mergesort")[:max_dets]  # (D,) best first
    ious = _pairwise_iou(det_boxes[order], gt_boxes)  # (D, G)
    if rule == "voc":
        tp, gt_index = _match_voc(ious, iou_threshold)
    else:
        tp, gt_index = _match_coco(ious, np.array([iou_threshold]))
        tp, gt_index = tp[0], gt_index[0]
    return Match(order, tp, gt_index)


def voc_ap(recall: np.ndarray, precision: np.ndarray, *, use_07_metric: bool) -> float:
    """VOC devkit AP from cumulative recall / precision arrays (py-faster-rcnn voc_ap).

    use_07_metric: mean of max precision at recall >= t for t in 0, 0.1, ..., 1;
    else the area under the precision envelope (mpre made monotone right to left).
    """
    if use_07_metric:
        ap = 0.0
        for t in np.arange(0.0, 1.1, 0.1):  # 11 points, same floats as the devkit
            p = 0.0 if np.sum(recall >= t) == 0 else np.max(precision[recall >= t])
            ap += p / 11.0
    else:
        mrec = np.concatenate(([0.0], recall, [1.0]))
        mpre = np.concatenate(([0.0], precision, [0.0]))
        mpre = np.maximum.accumulate(mpre[::-1])[::-1]  # envelope: max precision to the right
        i = np.flatnonzero(mrec[1:] != mrec[:-1])  # where recall changes
        ap = np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1])
    # eleven 1/11 add up to 1.0000000000000002: round-off, clipped so that AP stays in [0, 1]
    return float(np.clip(ap, 0.0, 1.0))


class GroundTruth(list):
    """A dataset's boxes and labels, read once: a list of dicts, with its ``classes``.

    ``evaluate`` reads every image of the dataset it is given, and a generated dataset
    (ShapesDataset) draws each image again when read; computing several metrics on one
    ``GroundTruth(dataset)`` reads the dataset once.
    """

    def __init__(self, dataset):
        targets = []
        for i in range(len(dataset)):
            item = dataset[i]
            image_id = item.get("image_id", i) if hasattr(item, "get") else i
            targets.append({"boxes": item["boxes"], "labels": item["labels"],
                            "image_id": image_id})
        super().__init__(targets)
        self.classes = getattr(dataset, "classes", None)


def _load_images(detections, dataset) -> list[dict]:
    """Validate and gather per-image GT and detections as NumPy arrays."""
    if len(detections) != len(dataset):
        raise ValueError(
            f"detections must have one dict per image: got {len(detections)} for "
            f"{len(dataset)} images in dataset"
        )
    images = []
    for i, det in enumerate(detections):
        item = dataset[i]
        d_boxes, d_scores, d_labels = _detection_arrays(det, i)
        if not len(d_boxes) == len(d_scores) == len(d_labels):
            raise ValueError(
                f"detections[{i}] boxes/scores/labels lengths differ: "
                f"{len(d_boxes)}, {len(d_scores)}, {len(d_labels)}"
            )
        g_boxes = asnumpy(check_boxes(item["boxes"], f"dataset[{i}]['boxes']"))
        g_labels = asnumpy(item["labels"]).astype(np.int64).reshape(-1)
        if len(g_labels) != len(g_boxes):
            raise ValueError(f"dataset[{i}] has {len(g_boxes)} boxes but {len(g_labels)} labels")
        images.append(dict(gt_boxes=g_boxes.astype(np.float64), gt_labels=g_labels,
                           boxes=d_boxes.astype(np.float64), scores=d_scores, labels=d_labels,
                           image_id=item.get("image_id", i) if hasattr(item, "get") else i))
    return images


def _detection_arrays(det, i: int):
    """boxes (D, 4), scores (D,) float64 and labels (D,) int64 of detections[i], checked."""
    if not hasattr(det, "keys") or not {"boxes", "scores", "labels"} <= set(det.keys()):
        keys = sorted(det.keys()) if hasattr(det, "keys") else "no keys"
        raise ValueError(f"detections[{i}] must be a dict with boxes, scores and labels, "
                         f"got {type(det).__name__} with {keys}")
    boxes = asnumpy(check_boxes(det["boxes"], f"detections[{i}]['boxes']"))
    scores = check_array(f"detections[{i}]['scores']", det["scores"], kinds="fiu", finite=True)
    labels = check_array(f"detections[{i}]['labels']", det["labels"], kinds="iu")
    labels = asnumpy(labels).astype(np.int64).reshape(-1)
    if bool((labels < 1).any()):   # 0 is the background, never a detection
        raise ValueError(f"detections[{i}]['labels'] must be class labels >= 1, got "
                         f"{labels[labels < 1][0]}")
    return boxes, asnumpy(scores).astype(np.float64).reshape(-1), labels


def _cumulative_pr(scores: list, tps: list, ignores: list | None = None):
    """Concatenate per-image scores (D_i,) and tp (..., D_i), sort by score -> cumulative tp, fp.

    ``ignores`` (..., D_i) bool: detections that count neither as tp nor fp (COCO area ranges).
    """
    scores = np.concatenate(scores)  # (D,)
    tp = np.concatenate(tps, axis=-1)  # (..., D)
    ignore = np.zeros_like(tp) if ignores is None else np.concatenate(ignores, axis=-1)
    order = np.argsort(-scores, kind="mergesort")  # stable: ties keep image order
    tp, ignore = tp[..., order], ignore[..., order]
    fp = ~tp & ~ignore
    tp = tp & ~ignore
    return np.cumsum(tp, axis=-1).astype(float), np.cumsum(fp, axis=-1).astype(float)


def _voc_class(images: list[dict], label: int, iou_threshold: float, use_07: bool):
    """AP and (precision, recall) of one class, VOC devkit rules."""
    scores, tps, num_gt = [], [], 0
    for im in images:
        gt = im["gt_boxes"][im["gt_labels"] == label]
        mask = im["labels"] == label
        num_gt += len(gt)
        m = match_detections(im["boxes"][mask], im["scores"][mask], gt,
                             iou_threshold=iou_threshold, rule="voc")
        scores.append(im["scores"][mask][m.order])
        tps.append(m.tp)
    tp, fp = _cumulative_pr(scores, tps)
    recall = tp / num_gt
    precision = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)  # devkit
    return voc_ap(recall, precision, use_07_metric=use_07), precision, recall


def _coco_precision(tp: np.ndarray, fp: np.ndarray, num_gt: int) -> np.ndarray:
    """pycocotools accumulate for one threshold: cumulative tp, fp (D,) -> precision (101,)."""
    if len(tp) == 0:
        return np.zeros(len(COCO_RECALL_POINTS))
    recall = tp / num_gt
    precision = tp / (fp + tp + np.spacing(1))
    precision = np.maximum.accumulate(precision[::-1])[::-1]  # envelope, right to left
    inds = np.searchsorted(recall, COCO_RECALL_POINTS, side="left")  # (101,)
    reached = inds < len(tp)  # recall never reached -> precision 0 (pycocotools' try/except)
    return np.where(reached, precision[np.minimum(inds, len(tp) - 1)], 0.0)


def _box_areas(boxes: np.ndarray) -> np.ndarray:
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def _match_coco_in_range(det_boxes, gt_boxes, area_range):
    """pycocotools evaluateImg with an area range: tp (T, D) and ignore (T, D).

    GT outside ``area_range`` is "ignored": detections try the GT inside the range first
    and fall back on ignored GT; a detection matched to ignored GT, or unmatched and
    itself outside the range, counts neither as tp nor as fp. Returns also the number
    of GT inside the range.
    """
    lo, hi = area_range
    gt_out = (_box_areas(gt_boxes) < lo) | (_box_areas(gt_boxes) > hi)  # (G,)
    ious = _pairwise_iou(det_boxes, gt_boxes)  # (D, G)
    tp, _ = _match_coco(ious[:, ~gt_out], COCO_IOU_THRESHOLDS)  # (T, D)
    on_ignored, _ = _match_coco(ious[:, gt_out], COCO_IOU_THRESHOLDS, eligible=~tp)
    det_out = (_box_areas(det_boxes) < lo) | (_box_areas(det_boxes) > hi)  # (D,)
    ignore = on_ignored | (~tp & det_out[None, :])
    return tp, ignore, int((~gt_out).sum())


def _coco_class(images: list[dict], label: int, area_range=COCO_AREA_RANGES["all"]):
    """AP@[.5:.95], per-threshold AP (10,) and the raw (precision, recall) at IoU 0.5.

    AP is NaN when no GT of the class lies in ``area_range`` (pycocotools' -1).
    """
    scores, tps, ignores, num_gt = [], [], [], 0
    for im in sorted(images, key=lambda im: im["image_id"]):  # pycocotools: sorted imgIds
        gt = im["gt_boxes"][im["gt_labels"] == label]
        mask = im["labels"] == label
        order = np.argsort(-im["scores"][mask], kind="mergesort")[:COCO_MAX_DETS]
        tp, ignore, n = _match_coco_in_range(im["boxes"][mask][order], gt, area_range)
        num_gt += n
        scores.append(im["scores"][mask][order])
        tps.append(tp)  # (T, D)
        ignores.append(ignore)
    if num_gt == 0:
        nan = float("nan")
        return nan, np.full(len(COCO_IOU_THRESHOLDS), nan), (np.zeros(0), np.zeros(0))
    tp, fp = _cumulative_pr(scores, tps, ignores)  # (T, D) each
    prec = np.stack([_coco_precision(tp[t], fp[t], num_gt) for t in range(len(tp))])  # (T, 101)
    raw = (tp[0] / (tp[0] + fp[0] + np.spacing(1)), tp[0] / num_gt)
    return float(prec.mean()), prec.mean(axis=1), raw


def _class_key(dataset, label: int):
    classes = getattr(dataset, "classes", None)
    if classes is not None and 1 <= label <= len(classes):
        return classes[label - 1]
    return label


def evaluate(detections, dataset, *, iou_threshold: float = 0.5, metric: str = "voc07",
             area: str = "all") -> dict:
    """Average precision per class and its mean over classes.

    Args:
        detections: one dict(boxes (D, 4), scores (D,), labels (D,) in 1..K) per image,
            in dataset order.
        dataset: a sequence of dicts with ``boxes`` (G, 4) and ``labels`` (G,); if it has
            ``.classes``, label k is reported as ``classes[k - 1]``.
        iou_threshold: VOC match threshold (strict >); ignored by "coco".
        metric: "voc07" (11-point), "voc" (area), or "coco" (AP@[.5:.95], see module doc).
        area: for "coco", the pycocotools area range: "all", "small" (< 32^2 px),
            "medium" (32^2..96^2) or "large" (> 96^2); GT outside it is ignored, and a
            class with no GT inside it gets AP NaN and is left out of mAP (as
            pycocotools' -1).
    Returns:
        dict(ap={class: AP}, mAP=mean over classes that have GT (NaN if none does),
        pr={class: (precision (D,), recall (D,))} cumulative curves (for coco at IoU 0.5),
        num_gt={class: int}, metric, iou_threshold); for "coco" also mAP50 and mAP75.
        Classes without GT are left out; a class with GT and no detections has AP 0.
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    check_number("iou_threshold", iou_threshold, op="evaluate", low=0, high=1)
    if area not in COCO_AREA_RANGES or (area != "all" and metric != "coco"):
        raise ValueError(f"area must be one of {tuple(COCO_AREA_RANGES)} (and only 'all' "
                         f"for metric {metric!r}), got {area!r}")
    images = _load_images(detections, dataset)
    labels = sorted({int(v) for im in images for v in im["gt_labels"]})
    result = dict(ap={}, pr={}, num_gt={}, metric=metric, iou_threshold=iou_threshold)
    per_iou = []
    for label in labels:
        key = _class_key(dataset, label)
        result["num_gt"][key] = int(sum(np.sum(im["gt_labels"] == label) for im in images))
        if metric == "coco":
            ap, ap_t, pr = _coco_class(images, label, COCO_AREA_RANGES[area])
            per_iou.append(ap_t)
        else:
            ap, precision, recall = _voc_class(images, label, iou_threshold, metric == "voc07")
            pr = (precision, recall)
        result["ap"][key] = ap
        result["pr"][key] = pr
    aps = [a for a in result["ap"].values() if not np.isnan(a)]
    result["mAP"] = float(np.mean(aps)) if aps else float("nan")
    if metric == "coco":
        per_iou = [a for a in per_iou if not np.isnan(a).any()]
        result["mAP50"] = float(np.mean([a[0] for a in per_iou])) if aps else float("nan")
        result["mAP75"] = float(np.mean([a[5] for a in per_iou])) if aps else float("nan")
    return result


def recall_vs_proposals(proposals_list, dataset, *, iou_thresholds=(0.5, 0.7),
                        counts=(10, 20, 50, 100, 200, 300, 500, 1000, 2000)) -> dict:
    """Fraction of GT boxes covered by the top-N proposals (the paper's recall vs #proposals).

    A GT box is recalled at threshold t when some of the first N proposals of its image
    has IoU >= t with it (Hosang et al.'s proposal recall). Proposals are taken in the
    given order (their ranking).

    Args:
        proposals_list: one (P, 4) array per image, best first.
        dataset: sequence of dicts with ``boxes`` (G, 4).
        iou_thresholds: thresholds t.  counts: the N values.
    Returns:
        dict(counts (C,), recall={t: (C,) array}, num_gt=int, mean_best_iou (C,)).
    """
    if len(proposals_list) != len(dataset):
        raise ValueError(f"proposals_list has {len(proposals_list)} entries for "
                         f"{len(dataset)} images in dataset")
    counts = np.array([check_count("counts", n, op="recall_vs_proposals") for n in counts],
                      dtype=np.int64)
    if counts.size == 0:
        raise ValueError("recall_vs_proposals: counts must hold at least one N >= 1, got ()")
    for t in iou_thresholds:
        check_number("iou_thresholds", t, op="recall_vs_proposals", low=0, high=1)
    best = []  # per image: (C, G) best IoU of each GT among the top-N proposals
    for i, props in enumerate(proposals_list):
        props = asnumpy(check_boxes(props, f"proposals_list[{i}]")).astype(np.float64)
        gt = asnumpy(check_boxes(dataset[i]["boxes"], f"dataset[{i}]['boxes']"))
        if len(props) == 0:
            best.append(np.zeros((len(counts), len(gt))))
            continue
        cummax = np.maximum.accumulate(_pairwise_iou(props, gt.astype(np.float64)), axis=0)
        best.append(cummax[np.minimum(counts, len(props)) - 1])  # (P, G) -> (C, G)
    best = np.concatenate(best, axis=1)  # (C, total G)
    if best.shape[1] == 0:
        raise ValueError("dataset has no ground-truth boxes: recall is undefined")
    recall = {t: (best >= t).mean(axis=1) for t in iou_thresholds}
    return dict(counts=counts, recall=recall, num_gt=best.shape[1],
                mean_best_iou=best.mean(axis=1))
