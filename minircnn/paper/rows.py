"""The rows of `minircnn reproduce`: each trains (or reuses) detectors and measures one thing.

A row is ``Row(id, run)`` where ``run(config, seed) -> dict`` returns that seed's
numbers (AP metrics, times, MACs). Every detector is tested at one scale, as the paper
tests in every table but Table 7, which compares the image pyramid (at test time, then
in training too), and but SPP-net, which tests on the pyramid it was run with. Rows
that test a detector as trained read a shared evaluation (``Eval``, run once per
detector and test setting by ``run_eval`` before the rows fan out). Test-time variants
wrap a trained model: ``NoBoxRegression`` scores the proposals themselves, and
``svm_detections`` replaces the softmax by one-vs-rest linear SVMs trained on fc7
features with hard-negative mining. R-CNN and SPP-net run the papers' later training
stages (``_later_stages``). ``measure_row`` runs one (row, seed) in a worker process.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from minircnn.detection.evaluate import GroundTruth, recall_vs_proposals
from minircnn.detection.inference import detect_images
from minircnn.layers.module import Module
from minircnn.models.compress import compress_fast_rcnn
from minircnn.paper.baselines import detect_with_stages, train_later_stages
from minircnn.paper.flops import inference_macs, train_macs_per_iteration
from minircnn.paper.svm import svm_detections
from minircnn.paper.variants import (
    FIXED_FEATURES_LR,
    GRID_KINDS,
    GRID_SIZES,
    run_folder,
    trained,
    variant_config,
)
from minircnn.training.config import make_datasets
from minircnn.training.metrics import detection_metrics
from minircnn.training.proposals import load_proposals
from minircnn.utils.blas import blas_threads
from minircnn.utils.fileio import write_json

SVD_FRACTIONS = (1 / 4, 1 / 16)       # fc6, fc7 rank / hidden: the paper's 1024 and 256 of 4096
FIGURE2_RANKS = (8, 16, 32, 64, 128)
_VAL = {}                              # the held-out split per TrainConfig, per process


class Row(NamedTuple):
    id: str
    run: Callable


def variants_of(row: Row) -> tuple:
    """The trained-detector variants a row's ``run`` loads (``reproduce`` trains them first)."""
    return getattr(row.run, "variants", ())


def _uses(*variants: str):
    """Mark a row function with the variants it loads (see ``variants_of``)."""
    def mark(run: Callable) -> Callable:
        run.variants = variants
        return run
    return mark


class _HeldOut(NamedTuple):
    """The held-out split, read once per process: its images, ground truth and proposals."""
    dataset: object
    images: list
    truth: GroundTruth
    proposals: list


def _val_split(config) -> _HeldOut:
    key = (config.num_val, config.image_size, config.max_objects, config.data_seed,
           config.proposal_method, config.max_proposals, config.cache_dir)
    if key not in _VAL:
        _, val = make_datasets(config)
        _VAL[key] = _HeldOut(val, [val[i]["image"] for i in range(len(val))], GroundTruth(val),
                             load_proposals(val, config, progress=False))
    return _VAL[key]


def _evaluate(model, config, proposals=None) -> dict:
    """AP metrics of ``model`` on the held-out split and its test time per image."""
    held_out = _val_split(config)
    props = held_out.proposals if proposals is None else proposals
    start = time.perf_counter()
    dets = detect_images(model, held_out.images, props, score_thresh=config.score_thresh,
                         nms_thresh=config.nms_thresh, max_dets=config.max_dets,
                         scales=config.test_scales, target=config.pyramid_target)
    seconds = (time.perf_counter() - start) / len(held_out.images)
    m = detection_metrics(dets, held_out.truth)
    return {k: m[k] for k in ("coco_AP", "voc_mAP", "voc07_mAP")} | {"test_s_per_image": seconds}


class Eval(NamedTuple):
    """One test of one trained detector: its variant, the test scales (None: its own)
    and the SVD fractions of fc6, fc7 (none: uncompressed). Several rows share one."""
    variant: str
    test_scales: tuple | None = None
    fractions: tuple = ()

    def path(self, config, seed: int) -> str:
        scales = "-".join(f"{s:g}" for s in self.test_scales) if self.test_scales else "own"
        name = f"scales_{scales}" + "".join(f"_svd{f:g}" for f in self.fractions)
        return os.path.join(run_folder(config, self.variant, seed), "evals", f"{name}.json")


