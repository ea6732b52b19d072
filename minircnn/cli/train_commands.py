"""The detector's commands: dataset, train, eval, detect, pretrain, finetune.

One ``add_<cmd>(sub)`` (its parser) and ``run_<cmd>(args)`` (its handler) per command,
side by side; cli/main.py puts them together. Every numeric option is range-checked by
its rule from minircnn/utils/settings.py when it is parsed.
"""

from __future__ import annotations

import argparse
import os

from minircnn.cli.help import config_defaults
from minircnn.utils import settings
from minircnn.utils.errors import UsageError, UserError
from minircnn.utils.settings import (
    COUNT,
    FINETUNE_RULES,
    PRETRAIN_RULES,
    SEED,
    TRAIN_RULES,
    arg_type,
)


def single_blas_thread() -> None:
    """Default BLAS to one thread (before NumPy loads) unless the user set it.

    The detector's matrices are small: a second BLAS thread gains little on an idle
    machine and loses much on a busy one (minircnn/utils/blas.py, docs/performance.md).
    Set OPENBLAS_NUM_THREADS yourself to override.
    """
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")


def _scales(text: str) -> tuple:
    """"1,2" -> (1.0, 2.0): a --train-scales / --test-scales list (ValueError otherwise)."""
    return tuple(float(part) for part in text.split(","))


def add_dataset(sub) -> None:
    """`minircnn dataset OUT_DIR`: the shapes dataset as PNGs + a COCO json."""
    p = sub.add_parser("dataset", help="write the shapes dataset as PNGs + a COCO json")
    p.add_argument("out_dir", help="output folder (created if missing)")
    p.add_argument("--num-images", type=arg_type(COUNT), default=100,
                   help="number of images (>= 1)")
    p.add_argument("--seed", type=arg_type(SEED), default=0, help="dataset seed")
    p.add_argument("--image-size", type=arg_type(TRAIN_RULES["image_size"]), default=128,
                   help="image side in pixels (>= 16)")
    p.add_argument("--max-objects", type=arg_type(COUNT), default=4,
                   help="objects per image, at most (>= 1)")
    p.set_defaults(func=run_dataset)


def run_dataset(args: argparse.Namespace) -> int:
    from minircnn.data.shapes import ShapesDataset, export_dataset

    ds = ShapesDataset(args.num_images, image_size=args.image_size, seed=args.seed,
                       max_objects=args.max_objects)
    path = export_dataset(ds, args.out_dir)
    print(f"wrote {len(ds)} PNGs and {path}")
    return 0


def add_train(sub) -> None:
    """`minircnn train`: every TrainConfig field worth a flag (None = the default)."""
    p = sub.add_parser("train", help="train Fast R-CNN on the shapes dataset, then evaluate")
    p.add_argument("--epochs", type=arg_type(TRAIN_RULES["epochs"]), default=None,
                   help="passes over the training images (>= 1; with --proposals rpn, "
                        "10: the RPN recipe's)")
    p.add_argument("--backbone", choices=["vgg", "resnet"], default=None, help="backbone")
    p.add_argument("--roi-op", choices=["pool", "align"], default=None, help="RoI pooling op")
    p.add_argument("--out", default=None, help="run folder (default runs/<name>)")
    p.add_argument("--name", default=None, help="run name (default 'shapes')")
    p.add_argument("--seed", type=arg_type(TRAIN_RULES["seed"]), default=None,
                   help="training seed (deterministic)")
    p.add_argument("--device", choices=["cpu", "gpu"], default=None, help="where to train")
    p.add_argument("--num-train", type=arg_type(TRAIN_RULES["num_train"]), default=None,
                   help="training images (>= the images of one iteration, 2)")
    p.add_argument("--num-val", type=arg_type(TRAIN_RULES["num_val"]), default=None,
                   help="held-out evaluation images (>= 1)")
    p.add_argument("--lr", type=arg_type(TRAIN_RULES["lr"], float), default=None,
                   help="base learning rate (> 0)")
    p.add_argument("--hidden", type=arg_type(TRAIN_RULES["hidden"]), default=None,
                   help="width of fc6 / fc7 (>= 1)")
    p.add_argument("--proposals", choices=["selective_search", "dense", "rpn"], default=None,
                   help="proposal method (default selective_search, as the paper; rpn: "
                        "Faster R-CNN's Region Proposal Network, trained with the detector)")
    p.add_argument("--rpn-training", choices=["joint", "alternating"], default=None,
                   help="with --proposals rpn: approximate joint training (default) or the "
                        "Faster R-CNN paper's 4-step alternating training")
    p.add_argument("--max-proposals", type=arg_type(TRAIN_RULES["max_proposals"]), default=None,
                   help="proposals per image (>= 1)")
    p.add_argument("--cache-dir", default=None,
                   help="proposal cache folder ('' disables; default: $MINIRCNN_CACHE/proposals, "
                        "else ~/.cache/minircnn/proposals)")
    p.add_argument("--train-workers", type=arg_type(TRAIN_RULES["train_workers"]),
                   default=None,
                   help="processes sharing each minibatch's images, one per core (1: the "
                        "whole minibatch in one pass, another recipe; faster on a GPU, "
                        "where the images would run one after the other)")
    p.add_argument("--sampling", choices=["hierarchical", "region"], default=None,
                   help="minibatch sampling (default hierarchical, as the paper)")
    p.add_argument("--train-scales", type=arg_type(TRAIN_RULES["train_scales"], _scales),
                   default=None, help="multi-scale training: each minibatch at a random one "
                                      "of these scales, e.g. 1,2 (default 1)")
    p.add_argument("--test-scales", type=arg_type(TRAIN_RULES["test_scales"], _scales),
                   default=None, help="image pyramid at test time, e.g. 1,2 (default) or 1")
    p.add_argument("--scratch", action="store_true",
                   help="random backbone init instead of the shipped pretrained weights")
    p.add_argument("--freeze-at", type=arg_type(TRAIN_RULES["freeze_at"]), default=None,
                   help="fine-tune from backbone block K (1..5) up, blocks below fixed "
                        "(default 3, as the paper's conv3_1; 5: the fc layers only)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true",
                      help="continue the run in --out from its checkpoint (its own settings)")
    mode.add_argument("--overwrite", action="store_true",
                      help="replace the run already in --out (else that is an error)")
    config_defaults(p, "minircnn.training.config", "TrainConfig",
                    {"proposals": "proposal_method"})
    p.set_defaults(func=run_train)


