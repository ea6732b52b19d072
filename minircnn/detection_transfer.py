"""Does a pretrained backbone help detection? Fast R-CNN from a pretrained vs a random trunk.

``detection_transfer(config, out_dir)`` trains the same Fast R-CNN twice, with a
ResNetBackbone initialised from the pretrained MiniResNet (minircnn/transfer.py's
``pretrain``) or at random, for the same iterations and minibatches, and reports the
mAP of each: the detection side of the transfer question, as ``finetune`` is its
classification side.
"""

from __future__ import annotations

import os
import time

import numpy as np

from minircnn.fileio import write_json
from minircnn.models.resnet import MiniResNet, ResNetBackbone, freeze_stages
from minircnn.optim import SGD
from minircnn.transfer import load_source


def _detector(init: str, source: MiniResNet, num_classes: int, config, *, num_stages: int,
              freeze_at: int):
    """FastRCNN on a ResNetBackbone: the pretrained trunk (frozen BN, stem and stages below
    ``freeze_at`` fixed) or a random one of the same architecture (BatchNorm2d)."""
    from minircnn.models.fast_rcnn import FastRCNN

    rng = np.random.default_rng([config.seed, 0])
    if init == "pretrained":
        backbone = freeze_stages(source.as_backbone(num_stages, norm="frozen"), freeze_at)
    elif init == "scratch":
        arch = {k: v for k, v in source.get_config().items() if k not in ("num_classes", "norm")}
        backbone = ResNetBackbone(**arch, num_stages=num_stages, norm="bn", rng=rng)
    else:
        raise ValueError(f"init must be 'pretrained' or 'scratch', got {init!r}")
    return FastRCNN(num_classes, backbone, roi_op=config.roi_op,
                    output_size=(config.output_size, config.output_size), hidden=config.hidden,
                    dropout=config.dropout, rng=rng)


def detection_transfer(config, out_dir: str, *, pretrained: str | None = None,
                       iterations: int = 300, num_stages: int = 3, freeze_at: int = 2,
                       inits: tuple = ("scratch", "pretrained")) -> dict:
    """Fast R-CNN with a ResNetBackbone, initialised from the pretrained MiniResNet or at
    random, trained for the same number of iterations; VOC07 mAP@0.5 of each.

    Args:
        config: a ``minircnn.train.TrainConfig`` (data, proposals, sampling, lr, head).
        out_dir: detection_transfer.json is written here.
        pretrained: a `minircnn pretrain` checkpoint (None: the shipped weights).
        iterations: SGD iterations of ``config.images_per_batch`` images each, with
            warm-up and one 10x decay at 75%.
        num_stages: backbone stages kept (3: stride 8, as SmallVGG).
        freeze_at: for the pretrained init, the stem and stages below ``freeze_at``
            stay fixed (detectron2's FREEZE_AT = 2). Pretrained BN layers are frozen
            (FrozenBatchNorm2d, detectron2 with 2-image batches); the random init has no
            statistics to freeze, so it trains with BatchNorm2d.
    """
    from minircnn.dataset_proposals import load_proposals
    from minircnn.optim import step_lr
    from minircnn.train import evaluate_detector, make_datasets, sample_batch, train_step

    os.makedirs(out_dir, exist_ok=True)
    train_ds, val_ds = make_datasets(config)
    items = [train_ds[i] for i in range(len(train_ds))]
    props, val_props = load_proposals(train_ds, config), load_proposals(val_ds, config)
    source = load_source(pretrained)
    rows = []
    for init in inits:
        model = _detector(init, source, len(train_ds.classes), config, num_stages=num_stages,
                          freeze_at=freeze_at)
        opt = SGD(model.parameters(), config.lr, momentum=config.momentum,
                  weight_decay=config.weight_decay)
        rng = np.random.default_rng([config.seed, 1])  # the same minibatches for each init
        start, losses = time.perf_counter(), []
        model.train()
        for it in range(iterations):
            opt.lr = step_lr(config.lr, it, steps=(int(0.75 * iterations),),
                             warmup_iters=min(config.warmup_iters, iterations // 4))
            idx = rng.choice(len(items), size=config.images_per_batch, replace=False)
            images, batch = sample_batch(config, items, props, idx, rng)
            stats = train_step(model, opt, images, batch.rois, batch.labels, batch.bbox_targets)
            losses.append(stats["loss"])
        seconds = time.perf_counter() - start
        model.eval()
        metrics, _ = evaluate_detector(model, val_ds, val_props, config)
        rows.append({"init": init, "iterations": iterations, "voc07_mAP": metrics["voc07_mAP"],
                     "coco_AP": metrics["coco_AP"], "per_class_AP": metrics["per_class_AP"],
                     "final_loss": float(np.mean(losses[-20:])),
                     "train_seconds": round(seconds, 1)})
    result = {"train_config": config.to_dict(), "num_stages": num_stages,
              "freeze_at": freeze_at, "rows": rows}
    write_json(os.path.join(out_dir, "detection_transfer.json"), result)
    return result
