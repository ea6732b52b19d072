"""Valid ranges of every numeric setting, checked before any work starts.

A run with ``epochs=0`` used to train zero iterations and print an mAP; ``hidden=0``
crashed with ZeroDivisionError after the proposals were computed. Each config class
lists its ranges here; ``check_settings`` names every setting out of range, with the
range, in one ValueError (a ``UsageError``: the ``minircnn`` command exits 2).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

from minircnn.utils.errors import UsageError


class Rule(NamedTuple):
    """A test on one value and the words that describe the values it accepts."""
    accepts: Any      # callable(value) -> bool
    text: str         # ">= 1", "in (0, 1]", "one of 'pool', 'align'"


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def at_least(lo) -> Rule:
    """An integer >= lo."""
    return Rule(lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= lo,
                f"an integer >= {lo}")


def integer_in(lo: int, hi: int) -> Rule:
    """An integer in lo..hi, both included."""
    return Rule(lambda v: isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi,
                f"an integer in {lo}..{hi}")


def between(lo: float, hi: float | None, *, lo_open: bool = False,
            hi_open: bool = False) -> Rule:
    """A finite number in [lo, hi] (either end open; hi None = no upper bound)."""
    def accepts(v) -> bool:
        if not _number(v) or v < lo or (lo_open and v == lo):
            return False
        return hi is None or v < hi or (v == hi and not hi_open)
    left, right = "(" if lo_open else "[", ")" if hi_open or hi is None else "]"
    return Rule(accepts, f"a finite number in {left}{lo}, {'inf' if hi is None else hi}{right}")


def one_of(*choices) -> Rule:
    return Rule(lambda v: v in choices, "one of " + ", ".join(repr(c) for c in choices))


def scales_rule(lo: float, hi: float) -> Rule:
    """A non-empty tuple of finite numbers, each in [lo, hi]."""
    def accepts(v) -> bool:
        return isinstance(v, tuple) and len(v) > 0 and all(
            _number(s) and lo <= s <= hi for s in v)
    return Rule(accepts, f"a non-empty tuple of numbers in [{lo}, {hi}]")


def interval_rule(lo: float, hi: float) -> Rule:
    """A pair (a, b) of finite numbers with lo <= a <= b <= hi."""
    def accepts(v) -> bool:
        return isinstance(v, (tuple, list)) and len(v) == 2 and all(_number(s) for s in v) \
            and lo <= v[0] <= v[1] <= hi
    return Rule(accepts, f"a pair (a, b) with {lo} <= a <= b <= {hi}")


def seeds_rule() -> Rule:
    """A non-empty tuple of distinct integers >= 0."""
    def accepts(v) -> bool:
        return isinstance(v, tuple) and len(v) > 0 and len(set(v)) == len(v) and all(
            isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in v)
    return Rule(accepts, "a non-empty tuple of distinct integers >= 0")


def optional(rule: Rule) -> Rule:
    """``rule`` or None."""
    return Rule(lambda v: v is None or rule.accepts(v), f"None or {rule.text}")


def check_settings(config, rules: dict[str, Rule]) -> None:
    """Raise a UsageError naming every field of ``config`` that its rule refuses.

    Example message: ``TrainConfig: epochs must be an integer >= 1, got 0``.
    """
    bad = [f"{name} must be {rule.text}, got {getattr(config, name)!r}"
           for name, rule in rules.items() if not rule.accepts(getattr(config, name))]
    if bad:
        raise UsageError(f"{type(config).__name__}: " + "; ".join(bad),
                         "change these settings")


POSITIVE = between(0, None, lo_open=True)          # lr, gamma, seconds: finite and > 0
FRACTION = between(0, 1)                           # thresholds, IoUs
COUNT = at_least(1)                                # images, epochs, repeats, workers
SEED = at_least(0)
TRAIN_RULES = {
    "seed": at_least(0), "data_seed": at_least(0),
    "num_train": at_least(1), "num_val": at_least(1),
    "image_size": at_least(16), "max_objects": at_least(1),
    "proposal_method": one_of("selective_search", "dense", "rpn"),
    "rpn_training": one_of("joint", "alternating"), "rpn_batch_size": at_least(1),
    "rpn_positive_fraction": FRACTION, "rpn_loss_weight": between(0, None),
    "rpn_box_weight": between(0, None), "rpn_fg_iou": FRACTION, "rpn_bg_iou": FRACTION,
    "rpn_nms_thresh": FRACTION,
    "max_proposals": at_least(1), "proposal_workers": at_least(1),
    "backbone": one_of("vgg", "resnet"), "num_pools": at_least(0),
    "roi_op": one_of("pool", "align"), "output_size": at_least(1),
    "hidden": at_least(1), "dropout": between(0, 1, hi_open=True),
    "sampling": one_of("hierarchical", "region"),
    "images_per_batch": at_least(1), "region_images": at_least(1),
    "rois_per_batch": at_least(1), "fg_fraction": FRACTION, "fg_iou": FRACTION,
    "bg_iou": interval_rule(0, 1), "freeze_at": integer_in(1, 5),
    "epochs": at_least(1), "lr": POSITIVE, "momentum": between(0, 1, hi_open=True),
    "weight_decay": between(0, None), "warmup_iters": at_least(0), "gamma": POSITIVE,
    "score_thresh": FRACTION, "nms_thresh": FRACTION, "max_dets": at_least(1),
    "train_scales": scales_rule(0.25, 4.0), "test_scales": scales_rule(0.25, 4.0),
    "pyramid_target": between(1, None),
    "device": one_of("cpu", "gpu"), "blas_threads": optional(at_least(1)),
    "train_workers": at_least(1),
}


# `minircnn pretrain` (PretrainConfig) and `minircnn finetune` (FinetuneConfig).
PRETRAIN_RULES = {
    "num_train": COUNT, "num_val": COUNT, "image_size": at_least(8),
    "backbone": one_of("resnet", "vgg"), "epochs": COUNT, "batch_size": COUNT,
    "lr": POSITIVE, "momentum": between(0, 1, hi_open=True), "weight_decay": between(0, None),
    "warmup_iters": at_least(0), "seed": SEED, "impl": one_of("fast", "naive"),
}
FINETUNE_RULES = {
    "train_per_class": COUNT, "num_test": COUNT, "image_size": at_least(8), "epochs": COUNT,
    "batch_size": COUNT, "lr": POSITIVE, "scratch_lr": POSITIVE,
    "backbone_lr_mult": between(0, None), "finetune_from": integer_in(1, 4),
    "momentum": between(0, 1, hi_open=True), "weight_decay": between(0, None), "seed": SEED,
    "impl": one_of("fast", "naive"),
}


# `minircnn reproduce` (ReproduceConfig).
REPRODUCE_RULES = {"seeds": seeds_rule(), "workers": COUNT}


def check_train_config(config) -> None:
    """Every TrainConfig range, then the settings that must agree with each other."""
    check_settings(config, {k: r for k, r in TRAIN_RULES.items() if hasattr(config, k)})
    per_iter = config.images_per_batch if config.sampling == "hierarchical" \
        else config.region_images
    if config.num_train < per_iter:
        raise UsageError(
            f"num_train={config.num_train} is fewer than the {per_iter} images of one "
            f"iteration ({config.sampling} sampling), so an epoch would have no iteration",
            f"use at least {per_iter} training images (--num-train {per_iter})")
    if getattr(config, "proposal_method", None) == "rpn":
        _check_rpn_config(config)


def _check_rpn_config(config) -> None:
    """Faster R-CNN trains Fast R-CNN with hierarchical sampling at one scale; the
    anchors' negative threshold is at most the positive one; the alternating schedule
    needs an epoch for each of its four steps."""
    if config.model != "fast_rcnn" or config.sampling != "hierarchical" or \
            tuple(config.train_scales) != (1.0,):
        raise UsageError(
            f"proposal_method='rpn' trains a Fast R-CNN with hierarchical sampling at one "
            f"scale, got model={config.model!r}, sampling={config.sampling!r}, "
            f"train_scales={tuple(config.train_scales)}",
            "leave --sampling and --train-scales at their defaults with --proposals rpn")
    if config.rpn_bg_iou > config.rpn_fg_iou:
        raise UsageError(f"rpn_bg_iou must not exceed rpn_fg_iou (anchors below bg are "
                         f"negative, from fg positive), got {config.rpn_bg_iou} and "
                         f"{config.rpn_fg_iou}", "lower rpn_bg_iou or raise rpn_fg_iou")
    if config.rpn_training == "alternating" and config.epochs < 4:
        raise UsageError(f"rpn_training='alternating' runs 4 steps, one epoch each at least, "
                         f"got epochs={config.epochs}", "use --epochs 4 or more")


def arg_type(rule: Rule, parse=int):
    """An argparse ``type=`` that parses with ``parse`` and applies ``rule``.

    argparse then prints ``minircnn train: error: argument --epochs: must be an
    integer >= 1, got 0`` and exits 2, before any work.
    """
    import argparse

    def parse_arg(text: str):
        try:
            value = parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {rule.text}, got {text!r}") from None
        if not rule.accepts(value):
            raise argparse.ArgumentTypeError(f"must be {rule.text}, got {text}")
        return value

    parse_arg.__name__ = parse.__name__   # argparse names the type in some messages
    parse_arg.rule = rule                 # --help states the range (cli/help.py); tests read it
    return parse_arg
