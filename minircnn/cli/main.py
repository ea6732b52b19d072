"""The ``minircnn`` command (also ``python -m minircnn``).

Each sub-command is a small ``_cmd_<name>(args)`` function that parses nothing itself
beyond ``args`` and calls library code; the library never parses arguments. Imports
happen inside the handlers so ``minircnn --help`` stays fast.
"""

from __future__ import annotations

import argparse
import os
import sys

from minircnn.utils.errors import UsageError, UserError
from minircnn.utils.settings import TRAIN_RULES, arg_type, at_least, between, integer_in

_COUNT = at_least(1)                          # --num-images, --repeats, --epochs...
_FRACTION = between(0, 1)                     # --score-thresh
_LR = between(0, None, lo_open=True)          # finite and > 0
_POSITIVE = between(0, None, lo_open=True)    # --time-limit, --notebook-time-limit


def _scales(text: str) -> tuple:
    """"1,2" -> (1.0, 2.0): a --train-scales / --test-scales list (ValueError otherwise)."""
    return tuple(float(part) for part in text.split(","))


def _cmd_gradcheck(args: argparse.Namespace) -> int:
    from minircnn.gradcheck.cases import format_gradcheck_table, run_gradchecks

    rows = run_gradchecks(seed=args.seed)
    print(format_gradcheck_table(rows))
    failed = [r for r in rows if not r.passed]
    print(f"{len(rows) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


def _cmd_bench(args: argparse.Namespace) -> int:
    import json

    from minircnn.perf.bench import format_bench_table, run_bench

    results = run_bench(repeats=args.repeats, only=args.only)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(format_bench_table(results))
    return 0


def _cmd_dataset(args: argparse.Namespace) -> int:
    from minircnn.data import ShapesDataset, export_dataset

    ds = ShapesDataset(args.num_images, image_size=args.image_size, seed=args.seed,
                       max_objects=args.max_objects)
    path = export_dataset(ds, args.out_dir)
    print(f"wrote {len(ds)} PNGs and {path}")
    return 0


def _single_blas_thread() -> None:
    """Default BLAS to one thread (before NumPy loads) unless the user set it.

    The detector's matrices are small: a second BLAS thread gains little on an idle
    machine and loses much on a busy one (minircnn/utils/blas.py, docs/performance.md).
    Set OPENBLAS_NUM_THREADS yourself to override.
    """
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")


def _train_config(args: argparse.Namespace, out: str):
    """The TrainConfig of ``minircnn train``: the flags given, over the run's own settings
    on --resume; every range checked (a UsageError names what is out of range)."""
    import dataclasses

    from minircnn.training.config import TrainConfig
    from minircnn.training.runs import read_run_config
    from minircnn.utils.settings import check_train_config

    overrides = {k: v for k, v in {
        "name": args.name, "epochs": args.epochs, "backbone": args.backbone,
        "roi_op": args.roi_op, "seed": args.seed, "device": args.device,
        "num_train": args.num_train, "num_val": args.num_val, "lr": args.lr,
        "hidden": args.hidden, "proposal_method": args.proposals,
        "max_proposals": args.max_proposals, "cache_dir": args.cache_dir,
        "sampling": args.sampling, "freeze_at": args.freeze_at,
        "train_scales": args.train_scales, "test_scales": args.test_scales,
        "pretrained": False if args.scratch else None}.items() if v is not None}
    if args.resume:                            # continue with the run's own settings
        saved = read_run_config(out)
        try:
            config = TrainConfig.from_dict(saved)
        except (TypeError, ValueError) as e:
            raise UserError(f"--resume: {out}/config.json: {e}",
                            "restore it, or start the run again with --overwrite") from e
        config = dataclasses.replace(config, **overrides)
    else:
        config = TrainConfig(**overrides)
    check_train_config(config)
    return config


def _cmd_train(args: argparse.Namespace) -> int:
    _single_blas_thread()
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
    print(f"time {times['total_s']:.0f} s (proposals {times['proposals_train_s']:.0f} + "
          f"{times['proposals_val_s']:.0f} s, training {times['train_s']:.0f} s, "
          f"eval {times['eval_s']:.0f} s); run written to {out}/")
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    import json

    _single_blas_thread()
    from minircnn.cli.errors import check_checkpoint, check_device
    from minircnn.cli.eval_detect import evaluate_checkpoint

    check_checkpoint(args.checkpoint, wants="FastRCNN", command="eval")
    check_device(args.device)

    metrics = evaluate_checkpoint(args.checkpoint, num_val=args.num_val,
                                  cache_dir=args.cache_dir, device=args.device)
    if args.json:
        print(json.dumps(metrics, indent=2))
        return 0
    from minircnn.training.metrics import format_metrics

    print(format_metrics(metrics))
    return 0


def _cmd_detect(args: argparse.Namespace) -> int:
    _single_blas_thread()
    from minircnn.cli.errors import check_checkpoint, check_device
    from minircnn.cli.eval_detect import detect_image_file, read_image

    check_checkpoint(args.checkpoint, wants="FastRCNN", command="detect")
    check_device(args.device)
    read_image(args.image)                      # an unreadable image fails before the model loads

    dets = detect_image_file(args.checkpoint, args.image, args.output,
                             score_thresh=args.score_thresh, device=args.device)
    for box, score, name in zip(dets["boxes"], dets["scores"], dets["names"], strict=True):
        print(f"{name:10s} {score:.3f}  " + " ".join(f"{v:6.1f}" for v in box))
    print(f"{len(dets['boxes'])} detections drawn to {args.output}")
    return 0


def _cmd_pretrain(args: argparse.Namespace) -> int:
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


def _cmd_finetune(args: argparse.Namespace) -> int:
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


def _cmd_assign(args: argparse.Namespace) -> int:
    from minircnn.classroom.assign import release

    try:
        written = release(args.src_dir, args.output)
    except FileNotFoundError as err:
        raise UsageError(str(err), "pass the folder that holds the lessons") from err
    except ValueError as err:   # unbalanced solution or hidden-test markers
        raise UsageError(str(err), "fix the markers in the source lesson") from err
    print(f"wrote {len(written)} student notebooks to {args.output}/")
    return 0


def _cmd_grade(args: argparse.Namespace) -> int:
    import json

    from minircnn.classroom.assign import NotebookFormatError
    from minircnn.classroom.grade import Limits, grade, prepare
    from minircnn.classroom.gradebook import write_csv

    limits = Limits(exercise_s=args.time_limit, notebook_s=args.notebook_time_limit,
                    memory_mb=args.memory_limit)
    try:
        for path in args.submissions:   # every file readable and matched before any runs
            prepare(path, args.source)
    except NotebookFormatError as err:
        raise UsageError(str(err), "pass student notebooks (.ipynb or jupytext .py)") from err
    reports = [grade(path, args.source, limits) for path in args.submissions]
    if args.json:
        payload = [r.to_json() for r in reports]
        print(json.dumps(payload[0] if len(payload) == 1 else payload, indent=2))
    else:
        print("\n\n".join(r.format_table() for r in reports))
    if args.csv:
        try:
            write_csv(reports, args.csv)
        except OSError as err:
            raise UserError(f"cannot write {args.csv}: {err.strerror or err}",
                            "choose a writable path for --csv") from err
    return 0


def _add_assign_parsers(sub) -> None:
    """`minircnn assign` (release student copies) and `minircnn grade` (grade them)."""
    p = sub.add_parser("assign", help="release student copies of the lessons (solutions and "
                                      "hidden tests removed)")
    p.add_argument("src_dir", help="folder of lesson notebooks (NN_name.ipynb / .py)")
    p.add_argument("-o", "--output", required=True, help="folder for the student copies")
    p.set_defaults(func=_cmd_assign)

    p = sub.add_parser("grade", help="grade student notebooks against the source lessons' "
                                     "tests, in a separate process")
    p.add_argument("submissions", nargs="+", metavar="SUBMISSION",
                   help="student notebooks (.ipynb or jupytext .py), one lesson each")
    p.add_argument("--source", required=True,
                   help="the teacher's lessons folder (solutions and hidden tests)")
    p.add_argument("--json", action="store_true",
                   help="print JSON: one object per submission (a list for several)")
    p.add_argument("--csv", default=None, metavar="FILE",
                   help="write a gradebook: one row per submission, one column per exercise")
    p.add_argument("--time-limit", type=arg_type(_POSITIVE, float), default=60.0, metavar="S",
                   help="seconds for each student cell and each test cell (default 60)")
    p.add_argument("--notebook-time-limit", type=arg_type(_POSITIVE, float), default=600.0,
                   metavar="S",
                   help="seconds for a whole notebook (default 600)")
    p.add_argument("--memory-limit", type=arg_type(at_least(0), int), default=4096, metavar="MB",
                   help="address-space limit of the grading process in MiB (0: none)")
    p.set_defaults(func=_cmd_grade)


def _add_train_parser(sub) -> None:
    """`minircnn train`: every TrainConfig field worth a flag (None = the default)."""
    p = sub.add_parser("train", help="train Fast R-CNN on the shapes dataset, then evaluate")
    p.add_argument("--epochs", type=arg_type(TRAIN_RULES["epochs"]), default=None,
                   help="passes over the training images (>= 1)")
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
    p.add_argument("--lr", type=arg_type(_LR, float), default=None,
                   help="base learning rate (> 0)")
    p.add_argument("--hidden", type=arg_type(TRAIN_RULES["hidden"]), default=None,
                   help="width of fc6 / fc7 (>= 1)")
    p.add_argument("--proposals", choices=["selective_search", "dense"], default=None,
                   help="proposal method (default selective_search, as the paper)")
    p.add_argument("--max-proposals", type=arg_type(TRAIN_RULES["max_proposals"]), default=None,
                   help="proposals per image (>= 1)")
    p.add_argument("--cache-dir", default=None, help="proposal cache folder ('' disables)")
    p.add_argument("--sampling", choices=["hierarchical", "region"], default=None,
                   help="minibatch sampling (default hierarchical, as the paper)")
    p.add_argument("--train-scales", type=arg_type(TRAIN_RULES["train_scales"], _scales),
                   default=None, help="multi-scale training: each minibatch at a random one "
                                      "of these scales, e.g. 1,2 (default 1)")
    p.add_argument("--test-scales", type=arg_type(TRAIN_RULES["test_scales"], _scales),
                   default=None, help="image pyramid at test time, e.g. 1,2 (default) or 1")
    p.add_argument("--scratch", action="store_true",
                   help="random backbone init instead of the shipped pretrained weights")
    p.add_argument("--freeze-at", type=int, choices=range(1, 6), default=None,
                   help="fine-tune from backbone block K (1..5) up, blocks below fixed "
                        "(default 3, as the paper's conv3_1; 5: the fc layers only)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true",
                      help="continue the run in --out from its checkpoint (its own settings)")
    mode.add_argument("--overwrite", action="store_true",
                      help="replace the run already in --out (else that is an error)")
    p.set_defaults(func=_cmd_train)


def _add_finetune_parser(sub) -> None:
    """`minircnn finetune`: the transfer comparison (FinetuneConfig)."""
    p = sub.add_parser("finetune", help="transfer MiniResNet to new shapes: compare strategies")
    p.add_argument("--pretrained", default=None,
                   help="checkpoint from `minircnn pretrain` (default: the shipped weights)")
    p.add_argument("--out", default=None, help="run folder (default runs/finetune)")
    p.add_argument("--epochs", type=arg_type(_COUNT), default=None,
                   help="fine-tuning epochs per strategy (>= 1)")
    p.add_argument("--train-per-class", type=arg_type(_COUNT), default=None,
                   help="target images per class (>= 1)")
    p.add_argument("--finetune-from", type=arg_type(integer_in(1, 4)), default=None,
                   help="strategy (c) trains stage K onward (detectron2 FREEZE_AT)")
    p.add_argument("--strategies", default=None,
                   help="comma-separated subset of scratch,frozen,from_stage,full")
    p.add_argument("--seed", type=arg_type(at_least(0)), default=None, help="seed (deterministic)")
    p.set_defaults(func=_cmd_finetune)


def _cmd_reproduce(args: argparse.Namespace) -> int:
    _single_blas_thread()
    from minircnn.paper.reproduce import ReproduceConfig, reproduce

    config = ReproduceConfig(
        out_dir=args.out, quick=args.quick,
        seeds=tuple(range(args.seeds)) if args.seeds else (0,) if args.quick else (0, 1, 2),
        rows=tuple(args.rows.split(",")) if args.rows else None, workers=args.workers)
    result = reproduce(config)
    print(f"{len(result['rows'])} rows in {result['seconds']:.0f} s; tables: {result['tables']}")
    return 0


def _add_reproduce_parser(sub) -> None:
    """`minircnn reproduce`: the paper's tables and figures from real training runs."""
    p = sub.add_parser("reproduce", help="the paper's tables and figures, toy version "
                                         "(resumable; --quick checks the machinery)")
    p.add_argument("--out", default="runs/reproduce", help="output folder (default %(default)s)")
    p.add_argument("--quick", action="store_true",
                   help="tiny settings, one seed: seconds, numbers meaningless")
    p.add_argument("--seeds", type=int, default=None, help="seeds per row (default 3)")
    p.add_argument("--rows", default=None,
                   help="comma-separated row-id prefixes, e.g. table5,figure2 (default all)")
    p.add_argument("--workers", type=arg_type(_COUNT), default=2,
                   help="processes at once, one core each: detectors trained, then rows "
                        "measured (default %(default)s)")
    p.set_defaults(func=_cmd_reproduce)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="minircnn",
        description="Fast R-CNN from scratch in NumPy: train, evaluate, inspect.",
    )
    parser.add_argument("--debug", action="store_true",
                        help="show the Python traceback of an error (or MINIRCNN_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("gradcheck", help="float64 gradient check of every layer (a table)")
    p.add_argument("--seed", type=arg_type(at_least(0)), default=0,
                   help="seed for the random inputs")
    p.set_defaults(func=_cmd_gradcheck)

    p = sub.add_parser("bench", help="time the layers and a training step")
    p.add_argument("--repeats", type=arg_type(_COUNT), default=5,
                   help="timed runs per entry (best kept, >= 1)")
    p.add_argument("--only", default=None, help="substring: run only matching entries")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_bench)

    p = sub.add_parser("dataset", help="write the shapes dataset as PNGs + a COCO json")
    p.add_argument("out_dir", help="output folder (created if missing)")
    p.add_argument("--num-images", type=arg_type(_COUNT), default=100,
                   help="number of images (>= 1)")
    p.add_argument("--seed", type=arg_type(at_least(0)), default=0, help="dataset seed")
    p.add_argument("--image-size", type=arg_type(TRAIN_RULES["image_size"]), default=128,
                   help="image side in pixels (>= 16)")
    p.add_argument("--max-objects", type=arg_type(_COUNT), default=4,
                   help="objects per image, at most (>= 1)")
    p.set_defaults(func=_cmd_dataset)

    _add_train_parser(sub)

    p = sub.add_parser("eval", help="evaluate a checkpoint on held-out shapes images")
    p.add_argument("checkpoint", help="a .npz checkpoint (run checkpoint or model.npz)")
    p.add_argument("--num-val", type=arg_type(_COUNT), default=None,
                   help="images (>= 1; default: as trained)")
    p.add_argument("--cache-dir", default=None, help="proposal cache folder ('' disables)")
    p.add_argument("--device", choices=["cpu", "gpu"], default="cpu", help="where to run")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser("detect", help="detect shapes in a PNG and draw them")
    p.add_argument("checkpoint", help="a .npz checkpoint")
    p.add_argument("image", help="input PNG (RGB or RGBA)")
    p.add_argument("-o", "--output", required=True, help="output PNG with boxes drawn")
    p.add_argument("--score-thresh", type=arg_type(_FRACTION, float), default=0.5,
                   help="draw scores above this (0..1)")
    p.add_argument("--device", choices=["cpu", "gpu"], default="cpu", help="where to run")
    p.set_defaults(func=_cmd_detect)

    p = sub.add_parser("pretrain", help="pretrain a backbone on shapes classification")
    p.add_argument("--backbone", choices=["resnet", "vgg"], default=None,
                   help="MiniResNet (default) or the detector's SmallVGG (+ GAP and fc)")
    p.add_argument("--out", default=None, help="run folder (default runs/pretrain)")
    p.add_argument("--epochs", type=arg_type(_COUNT), default=None,
                   help="passes over the training images (>= 1)")
    p.add_argument("--num-train", type=arg_type(_COUNT), default=None,
                   help="training images (>= 1)")
    p.add_argument("--lr", type=arg_type(_LR, float), default=None,
                   help="base learning rate (> 0)")
    p.add_argument("--seed", type=arg_type(at_least(0)), default=None, help="seed (deterministic)")
    p.set_defaults(func=_cmd_pretrain)

    _add_finetune_parser(sub)
    _add_reproduce_parser(sub)

    _add_assign_parsers(sub)

    for command in sub.choices.values():   # also accepted after the command's name
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                             help="show the Python traceback of an error")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; expected failures print one line on stderr (see cli_errors.py).

    Returns the exit status: 0 success, 1 a runtime error (missing file, no GPU,
    diverged training), 2 a usage error (argparse's own errors exit 2 the same way),
    130 interrupted. ``--debug`` or MINIRCNN_DEBUG=1 re-raises with the traceback.
    """
    from minircnn.cli.errors import explain

    args = build_parser().parse_args(argv)
    debug = args.debug or os.environ.get("MINIRCNN_DEBUG", "") not in ("", "0")
    try:
        return int(args.func(args) or 0)
    except (Exception, KeyboardInterrupt) as err:
        known = explain(err)
        if debug or known is None:    # None: not an expected failure, so a bug: traceback
            raise
        code, message = known
        print(f"minircnn {args.command}: error: {message}", file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
