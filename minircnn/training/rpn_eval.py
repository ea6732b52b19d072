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
from minircnn.layers.module import no_grad

COUNTS = (10, 50, 100, 300)        # numbers of proposals the recall is reported at
TIMED_SS_IMAGES = 3                # selective search timed on this many images (~0.1 s each)


def selective_search_config(config):
    """``config`` with selective search proposals (the comparison for an RPN run)."""
    return dataclasses.replace(config, proposal_method="selective_search")


def rpn_dataset_proposals(model, dataset) -> tuple[list, dict]:
    """The RPN's proposals of every image, one image at a time (the test-time setting).
    ``dataset``: a ShapesDataset or any sequence of dicts with an ``image`` (3, H, W).

    Returns:
        (one (P, 4) NumPy array per image, times): ``ms_per_image`` in all (backbone,
        head, decoding) and ``ms_per_image_head`` without the backbone, whose features
        the detector reuses (the Faster R-CNN paper's Table 5 counts the proposals'
        time that way), each as wall-clock time and, ``cpu_``, as this process's CPU time
        (what a busy machine inflates less).
    """
    model.eval()
    backbone = model.proposal_backbone
    proposals, wall, cpu = [], np.zeros(2), np.zeros(2)       # [all, head only]
    with no_grad(model):                                      # test time: no caches
        for i in range(len(dataset)):
            image = dataset[i]["image"][None]                    # (1, 3, H, W)
            times = _propose_timed(model, backbone, image, proposals)
            wall += times[0]
            cpu += times[1]
    wall, cpu = 1e3 * wall / len(dataset), 1e3 * cpu / len(dataset)
    return proposals, {"ms_per_image": wall[0], "ms_per_image_head": wall[1],
                       "cpu_ms_per_image": cpu[0], "cpu_ms_per_image_head": cpu[1]}


def _propose_timed(model, backbone, image, proposals: list):
    """Appends the RPN's proposals of ``image`` (1, 3, H, W) to ``proposals``; returns
    the seconds it took as ((wall in all, wall of the head), (cpu in all, cpu of the head))."""
    w0, c0 = time.perf_counter(), time.process_time()
    features = backbone.forward(image)                          # (1, C, H/s, W/s)
    w1, c1 = time.perf_counter(), time.process_time()
    boxes = model.rpn.proposals(features, image.shape[2:])[0]   # (P, 4)
    w2, c2 = time.perf_counter(), time.process_time()
    proposals.append(asnumpy(boxes).astype(np.float32))
    return (w2 - w0, w2 - w1), (c2 - c0, c2 - c1)


def time_selective_search(dataset, config, num: int = TIMED_SS_IMAGES) -> dict:
    """Milliseconds per image of selective search (wall and CPU), on ``num`` images."""
    num = min(num, len(dataset))
    w0, c0 = time.perf_counter(), time.process_time()
    for i in range(num):
        selective_search(dataset[i]["image"], max_boxes=config.max_proposals)
    return {"ms_per_image": 1e3 * (time.perf_counter() - w0) / num,
            "cpu_ms_per_image": 1e3 * (time.process_time() - c0) / num}


def _recall(proposals, dataset) -> dict:
    r = recall_vs_proposals(proposals, dataset, iou_thresholds=(0.5, 0.7), counts=COUNTS)
    return {str(t): {str(n): float(v) for n, v in zip(COUNTS, r["recall"][t], strict=True)}
            for t in (0.5, 0.7)}


def compare_proposals(model, dataset, ss_proposals, config) -> tuple[list, dict]:
    """The RPN's proposals of ``dataset`` and the report comparing them with selective search.

    ``dataset`` is read four times (proposals, two recalls, the timing): pass the items
    drawn once (``data.shapes.Drawn``), as the training loop does.

    Returns:
        (the RPN's proposals, {"rpn": {...}, "selective_search": {...}}), each with
        ``recall`` {IoU: {N: recall}}, ``mean_count``, ``ms_per_image`` and
        ``cpu_ms_per_image``; the RPN's also ``ms_per_image_head`` and
        ``cpu_ms_per_image_head`` (without the backbone).
    """
    rpn_props, rpn_times = rpn_dataset_proposals(model, dataset)
    report = {
        "rpn": {"recall": _recall(rpn_props, dataset),
                "mean_count": float(np.mean([len(p) for p in rpn_props])), **rpn_times},
        "selective_search": {"recall": _recall(ss_proposals, dataset),
                             "mean_count": float(np.mean([len(p) for p in ss_proposals])),
                             **time_selective_search(dataset, config)}}
    return rpn_props, report


def format_proposals(report: dict) -> str:
    """Two lines: recall at IoU 0.5 / 0.7 with 300 proposals, and time per image."""
    lines = []
    for name, label in (("rpn", "RPN proposals"), ("selective_search", "selective search")):
        r = report[name]
        head = (f" ({r['ms_per_image_head']:.1f} ms without the shared backbone)"
                if "ms_per_image_head" in r else "")
        lines.append(f"{label}: recall {r['recall']['0.5']['300']:.3f} at IoU 0.5, "
                     f"{r['recall']['0.7']['300']:.3f} at 0.7 (300 proposals); "
                     f"{r['ms_per_image']:.1f} ms per image{head}")
    return "\n".join(lines)