def _train_config(args: argparse.Namespace, out: str):
    """The TrainConfig of ``minircnn train``: the flags given, over the run's own settings
    on --resume; every range checked (a UsageError names what is out of range)."""
    import dataclasses

    from minircnn.training.config import RPN_EPOCHS, TrainConfig
    from minircnn.training.runs import read_run_config
    from minircnn.utils.settings import check_train_config

    overrides = {k: v for k, v in {
        "name": args.name, "epochs": args.epochs, "backbone": args.backbone,
        "roi_op": args.roi_op, "seed": args.seed, "device": args.device,
        "num_train": args.num_train, "num_val": args.num_val, "lr": args.lr,
        "hidden": args.hidden, "proposal_method": args.proposals,
        "max_proposals": args.max_proposals, "cache_dir": args.cache_dir,
        "rpn_training": args.rpn_training, "sampling": args.sampling, "freeze_at": args.freeze_at,
        "train_workers": args.train_workers,
        "train_scales": args.train_scales, "test_scales": args.test_scales,
        "pretrained": False if args.scratch else None}.items() if v is not None}
    if args.resume:                            # continue with the run's own settings
        saved = read_run_config(out)
        try:                                   # what the file holds: found on disk, exit 1
            config = TrainConfig.from_dict(saved)
            check_train_config(config)
        except (TypeError, ValueError) as e:
            raise UserError(f"--resume: {out}/config.json: {e}",
                            "restore it, or start the run again with --overwrite") from e
        config = dataclasses.replace(config, **overrides)
    else:
        if args.epochs is None and args.proposals == "rpn":   # the RPN recipe's schedule
            overrides["epochs"] = RPN_EPOCHS
        config = TrainConfig(**overrides)
    check_train_config(config)
    return config


def run_train(args: argparse.Namespace) -> int:
    single_blas_thread()
    from minircnn.cli.errors import check_device
    from minircnn.training.config import TrainConfig
    from minircnn.training.loop import train_detector
    from minircnn.training.metrics import format_metrics

    out = args.out or os.path.join("runs", args.name or TrainConfig.name)
    config = _train_config(args, out)
    check_device(config.device)
    metrics = train_detector(config, out, resume=args.resume, overwrite=args.overwrite)
    ev, times = metrics["eval"], metrics["times"]
    print(format_metrics(ev))
    if "proposals" in metrics:                 # an RPN run: its proposals vs selective search
        from minircnn.training.rpn_eval import format_proposals
        print(format_proposals(metrics["proposals"]))
    # the held-out images' proposals are made during training, in a second process, when
    # training leaves a core free: the time printed for them is then the wait once it ended
    when = metrics.get("held_out_proposals", "during training")
    wait = "waiting for" if when == "during training" else "for"
    processes = metrics.get("train_processes", 1)
    print(f"time {times['total_s']:.0f} s: proposals {times['proposals_train_s']:.0f} s for "
          f"the training images (about 0 when cached) + {times['proposals_val_s']:.0f} s "
          f"{wait} the held-out ones (made {when}), training {times['train_s']:.0f} s "
          f"in {processes} process{'es' if processes > 1 else ''}, eval "
          f"{times['eval_s']:.0f} s; {times['cpu_s']:.0f} s of CPU in this process; run "
          f"written to {out}/")
    return 0


