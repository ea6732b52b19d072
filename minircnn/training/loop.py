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
Evaluating a saved model and detecting in a PNG live in minircnn/cli/eval_detect.py;
the run plumbing (run folder lock, checkpoints with optimizer and RNG state, resume
checks, pictures) in minircnn/training/runs.py; proposals of a whole dataset (worker processes,
cache) in minircnn/training/proposals.py. What stays here is the recipe and the loop.

The whole run is deterministic for a given ``seed``. A NaN/inf loss stops it with a
``FloatingPointError`` that names the iteration; the last good checkpoint stays.
"""


from __future__ import annotations

import os
import time
from contextlib import nullcontext
from dataclasses import dataclass
from functools import partial

import numpy as np

from minircnn.backend import get_array_module
from minircnn.data.shapes import Drawn
from minircnn.layers.module import Module
from minircnn.layers.norm import BatchNorm2d
from minircnn.models.checkpoint import read_checkpoint, save_checkpoint
from minircnn.training.config import TrainConfig, make_datasets, make_detector
from minircnn.training.data_parallel import ImageWorkers
from minircnn.training.frozen_cache import FrozenFeatures
from minircnn.training.metrics import evaluate_detector
from minircnn.training.optim import SGD, step_lr
from minircnn.training.proposals import load_proposals, proposals_in_background
from minircnn.training.rpn_eval import compare_proposals, selective_search_config
from minircnn.training.rpn_step import (
    joint_slot,
    parallel_rpn_step,
    rpn_minibatch,
    rpn_train_step,
)
from minircnn.training.runs import (
    RunLock,
    RunState,
    StopSignals,
    check_fresh_or_resume,
    interrupted,
    restore_run,
    save_run_checkpoint,
    save_run_pictures,
)
from minircnn.training.step import (
    parallel_train_step,
    sample_minibatch,
    train_slot,
    train_step,
)
from minircnn.utils.blas import blas_threads
from minircnn.utils.fileio import remove_stale_temps, write_json
from minircnn.utils.progress import progress_bar, summary
from minircnn.utils.settings import check_train_config

# The loss starts near log(K + 1) ~ 1.4 (cross-entropy over K + 1 classes) and falls; a
# loss a million times larger means the weights are blowing up, and float32 overflows a
# few steps later (seen with lr=1e6: 1.5, then 3e33, then inf at test time). Stop there.
DIVERGED_LOSS = 1e6


@dataclass
class Run:
    """What one training run works on; each part of the loop takes it whole."""

    config: TrainConfig
    out_dir: str
    model: Module                # FastRCNN (FasterRCNN with proposal_method="rpn")
    optimizer: SGD
    rng: np.random.Generator     # minibatch order, flips and RoI sampling
    items: list                  # the training images (ShapesDataset items)
    props: list | None           # their proposals, (P, 4) each; None: the RPN makes them
    state: RunState              # epoch, iteration, history: saved in every checkpoint
    metrics: dict                # what metrics.json will hold
    frozen: FrozenFeatures | None = None   # the fixed blocks' output per image
    workers: ImageWorkers | None = None    # one image per slot (training/data_parallel.py)


def _epoch_order(state: RunState, rng: np.random.Generator, num_images: int):
    """(image order, first minibatch, running sums) of the epoch about to run.

    A fresh epoch draws a new permutation; an epoch interrupted midway continues from the
    place it saved in ``state.partial_epoch`` (same order, next minibatch, sums so far).
    """
    partial, state.partial_epoch = state.partial_epoch, None
    if partial:
        return np.asarray(partial["order"]), partial["next"], partial["sums"]
    sums = {"loss": 0.0, "loss_cls": 0.0, "loss_box": 0.0, "accuracy": 0.0}
    return rng.permutation(num_images), 0, sums


def _check_step(stats: dict) -> None:
    """Raise FloatingPointError when the loss diverged (train_step already refused a
    nan/inf loss or output; a nan/inf weight shows in the next step's outputs)."""
    if not stats["loss"] < DIVERGED_LOSS:
        raise FloatingPointError(f"the loss is {stats['loss']:.3g}")


def _check_weights(model, xp) -> None:
    """Raise FloatingPointError when a weight is nan/inf. O(parameters), so run before
    each checkpoint rather than every iteration: the last update is seen by no loss."""
    if not all(bool(xp.isfinite(p.data).all()) for p in model.parameters()):
        raise FloatingPointError("the update made some weights nan/inf")


def _diverged(error: FloatingPointError, config, state: RunState) -> FloatingPointError:
    """The message of a run that diverged: where, what is kept, what to change."""
    return FloatingPointError(
        f"training diverged at iteration {state.iteration} (epoch {state.epoch + 1}): "
        f"{error}; "
        + (f"checkpoint.npz keeps epoch {state.epoch}, " if state.epoch else
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
        UsageError: a setting out of range.
        UserError: ``out_dir`` holds a run and neither resume nor overwrite was asked;
            resume without a checkpoint, or with other settings than the run's.
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
    start = (time.time(), time.process_time())   # wall clock; this process's CPU time
    write_json(os.path.join(out_dir, "config.json"), config.to_dict())
    with blas_threads(config.blas_threads):
        train_ds, val_ds = make_datasets(config)
        rpn = config.proposal_method == "rpn"         # Faster R-CNN: no stored proposals
        # held-out proposals: the detector's own, or (RPN) selective search's to compare
        val_config = selective_search_config(config) if rpn else config
        items = [train_ds[i] for i in range(len(train_ds))]
        props = None if rpn else load_proposals(train_ds, config)
        times = {"proposals_train_s": time.time() - start[0]}
        run = _start(config, out_dir, items, props, resume)
        t_train = time.time()
        total = _iters_per_epoch(config, len(run.items)) * config.epochs
        # The held-out images' proposals are computed meanwhile in a background process,
        # on the core that training leaves free (one-BLAS-thread training in one process).
        workers = _image_workers(run)                  # None: one pass per minibatch
        processes = workers.processes if workers is not None and workers.forked else 1
        run.metrics["train_processes"] = processes
        background = (evaluate and config.proposal_workers >= 2 and config.blas_threads == 1
                      and processes == 1)
        run.metrics["held_out_proposals"] = "during training" if background else "after training"
        with (proposals_in_background(val_ds, val_config) if background else nullcontext()) \
                as val_job:
            with workers or nullcontext() as run.workers, \
                    progress_bar(total, "train", enabled=progress,
                                 initial=run.state.iteration, dynamic_ncols=True) as bar, \
                    stop.deferred():
                _train_loop(run, bar, stop)
            run.workers = None                      # stopped: the cores are free again
            times["train_s"] = time.time() - t_train
            if not evaluate:
                return _finish(run, None, None, times, start)
            t = time.time()
            val_props = val_job.result() if background else load_proposals(val_ds, val_config)
            times["proposals_val_s"] = time.time() - t      # what training did not hide
        return _finish(run, val_ds, val_props, times, start)


def _start(config: TrainConfig, out_dir: str, items: list, props, resume: bool) -> Run:
    """The run on ``items`` and their proposals: its model, optimizer and sampling rng,
    fresh (from ``config.seed``) or, on resume, as checkpoint.npz left them."""
    model = make_detector(config).to(config.device)
    optimizer = SGD(model.parameters(), config.lr, momentum=config.momentum,
                    weight_decay=config.weight_decay)
    rng = np.random.default_rng([config.seed, 1])
    state = RunState()
    if resume:
        state = restore_run(os.path.join(out_dir, "checkpoint.npz"), config, model,
                            optimizer, rng)
    metrics = {"config": config.to_dict(), "epochs": state.epochs}   # the same list
    frozen = FrozenFeatures(model.backbone) if FrozenFeatures.usable(model) else None
    return Run(config, out_dir, model, optimizer, rng, items, props, state, metrics, frozen)


def _slot(config: TrainConfig, model):
    """The slot that trains one image of a minibatch (training/data_parallel.py), or
    None: ``train_workers=1``, alternating RPN training (its stages run whole
    minibatches), or a model with a BatchNorm2d (frozen ones become FrozenBatchNorm2d;
    one that trains normalises by the minibatch's statistics, not an image's)."""
    if config.train_workers < 2 or any(isinstance(m, BatchNorm2d) for m in model.modules()):
        return None
    if config.proposal_method != "rpn":
        return partial(train_slot, box_weight=config.box_loss_weight)
    return partial(joint_slot, config=config) if config.rpn_training == "joint" else None


def _image_workers(run: Run) -> ImageWorkers | None:
    """The ImageWorkers of the run's slots (not started yet), or None without slots."""
    slot = _slot(run.config, run.model)
    if slot is None:
        return None
    processes = min(run.config.train_workers, _images_per_iter(run.config))
    return ImageWorkers(run.model, slot, processes)


def _images_per_iter(config: TrainConfig) -> int:
    return config.images_per_batch if config.sampling == "hierarchical" else config.region_images


def _iters_per_epoch(config: TrainConfig, num_images: int) -> int:
    return num_images // _images_per_iter(config)


def _train_loop(run: Run, bar, stop) -> None:
    """Epochs state.epoch..config.epochs-1: the loop of the paper's section 2.3.

    After each epoch: checkpoint.npz and metrics.json. A stop signal (Ctrl-C, SIGTERM)
    ends the loop after the current iteration, with a checkpoint there
    (``state.partial_epoch``).
    """
    xp = get_array_module(run.model.parameters()[0].data)
    for epoch in range(run.state.epoch, run.config.epochs):
        _train_epoch(run, epoch, xp, bar, stop)
        try:
            _check_weights(run.model, xp)
        except FloatingPointError as e:
            raise _diverged(e, run.config, run.state) from e
        save_run_checkpoint(os.path.join(run.out_dir, "checkpoint.npz"), run.model,
                            run.optimizer, run.rng, run.config, run.state)
        write_json(os.path.join(run.out_dir, "metrics.json"), run.metrics)
        if stop.received is not None:
            raise interrupted(run.out_dir, run.state.iteration)


def _train_epoch(run: Run, epoch: int, xp, bar, stop) -> None:
    """One epoch, or what is left of it: each iteration the learning rate of the schedule,
    then one SGD step on a minibatch (``_iteration``). A stop signal ends it early, its
    place kept in ``state.partial_epoch``."""
    config, state, optimizer = run.config, run.state, run.optimizer
    per_iter = _images_per_iter(config)
    iters = _iters_per_epoch(config, len(run.items))
    steps = tuple(int(f * iters * config.epochs) for f in config.lr_steps)
    # multi-scale minibatches are padded to a multiple of the backbone's stride
    stride = getattr(getattr(run.model, "backbone", None), "feature_stride", 1)
    t_epoch = time.time()
    run.model.train()
    order, first, sums = _epoch_order(state, run.rng, len(run.items))
    for b in range(first, iters):
        optimizer.lr = step_lr(config.lr, state.iteration, steps=steps,
                               gamma=config.gamma, warmup_iters=config.warmup_iters)
        try:
            stats = _iteration(run, order[b * per_iter:(b + 1) * per_iter], stride, xp, epoch)
            _check_step(stats)
        except FloatingPointError as e:
            raise _diverged(e, config, state) from e
        state.iteration += 1
        state.history["loss"].append(stats["loss"])
        state.history["accuracy"].append(stats["accuracy"])
        for k in sums:
            sums[k] += stats[k] / iters      # the epoch's mean, summed as it goes
        bar.update(1)
        bar.set_postfix(loss=f"{stats['loss']:.3f}", acc=f"{stats['accuracy']:.2f}",
                        lr=f"{optimizer.lr:.2g}", refresh=False)
        if stop.received is not None and b + 1 < iters:   # at an epoch's end: saved anyway
            state.partial_epoch = {"order": order.tolist(), "next": b + 1, "sums": sums}
            return
    state.epochs.append({"epoch": epoch + 1, **sums, "lr": optimizer.lr, "iterations": iters,
                         "time_s": round(time.time() - t_epoch, 2)})
    summary(bar, f"epoch {epoch + 1}/{config.epochs}: loss {sums['loss']:.3f}, accuracy "
                 f"{sums['accuracy']:.2f}, lr {optimizer.lr:.2g}, {time.time() - t_epoch:.0f} s")
    state.epoch = epoch + 1


def _iteration(run: Run, idx, stride: int, xp, epoch: int) -> dict:
    """One SGD step on the images ``idx``: Fast R-CNN on their stored proposals, or
    (``proposal_method="rpn"``) Faster R-CNN's RPN and detector (training/rpn_step.py)."""
    config, model, optimizer = run.config, run.model, run.optimizer
    rpn = config.proposal_method == "rpn"
    if rpn:
        images, targets, keys = rpn_minibatch(config, run.items, idx, run.rng)
    else:
        images, batch, keys = sample_minibatch(config, run.items, run.props, idx, run.rng,
                                               stride=stride)
    images = xp.asarray(images)
    frozen = run.frozen.lookup(keys, images) if run.frozen is not None else None
    if run.workers is not None:                   # one image per slot, each its own seed
        seeds = run.rng.integers(0, 2**63 - 1, size=len(images))
        if rpn:
            return parallel_rpn_step(run.workers, model, optimizer, images, targets, config,
                                     seeds=seeds, frozen=frozen)
        batch = batch._replace(**{k: xp.asarray(v) for k, v in batch._asdict().items()})
        return parallel_train_step(run.workers, optimizer, images, batch, seeds=seeds,
                                   frozen=frozen)
    if rpn:
        return rpn_train_step(model, optimizer, images, targets, config, run.rng, epoch,
                              frozen=frozen)
    return train_step(model, optimizer, images, xp.asarray(batch.rois),
                      xp.asarray(batch.labels), xp.asarray(batch.bbox_targets),
                      box_weight=config.box_loss_weight, frozen=frozen)


def _finish(run: Run, val_ds, val_props, times: dict, start: tuple) -> dict:
    """Evaluate on the val split (unless it is None), write model.npz, metrics.json and
    the two pictures. ``start``: the run's (wall clock, CPU time) at its start; the CPU
    time of this process (``cpu_s``) is what a busy machine inflates least."""
    config, model, metrics = run.config, run.model, run.metrics
    if config.proposal_method == "rpn":
        model.rpn_backbone = None                 # alternating: shared since step 3
    if val_ds is not None:
        t = time.time()
        val_ds = Drawn(val_ds)                    # read below up to four times
        if config.proposal_method == "rpn":       # val_props: selective search's
            val_props, metrics["proposals"] = compare_proposals(model, val_ds, val_props,
                                                                config)
        metrics["eval"], dets = evaluate_detector(model, val_ds, val_props, config)
        times["eval_s"] = time.time() - t
    save_checkpoint(model, os.path.join(run.out_dir, "model.npz"), config.to_dict())
    metrics["history"] = run.state.history
    if config.pictures and val_ds is not None:
        save_run_pictures(run.out_dir, run.state.history, val_ds, dets)
    times["total_s"] = time.time() - start[0]
    times["cpu_s"] = time.process_time() - start[1]
    metrics["times"] = {k: round(v, 2) for k, v in times.items()}
    write_json(os.path.join(run.out_dir, "metrics.json"), metrics)
    return metrics
