"""Testing Faster R-CNN's proposals against selective search's on the held-out images.

``minircnn train --proposals rpn`` evaluates its detector with the RPN's proposals and
reports, next to selective search's on the same images: recall at IoU 0.5 and 0.7 with
the top N proposals (the Faster R-CNN paper's Figure 4 measure; Hosang et al.'s) and the
time per image of each method, one image at a time on the training's BLAS threads.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from minircnn.backend import asnumpy
from minircnn.detection.evaluate import recall_vs_proposals
from minircnn.detection.proposals import selective_search

COUNTS = (10, 50, 100, 300)        # numbers of proposals the recall is reported at
TIMED_SS_IMAGES = 3                # selective search timed on this many images (~0.1 s each)


def selective_search_config(config):
    """``config`` with selective search proposals (the comparison for an RPN run)."""
    return dataclasses.replace(config, proposal_method="selective_search")


def rpn_dataset_proposals(model, dataset) -> tuple[list, float, float]:
    """The RPN's proposals of every image, one image at a time (the test-time setting).

    Returns:
        (one (P, 4) NumPy array per image, seconds per image in all, seconds per image
        without the backbone, whose features the detector reuses).
    """
    model.eval()
    xp_images = [dataset[i]["image"][None] for i in range(len(dataset))]
    proposals, total, head = [], 0.0, 0.0
    backbone = model.backbone if model.rpn_backbone is None else model.rpn_backbone
    for image in xp_images:                                  # (1, 3, H, W)
        t0 = time.perf_counter()
        features = backbone.forward(image)
        t1 = time.perf_counter()
        boxes = model.rpn.proposals(features, image.shape[2:])[0]
        t2 = time.perf_counter()
        proposals.append(asnumpy(boxes).astype(np.float32))
        total += t2 - t0
        head += t2 - t1
    return proposals, total / len(dataset), head / len(dataset)


def time_selective_search(dataset, config, num: int = TIMED_SS_IMAGES) -> float:
    """Seconds per image of selective search, as the proposal cache computes it."""
    num = min(num, len(dataset))
    t0 = time.perf_counter()
    for i in range(num):
        selective_search(dataset[i]["image"], max_boxes=config.max_proposals)
    return (time.perf_counter() - t0) / num


def _recall(proposals, dataset) -> dict:
    r = recall_vs_proposals(proposals, dataset, iou_thresholds=(0.5, 0.7), counts=COUNTS)
    return {str(t): {str(n): float(v) for n, v in zip(COUNTS, r["recall"][t], strict=True)}
            for t in (0.5, 0.7)}


def compare_proposals(model, dataset, ss_proposals, config) -> tuple[list, dict]:
    """The RPN's proposals of ``dataset`` and the report comparing them with selective search.

    Returns:
        (the RPN's proposals, {"rpn": {...}, "selective_search": {...}}), each with
        ``recall`` {IoU: {N: recall}}, ``mean_count`` and ``ms_per_image``; the RPN's
        also ``ms_per_image_head`` (without the backbone).
    """
    rpn_props, seconds, seconds_head = rpn_dataset_proposals(model, dataset)
    report = {
        "rpn": {"recall": _recall(rpn_props, dataset),
                "mean_count": float(np.mean([len(p) for p in rpn_props])),
                "ms_per_image": 1e3 * seconds, "ms_per_image_head": 1e3 * seconds_head},
        "selective_search": {"recall": _recall(ss_proposals, dataset),
                             "mean_count": float(np.mean([len(p) for p in ss_proposals])),
                             "ms_per_image": 1e3 * time_selective_search(dataset, config)}}
    return rpn_props, report


def format_proposals(report: dict) -> str:
    """Two lines: recall at 0.5 / 0.7 with 300 (and 100) proposals and ms per image."""
    lines = []
    for name, label in (("rpn", "RPN"), ("selective_search", "selective search")):
        r = report[name]
        recall = r["recall"]
        lines.append(
            f"{label:>16}: recall@0.5 {recall['0.5']['300']:.3f} (100: {recall['0.5']['100']:.3f}),"
            f" recall@0.7 {recall['0.7']['300']:.3f} with 300 proposals, "
            f"{r['ms_per_image']:.1f} ms per image")
    return "\n".join(lines)
