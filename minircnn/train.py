"""Training Fast R-CNN on the shapes dataset, end to end, from one config.

``train_detector(TrainConfig(), "runs/shapes")`` does what ``minircnn train`` does:

1. datasets: ShapesDataset train / held-out val splits (different seeds);
2. proposals: selective search on every image, computed once and cached on disk (the
   paper computes proposals offline too);
3. training: each iteration takes N=2 images (randomly flipped left-right), samples
   R=128 RoIs from them hierarchically (25% foreground, IoU >= 0.5; background IoU in
   [0.1, 0.5)), runs forward, the multi-task loss and backward, and an SGD step
   (momentum 0.9, weight decay 5e-4, biases at 2x lr without decay, linear warm-up then
   step decay);
4. after every epoch: metrics.json, an atomic checkpoint (weights + optimizer and RNG
   state, so ``resume=True`` continues exactly as an uninterrupted run);
5. at the end: VOC07 mAP@0.5, COCO AP@[.5:.95] and per-class AP on the val split,
   loss_curve.png and detections.png, and model.npz (weights and config only).
Evaluating a saved model and detecting in a PNG live in minircnn/eval_and_detect.py;
the run plumbing (run folder lock, checkpoints with optimizer and RNG state, resume
checks, pictures) in minircnn/runs.py; proposals of a whole dataset (worker processes,
cache) in minircnn/dataset_proposals.py. What stays here is the recipe and the loop.

The whole run is deterministic for a given ``seed``. A NaN/inf loss stops it with a
``FloatingPointError`` that names the iteration; the last good checkpoint stays.
"""

from __future__ import annotations

import dataclasses
import os
import time
from contextlib import nullcontext
from dataclasses import dataclass, field

import numpy as np

from minircnn.backend import get_array_module
from minircnn.blas import blas_threads
from minircnn.data.shapes import ShapesDataset
from minircnn.dataset_proposals import load_proposals, proposals_in_background
from minircnn.detection.evaluate import GroundTruth, evaluate
from minircnn.detection.inference import detect_images, rescale_batch
from minircnn.detection.sampling import hierarchical_batch, region_wise_batch
from minircnn.fileio import remove_stale_temps, write_json
from minircnn.layers.losses import fast_rcnn_loss_backward, fast_rcnn_loss_forward
from minircnn.models import RCNN, FastRCNN, SmallVGG, SPPNet, read_checkpoint, save_checkpoint
from minircnn.optim import SGD, step_lr
from minircnn.runs import (
    RunLock,
    StopSignals,
    check_fresh_or_resume,
    interrupted,
    restore_run,
    save_run_checkpoint,
    save_run_pictures,
)
from minircnn.settings import check_train_config


