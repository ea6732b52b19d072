"""Running a grading plan in a child process, within limits, and reading what it reported.

The child (:mod:`minircnn.classroom.grade_child`) runs in its own session (so the whole process
group can be killed), with stdin closed, matplotlib's Agg backend, one BLAS thread, and
on POSIX an address-space limit (``RLIMIT_AS``: allocations beyond it fail with
MemoryError) and a file-size limit (a print loop cannot fill the disk). The parent
polls the child's event file: a step that runs past its time limit, or a notebook past
its own, is killed, and the tests that had not finished score 0 with the reason.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

try:
    import resource
except ImportError:   # Windows: no rlimits, time limits still apply
    resource = None

POLL_S = 0.05
OUTPUT_TAIL = 4000    # characters of the notebook's output kept in the report


@dataclass
class Limits:
    """exercise_s: each student cell and each test cell; notebook_s: the whole run;
    memory_mb: address space of the child (0: none); output_mb: its files' size."""

    exercise_s: float = 60.0
    notebook_s: float = 600.0
    memory_mb: int = 4096
    output_mb: int = 64


def _child_limits(limits: Limits):
    def apply():
        if limits.memory_mb:
            size = limits.memory_mb * 2**20
            resource.setrlimit(resource.RLIMIT_AS, (size, size))
        size = limits.output_mb * 2**20
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
    return apply if resource is not None else None


def _environment() -> dict:
    """The parent's environment, plus: Agg, no tqdm, one BLAS thread, minircnn importable."""
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONDONTWRITEBYTECODE="1", TQDM_DISABLE="1")
    package_root = str(Path(__file__).resolve().parents[1])   # the folder holding minircnn/
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(var, "1")
    return env


class _Watcher:
    """Reads the child's event file as it grows; knows the running step and its start."""

    def __init__(self, path: Path):
        self.path, self.offset, self.events = path, 0, []
        self.step, self.started = None, time.monotonic()

    def poll(self) -> None:
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read()
        complete = data[:data.rfind(b"\n") + 1]
        self.offset += len(complete)
        for line in complete.decode("utf-8", "replace").splitlines():
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            self.events.append(event)
            if event.get("event") == "start":
                self.step, self.started = event["step"], time.monotonic()


def run_plan(steps: list, report, limits: Limits) -> None:
    """Run ``steps`` in a fresh child process; fill ``report`` from its events.

    The child's working directory is an empty temporary folder, deleted afterwards; it
    deletes its job file (which holds the hidden tests) once read.
    """
    with tempfile.TemporaryDirectory(prefix="minircnn-grade-") as tmp:
        job, events, output = Path(tmp, "job.json"), Path(tmp, "events"), Path(tmp, "out")
        cwd = Path(tmp, "work")
        cwd.mkdir()
        job.write_text(json.dumps({"steps": steps}), encoding="utf-8")
        events.touch()
        with open(output, "wb") as out:
            child = subprocess.Popen(
                [sys.executable, "-m", "minircnn.classroom.grade_child", str(job), str(events)],
                cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                env=_environment(), start_new_session=True,
                preexec_fn=_child_limits(limits))   # noqa: PLW1509 - rlimits need it
            watcher = _Watcher(events)
            stopped = _watch(child, watcher, steps, limits)
        watcher.poll()
        report.output = output.read_bytes()[-OUTPUT_TAIL:].decode("utf-8", "replace")
    _fill(report, steps, watcher, stopped or _ending(child.returncode, watcher))


def _watch(child, watcher: _Watcher, steps: list, limits: Limits) -> str | None:
    """Wait for the child; kill it at a time limit. Returns why it was stopped, or None."""
    begun = time.monotonic()
    while True:
        try:
            child.wait(timeout=POLL_S)
            return None
        except subprocess.TimeoutExpired:
            pass
        watcher.poll()
        now = time.monotonic()
        step = steps[watcher.step] if watcher.step is not None else None
        reason = None
        if now - begun > limits.notebook_s:
            reason = f"timeout: the notebook ran past its time limit of {limits.notebook_s:g} s"
        elif step and step["kind"] != "setup" and now - watcher.started > limits.exercise_s:
            reason = (f"timeout: cell {step['cell']} ran past the time limit of "
                      f"{limits.exercise_s:g} s per exercise")
        if reason:
            _kill(child)
            return reason


def _kill(child) -> None:
    try:
        os.killpg(child.pid, signal.SIGKILL)   # the child leads its own session
    except (ProcessLookupError, PermissionError, AttributeError):
        child.kill()
    child.wait()


def _ending(returncode: int, watcher: _Watcher) -> str | None:
    """Why the child stopped early (None when it reported the end of the plan)."""
    if any(e.get("event") == "done" for e in watcher.events) and returncode == 0:
        return None
    if returncode < 0:
        name = signal.Signals(-returncode).name
        why = {"SIGXFSZ": " (it wrote more output than allowed)",
               "SIGKILL": " (out of memory?)"}.get(name, "")
        return f"crashed: the grading process was killed by {name}{why}"
    return (f"crashed: the notebook ended the grading process (exit code {returncode}; "
            "os._exit or a crash) before it finished")


def _fill(report, steps: list, watcher: _Watcher, stopped: str | None) -> None:
    """Exercise and test results from the events; the rest gets the reason it did not run."""
    by_step = {s["cell"]: e for s in steps if s["kind"] == "test"
               for e in report.exercises if e.cell == s["cell"]}
    errors = {}
    for event in watcher.events:
        step = steps[event["step"]] if "step" in event else None
        if event["event"] == "test":
            by_step[step["cell"]].tests[event["test"]].error = event["error"]
        elif event["event"] == "error":
            errors[event["step"]] = event["error"]
        elif event["event"] == "rebound":
            report.notes.append(f"solution cell '{step['grade_id']}' rebound "
                                f"{', '.join(event['names'])}: undone before the tests")
    for index, error in errors.items():
        step = steps[index]
        if step["kind"] == "test":
            for test in by_step[step["cell"]].tests:
                test.error = error
        else:
            who = f"solution cell '{step['grade_id']}'" if step["kind"] == "solution" else \
                "cell"
            report.notes.append(f"{who} {step['cell']} raised {error}")
    running = steps[watcher.step]["cell"] if watcher.step is not None else None
    for exercise in report.exercises:
        _status(exercise, stopped, running)
    if stopped:
        report.notes.append(f"{stopped} (during cell {running}); what had not finished "
                            "scores 0")


def _status(exercise, stopped: str | None, running: int | None) -> None:
    unfinished = [t for t in exercise.tests if t.error == "not run"]
    if unfinished and stopped:
        cut_here = running == exercise.cell
        exercise.status = stopped.split(":")[0] if cut_here else "not run"
        reason = stopped if cut_here else f"not run: {stopped}"
        for test in unfinished:
            test.error = reason
        exercise.message = reason
        return
    failed = [t for t in exercise.tests if t.error is not None]
    exercise.status = ("passed" if not failed else
                       "failed" if len(failed) == len(exercise.tests) else "partial")
    exercise.message = failed[0].error if failed else ""
