"""Testing a detector on held-out images: COCO AP, VOC AP, per class and size.

COCO AP@[.5:.95] first, VOC area AP@0.5 beside it, VOC07 11-point AP third, per class
and per object size."""

from __future__ import annotations

import multiprocessing
import threading
from typing import TYPE_CHECKING

import numpy as np

from minircnn.backend import get_array_module
from minircnn.detection.evaluate import GroundTruth, evaluate
from minircnn.detection.inference import DETECT_BATCH, detect_images
from minircnn.utils.blas import blas_threads
from minircnn.utils.workers import map_in_workers

if TYPE_CHECKING:
    from minircnn.training.config import TrainConfig


def evaluate_detector(model, dataset, proposals, config: TrainConfig) -> tuple[dict, list]:
    """COCO AP@[.5:.95] (the headline), VOC area AP@0.5, VOC07 11-point AP@0.5, per class
    and (COCO) per object size, of ``model`` on ``dataset``.

    Returns:
        (metrics dict, the detections list in dataset order).
    """
    images = [dataset[i]["image"] for i in range(len(dataset))]
    settings = dict(score_thresh=config.score_thresh, nms_thresh=config.nms_thresh,
                    max_dets=config.max_dets, scales=config.test_scales,
                    target=config.pyramid_target)
    batches = -(-len(images) // DETECT_BATCH)   # detect_images' batches of images
    workers = _eval_workers(model, config, batches)
    if workers < 2:
        dets = detect_images(model, images, proposals, **settings)
    else:                       # each worker detects a share of the images, in order
        # shares cut between detect_images' batches: each image is detected in the same
        # batch as in one process, so with the same bits
        bounds = np.minimum(np.linspace(0, batches, workers + 1).astype(int) * DETECT_BATCH,
                            len(images))
        jobs = [(model, images[lo:hi], proposals[lo:hi], settings)
                for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)]
        dets = [d for share in map_in_workers(_detect_share, jobs, workers) for d in share]
    return detection_metrics(dets, dataset), dets


def _eval_workers(model, config: TrainConfig, batches: int) -> int:
    """How many processes detect: ``config.proposal_workers`` on the CPU with one BLAS
    thread each (as the proposals are computed), else 1. Each image is detected alone,
    so the detections are the same in any number of processes.

    One process on a GPU; inside a worker process (``minircnn reproduce`` runs detectors
    in workers, which may not start processes of their own); and while other threads
    run in this one (another pool's, a test runner's): the workers are forks, and a fork
    copies a lock another thread holds, which the worker could then wait for forever.
    """
    on_cpu = get_array_module(model.parameters()[0].data) is np
    in_worker = multiprocessing.current_process().daemon
    alone = threading.active_count() == 1
    if not on_cpu or in_worker or not alone or config.blas_threads != 1:
        return 1
    return max(1, min(config.proposal_workers, batches))   # shares are whole batches


def _detect_share(job) -> list:
    """detect_images on one share of the images, in a worker process (one BLAS thread)."""
    model, images, proposals, settings = job
    with blas_threads(1):
        return detect_images(model, images, proposals, **settings)


def detection_metrics(dets: list, dataset) -> dict:
    """The metrics dict of ``evaluate_detector`` for detections already made.

    VOC07's 11-point AP cannot exceed 10/11 for a class with one missed object (its
    recall = 1 point scores 0), so COCO AP and VOC area AP lead; VOC07 stays for the
    paper's tables. ``coco_AP_by_size`` uses pycocotools' area ranges (small < 32^2 px,
    medium < 96^2; NaN where a range holds no object: AP is undefined without an object
    to find, and ``null`` in metrics.json and ``minircnn eval --json``).
    """
    dataset = GroundTruth(dataset)       # read once for the six evaluations below
    coco = evaluate(dets, dataset, metric="coco")
    voc = evaluate(dets, dataset, iou_threshold=0.5, metric="voc")
    voc07 = evaluate(dets, dataset, iou_threshold=0.5, metric="voc07")
    by_size = {size: float(evaluate(dets, dataset, metric="coco", area=size)["mAP"])
               for size in ("small", "medium", "large")}
    return {"coco_AP": float(coco["mAP"]), "coco_AP50": float(coco["mAP50"]),
            "coco_AP75": float(coco["mAP75"]), "voc_mAP": float(voc["mAP"]),
            "voc07_mAP": float(voc07["mAP"]), "coco_AP_by_size": by_size,
            "per_class_coco_AP": {str(k): float(v) for k, v in coco["ap"].items()},
            "per_class_voc_AP": {str(k): float(v) for k, v in voc["ap"].items()},
            "per_class_AP": {str(k): float(v) for k, v in voc07["ap"].items()},
            "num_images": len(dataset)}


def format_metrics(ev: dict) -> str:
    """Two lines for a terminal: the headline APs, then per class and per object size."""
    per_class = ", ".join(f"{k} {v:.3f}" for k, v in ev["per_class_coco_AP"].items())
    sizes = ", ".join(f"{k} {v:.3f}" for k, v in ev["coco_AP_by_size"].items() if v == v)
    return (f"COCO AP@[.5:.95] = {ev['coco_AP']:.4f}, VOC AP@0.5 (area) = {ev['voc_mAP']:.4f}, "
            f"VOC07 11-point = {ev['voc07_mAP']:.4f} on {ev['num_images']} held-out images\n"
            f"COCO AP per class: {per_class}; by object size: {sizes}")