def run_eval(job) -> dict:
    """Test one detector (``job = (config, Eval, seed)``) and write evals/<name>.json.

    ``reproduce`` runs each (Eval, seed) once, before the rows fan out, so rows that
    share it read one result (and one timing). ``cpu_s``: this process's CPU time for it
    (minircnn/paper/budget.py sums it)."""
    config, ev, seed = job
    start = time.process_time()
    with blas_threads(1):
        model, metrics = trained(config, ev.variant, seed)
        if ev.fractions:
            hidden = model.fc7.w.data.shape[0]
            model = compress_fast_rcnn(model, *(max(1, int(f * hidden)) for f in ev.fractions))
        cfg = variant_config(config, ev.variant, seed)
        if ev.test_scales is not None:
            cfg = dataclasses.replace(cfg, test_scales=ev.test_scales)
        result = _evaluate(model, cfg) | _costs(model, cfg, metrics)
    result["cpu_s"] = time.process_time() - start
    write_json(ev.path(config, seed), result)
    return result


def train_seconds(metrics: dict) -> float:
    """Seconds of training: the sum of the epochs' times, which a resumed run keeps
    (its own ``times.train_s`` counts only the part after the resume)."""
    return float(sum(e["time_s"] for e in metrics["epochs"]))


def _costs(model, cfg, metrics) -> dict:
    """Training time and iterations, and MACs counted from the layer shapes
    (minircnn/paper/flops.py): per test image, per training run, backbone passes."""
    iterations = sum(e["iterations"] for e in metrics["epochs"])
    rois = float(np.mean([len(p) for p in _val_split(cfg).proposals]))
    test = inference_macs(model, cfg.image_size, round(rois), cfg.test_scales)
    crop = getattr(model, "crop_size", 0)                # R-CNN's warped crops
    return {"train_s": train_seconds(metrics), "iterations": iterations,
            "test_macs": test["total"], "backbone_macs": test["backbone"],
            "backbone_passes": test["backbone_passes"], "crop_pixels": crop * crop,
            "image_pixels": cfg.image_size ** 2,
            "train_macs": iterations * train_macs_per_iteration(model, cfg)}


def _plain(variant: str, test_scales: tuple | None = None, **compress) -> Callable:
    """The variant's detector as trained (optionally SVD-compressed, or tested at other
    scales than its own): the shared evaluation ``run_eval`` wrote (run now if missing,
    when a row runs outside ``reproduce``)."""
    ev = Eval(variant, test_scales, tuple(compress.get("fractions", ())))

    def run(config, seed):
        path = ev.path(config, seed)
        if os.path.isfile(path):
            with open(path) as f:
                return json.load(f)
        return run_eval((config, ev, seed))
    run.eval = ev
    return _uses(variant)(run)


def evals_of(row: Row) -> Eval | None:
    """The shared evaluation a row reads, if it is one (``reproduce`` runs them first)."""
    return getattr(row.run, "eval", None)


class NoBoxRegression(Module):
    """A detector whose box deltas are zero: detections are the scored proposals."""

    def __init__(self, model):
        self.model = model

    def forward(self, images, rois):
        cls_scores, deltas = self.model.forward(images, rois)
        return cls_scores, deltas * 0


def _wrapped(variant: str, wrapper) -> Callable:
    def run(config, seed):
        model, metrics = trained(config, variant, seed)
        cfg = variant_config(config, variant, seed)
        return _evaluate(wrapper(model), cfg) | {"train_s": train_seconds(metrics)}
    return _uses(variant)(run)


