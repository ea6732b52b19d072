"""The ``minircnn`` command (also ``python -m minircnn``).

Each sub-command is a small ``_cmd_<name>(args)`` function that parses nothing itself
beyond ``args`` and calls library code; the library never parses arguments. Imports
happen inside the handlers so ``minircnn --help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys


def _cmd_gradcheck(args: argparse.Namespace) -> int:
    from minircnn.checks import format_gradcheck_table, run_gradchecks

    rows = run_gradchecks(seed=args.seed)
    print(format_gradcheck_table(rows))
    failed = [r for r in rows if not r.passed]
    print(f"{len(rows) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


def _cmd_bench(args: argparse.Namespace) -> int:
    import json

    from minircnn.bench import format_bench_table, run_bench

    results = run_bench(repeats=args.repeats, only=args.only)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(format_bench_table(results))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="minircnn",
        description="Fast R-CNN from scratch in NumPy: train, evaluate, inspect.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("gradcheck", help="float64 gradient check of every layer (a table)")
    p.add_argument("--seed", type=int, default=0, help="seed for the random inputs")
    p.set_defaults(func=_cmd_gradcheck)

    p = sub.add_parser("bench", help="time the layers and a training step")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per entry (best kept)")
    p.add_argument("--only", default=None, help="substring: run only matching entries")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_bench)

    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
