"""Data parallelism: the images of a minibatch on two cores, their gradients summed.

A minibatch holds N = 2 images (Fast R-CNN, section 2.3), and its loss is a sum of one
term per image, since each RoI (and each anchor) belongs to one image:

    L = sum_i w_i L_i        L_i: image i's loss, averaged over its own RoIs
    dL/dtheta = sum_i w_i dL_i/dtheta

with w_i = R_i / R (image i's share of the minibatch's R RoIs) the minibatch's loss
exactly. So each image's gradient can be computed on its own core, at the same time, and
the gradients added: what multi-GPU training does with its GPUs (PyTorch's
DistributedDataParallel). ``ImageWorkers`` runs image 0 in this process and image 1 in a
forked worker process (with P processes and more images, image s in process s % P):

- the trainable parameters' values live in shared memory, so the worker always reads the
  weights that this process's last SGD step wrote (in place);
- the worker writes its gradient into shared memory too; this process adds it to its own
  (image order: g_0 + g_1) and takes the SGD step.

One image's share of the work is a *slot*: ``slot(model, job)`` runs that image's
forward pass, loss and backward pass, adding w_i dL_i/dtheta into the model's gradients
(``train_slot`` in training/step.py, ``joint_slot`` in training/rpn_step.py). Its
randomness (RoI and anchor sampling, dropout masks) comes from a seed that this process
drew for it (``seed_slot``), never from a generator the worker keeps.

So the result does not depend on where a slot runs. Where no worker can be forked (not
Linux, a GPU, a daemon process, other threads running: a fork copies a lock another
thread may hold), the slots run here one after another and the weights come out the
same, bit for bit. ``TrainConfig.train_workers`` = 1 is the other recipe: the whole
minibatch in one forward and backward pass (its sums run in another order, and its
randomness is drawn otherwise: not the same bits).
"""

from __future__ import annotations

import mmap
import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence

import numpy as np

from minircnn.backend import get_array_module
from minircnn.layers.activations import Dropout
from minircnn.utils.errors import WorkerDied
from minircnn.utils.workers import die_with_parent, how_it_ended, receive_from

Slot = Callable[[object, object], dict]     # slot(model, job) -> that image's stats


def seed_slot(model, seed: int) -> np.random.Generator:
    """Seed one slot: each Dropout of ``model`` gets a generator of its own from
    ``seed``, and the returned one is the slot's (for its RoI or anchor sampling)."""
    dropouts = [m for m in model.modules() if isinstance(m, Dropout)]
    for k, layer in enumerate(dropouts, start=1):
        layer.rng = np.random.default_rng([seed, k])
    return np.random.default_rng([seed, 0])


def can_fork(model) -> bool:
    """Whether worker processes may be forked for ``model`` (see the module docstring)."""
    on_cpu = get_array_module(model.parameters()[0].data) is np
    return (on_cpu and sys.platform.startswith("linux")
            and not multiprocessing.current_process().daemon
            and threading.active_count() == 1)