@_uses("cls_only")
def _stagewise(config, seed) -> dict:
    """Stage 2 of stage-wise training: the classification-only detector frozen, bbox_pred
    trained alone for a quarter of the iterations, at FIXED_FEATURES_LR."""
    from minircnn.training.optim import SGD, step_lr
    from minircnn.training.step import sample_batch, train_step

    model, metrics = trained(config, "cls_only", seed)
    cfg = variant_config(config, "cls_only", seed)
    model.freeze()
    model.bbox_pred.unfreeze()
    train, _ = make_datasets(cfg)
    items = [train[i] for i in range(len(train))]
    props = load_proposals(train, cfg)
    lr = FIXED_FEATURES_LR
    opt = SGD(model.parameters(), lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    rng = np.random.default_rng([seed, 7])
    iters = max(1, cfg.epochs * (len(items) // cfg.images_per_batch) // 4)
    start = time.perf_counter()
    model.train()
    for it in range(iters):
        opt.lr = step_lr(lr, it, steps=(int(0.75 * iters),), warmup_iters=0)
        idx = rng.choice(len(items), size=cfg.images_per_batch, replace=False)
        images, b = sample_batch(cfg, items, props, idx, rng)
        train_step(model, opt, images, b.rois, b.labels, b.bbox_targets)
    train_s = train_seconds(metrics) + time.perf_counter() - start
    return _evaluate(model, cfg) | {"train_s": train_s}


def _later_stages(variant: str) -> Callable:
    """R-CNN or SPP-net as the papers trained them: the fine-tuned detector (stage 1),
    every training proposal's features cached to disk, SVMs and box regressors
    (minircnn/paper/baselines.py); tested with them at the variant's test scales."""
    def run(config, seed):
        model, metrics = trained(config, variant, seed)
        cfg = variant_config(config, variant, seed)
        train, _ = make_datasets(cfg)
        folder = os.path.join(run_folder(config, variant, seed), "stages")
        stages, measured = train_later_stages(
            model, train, load_proposals(train, cfg, progress=False), folder,
            scales=cfg.test_scales, target=cfg.pyramid_target, seed=seed)
        held_out = _val_split(cfg)
        start = time.perf_counter()
        dets = detect_with_stages(model, stages, held_out.images, held_out.proposals, cfg)
        seconds = (time.perf_counter() - start) / len(held_out.images)
        m = detection_metrics(dets, held_out.truth)
        costs = _costs(model, cfg, metrics)
        rows_per_image = measured["feature_rows"] / len(train)     # GT boxes + proposals
        extract = len(train) * inference_macs(model, cfg.image_size, round(rows_per_image),
                                         cfg.test_scales)["total"]
        stage_s = sum(measured[k] for k in ("cache_features_s", "svms_s", "box_regressors_s"))
        return {k: m[k] for k in ("coco_AP", "voc_mAP", "voc07_mAP")} | costs | measured | {
            "test_s_per_image": seconds, "fine_tune_s": costs["train_s"],
            "train_s": costs["train_s"] + stage_s, "train_macs": costs["train_macs"] + extract}
    return _uses(variant)(run)


@_uses("fast_rcnn")
def _svm(config, seed) -> dict:
    model, metrics = trained(config, "fast_rcnn", seed)
    cfg = variant_config(config, "fast_rcnn", seed)
    held_out = _val_split(cfg)
    start = time.perf_counter()
    dets, svm_train_s = svm_detections(model, cfg, held_out.dataset, held_out.proposals,
                                       seed=seed)
    seconds = (time.perf_counter() - start) / len(held_out.images)
    m = detection_metrics(dets, held_out.truth)
    return {k: m[k] for k in ("coco_AP", "voc_mAP", "voc07_mAP")} | {
        "test_s_per_image": seconds, "train_s": train_seconds(metrics) + svm_train_s}


@_uses("fast_rcnn")
def _figure2(config, seed) -> dict:
    """mAP and head time (fc6 + fc7 + outputs, per image) against the fc6 rank."""
    model, _ = trained(config, "fast_rcnn", seed)
    cfg = variant_config(config, "fast_rcnn", seed)
    points = []
    for rank in (*FIGURE2_RANKS, None):
        if rank is not None and rank >= min(model.fc6.w.data.shape):
            continue
        m = model if rank is None else compress_fast_rcnn(model, rank, None)
        points.append({"rank": rank, **_evaluate(m, cfg), "head_ms": _head_ms(m, cfg)})
    return {"points": points}


def _head_ms(model, cfg, repeats: int = 5) -> float:
    """Best-of time of fc6 -> fc7 -> cls/bbox on max_proposals RoIs (one image's head)."""
    x = np.random.default_rng(0).random((cfg.max_proposals, model.fc6.in_features),
                                        dtype=np.float32)
    best = np.inf
    for _ in range(repeats):
        t = time.perf_counter()
        h = np.maximum(model.fc7.forward(np.maximum(model.fc6.forward(x), 0)), 0)
        model.cls_score.forward(h), model.bbox_pred.forward(h)
        best = min(best, time.perf_counter() - t)
    return best * 1e3


@_uses("fast_rcnn")
def _figure3(config, seed) -> dict:
    """mAP and recall against the number of test proposals: selective search (its top k
    of the ranked list) and dense sliding windows (an evenly spread subset of k)."""
    model, _ = trained(config, "fast_rcnn", seed)
    cfg = variant_config(config, "fast_rcnn", seed)
    held_out = _val_split(cfg)
    curves = {"selective_search": [], "dense": []}
    for k in _counts(cfg):
        props = [p[:k] for p in held_out.proposals]
        curves["selective_search"].append({"k": k, **_evaluate(model, cfg, props),
                                           "recall": _recall(props, held_out.truth)})
    for k in (100, 300, 1000, 3000):
        dense_cfg = dataclasses.replace(cfg, proposal_method="dense", max_proposals=k)
        props = _val_split(dense_cfg).proposals
        curves["dense"].append({"k": k, **_evaluate(model, cfg, props),
                                "recall": _recall(props, held_out.truth)})
    return curves


def _counts(cfg) -> tuple:
    """The numbers of test proposals of Figure 3's curves."""
    return (10, 25, 50, 100, 200, cfg.max_proposals)


@_uses("faster_rcnn")
def _figure3_rpn(config, seed) -> dict:
    """Figure 3's RPN curve: the Faster R-CNN detector (trained with its RPN's proposals)
    tested with the top k of them. Its proposals come out of NMS best first, so the top
    k are what ``post_nms_top_n = k`` would give."""
    from minircnn.training.rpn_eval import rpn_dataset_proposals

    model, _ = trained(config, "faster_rcnn", seed)
    cfg = variant_config(config, "faster_rcnn", seed)
    cfg = dataclasses.replace(cfg, proposal_method=config.base().proposal_method)
    held_out = _val_split(cfg)                       # its images and ground truth
    ranked, _ = rpn_dataset_proposals(model, held_out.dataset)
    curve = []
    for k in _counts(cfg):
        props = [p[:k] for p in ranked]
        curve.append({"k": k, **_evaluate(model, cfg, props),
                      "recall": _recall(props, held_out.truth)})
    return {"rpn": curve}


def _recall(props, val) -> float:
    rec = recall_vs_proposals(props, val, iou_thresholds=(0.5,), counts=(10 ** 6,))
    return float(rec["recall"][0.5][0])


ROWS = [
    Row("table4_rcnn", _later_stages("rcnn")),
    Row("table4_toy_rcnn_softmax", _plain("rcnn")),
    Row("table4_sppnet", _later_stages("sppnet")),
    Row("table4_toy_sppnet_one_scale", _plain("sppnet", test_scales=(1.0,))),
    Row("table4_fast_rcnn", _plain("fast_rcnn")),
    Row("table4_fast_rcnn_svd", _plain("fast_rcnn", fractions=SVD_FRACTIONS)),
    Row("table5_fc_only", _plain("ft_head")),
    Row("table5_from_block3", _plain("fast_rcnn")),
    Row("table5_all", _plain("ft_all")),
    Row("table6_cls_only_no_box", _wrapped("cls_only", NoBoxRegression)),
    Row("table6_multitask_no_box", _wrapped("fast_rcnn", NoBoxRegression)),
    Row("table6_stagewise", _stagewise),
    Row("table6_multitask", _plain("fast_rcnn")),
    Row("table7_one_scale", _plain("fast_rcnn")),
    Row("table7_pyramid_test", _plain("fast_rcnn", test_scales=(1.0, 2.0))),
    Row("table7_pyramid", _plain("multiscale")),
    Row("table8_svm", _svm),
    Row("table8_softmax", _plain("fast_rcnn")),
    Row("figure2_svd", _figure2),
    Row("figure3_proposals", _figure3),
    Row("figure3_rpn", _figure3_rpn),
    *(Row(f"data{n}_{kind}", _plain(f"data{n}_{kind}"))
      for n in GRID_SIZES for kind, _ in GRID_KINDS),
]
ROW_BY_ID = {row.id: row for row in ROWS}


def measure_row(job) -> tuple:
    """(row id, seed, that seed's numbers) of ``job = (config, row id, seed)``.

    Runs in a worker process beside others, so it keeps to one BLAS thread: the times
    it measures are one core's, as the training times are. ``cpu_s``: this process's
    CPU time for the row itself (a row that reads a shared evaluation costs almost none;
    the evaluation's own is in its evals/ JSON).
    """
    config, row_id, seed = job
    start = time.process_time()
    with blas_threads(1):
        measured = ROW_BY_ID[row_id].run(config, seed)
    return row_id, seed, measured | {"cpu_s": time.process_time() - start}
