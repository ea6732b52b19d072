"""Progress that fits where it goes: a live bar on a terminal, plain lines elsewhere.

A tqdm bar redraws itself with carriage returns and cursor escapes: right on a terminal,
wrong in a log file (thousands of updates on one "line"), a pipe, or a notebook saved
to a web page (a widget that needs a script from the internet). ``progress_bar`` gives
the bar only when stderr is a terminal; elsewhere a ``LineProgress`` that prints nothing
per step, the summaries its caller asks for (``summary(bar, "epoch 3/9: loss 0.41")``)
and one closing line. ``enabled=False`` or ``TQDM_DISABLE=1`` silences both.

The bar starts no thread. tqdm's own class starts a monitor thread with its first bar
(it adjusts bars that update rarely) and keeps it for the life of the process; a live
thread makes the evaluation detect in one process rather than in worker processes
(training/metrics.py: a fork copies the locks other threads hold).
"""

from __future__ import annotations

import functools
import os
import sys
import time


class LineProgress:
    """tqdm's ``update`` / ``set_postfix`` / ``close``, written as whole lines."""

    def __init__(self, total: int, desc: str, initial: int = 0, stream=None):
        self.total, self.desc, self.n = total, desc, initial
        self.stream = stream or sys.stderr
        self.start = time.time()
        self.closed = False

    def update(self, n: int = 1) -> None:
        self.n += n

    def set_postfix(self, *args, **kwargs) -> None:
        """Nothing: a log gets the caller's summaries instead of every step's numbers."""

    def write(self, text: str) -> None:
        print(f"{self.desc}: {text}", file=self.stream, flush=True)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.write(f"{self.n}/{self.total} done in {time.time() - self.start:.0f} s")

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is None:              # an error or Ctrl-C says what happened itself
            self.close()


def progress_bar(total: int, desc: str, *, enabled: bool = True, initial: int = 0, **kwargs):
    """A tqdm bar (``kwargs`` are tqdm's) on a terminal, a ``LineProgress`` elsewhere."""
    quiet = not enabled or os.environ.get("TQDM_DISABLE", "") not in ("", "0")
    if quiet or _on_terminal():
        return _bar_class()(total=total, desc=desc, initial=initial, disable=quiet, **kwargs)
    return LineProgress(total, desc, initial)


@functools.cache
def _bar_class():
    """tqdm with no monitor thread (module docstring); tqdm is imported on first use."""
    from tqdm import tqdm

    class Bar(tqdm):
        monitor_interval = 0     # tqdm starts its monitor thread only when this is > 0

    return Bar


def summary(bar, text: str) -> None:
    """One line for a log (``LineProgress``); a terminal's bar shows its numbers itself."""
    if isinstance(bar, LineProgress):
        bar.write(text)


def _on_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):    # replaced or closed stderr
        return False
