"""The ``minircnn`` command (also ``python -m minircnn``).

Each sub-command is a pair next to each other in one file: ``add_<cmd>(sub)`` builds
its parser, ``run_<cmd>(args)`` handles it, parsing nothing beyond ``args`` and calling
library code (the library never parses arguments). The detector's commands live in
cli/train_commands.py, the tools' in cli/tool_commands.py. Imports happen inside the
handlers so ``minircnn --help`` stays fast.
"""

from __future__ import annotations

import argparse
import os
import sys

from minircnn import __version__
from minircnn.cli import tool_commands, train_commands
from minircnn.cli.help import describe_commands
from minircnn.utils.memory import keep_freed_memory

# The sub-commands, in the order ``minircnn --help`` lists them.
ADD_COMMANDS = (
    tool_commands.add_gradcheck, tool_commands.add_bench, train_commands.add_dataset,
    train_commands.add_train, train_commands.add_eval, train_commands.add_detect,
    train_commands.add_pretrain, train_commands.add_finetune, tool_commands.add_reproduce,
    tool_commands.add_assign, tool_commands.add_grade,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="minircnn",
        description="Fast R-CNN from scratch in NumPy: train, evaluate, inspect.",
    )
    parser.add_argument("--version", action="version", version=f"minircnn {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show the Python traceback of an error (or MINIRCNN_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for add_command in ADD_COMMANDS:
        add_command(sub)
    for command in sub.choices.values():   # also accepted after the command's name
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                             help="show the Python traceback of an error")
    describe_commands(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; expected failures print one line on stderr (see cli/errors.py).

    Returns the exit status: 0 success; 1 a failure found while running (a missing or
    wrong-kind checkpoint, an unreadable image, no GPU, a run folder already holding a
    run, diverged training); 2 a usage error, a command line wrong in itself (an option
    out of range, options that do not go together; argparse's own errors exit 2 the
    same way); 130 interrupted (Ctrl-C or SIGTERM, reported without "error:").
    ``--debug`` or MINIRCNN_DEBUG=1 re-raises with the traceback.
    """
    from minircnn.cli.errors import explain

    args = build_parser().parse_args(argv)
    keep_freed_memory()    # every iteration's arrays reuse warm pages (utils/memory.py)
    debug = args.debug or os.environ.get("MINIRCNN_DEBUG", "") not in ("", "0")
    try:
        return int(args.func(args) or 0)
    except (Exception, KeyboardInterrupt) as err:
        known = explain(err)
        if debug or known is None:    # None: not an expected failure, so a bug: traceback
            raise
        code, message = known
        # Ctrl-C is what the user asked for, not an error: said as it is, exit 130
        kind = "" if code == 130 else "error: "
        print(f"minircnn {args.command}: {kind}{message}", file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
