"""Errors a user can cause and fix: what the ``minircnn`` command prints instead of a traceback.

Library code raises these where it knows both what went wrong and what to do about it;
``minircnn.cli.main`` prints ``minircnn <command>: error: <what>, <what to do>`` and exits
with ``exit_code`` (a traceback only with ``--debug`` or ``MINIRCNN_DEBUG=1``).
They subclass ValueError/RuntimeError where a library caller would expect those.
"""

from __future__ import annotations


class UserError(Exception):
    """An expected failure at run time (missing file, unreadable image, no GPU): exit 1.

    Args:
        what: what is wrong, naming the file or setting ("model.npz is not a checkpoint").
        todo: what to do about it ("pass the model.npz of a `minircnn train` run").
    """

    exit_code = 1

    def __init__(self, what: str, todo: str = ""):
        super().__init__(what, todo)
        self.what, self.todo = what, todo

    def __str__(self) -> str:
        return f"{self.what}, {self.todo}" if self.todo else self.what


class UsageError(UserError, ValueError):
    """A setting out of its valid range or options that do not go together: exit 2."""

    exit_code = 2


class RunInterrupted(UserError):
    """Ctrl-C (SIGINT) or SIGTERM stopped a run: exit 130 (= 128 + SIGINT, as shells do)."""

    exit_code = 130

    def __str__(self) -> str:   # "interrupted at iteration 7; continue with: minircnn ..."
        return f"{self.what}; {self.todo}" if self.todo else self.what


class RunInUse(UserError):
    """Another live process holds the lock of a run folder."""


class WorkerDied(UserError, RuntimeError):
    """A worker process ended (killed, out of memory, os._exit) without sending its result."""
