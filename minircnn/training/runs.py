"""Run folders: the settings a resumed run reads back, and what keeps two runs apart.

A run folder (``runs/shapes/`` by default) holds config.json, checkpoint.npz,
metrics.json, model.npz and two pictures. ``minircnn train --resume`` reads the
settings back from config.json; a hand-edited or foreign config.json must not steer
the run anywhere else, so only the settings of ``TrainConfig`` are read, each checked
against its range, and the proposal cache folder is never taken from the file.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from minircnn.models.checkpoint import read_checkpoint, save_checkpoint
from minircnn.utils.errors import RunInterrupted, RunInUse, UserError

# Settings a config.json may not choose: where files go is decided by the command line
# (--out, --cache-dir, MINIRCNN_CACHE), never by a file found in the run folder.
PATH_SETTINGS = ("cache_dir",)


def read_run_config(out_dir) -> dict:
    """The settings saved in ``out_dir/config.json``, without the path settings.

    Raises:
        UserError: no config.json (nothing to resume), or one that is not a JSON object.
    """
    path = os.path.join(os.fspath(out_dir), "config.json")
    if not os.path.isfile(path):
        raise UserError(f"--resume: {out_dir} holds no run (no config.json)",
                        f"start it with `minircnn train --out {out_dir}` without --resume")
    try:
        with open(path, encoding="utf-8") as f:
            saved = json.load(f)
    except (ValueError, UnicodeDecodeError) as e:
        raise UserError(f"--resume: {path} is not valid JSON ({e})",
                        "restore it, or start the run again with --overwrite") from e
    if not isinstance(saved, dict):
        raise UserError(f"--resume: {path} holds a {type(saved).__name__}, not the run's "
                        "settings", "restore it, or start the run again with --overwrite")
    return {k: v for k, v in saved.items() if k not in PATH_SETTINGS}


# --- one run at a time in a folder ---------------------------------------------------------
LOCK_NAME = ".lock"
# The files a detection run writes; a folder holding any of them holds a run.
RUN_FILES = ("config.json", "checkpoint.npz", "metrics.json", "model.npz", "loss_curve.png",
             "detections.png")


class RunLock:
    """An exclusive lock on a run folder while a run writes to it.

    ``out_dir/.lock`` holds the PID of the run that owns the folder. On POSIX the file is
    also ``flock``-ed, so the kernel releases it when that process dies in any way
    (kill -9 included) and the next run takes it over; elsewhere a lock whose PID no
    longer runs is taken over. A finished run deletes the file while it still holds the
    lock; a run that locked a file just deleted sees that its path now names another
    file (or none) and tries again, so two runs never both hold the folder.

    Raises (on enter):
        RunInUse: another live process holds the lock; the message names its PID.
    """

    def __init__(self, out_dir):
        self.path = os.path.join(os.fspath(out_dir), LOCK_NAME)
        self.fd = None

    def __enter__(self) -> RunLock:
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            if not _try_lock(fd, self.path):
                holder = _read_pid(fd)
                os.close(fd)
                folder = os.path.dirname(self.path)
                raise RunInUse(f"{folder} is in use by another minircnn run (PID {holder})",
                               "wait for it to finish or stop it, or choose another --out")
            if _same_file(fd, self.path):
                break
            os.close(fd)                # locked a file a finished run had just deleted
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd
        return self

    def __exit__(self, *exc) -> None:
        try:
            os.remove(self.path)        # while still locked: no stale .lock is left
        except OSError:                 # a read-only folder: leave an empty file instead
            os.ftruncate(self.fd, 0)
        os.close(self.fd)               # closing releases the flock
        self.fd = None


def _same_file(fd: int, path: str) -> bool:
    """True while ``path`` still names the open file ``fd``."""
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


def _read_pid(fd: int) -> int:
    os.lseek(fd, 0, os.SEEK_SET)
    text = os.read(fd, 32).decode(errors="replace").strip()
    return int(text) if text.isdigit() else 0


def _try_lock(fd: int, path: str) -> bool:
    """flock(LOCK_EX | LOCK_NB) on POSIX; elsewhere: free when its PID no longer runs."""
    try:
        import fcntl
    except ImportError:                             # Windows: the PID file decides
        from minircnn.utils.fileio import pid_alive

        holder = _read_pid(fd)
        return holder in (0, os.getpid()) or not pid_alive(holder)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def check_fresh_or_resume(out_dir, *, resume: bool, overwrite: bool) -> None:
    """A fresh run needs an empty folder (or ``overwrite``); a resumed one needs a checkpoint.

    ``overwrite`` deletes the previous run's files (RUN_FILES only; anything else in the
    folder stays), all of them or, if one cannot be deleted, none.

    Raises:
        UserError: the folder holds a run and neither resume nor overwrite was asked,
            or resume was asked and there is no checkpoint.npz (exit 1: found on disk).
    """
    out_dir = os.fspath(out_dir)
    found = [name for name in RUN_FILES if os.path.exists(os.path.join(out_dir, name))]
    weights = [name for name in found if name.endswith(".npz")]   # config.json alone: no run
    if resume:
        if "checkpoint.npz" not in found:
            raise UserError(f"--resume: {out_dir} has no checkpoint.npz (no epoch or "
                             "interrupted iteration was saved)",
                            f"start it again with `minircnn train --out {out_dir} --overwrite`")
        return
    if weights and not overwrite:
        raise UserError(f"{out_dir} already holds a run ({', '.join(found)})",
                        f"continue it with `minircnn train --out {out_dir} --resume`, start "
                        "over with --overwrite, or choose another --out")
    remove_run_files(out_dir, found)


def remove_run_files(out_dir: str, names: list[str]) -> None:
    """Delete a run's files all together or not at all (``--overwrite``).

    Each file is first renamed into a fresh hidden folder (a rename within one folder is
    atomic); if one cannot be moved, the moved ones go back and nothing has changed.
    Only then is the hidden folder deleted.

    Raises:
        UserError: a file could not be moved (named, with the reason); the run is intact.
    """
    import shutil
    import tempfile

    if not names:
        return
    try:
        trash = tempfile.mkdtemp(prefix=f".overwrite-{os.getpid()}-", dir=out_dir)
    except OSError as e:
        raise UserError(f"--overwrite: cannot write in {out_dir} ({e.strerror or e}); the run "
                        "there is unchanged", "choose a folder you can write to") from e
    moved = []
    try:
        for name in names:
            os.replace(os.path.join(out_dir, name), os.path.join(trash, name))
            moved.append(name)
    except OSError as e:
        stuck = os.path.join(out_dir, name)
        for back in reversed(moved):           # put the run back as it was
            os.replace(os.path.join(trash, back), os.path.join(out_dir, back))
        shutil.rmtree(trash, ignore_errors=True)
        raise UserError(f"--overwrite: cannot remove {stuck} "
                        f"({e.strerror or e}); the run in {out_dir} is unchanged",
                        "fix its permissions or choose another --out") from e
    shutil.rmtree(trash, ignore_errors=True)


# --- Ctrl-C and SIGTERM ----------------------------------------------------------------------
class StopSignals:
    """SIGINT (Ctrl-C) and SIGTERM: during training, finish the iteration, then stop.

    Inside ``with stop.deferred():`` (the training loop) the first signal only sets
    ``stop.received``; the loop checks it after each iteration, writes a resumable
    checkpoint at that iteration and raises RunInterrupted. A second signal, or one
    outside the loop (proposals, evaluation), raises KeyboardInterrupt at once. Signal
    handlers belong to the main thread: elsewhere this does nothing.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.received = None      # the signal number once one arrived in the loop
        self._defer = False
        self._old = {}

    def _handler(self, signum, frame) -> None:
        if self._defer and self.received is None:
            self.received = signum
            return
        raise KeyboardInterrupt(f"signal {signum}")

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            self._old = {s: signal.signal(s, self._handler) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for s, old in self._old.items():
            signal.signal(s, old)
        self._old = {}

    @contextmanager
    def deferred(self) -> Iterator[None]:
        self._defer = True
        try:
            yield
        finally:
            self._defer = False


def interrupted(out_dir, iteration: int | None) -> RunInterrupted:
    """The error of an interrupted run: where it stopped and the command that continues it."""
    again = f"minircnn train --out {shlex.quote(os.fspath(out_dir))}"
    if iteration is None:
        return RunInterrupted("interrupted before the first checkpoint",
                              f"start again with: {again} --overwrite "
                              "(finished proposal caches are kept)")
    return RunInterrupted(f"interrupted at iteration {iteration}",
                          f"continue with: {again} --resume")


# --- what a run saves and a resumed run restores -----------------------------------------
@dataclass
class RunState:
    """Where a training run stands; checkpoint.npz keeps it (``run_state``) for a resume.

    ``partial_epoch`` is set when a stop signal ended an epoch midway: that epoch's image
    order, its next minibatch and its running sums, so a resumed run finishes the same
    epoch exactly as the uninterrupted run would have.
    """

    epoch: int = 0                 # epochs finished
    iteration: int = 0             # SGD steps taken
    epochs: list = field(default_factory=list)   # one summary dict per finished epoch
    history: dict = field(default_factory=lambda: {"loss": [], "accuracy": []})  # per step
    partial_epoch: dict | None = None            # {"order", "next", "sums"} or None

    def to_dict(self) -> dict:
        """The checkpoint's ``run_state`` (no ``partial_epoch`` key unless one is set)."""
        state = dataclasses.asdict(self)
        if self.partial_epoch is None:
            del state["partial_epoch"]
        return state

    @classmethod
    def from_dict(cls, state: dict) -> RunState:
        """A checkpoint's ``run_state`` (older checkpoints may lack some keys)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in state.items() if k in names})


def rng_states(model, rng: np.random.Generator) -> list:
    """Bit-generator states of the sampling rng and of every module that owns one."""
    gens = [rng] + [m.rng for m in model.modules() if isinstance(getattr(m, "rng", None),
                                                                   np.random.Generator)]
    return [g.bit_generator.state for g in gens]


def set_rng_states(model, rng: np.random.Generator, states: list) -> None:
    gens = [rng] + [m.rng for m in model.modules() if isinstance(getattr(m, "rng", None),
                                                                   np.random.Generator)]
    if len(gens) != len(states):
        raise ValueError(f"resume: checkpoint has {len(states)} RNG states, model has {len(gens)}")
    for g, s in zip(gens, states, strict=True):
        g.bit_generator.state = s


def save_run_checkpoint(path, model, optimizer, rng, config, state: RunState) -> None:
    """checkpoint.npz of a run: weights, config, optimizer momentum, RNG states, run state."""
    extra = {"run_state": state.to_dict(), "rng_states": rng_states(model, rng),
             "optimizer": {k: v for k, v in optimizer.state_dict().items() if k != "velocity"}}
    for i, v in enumerate(optimizer.state_dict()["velocity"]):
        if v is not None:
            extra[f"velocity.{i}"] = v
    save_checkpoint(model, path, config.to_dict(), extra=extra)


# Settings that do not change the training, so a resumed run may differ in them.
_RESUME_MAY_CHANGE = {"device", "pictures", "blas_threads", "cache_dir", "proposal_workers",
                      "extra", "name", "test_scales", "pyramid_target"}


def restore_run(path, config, model, optimizer, rng) -> RunState:
    """Load weights, momentum buffers and RNG states; return the saved run state.

    Raises:
        UserError: the checkpoint was written with other settings (each one listed).
    """
    ckpt = read_checkpoint(path)
    mine, saved = config.to_dict(), ckpt.config
    newer = sorted(k for k in mine if k not in _RESUME_MAY_CHANGE and k not in saved)
    if newer:          # settings this version has and the one that started the run had not
        raise UserError(f"resume: {path} was started by an older minircnn, which had no "
                        "setting " + ", ".join(f"{k} (now {mine[k]!r})" for k in newer) +
                        ": resuming would go on with other settings than it started with",
                        "resume it with the minircnn version that started it, or start "
                        "over with --overwrite")
    differ = sorted(k for k in mine if k not in _RESUME_MAY_CHANGE and saved[k] != mine[k])
    if differ:
        raise UserError(f"resume: {path} was trained with different settings: " + ", ".join(
            f"{k}={saved[k]!r} (now {mine[k]!r})" for k in differ),
            "resume with the run's own settings (leave those options out), "
            "or start over with --overwrite")
    try:
        model.load_state_dict(ckpt.state)
    except ValueError as e:
        raise ValueError(f"checkpoint {path} does not match {type(model).__name__}: {e}") from e
    opt_state = dict(ckpt.extra["optimizer"])
    opt_state["velocity"] = [ckpt.extra.get(f"velocity.{i}") for i in range(len(optimizer.params))]
    optimizer.load_state_dict(opt_state)
    set_rng_states(model, rng, ckpt.extra["rng_states"])
    return RunState.from_dict(ckpt.extra["run_state"])


def save_run_pictures(out_dir: str, history: dict, dataset, dets: list, num: int = 8,
                   score_thresh: float = 0.5) -> None:
    """loss_curve.png (training loss and accuracy) and detections.png: the first ``num``
    val images with their detections scoring >= score_thresh."""
    from matplotlib.figure import Figure

    from minircnn.viz import draw_boxes, plot_curves, save_figure

    def smooth(values, k=50):  # mean of the last k iterations (the raw values are noisy)
        c = np.cumsum(np.concatenate([[0.0], values]))
        return (c[k:] - c[:-k]) / k if len(values) > k else np.asarray(values, float)

    curves = {"training loss (mean of 50 iterations)": smooth(history["loss"]),
              "RoI accuracy (mean of 50 iterations)": smooth(history["accuracy"])}
    save_figure(plot_curves(curves, xlabel="iteration"), os.path.join(out_dir, "loss_curve.png"))
    n = min(num, len(dataset))
    cols = min(4, n)
    fig = Figure(figsize=(3 * cols, 3 * ((n + cols - 1) // cols)), layout="constrained")
    axes = fig.subplots((n + cols - 1) // cols, cols, squeeze=False).ravel()
    for i, ax in enumerate(axes):
        ax.set_axis_off()
        if i < n:
            keep = dets[i]["scores"] >= score_thresh
            d = {k: v[keep] for k, v in dets[i].items()}
            draw_boxes(dataset[i]["image"], d["boxes"], d["labels"], d["scores"],
                       class_names=dataset.classes, ax=ax)
    save_figure(fig, os.path.join(out_dir, "detections.png"))
