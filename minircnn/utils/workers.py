"""Worker processes that never outlive the run that started them.

Selective search runs in a few processes (minircnn.training.proposals.load_proposals). If the parent
is killed (kill -9, a closed terminal, a batch system's time limit), plain pool workers
keep running, orphaned, for as long as their share takes, or wait forever. Here:

- each worker asks Linux to send it SIGKILL when its parent dies
  (``prctl(PR_SET_PDEATHSIG)`` through ctypes); elsewhere a daemon thread polls
  ``os.getppid()`` once a second and exits when the parent is gone;
- workers ignore SIGINT, so Ctrl-C reaches the parent only, which then terminates the
  pool (``multiprocessing.Pool.__exit__`` calls ``terminate``) before re-raising.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
import threading
import time

from minircnn.utils.errors import WorkerDied

_PR_SET_PDEATHSIG = 1          # from <linux/prctl.h>


def die_with_parent(parent_pid: int) -> None:
    """Run first in a worker: it exits when process ``parent_pid`` is gone, and leaves
    Ctrl-C to the parent (a pool initializer, or the first line of a worker's loop)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)    # Ctrl-C is the parent's to handle
    signal.signal(signal.SIGTERM, signal.SIG_DFL)   # a forked worker inherits the parent's
                                                    # handler; Pool.terminate() sends SIGTERM
    armed = False
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            armed = libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
        except (OSError, AttributeError):
            armed = False
    if os.getppid() != parent_pid:       # the parent died before prctl took effect
        os._exit(1)
    if not armed:
        threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True).start()


def _watch_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(1.0)
    os._exit(1)


def map_in_workers(function, jobs: list, processes: int, *, on_result=None) -> list:
    """``[function(job) for job in jobs]`` in ``processes`` worker processes.

    ``on_result(result)``, when given, is called in this process as each result arrives,
    in job order (to advance one progress bar for all the workers).
    The workers die with this process (see the module docstring); on any exception,
    KeyboardInterrupt included, the pool is terminated before the exception goes on.
    """
    import multiprocessing

    results = []
    with multiprocessing.Pool(processes, initializer=die_with_parent,
                              initargs=(os.getpid(),)) as pool:
        for result in pool.imap(function, jobs):   # leaving the with-block terminates the pool
            results.append(result)
            if on_result is not None:
                on_result(result)
    return results


POLL_S = 0.5                   # how often a waiting parent checks that the worker lives


class InBackground:
    """``function(*args)`` in one worker process while this process goes on.

    ``with InBackground(f, x) as job: ...; y = job.result()`` waits for the worker (and
    re-raises its exception, if any) only when ``result`` is called; leaving the block
    terminates the worker, so an interrupted run leaves nothing running. The worker dies
    with this process, as those of ``map_in_workers``. A worker that dies first (killed,
    out of memory) makes ``result`` raise WorkerDied instead of waiting forever: it is a
    plain process sending its one result through a pipe, not a pool, which would quietly
    replace a dead worker and never deliver the lost task's result.
    """

    def __init__(self, function, *args):
        self.function, self.args = function, args

    def __enter__(self) -> InBackground:
        import multiprocessing

        self._receive, send = multiprocessing.Pipe(duplex=False)
        self._process = multiprocessing.Process(
            target=_run_and_send, args=(send, os.getpid(), self.function, self.args),
            daemon=True)
        self._process.start()
        send.close()                  # the worker holds the only sending end now
        self._message = None
        return self

    def result(self):
        if self._message is None:
            self._message = self._wait()
        kind, value = self._message
        if kind == "error":
            raise value
        return value

    def _wait(self) -> tuple:
        """The worker's ("result" | "error", value), or WorkerDied once it is gone without."""
        message = receive_from(self._process, self._receive)
        return self._died() if message is None else message

    def _died(self):
        self._process.join()
        raise WorkerDied(f"the background worker running {_name(self.function)} ended "
                         f"({how_it_ended(self._process.exitcode)}) without returning",
                         "if the machine ran out of memory, free some and run again")

    def __exit__(self, *exc) -> None:
        if self._process.is_alive():
            self._process.terminate()
        self._process.join()
        self._receive.close()


def receive_from(process, connection):
    """The next message ``process`` sends on ``connection``, or None once it has ended
    without one (killed, out of memory): the pipe is polled every POLL_S seconds and the
    process checked, so a dead worker is never waited for."""
    while not connection.poll(POLL_S):
        if not process.is_alive() and not connection.poll(0):
            return None
    try:
        return connection.recv()
    except EOFError:                  # the pipe closed with nothing in it
        return None


def _run_and_send(send, parent_pid: int, function, args) -> None:
    """The worker: ``function(*args)``, its result or exception sent to the parent."""
    die_with_parent(parent_pid)
    try:
        message = ("result", function(*args))
    except Exception as e:          # re-raised by the parent's result()
        message = ("error", e)
    try:
        send.send(message)
    except Exception as e:          # a result or exception that does not pickle
        send.send(("error", RuntimeError(f"{_name(function)}: its result could not be "
                                         f"sent back to the parent process: {e!r}")))
    send.close()


def _name(function) -> str:
    return getattr(function, "__qualname__", repr(function))


def how_it_ended(exitcode: int | None) -> str:
    """How a worker process ended, in words: the signal that killed it, or its exit code."""
    if exitcode is not None and exitcode < 0:
        return f"killed by {signal.Signals(-exitcode).name}"
    return f"exit code {exitcode}"