class ImageWorkers:
    """Run a minibatch's slots in ``processes`` processes (this one and workers).

    Slot s runs in process s % processes (process 0 is this one); each process adds the
    gradients of its slots, and this process adds the workers' sums to its own, in
    process order. Use it as a context manager: leaving the block stops the workers.

    Args:
        model: the model every slot trains (the workers use their forked copy).
        slot: ``slot(model, job) -> dict``, one image's forward, loss and backward.
        processes: how many processes share the slots; 1 runs them all here. Where
            ``can_fork`` says no, the slots run here, grouped as they would have been.
    """

    def __init__(self, model, slot: Slot, processes: int):
        self.model, self.slot = model, slot
        self.processes = max(1, int(processes))
        self.forked = self.processes > 1 and can_fork(model)
        self.trainable = [p for p in model.parameters() if p.requires_grad]
        self._workers: list = []        # (process, connection, its gradients) per worker

    def __enter__(self) -> ImageWorkers:
        if self.forked:
            for p in self.trainable:                # the weights both processes read
                p.data = _shared_copy(p.data)
            context = multiprocessing.get_context("fork")
            for _ in range(self.processes - 1):
                grads = [_shared_copy(p.data) for p in self.trainable]   # the worker's sums
                here, there = context.Pipe()
                process = context.Process(target=_serve, daemon=True, args=(
                    there, os.getpid(), self.model, self.slot, self.trainable, grads))
                process.start()
                there.close()
                self._workers.append((process, here, grads))
        return self

    def __exit__(self, *exc) -> None:
        for process, connection, _ in self._workers:
            if exc[0] is None and process.is_alive():
                connection.send(None)               # done: the worker returns
                process.join(timeout=5)
            if process.is_alive():
                process.kill()                      # it ignores SIGTERM (see _serve)
            process.join()
            connection.close()
        self._workers = []

    def run(self, jobs: Sequence) -> list[dict]:
        """``slot(model, job)`` for every job, their gradients added into the model's
        ``p.grad``; returns each slot's stats, in job order."""
        groups = [list(jobs[k::self.processes]) for k in range(self.processes)]
        if not self.forked:
            return _interleave(self._run_here(groups))
        for k, group in enumerate(groups[1:]):
            self._send(k, group)
        try:
            results = [[self.slot(self.model, job) for job in groups[0]]]
        finally:                                    # even on an error, read every reply:
            replies = [self._receive(k) for k in range(len(self._workers))]   # none stale
        for kind, value in replies:
            if kind == "error":
                raise value
            results.append(value)
        for _, _, grads in self._workers:           # g_0 + g_1 + ..., in process order
            for p, g in zip(self.trainable, grads, strict=True):
                p.grad += g
        return _interleave(results)

    def _run_here(self, groups: list) -> list:
        """The groups one after another in this process, each worker's group on a zeroed
        gradient and then added, exactly as ``run`` adds a worker's sums."""
        results = [[self.slot(self.model, job) for job in groups[0]]]
        for group in groups[1:]:
            mine = [p.grad.copy() for p in self.trainable]          # process 0's sums
            for p in self.trainable:
                p.zero_grad()
            results.append([self.slot(self.model, job) for job in group])
            for p, g in zip(self.trainable, mine, strict=True):
                g += p.grad                                         # g_0 + g_k
                p.grad = g
        return results

    def _send(self, k: int, jobs: list) -> None:
        """Worker k's jobs; WorkerDied if it has ended (killed between minibatches)."""
        process, connection, _ = self._workers[k]
        try:
            connection.send(jobs)
        except (BrokenPipeError, ConnectionResetError):
            raise _died(process) from None

    def _receive(self, k: int) -> tuple:
        """Worker k's reply, ("done", stats) or ("error", exception); WorkerDied if it
        ended without one."""
        process, connection, _ = self._workers[k]
        reply = receive_from(process, connection)
        return ("error", _died(process)) if reply is None else reply


def _interleave(results: list) -> list:
    """Per-process lists of stats back in job order (job s ran in process s % P)."""
    count = sum(len(r) for r in results)
    return [results[s % len(results)][s // len(results)] for s in range(count)]


def _shared_copy(array: np.ndarray) -> np.ndarray:
    """A copy of ``array`` in memory that forked processes share (an anonymous mmap)."""
    memory = mmap.mmap(-1, max(1, array.nbytes))
    shared = np.frombuffer(memory, dtype=array.dtype, count=array.size).reshape(array.shape)
    shared[...] = array
    return shared


def _serve(connection, parent_pid: int, model, slot: Slot, trainable: list, grads: list):
    """A worker: for each group of jobs, the slots' gradient sums into ``grads``.

    It ignores SIGTERM as it ignores Ctrl-C: a signal to the whole process group (a
    batch system's, ``timeout``'s) is the parent's to handle, which finishes the
    minibatch, writes its checkpoint and then stops the worker (SIGKILL)."""
    die_with_parent(parent_pid)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    while True:
        try:
            jobs = connection.recv()
        except EOFError:                            # the parent is gone
            return
        if jobs is None:
            return
        try:
            for p in trainable:
                p.zero_grad()
            stats = [slot(model, job) for job in jobs]
            for p, g in zip(trainable, grads, strict=True):
                g[...] = p.grad
            reply = ("done", stats)
        except Exception as e:                      # raised again in the parent
            reply = ("error", e)
        connection.send(reply)


def _died(process) -> WorkerDied:
    process.join()
    return WorkerDied(f"a training worker process ended ({how_it_ended(process.exitcode)}) "
                      "before its share of a minibatch was done",
                      "if the machine ran out of memory, free some and run again, or "
                      "train in one process (--train-workers 1)")