def add_eval(sub) -> None:
    """`minircnn eval CKPT`: mAP of a checkpoint on held-out images."""
    p = sub.add_parser("eval", help="evaluate a checkpoint on held-out shapes images")
    p.add_argument("checkpoint", help="a .npz checkpoint (run checkpoint or model.npz)")
    p.add_argument("--num-val", type=arg_type(COUNT), default=None,
                   help="images (>= 1; default: as trained)")
    p.add_argument("--cache-dir", default=None,
                   help="proposal cache folder ('' disables; default: the per-user cache, "
                        "as train)")
    p.add_argument("--device", choices=["cpu", "gpu"], default="cpu", help="where to run")
    p.add_argument("--json", action="store_true",
                   help="print strict JSON (an undefined AP is null) instead of the summary")
    p.set_defaults(func=run_eval)


def run_eval(args: argparse.Namespace) -> int:
    single_blas_thread()
    from minircnn.cli.errors import check_checkpoint, check_device
    from minircnn.cli.eval_detect import evaluate_checkpoint

    check_checkpoint(args.checkpoint, wants="FastRCNN", command="eval")
    check_device(args.device)

    metrics = evaluate_checkpoint(args.checkpoint, num_val=args.num_val,
                                  cache_dir=args.cache_dir, device=args.device)
    if args.json:
        from minircnn.utils.fileio import dumps_json

        print(dumps_json(metrics))          # strict JSON: an undefined AP is null
        return 0
    from minircnn.training.metrics import format_metrics

    print(format_metrics(metrics))
    return 0


def add_detect(sub) -> None:
    """`minircnn detect CKPT IMAGE -o OUT.png`: detections drawn on an image."""
    p = sub.add_parser("detect", help="detect shapes in an image and draw them")
    p.add_argument("checkpoint", help="a .npz checkpoint (run checkpoint or model.npz)")
    p.add_argument("image", help="input PNG or JPEG: gray, RGB, RGBA or palette, 8 or 16 bits")
    p.add_argument("-o", "--output", required=True, metavar="OUT",
                   help="image with the boxes drawn, in the format its extension names "
                        "(.png, .jpg or .jpeg); its folder must exist")
    p.add_argument("--score-thresh", type=arg_type(settings.FRACTION, float), default=0.5,
                   help="draw scores above this (0..1)")
    p.add_argument("--device", choices=["cpu", "gpu"], default="cpu", help="where to run")
    p.set_defaults(func=run_detect)


def run_detect(args: argparse.Namespace) -> int:
    single_blas_thread()
    from minircnn.cli.errors import check_checkpoint, check_device
    from minircnn.cli.eval_detect import detect_image_file, read_image

    _check_output_image(args.output)
    check_checkpoint(args.checkpoint, wants="FastRCNN", command="detect")
    check_device(args.device)
    read_image(args.image)                      # an unreadable image fails before the model loads

    dets = detect_image_file(args.checkpoint, args.image, args.output,
                             score_thresh=args.score_thresh, device=args.device)
    for box, score, name in zip(dets["boxes"], dets["scores"], dets["names"], strict=True):
        print(f"{name:10s} {score:.3f}  " + " ".join(f"{v:6.1f}" for v in box))
    print(f"{len(dets['boxes'])} detections drawn to {args.output}")
    return 0


def _check_output_image(path: str) -> None:
    """-o names a .png/.jpg/.jpeg file in a folder that exists (no folder is made: a typo
    in the path must not create a tree of folders)."""
    from minircnn.viz import image_format

    try:
        image_format(path)
    except ValueError as e:
        raise UsageError(f"-o {e}") from e
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UserError(f"-o {path}: the folder {folder} does not exist",
                        "create it first or choose another path")
    if os.path.isdir(path):
        raise UserError(f"-o {path} is a folder", "give a file name such as out.png")


