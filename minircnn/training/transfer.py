"""Transfer learning with MiniResNet: pretrain on a source task, fine-tune on a target task.

The practice of the study note's ResNet part (an ImageNet ResNet-50 fine-tuned on
CIFAR-10), shrunk to run on a CPU in minutes:

- ``pretrain(config, out_dir)``: train a MiniResNet classifier on the *source* task,
  ``ShapesClassification`` with many shape kinds on textured backgrounds (our
  "ImageNet"). Writes a checkpoint, accuracy curves (PNG) and metrics.json.
- ``finetune(config, out_dir)``: move to a *target* task with new shape kinds, another
  background style and little data (our "CIFAR-10"), replace the head and compare
  (a) training from scratch, (b) a frozen backbone with a new head (fc only),
  (c) fine-tuning from stage k onward, (d) fine-tuning everything with a lower
  backbone learning rate (``lr_mult``). Writes the table as JSON and text.

The Fast R-CNN paper (section 4.5, "which layers to fine-tune?") found that training
only the fully connected layers loses much of the accuracy that fine-tuning the conv
layers gives; ``finetune`` measures the same question on this toy problem. The same
question for detection (Fast R-CNN on a pretrained vs a random backbone) is two
detector runs: ``minircnn train --backbone resnet`` and the same with ``--scratch``.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from dataclasses import dataclass, field

import numpy as np

from minircnn.data.shapes import ShapesClassification
from minircnn.layers.losses import softmax_cross_entropy_backward, softmax_cross_entropy_forward
from minircnn.models.backbones import VGGClassifier
from minircnn.models.checkpoint import load_checkpoint, save_checkpoint
from minircnn.models.pretrained import pretrained_backbone
from minircnn.models.resnet import MiniResNet, freeze_stages
from minircnn.training.optim import SGD, cosine_lr
from minircnn.utils.fileio import write_json
from minircnn.utils.settings import FINETUNE_RULES, PRETRAIN_RULES, check_settings
from minircnn.utils.text_tables import text_table
from minircnn.viz import save_figure

SOURCE_CLASSES = ("circle", "square", "triangle", "ellipse", "diamond", "cross")
TARGET_CLASSES = ("star", "hexagon", "ring", "rectangle")
STRATEGIES = ("scratch", "frozen", "from_stage", "full")


@dataclass
class PretrainConfig:
    """Source-task pretraining (the defaults make the shipped weights; see weights/README)."""

    classes: tuple = SOURCE_CLASSES
    background: str = "textured"
    num_train: int = 6000
    num_val: int = 600
    image_size: int = 32
    backbone: str = "resnet"       # "resnet": MiniResNet; "vgg": VGGClassifier (SmallVGG)
    widths: tuple = (16, 32, 64, 128)     # resnet stages
    blocks: tuple = (1, 1, 1, 1)
    channels: tuple = (16, 32, 64, 64)    # vgg blocks (the detector's SmallVGG)
    batch_norm: bool = True               # vgg: BN while pretraining, folded into the convs
    epochs: int = 4
    batch_size: int = 64
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_iters: int = 50
    seed: int = 0
    impl: str = "fast"


@dataclass
class FinetuneConfig:
    """Target-task fine-tuning and the comparison of the four strategies."""

    pretrained: str | None = None  # a `minircnn pretrain` checkpoint; None: shipped weights
    classes: tuple = TARGET_CLASSES
    background: str = "stripes"
    train_per_class: int = 20
    num_test: int = 800
    image_size: int = 32
    epochs: int = 15
    batch_size: int = 32
    lr: float = 0.02
    scratch_lr: float = 0.05
    backbone_lr_mult: float = 0.1
    finetune_from: int = 3  # strategy (c) trains stages k.. and the head (detectron2 FREEZE_AT)
    strategies: tuple = STRATEGIES
    momentum: float = 0.9
    weight_decay: float = 5e-4
    seed: int = 0
    impl: str = "fast"
    extra: dict = field(default_factory=dict)


# --- the classification loop ----------------------------------------------------------------
def accuracy(model, x: np.ndarray, y: np.ndarray, *, batch_size: int = 200) -> float:
    """Top-1 accuracy of ``model`` (eval mode) on images x (N, 3, S, S), labels y (N,)."""
    was_training = model.training
    model.eval()
    correct = 0
    for start in range(0, len(x), batch_size):
        logits = model.forward(x[start:start + batch_size])  # (B, K)
        correct += int((logits.argmax(axis=1) == y[start:start + batch_size]).sum())
    model.train(was_training)
    return correct / max(len(x), 1)


def train_classifier(model, opt: SGD, x, y, *, epochs: int, batch_size: int, base_lr: float,
                     warmup_iters: int = 0, seed: int = 0, val=None, desc: str = "train",
                     on_epoch=None) -> list[dict]:
    """Minibatch SGD on softmax cross-entropy; returns one dict of metrics per epoch.

    Each iteration: ``opt.lr = cosine_lr(...)``, zero_grad, forward, loss, backward,
    step. ``val = (x_val, y_val)`` adds ``val_acc``; ``on_epoch(epoch, row)`` runs after
    each epoch (checkpoints). Raises FloatingPointError when the loss is not finite.
    """
    from minircnn.utils.progress import progress_bar, summary

    rng = np.random.default_rng([seed, 2])
    iters_per_epoch = math.ceil(len(x) / batch_size)
    total = epochs * iters_per_epoch
    history, it = [], 0
    model.train()
    with progress_bar(total, desc, unit="it", leave=False) as bar:
        for epoch in range(epochs):
            order = rng.permutation(len(x))
            losses, correct = [], 0
            for start in range(0, len(x), batch_size):
                idx = order[start:start + batch_size]
                opt.lr = cosine_lr(base_lr, it, total_iters=total, warmup_iters=warmup_iters)
                opt.zero_grad()
                logits = model.forward(x[idx])  # (B, K)
                loss, cache = softmax_cross_entropy_forward(logits, y[idx])
                if not np.isfinite(loss):
                    raise FloatingPointError(f"{desc}: loss is {loss} at iteration {it}")
                model.backward(softmax_cross_entropy_backward(1.0, cache))
                opt.step()
                losses.append(float(loss))
                correct += int((logits.argmax(axis=1) == y[idx]).sum())
                it += 1
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.3f}")
            row = {"epoch": epoch + 1, "iters": it, "train_loss": float(np.mean(losses)),
                   "train_acc": correct / len(x)}
            if val is not None:
                row["val_acc"] = accuracy(model, *val)
            history.append(row)
            summary(bar, f"epoch {epoch + 1}/{epochs}: loss {row['train_loss']:.3f}")
            if on_epoch is not None:
                on_epoch(epoch, row)
    return history


def plot_accuracy(history: list[dict], path: str, *, title: str) -> str:
    """Train / val accuracy per epoch to a PNG (matplotlib's Figure: no global backend)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 3.5))
    ax = fig.add_subplot()
    epochs = [r["epoch"] for r in history]
    ax.plot(epochs, [r["train_acc"] for r in history], "o-", label="train (running)")
    if history and "val_acc" in history[0]:
        ax.plot(epochs, [r["val_acc"] for r in history], "s-", label="validation")
    ax.set(xlabel="epoch", ylabel="accuracy", title=title, ylim=(0, 1.02), xticks=epochs)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    return save_figure(fig, path)  # atomic, like the checkpoints


# --- pretraining -----------------------------------------------------------------------------
def make_classifier(config: PretrainConfig):
    """The source-task classifier ``config.backbone`` names, initialised from ``config.seed``."""
    rng = np.random.default_rng(config.seed)
    if config.backbone == "resnet":
        return MiniResNet(len(config.classes), widths=config.widths, blocks=config.blocks,
                          impl=config.impl, rng=rng)
    if config.backbone == "vgg":
        return VGGClassifier(len(config.classes), config.channels, batch_norm=config.batch_norm,
                             impl=config.impl, rng=rng)
    raise ValueError(f"pretrain: backbone must be 'resnet' or 'vgg', got {config.backbone!r}")


def pretrain(config: PretrainConfig, out_dir: str) -> dict:
    """Train a MiniResNet (or a VGGClassifier) on the source task; write checkpoint.npz,
    metrics.json, accuracy.png.

    Returns:
        the metrics dict (also in metrics.json): config, per-epoch history,
        ``val_acc`` (final), ``train_seconds``, ``checkpoint`` path.
    """
    check_settings(config, PRETRAIN_RULES)
    os.makedirs(out_dir, exist_ok=True)
    cfg = dataclasses.asdict(config)
    data = dict(classes=tuple(config.classes), background=config.background,
                image_size=config.image_size)
    x, y = ShapesClassification(config.num_train, seed=config.seed, **data).arrays()
    val = ShapesClassification(config.num_val, seed=config.seed + 10_000, **data).arrays()
    model = make_classifier(config)
    opt = SGD(model.parameters(), config.lr, momentum=config.momentum,
              weight_decay=config.weight_decay)
    ckpt = os.path.join(out_dir, "checkpoint.npz")

    def save(epoch, row):
        save_checkpoint(model, ckpt, cfg, extra={"epoch": epoch + 1, "val_acc": row["val_acc"]})

    start = time.perf_counter()
    history = train_classifier(model, opt, x, y, epochs=config.epochs,
                               batch_size=config.batch_size, base_lr=config.lr,
                               warmup_iters=config.warmup_iters, seed=config.seed, val=val,
                               desc="pretrain", on_epoch=save)
    seconds = time.perf_counter() - start
    metrics = {"config": cfg, "history": history, "val_acc": history[-1]["val_acc"],
               "train_seconds": round(seconds, 2), "checkpoint": ckpt}
    write_json(os.path.join(out_dir, "metrics.json"), metrics)
    plot_accuracy(history, os.path.join(out_dir, "accuracy.png"),
                  title=f"pretrain: {len(config.classes)} shapes, {config.background}")
    return metrics


# --- fine-tuning and the comparison ----------------------------------------------------------
DESCRIPTIONS = {
    "scratch": "(a) from scratch, random init, everything trains",
    "frozen": "(b) frozen pretrained backbone, new fc only",
    "from_stage": "(c) pretrained, fine-tune stage {k} onward + new fc",
    "full": "(d) pretrained, fine-tune all, backbone lr x{mult}",
}


def load_source(path: str | None) -> MiniResNet:
    """The pretrained MiniResNet: from ``path`` (a `minircnn pretrain` checkpoint) or the
    shipped weights when None."""
    if path is None:
        return pretrained_backbone()
    model = load_checkpoint(path)
    if not isinstance(model, MiniResNet):
        raise ValueError(f"pretrained: {path} holds a {type(model).__name__}, "
                         "expected a MiniResNet checkpoint from `minircnn pretrain`")
    return model


def build_strategy_model(strategy: str, source: MiniResNet, num_classes: int,
                         config: FinetuneConfig) -> tuple[MiniResNet, float]:
    """The model of one strategy and its base learning rate.

    scratch: a new MiniResNet of the source's architecture; the others start from a
    copy of ``source`` with a fresh fc head (``replace_head``), then freeze
    (``freeze_stages``) or scale the backbone's ``lr_mult``.
    """
    rng = np.random.default_rng([config.seed, 3])
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    arch = {k: v for k, v in source.get_config().items() if k != "num_classes"}
    model = MiniResNet(num_classes, **{**arch, "impl": config.impl}, rng=rng)
    if strategy == "scratch":
        return model, config.scratch_lr
    state = {k: v for k, v in source.state_dict().items() if not k.startswith("fc.")}
    model.load_state_dict(state, strict=False)  # everything but the new head
    if strategy == "frozen":
        freeze_stages(model, len(model.stages) + 1)
    elif strategy == "from_stage":
        freeze_stages(model, config.finetune_from)
    else:  # "full": the backbone learns slower than the new head
        for name, p in model.named_parameters():
            if not name.startswith("fc."):
                p.lr_mult *= config.backbone_lr_mult
    return model, config.lr


def finetune(config: FinetuneConfig, out_dir: str) -> dict:
    """Fine-tune on the target task with each strategy; write comparison.json / .txt.

    Returns:
        {"config", "rows": [{strategy, description, trainable_params, test_acc,
        train_acc, seconds}], "table": the text table}.
    """
    check_settings(config, FINETUNE_RULES)
    os.makedirs(out_dir, exist_ok=True)
    classes = tuple(config.classes)
    data = dict(classes=classes, background=config.background, image_size=config.image_size)
    x, y = ShapesClassification(config.train_per_class * len(classes), seed=config.seed + 20_000,
                                **data).arrays()
    test = ShapesClassification(config.num_test, seed=config.seed + 30_000, **data).arrays()
    source = load_source(config.pretrained)
    rows = []
    for strategy in config.strategies:
        model, lr = build_strategy_model(strategy, source, len(classes), config)
        opt = SGD(model.parameters(), lr, momentum=config.momentum,
                  weight_decay=config.weight_decay)
        start = time.perf_counter()
        history = train_classifier(model, opt, x, y, epochs=config.epochs,
                                   batch_size=config.batch_size, base_lr=lr, seed=config.seed,
                                   desc=f"finetune {strategy}")
        seconds = time.perf_counter() - start
        rows.append({
            "strategy": strategy,
            "description": DESCRIPTIONS[strategy].format(k=config.finetune_from,
                                                         mult=config.backbone_lr_mult),
            "trainable_params": int(sum(p.data.size for p in model.parameters()
                                        if p.requires_grad)),
            "lr": lr,
            "train_acc": history[-1]["train_acc"],
            "test_acc": accuracy(model, *test),
            "seconds": round(seconds, 2),
        })
    table = format_comparison(rows)
    result = {"config": dataclasses.asdict(config), "num_train": len(x),
              "num_test": len(test[0]), "rows": rows, "table": table}
    write_json(os.path.join(out_dir, "comparison.json"), result)
    with open(os.path.join(out_dir, "comparison.txt"), "w") as f:
        f.write(table + "\n")
    return result


def format_comparison(rows: list[dict]) -> str:
    """Plain-text table: strategy, trainable parameters, test accuracy, training time."""
    header = ("strategy", "trainable params", "test acc", "train acc", "time (s)")
    cells = [(r["description"], f"{r['trainable_params']:,}", f"{r['test_acc']:.3f}",
              f"{r['train_acc']:.3f}", f"{r['seconds']:.1f}") for r in rows]
    return text_table(header, cells)