@dataclass
class TrainConfig:
    """Every setting of a detection run (saved as config.json and inside checkpoints).

    The backbone runs at feature stride 4 (a 32x32 map for a 128-pixel image; objects are
    12..62 px, so a small shape covers 3 to 5 cells, where stride 8 gave it 1 or 2 and
    lost most of the boxes' precision). RoIAlign's bilinear sampling beats RoIPool's
    rounding, and 800 training images beat 400 at the same number of iterations. At
    test time an image pyramid (1x and 2x) scores each proposal at the scale that brings
    it closest to 48x48 pixels, which helps the smallest shapes most (paper section 5.4).
    What each setting measured: docs/performance.md and minircnn/weights/README.md.
    """
    name: str = "shapes"                 # run name: runs/<name>/
    seed: int = 0                        # model init, sampling, flips, dropout
    # data
    num_train: int = 800
    num_val: int = 300
    image_size: int = 128
    max_objects: int = 4
    data_seed: int = 0                   # train split seed; val uses data_seed + 1
    # proposals
    proposal_method: str = "selective_search"
    max_proposals: int = 300
    cache_dir: str | None = None         # None: the per-user cache; "" disables caching
    proposal_workers: int = 2            # processes computing proposals (2 CPU cores)
    # model
    model: str = "fast_rcnn"             # or the baselines "rcnn", "sppnet" (models/rcnn.py)
    backbone: str = "vgg"
    pretrained: bool = True              # start the backbone from shapes classification
    pretrained_path: str = ""            # a `minircnn pretrain` checkpoint ("": shipped)
    freeze_at: int = 3                   # fine-tune from block k up (1: train everything)
    channels: tuple = (16, 32, 64, 64)
    num_pools: int = 2                   # feature stride 2**num_pools = 4 (see above)
    batch_norm: bool = False             # BatchNorm2d after each backbone conv
    roi_op: str = "align"                # RoIAlign (sampling_ratio 2) or "pool"
    output_size: int = 7
    hidden: int = 256
    dropout: float = 0.5
    # minibatches
    sampling: str = "hierarchical"       # or "region" (RoIs from region_images images)
    images_per_batch: int = 2
    region_images: int = 16
    rois_per_batch: int = 128
    fg_fraction: float = 0.25
    fg_iou: float = 0.5
    bg_iou: tuple = (0.1, 0.5)
    flip: bool = True
    train_scales: tuple = (1.0,)         # each minibatch at a random one (multi-scale training)
    # optimisation
    epochs: int = 9                      # 9 x 400 iterations of 2 images
    lr: float = 0.02                     # measured against 0.01: docs/performance.md
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_iters: int = 100
    lr_steps: tuple = (0.75,)            # decay by gamma at these fractions of the run
    gamma: float = 0.1
    box_loss_weight: float = 1.0         # lambda of the multi-task loss (0: classification only)
    # evaluation
    score_thresh: float = 0.05
    nms_thresh: float = 0.3
    max_dets: int = 100
    test_scales: tuple = (1.0, 2.0)      # image pyramid at test time ((1.0,): one scale)
    pyramid_target: float = 48.0         # each RoI is scored where it is closest to this side
    device: str = "cpu"
    blas_threads: int | None = 1         # BLAS threads while training (minircnn/blas.py)
    pictures: bool = True                # write loss_curve.png and detections.png
    extra: dict = field(default_factory=dict)  # free-form notes saved with the run

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v
                for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        names = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - set(names))
        if unknown:
            raise ValueError(f"TrainConfig: unknown settings {unknown}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


# --- building blocks ---------------------------------------------------------------------
def make_detector(config: TrainConfig) -> FastRCNN:
    """The FastRCNN the config describes, initialised from ``config.seed``."""
    rng = np.random.default_rng([config.seed, 0])
    if config.backbone == "vgg":
        backbone = _vgg_backbone(config, rng)
    elif config.backbone == "resnet":
        backbone = _resnet_backbone(config, rng)
    else:
        raise ValueError(f"backbone must be 'vgg' or 'resnet', got {config.backbone!r}")
    size = (config.output_size, config.output_size)
    head = dict(hidden=config.hidden, dropout=config.dropout, rng=rng)
    if config.model == "rcnn":      # a 4x-object-size warp, as R-CNN's 227 px for VGG16
        return RCNN(3, backbone, crop_size=4 * backbone.feature_stride, **head)
    if config.model == "sppnet":
        return SPPNet(3, backbone, levels=(4, 2, 1), **head)
    if config.model != "fast_rcnn":
        raise ValueError(f"model must be 'fast_rcnn', 'rcnn' or 'sppnet', got {config.model!r}")
    return FastRCNN(len(ShapesDataset.classes), backbone, roi_op=config.roi_op,
                    output_size=size, classes=ShapesDataset.classes, **head)


def _vgg_backbone(config: TrainConfig, rng: np.random.Generator) -> SmallVGG:
    """SmallVGG, its weights from the pretrained VGGClassifier, blocks below freeze_at fixed.

    The paper fine-tunes VGG16 from conv3_1 up (Table 5: conv1 and conv2 fixed); with
    ``freeze_at = 3`` the toy does the same with its four blocks. The classifier was
    pretrained at stride 8 and the detector runs at ``2**num_pools`` (4): pools hold no
    weights, so the same convs serve (``with_pools``).
    """
    backbone = SmallVGG(config.channels, num_pools=config.num_pools,
                        batch_norm=config.batch_norm, rng=rng)
    if not config.pretrained:
        return backbone
    from minircnn.models import pretrained_vgg
    from minircnn.models.backbones import fold_batchnorm, with_pools

    source = pretrained_vgg(path=config.pretrained_path or None)
    state = with_pools(fold_batchnorm(source.backbone), config.num_pools).state_dict()
    try:
        backbone.load_state_dict(state)
    except ValueError as e:
        origin = config.pretrained_path or "the shipped VGG"
        raise ValueError(f"pretrained weights {origin} do not fit the SmallVGG: {e}. "
                         f"The pretrained SmallVGG has channels "
                         f"{tuple(source.backbone.channels)}: use those channels, or "
                         f"--scratch to train without pretraining") from e
    return backbone.freeze_blocks(config.freeze_at - 1)


def _resnet_backbone(config: TrainConfig, rng: np.random.Generator):
    """The pretrained MiniResNet's stem + 3 stages (stride 8) with frozen BatchNorm, the
    stem and stages below ``freeze_at`` fixed (detectron2's FREEZE_AT); from scratch:
    the same architecture with BatchNorm2d, nothing frozen."""
    from minircnn.models import ResNetBackbone, freeze_stages, pretrained_backbone

    if not config.pretrained:
        return ResNetBackbone(num_stages=3, norm="bn", rng=rng)
    source = pretrained_backbone(3, path=config.pretrained_path or None)
    return freeze_stages(source, config.freeze_at - 1)


def make_datasets(config: TrainConfig) -> tuple[ShapesDataset, ShapesDataset]:
    """(train, val): disjoint splits, val drawn with seed data_seed + 1."""
    kw = dict(image_size=config.image_size, max_objects=config.max_objects)
    return (ShapesDataset(config.num_train, seed=config.data_seed, **kw),
            ShapesDataset(config.num_val, seed=config.data_seed + 1, **kw))


def flip_horizontal(image: np.ndarray, boxes: np.ndarray, proposals: np.ndarray):
    """Mirror an image (3, H, W) and its (G, 4) boxes and (P, 4) proposals left-right."""
    width = image.shape[-1]
    def mirror(b):  # x1' = W - x2, x2' = W - x1
        return np.stack([width - b[:, 2], b[:, 1], width - b[:, 0], b[:, 3]], axis=1)
    return image[:, :, ::-1].copy(), mirror(boxes), mirror(proposals)


def train_step(model, optimizer: SGD, images, rois, labels, bbox_targets, *,
               box_weight: float = 1.0) -> dict:
    """One SGD iteration on one minibatch; returns loss, loss_cls, loss_box, accuracy.

    ``box_weight`` scales the box regression term (the paper's lambda, 1 by default;
    0 trains classification only, the first stage of stage-wise training).

    Raises:
        FloatingPointError: the scores or the loss are not finite (the weights are
            left as they were before this step's update).
    """
    xp = get_array_module(images)
    optimizer.zero_grad()
    with np.errstate(over="ignore", invalid="ignore"):  # divergence -> the clear error below
        cls_scores, bbox_deltas = model.forward(images, rois)
        if not (bool(xp.isfinite(cls_scores).all()) and bool(xp.isfinite(bbox_deltas).all())):
            raise FloatingPointError("the network outputs are not finite (nan/inf)")
        loss, cache = fast_rcnn_loss_forward(cls_scores, bbox_deltas, labels, bbox_targets)
        if not bool(xp.isfinite(loss)):
            raise FloatingPointError(f"the loss is {float(loss)}")
        dcls, dbbox = fast_rcnn_loss_backward(1.0, cache)
        model.backward(dcls, dbbox * box_weight)
        optimizer.step()
    return {"loss": float(loss), "loss_cls": cache.loss_cls, "loss_box": cache.loss_box,
            "accuracy": cache.accuracy}


def evaluate_detector(model, dataset, proposals, config: TrainConfig) -> tuple[dict, list]:
    """COCO AP@[.5:.95] (the headline), VOC area AP@0.5, VOC07 11-point AP@0.5, per class
    and (COCO) per object size, of ``model`` on ``dataset``.

    Returns:
        (metrics dict, the detections list in dataset order).
    """
    images = [dataset[i]["image"] for i in range(len(dataset))]
    dets = detect_images(model, images, proposals, score_thresh=config.score_thresh,
                         nms_thresh=config.nms_thresh, max_dets=config.max_dets,
                         scales=config.test_scales, target=config.pyramid_target)
    return detection_metrics(dets, dataset), dets


def detection_metrics(dets: list, dataset) -> dict:
    """The metrics dict of ``evaluate_detector`` for detections already made.

    VOC07's 11-point AP cannot exceed 10/11 for a class with one missed object (its
    recall = 1 point scores 0), so COCO AP and VOC area AP lead; VOC07 stays for the
    paper's tables. ``coco_AP_by_size`` uses pycocotools' area ranges (small < 32^2 px,
    medium < 96^2; NaN where a range holds no object).
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


# The loss starts near log(K + 1) ~ 1.4 (cross-entropy over K + 1 classes) and falls; a
# loss a million times larger means the weights are blowing up, and float32 overflows a
# few steps later (seen with lr=1e6: 1.5, then 3e33, then inf at test time). Stop there.
DIVERGED_LOSS = 1e6


# --- the training loop ---------------------------------------------------------------------
def sample_batch(config, items, props, idx, rng, *, stride: int = 1):
    """Images (n, 3, H', W') and an RoIBatch for the training images ``idx``.

    Each image is flipped with probability 1/2 (``config.flip``); RoIs are sampled
    hierarchically or region-wise (``config.sampling``). With several
    ``config.train_scales`` (multi-scale training, paper section 5.4), the minibatch is
    then resized by one of them, drawn at random, and padded to a multiple of ``stride``
    (the backbone's). The paper draws a scale per image; one per minibatch keeps its
    images one array. Box targets are relative to the RoI, so they stay as they are.
    """
    images, targets, proposals = [], [], []
    flips = rng.random(len(idx)) < 0.5 if config.flip else np.zeros(len(idx), bool)
    for i, flip in zip(idx, flips, strict=True):
        image, boxes, p = items[i]["image"], items[i]["boxes"], props[i]
        if flip:
            image, boxes, p = flip_horizontal(image, boxes, p)
        images.append(image)
        targets.append({"boxes": boxes, "labels": items[i]["labels"]})
        proposals.append(p)
    sampler = hierarchical_batch if config.sampling == "hierarchical" else region_wise_batch
    batch = sampler(targets, proposals, rois_per_batch=config.rois_per_batch, rng=rng,
                    fg_fraction=config.fg_fraction, fg_iou=config.fg_iou,
                    bg_iou=tuple(config.bg_iou))
    images = np.stack(images)                                   # (n, 3, H, W)
    if tuple(config.train_scales) != (1.0,):
        scale = config.train_scales[rng.integers(len(config.train_scales))]
        images, rois = rescale_batch(images, batch.rois, scale, stride)
        batch = batch._replace(rois=rois)
    return images, batch


def _epoch_order(state: dict, rng: np.random.Generator, num_images: int):
    """(image order, first minibatch, running sums) of the epoch about to run.

    A fresh epoch draws a new permutation; an epoch interrupted midway continues from the
    place it saved in ``state["partial_epoch"]`` (same order, next minibatch, sums so far).
    """
    partial = state.pop("partial_epoch", None)
    if partial:
        return np.asarray(partial["order"]), partial["next"], partial["sums"]
    sums = {"loss": 0.0, "loss_cls": 0.0, "loss_box": 0.0, "accuracy": 0.0}
    return rng.permutation(num_images), 0, sums


def _check_step(stats: dict, model, xp) -> None:
    """Raise FloatingPointError when the loss diverged or a weight became nan/inf."""
    if not stats["loss"] < DIVERGED_LOSS:
        raise FloatingPointError(f"the loss is {stats['loss']:.3g}")
    if not all(bool(xp.isfinite(p.data).all()) for p in model.parameters()):
        raise FloatingPointError("the update made some weights nan/inf")


def _diverged(error: FloatingPointError, config, state: dict) -> FloatingPointError:
    """The message of a run that diverged: where, what is kept, what to change."""
    return FloatingPointError(
        f"training diverged at iteration {state['iteration']} (epoch {state['epoch'] + 1}): "
        f"{error}; "
        + (f"checkpoint.npz keeps epoch {state['epoch']}, " if state["epoch"] else
           "no epoch finished, so no checkpoint was written; ")
        + f"lower the learning rate (lr={config.lr})")


def train_detector(config: TrainConfig, out_dir, *, resume: bool = False,
                   overwrite: bool = False, progress: bool = True,
                   evaluate: bool = True) -> dict:
    """Train, evaluate and write a run directory (see the module docstring).

    Args:
        config: the settings (each checked against its range first).
        out_dir: where the run is written; locked while this runs.
        resume: continue from ``out_dir/checkpoint.npz`` (same config), bit for bit as
            the uninterrupted run would have, also from a mid-epoch interruption.
        overwrite: replace the run already in ``out_dir`` (else that is an error).
        progress: show a tqdm bar (TQDM_DISABLE=1 also silences it).
        evaluate: test on the held-out split at the end (False: no ``eval`` in the
            metrics and no pictures; ``minircnn reproduce`` tests its detectors itself).
    Returns:
        the metrics dict also written to metrics.json.
    Raises:
        UsageError: a setting out of range; ``out_dir`` holds a run and neither resume
            nor overwrite was asked; resume without a checkpoint.
        RunInUse: another live process is writing a run into ``out_dir``.
        RunInterrupted: SIGINT / SIGTERM; a checkpoint at the current iteration was
            written (``resume=True`` continues it).
        FloatingPointError: the loss became NaN/inf or diverged (the last checkpoint is kept).
    """
    out_dir = os.fspath(out_dir)
    check_train_config(config)
    with RunLock(out_dir), StopSignals() as stop:
        remove_stale_temps(out_dir)              # left by a run killed while writing
        check_fresh_or_resume(out_dir, resume=resume, overwrite=overwrite)
        try:
            return _run(config, out_dir, resume, progress, evaluate, stop)
        except KeyboardInterrupt:                # outside the training loop, or twice
            ckpt = os.path.join(out_dir, "checkpoint.npz")
            saved = read_checkpoint(ckpt).extra["run_state"]["iteration"] \
                if os.path.exists(ckpt) else None
            raise interrupted(out_dir, saved) from None


def _run(config: TrainConfig, out_dir: str, resume: bool, progress: bool, evaluate: bool,
         stop) -> dict:
    from tqdm.auto import tqdm

    start = time.time()
    write_json(os.path.join(out_dir, "config.json"), config.to_dict())
    with blas_threads(config.blas_threads):
        train_ds, val_ds = make_datasets(config)
        items = [train_ds[i] for i in range(len(train_ds))]
        props = load_proposals(train_ds, config)
        times = {"proposals_train_s": time.time() - start}
        model = make_detector(config).to(config.device)
        optimizer = SGD(model.parameters(), config.lr, momentum=config.momentum,
                        weight_decay=config.weight_decay)
        rng = np.random.default_rng([config.seed, 1])
        state = {"epoch": 0, "iteration": 0, "epochs": [],
                 "history": {"loss": [], "accuracy": []}}
        if resume:
            state = restore_run(os.path.join(out_dir, "checkpoint.npz"), config, model,
                                optimizer, rng)
        metrics = {"config": config.to_dict(), "epochs": state["epochs"]}
        t_train = time.time()
        total = _iters_per_epoch(config, len(items)) * config.epochs
        quiet = {} if progress else {"disable": True}  # False would override TQDM_DISABLE
        # The held-out images' proposals are computed meanwhile in a background process,
        # on the core that one-BLAS-thread training leaves free.
        background = evaluate and config.proposal_workers >= 2 and config.blas_threads == 1
        with (proposals_in_background(val_ds, config) if background else nullcontext()) \
                as val_job:
            with tqdm(total=total, initial=state["iteration"], desc="train",
                      dynamic_ncols=True, **quiet) as bar, stop.deferred():
                _train_loop(config, out_dir, model, optimizer, rng, items, props, state,
                            metrics, bar, stop)
            times["train_s"] = time.time() - t_train
            if not evaluate:
                return _finish(config, out_dir, model, None, None, state, metrics, times,
                               start)
            t = time.time()
            val_props = val_job.result() if background else load_proposals(val_ds, config)
            times["proposals_val_s"] = time.time() - t      # what training did not hide
        return _finish(config, out_dir, model, val_ds, val_props, state, metrics, times, start)


def _images_per_iter(config: TrainConfig) -> int:
    return config.images_per_batch if config.sampling == "hierarchical" else config.region_images


def _iters_per_epoch(config: TrainConfig, num_images: int) -> int:
    return num_images // _images_per_iter(config)


def _train_loop(config, out_dir, model, optimizer, rng, items, props, state, metrics,
                bar, stop) -> None:
    """Epochs state["epoch"]..config.epochs-1: the loop of the paper's section 2.3.

    Each iteration: the learning rate of the schedule, a minibatch of N images and R RoIs
    (sample_batch), one SGD step on the multi-task loss (train_step). After each epoch:
    checkpoint.npz and metrics.json. A stop signal (Ctrl-C, SIGTERM) ends the loop after
    the current iteration, with a checkpoint there (``state["partial_epoch"]``).
    """
    per_iter = _images_per_iter(config)
    iters = _iters_per_epoch(config, len(items))
    steps = tuple(int(f * iters * config.epochs) for f in config.lr_steps)
    xp = get_array_module(model.parameters()[0].data)
    # multi-scale minibatches are padded to a multiple of the backbone's stride
    stride = getattr(getattr(model, "backbone", None), "feature_stride", 1)
    for epoch in range(state["epoch"], config.epochs):
        t_epoch = time.time()
        model.train()
        order, first, sums = _epoch_order(state, rng, len(items))
        for b in range(first, iters):
            optimizer.lr = step_lr(config.lr, state["iteration"], steps=steps,
                                   gamma=config.gamma, warmup_iters=config.warmup_iters)
            images, batch = sample_batch(config, items, props,
                                         order[b * per_iter:(b + 1) * per_iter], rng,
                                         stride=stride)
            try:
                stats = train_step(model, optimizer, xp.asarray(images), xp.asarray(batch.rois),
                                   xp.asarray(batch.labels), xp.asarray(batch.bbox_targets),
                                   box_weight=config.box_loss_weight)
                _check_step(stats, model, xp)
            except FloatingPointError as e:
                raise _diverged(e, config, state) from e
            state["iteration"] += 1
            state["history"]["loss"].append(stats["loss"])
            state["history"]["accuracy"].append(stats["accuracy"])
            for k in sums:
                sums[k] += stats[k] / iters      # the epoch's mean, summed as it goes
            bar.update(1)
            bar.set_postfix(loss=f"{stats['loss']:.3f}", acc=f"{stats['accuracy']:.2f}",
                            lr=f"{optimizer.lr:.2g}", refresh=False)
            if stop.received is not None and b + 1 < iters:   # at an epoch's end: saved anyway
                state["partial_epoch"] = {"order": order.tolist(), "next": b + 1, "sums": sums}
                break
        else:                                                  # the epoch ran to its end
            state["epochs"].append({"epoch": epoch + 1, **sums, "lr": optimizer.lr,
                                    "iterations": iters,
                                    "time_s": round(time.time() - t_epoch, 2)})
            state["epoch"] = epoch + 1
        save_run_checkpoint(os.path.join(out_dir, "checkpoint.npz"), model, optimizer, rng,
                            config, state)
        write_json(os.path.join(out_dir, "metrics.json"), metrics)
        if stop.received is not None:
            raise interrupted(out_dir, state["iteration"])


def _finish(config, out_dir, model, val_ds, val_props, state, metrics, times,
            start) -> dict:
    """Evaluate on the val split (unless it is None), write model.npz, metrics.json and
    the two pictures."""
    if val_ds is not None:
        t = time.time()
        metrics["eval"], dets = evaluate_detector(model, val_ds, val_props, config)
        times["eval_s"] = time.time() - t
    save_checkpoint(model, os.path.join(out_dir, "model.npz"), config.to_dict())
    metrics["history"] = state["history"]
    if config.pictures and val_ds is not None:
        save_run_pictures(out_dir, state["history"], val_ds, dets)
    times["total_s"] = time.time() - start
    metrics["times"] = {k: round(v, 2) for k, v in times.items()}
    write_json(os.path.join(out_dir, "metrics.json"), metrics)
    return metrics