def add_pretrain(sub) -> None:
    """`minircnn pretrain`: a backbone trained on shapes classification (PretrainConfig)."""
    p = sub.add_parser("pretrain", help="pretrain a backbone on shapes classification")
    p.add_argument("--backbone", choices=["resnet", "vgg"], default=None,
                   help="MiniResNet (default) or the detector's SmallVGG (+ GAP and fc)")
    p.add_argument("--out", default=None, help="run folder (default runs/pretrain)")
    p.add_argument("--epochs", type=arg_type(PRETRAIN_RULES["epochs"]), default=None,
                   help="passes over the training images (>= 1)")
    p.add_argument("--num-train", type=arg_type(PRETRAIN_RULES["num_train"]), default=None,
                   help="training images (>= 1)")
    p.add_argument("--lr", type=arg_type(PRETRAIN_RULES["lr"], float), default=None,
                   help="base learning rate (> 0)")
    p.add_argument("--seed", type=arg_type(PRETRAIN_RULES["seed"]), default=None,
                   help="seed (deterministic)")
    config_defaults(p, "minircnn.training.transfer", "PretrainConfig")
    p.set_defaults(func=run_pretrain)


def run_pretrain(args: argparse.Namespace) -> int:
    from minircnn.training.transfer import PretrainConfig, pretrain

    overrides = {k: v for k, v in {
        "epochs": args.epochs, "num_train": args.num_train, "lr": args.lr,
        "seed": args.seed, "backbone": args.backbone}.items() if v is not None}
    config = PretrainConfig(**overrides)
    out = args.out or os.path.join("runs", "pretrain")
    metrics = pretrain(config, out)
    for row in metrics["history"]:
        print(f"epoch {row['epoch']}: train loss {row['train_loss']:.4f}, "
              f"train acc {row['train_acc']:.3f}, val acc {row['val_acc']:.3f}")
    print(f"val accuracy {metrics['val_acc']:.4f} on {config.num_val} images of "
          f"{len(config.classes)} shapes ({metrics['train_seconds']:.0f} s); "
          f"checkpoint {metrics['checkpoint']}")
    return 0


def add_finetune(sub) -> None:
    """`minircnn finetune`: the transfer comparison (FinetuneConfig)."""
    p = sub.add_parser("finetune", help="transfer MiniResNet to new shapes: compare strategies")
    p.add_argument("--pretrained", default=None,
                   help="checkpoint from `minircnn pretrain` (default: the shipped weights)")
    p.add_argument("--out", default=None, help="run folder (default runs/finetune)")
    p.add_argument("--epochs", type=arg_type(FINETUNE_RULES["epochs"]), default=None,
                   help="fine-tuning epochs per strategy (>= 1)")
    p.add_argument("--train-per-class", type=arg_type(FINETUNE_RULES["train_per_class"]),
                   default=None, help="target images per class (>= 1)")
    p.add_argument("--finetune-from", type=arg_type(FINETUNE_RULES["finetune_from"]),
                   default=None,
                   help="strategy (c) trains stage K onward, K in 1..4 (detectron2 FREEZE_AT)")
    p.add_argument("--strategies", default=None,
                   help="comma-separated subset of scratch,frozen,from_stage,full")
    p.add_argument("--seed", type=arg_type(FINETUNE_RULES["seed"]), default=None,
                   help="seed (deterministic)")
    config_defaults(p, "minircnn.training.transfer", "FinetuneConfig")
    p.set_defaults(func=run_finetune)


def run_finetune(args: argparse.Namespace) -> int:
    from minircnn.cli.errors import check_checkpoint
    from minircnn.training.transfer import STRATEGIES, FinetuneConfig, finetune

    if args.pretrained is not None:
        check_checkpoint(args.pretrained, wants="MiniResNet", command="finetune --pretrained")
    unknown = sorted(set(args.strategies.split(",")) - set(STRATEGIES)) if args.strategies else []
    if unknown:
        raise UsageError(f"--strategies: unknown {', '.join(unknown)}",
                         f"choose from {','.join(STRATEGIES)}")

    overrides = {k: v for k, v in {
        "pretrained": args.pretrained, "epochs": args.epochs,
        "train_per_class": args.train_per_class, "finetune_from": args.finetune_from,
        "seed": args.seed, "strategies": tuple(args.strategies.split(",")) if args.strategies
        else None}.items() if v is not None}
    config = FinetuneConfig(**overrides)
    out = args.out or os.path.join("runs", "finetune")
    result = finetune(config, out)
    print(f"target task: {len(config.classes)} new shapes on '{config.background}' "
          f"backgrounds, {result['num_train']} training / {result['num_test']} test images")
    print(result["table"])
    print(f"written to {out}/")
    return 0
