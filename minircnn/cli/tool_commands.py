"""The tools' commands: gradcheck, bench, reproduce, assign, grade.

One ``add_<cmd>(sub)`` (its parser) and ``run_<cmd>(args)`` (its handler) per command,
side by side; cli/main.py puts them together. Every numeric option is range-checked by
its rule from minircnn/utils/settings.py when it is parsed.
"""

from __future__ import annotations

import argparse

from minircnn.cli.train_commands import single_blas_thread
from minircnn.utils.errors import UsageError, UserError
from minircnn.utils.settings import COUNT, POSITIVE, SEED, arg_type, at_least


def add_gradcheck(sub) -> None:
    """`minircnn gradcheck`: every layer's backward against finite differences."""
    p = sub.add_parser("gradcheck", help="float64 gradient check of every layer (a table)")
    p.add_argument("--seed", type=arg_type(SEED), default=0,
                   help="seed for the random inputs")
    p.set_defaults(func=run_gradcheck)


def run_gradcheck(args: argparse.Namespace) -> int:
    from minircnn.gradcheck.cases import format_gradcheck_table, run_gradchecks

    rows = run_gradchecks(seed=args.seed)
    print(format_gradcheck_table(rows))
    failed = [r for r in rows if not r.passed]
    print(f"{len(rows) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


def add_bench(sub) -> None:
    """`minircnn bench`: the layers and a training step, timed."""
    p = sub.add_parser("bench", help="time the layers and a training step")
    p.add_argument("--repeats", type=arg_type(COUNT), default=5,
                   help="timed runs per entry (best kept, >= 1)")
    p.add_argument("--only", default=None, help="substring: run only matching entries")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run_bench)


def run_bench(args: argparse.Namespace) -> int:
    from minircnn.perf.bench import run_bench
    from minircnn.perf.bench_table import format_bench_table
    from minircnn.utils.fileio import dumps_json

    results = run_bench(repeats=args.repeats, only=args.only)
    if args.json:
        print(dumps_json(results))
    else:
        print(format_bench_table(results))
    return 0


def add_reproduce(sub) -> None:
    """`minircnn reproduce`: the paper's tables and figures from real training runs."""
    p = sub.add_parser("reproduce", help="the paper's tables and figures, toy version "
                                         "(resumable; --quick checks the machinery)")
    p.add_argument("--out", default="runs/reproduce", help="output folder (default %(default)s)")
    p.add_argument("--quick", action="store_true",
                   help="tiny settings, one seed: seconds, numbers meaningless")
    p.add_argument("--seeds", type=arg_type(COUNT), default=None,
                   help="seeds per row (>= 1; default 3, 1 with --quick)")
    p.add_argument("--rows", default=None,
                   help="comma-separated row-id prefixes, e.g. table5,figure2 (default all)")
    p.add_argument("--workers", type=arg_type(COUNT), default=2,
                   help="processes at once, one core each: detectors trained, then rows "
                        "measured (default %(default)s)")
    p.set_defaults(func=run_reproduce)


def run_reproduce(args: argparse.Namespace) -> int:
    single_blas_thread()
    from minircnn.paper.reproduce import reproduce
    from minircnn.paper.variants import ReproduceConfig

    seeds = args.seeds if args.seeds is not None else 1 if args.quick else 3
    config = ReproduceConfig(
        out_dir=args.out, quick=args.quick, seeds=tuple(range(seeds)),
        rows=tuple(args.rows.split(",")) if args.rows else None, workers=args.workers)
    result = reproduce(config)
    print(f"{len(result['rows'])} rows in {result['seconds']:.0f} s; tables: {result['tables']}")
    return 0


def add_assign(sub) -> None:
    """`minircnn assign`: release student copies of the lessons."""
    p = sub.add_parser("assign", help="release student copies of the lessons (solutions and "
                                      "hidden tests removed)")
    p.add_argument("src_dir", help="folder of lesson notebooks (NN_name.ipynb / .py)")
    p.add_argument("-o", "--output", required=True, help="folder for the student copies")
    p.set_defaults(func=run_assign)


def run_assign(args: argparse.Namespace) -> int:
    from minircnn.classroom.assign import release

    try:
        written = release(args.src_dir, args.output)
    except FileNotFoundError as err:
        raise UsageError(str(err), "pass the folder that holds the lessons") from err
    except ValueError as err:   # unbalanced solution or hidden-test markers
        raise UsageError(str(err), "fix the markers in the source lesson") from err
    print(f"wrote {len(written)} student notebooks to {args.output}/")
    return 0


def add_grade(sub) -> None:
    """`minircnn grade`: grade student notebooks; the judge runs outside the student's process."""
    p = sub.add_parser("grade", help="grade student notebooks against the source lessons' "
                                     "hidden tests (the student's code runs sandboxed)")
    p.add_argument("submissions", nargs="+", metavar="SUBMISSION",
                   help="student notebooks (.ipynb or jupytext .py), one lesson each")
    p.add_argument("--source", required=True,
                   help="the teacher's lessons folder (solutions and hidden tests)")
    p.add_argument("--json", action="store_true",
                   help="print JSON: one object per submission (a list for several)")
    p.add_argument("--csv", default=None, metavar="FILE",
                   help="write a gradebook: one row per submission, one column per exercise")
    p.add_argument("--secret", default=None, metavar="KEY",
                   help="the teacher's secret that draws the hidden inputs (default: "
                        "$MINIRCNN_GRADE_SECRET; without one, the public tests run)")
    p.add_argument("--time-limit", type=arg_type(POSITIVE, float), default=60.0, metavar="S",
                   help="seconds for each student cell and each call of a test (default 60)")
    p.add_argument("--notebook-time-limit", type=arg_type(POSITIVE, float), default=600.0,
                   metavar="S",
                   help="seconds for a whole notebook (default 600)")
    p.add_argument("--memory-limit", type=arg_type(at_least(0), int), default=4096, metavar="MB",
                   help="address-space limit of the student process in MiB (0: none)")
    p.set_defaults(func=run_grade)


def run_grade(args: argparse.Namespace) -> int:
    import os

    from minircnn.classroom.grade import grade_batch
    from minircnn.classroom.grade_run import Limits
    from minircnn.classroom.gradebook import write_csv
    from minircnn.utils.fileio import dumps_json

    limits = Limits(exercise_s=args.time_limit, notebook_s=args.notebook_time_limit,
                    memory_mb=args.memory_limit)
    secret = args.secret or os.environ.get("MINIRCNN_GRADE_SECRET") or None
    hide = [os.path.dirname(os.path.abspath(args.csv))] if args.csv else []
    reports = grade_batch(args.submissions, args.source, limits, secret, hide=hide)
    if args.json:   # every student process is dead by now: the reports are final
        payload = [r.to_json() for r in reports]
        print(dumps_json(payload[0] if len(payload) == 1 else payload))
    else:
        print("\n\n".join(r.format_table() for r in reports))
    if args.csv:
        try:
            write_csv(reports, args.csv)
        except OSError as err:
            raise UserError(f"cannot write {args.csv}: {err.strerror or err}",
                            "choose a writable path for --csv") from err
    return 0
