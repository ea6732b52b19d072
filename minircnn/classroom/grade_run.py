"""The judge's side of one submission: a student process on a pipe, and the TESTs.

:class:`StudentProcess` starts the student process (:mod:`minircnn.classroom.sandbox`),
runs the notebook's code cells in it one at a time, then serves ``student.<fn>(...)``
calls; each answer must come back within the time limit as a well-formed frame of
plain data, else the process is killed and the call raises :class:`StudentError`. A
later call starts a fresh process (at most ``Limits.restarts`` times), so one runaway
exercise does not zero the others. :func:`run_tests` runs every TEST's ``grade_<name>
(student, rng)`` here, in the judge's process, with ``rng`` drawn from the secret.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from minircnn.classroom.codec import CodecError, Ref, read_frame, write_frame
from minircnn.classroom.report import ExerciseResult, TestResult
from minircnn.classroom.sandbox import forbidden_code, kill, launch, sandbox_mode, user_tasks
from minircnn.gradcheck.core import numeric_gradient, rel_error

PUBLIC_SECRET = "minircnn public tests"
OUTPUT_TAIL = 4000    # characters of the notebook's output kept in the report
START_S = 60.0        # for the interpreter and NumPy to start
MAX_REPLY = 2**30     # bytes of one reply; a longer one is that submission's failure

__all__ = ["Limits", "Student", "StudentError", "StudentProcess", "run_tests", "test_rng"]


class StudentError(Exception):
    """A call into the student process failed: its exception, a timeout, a crash, or a
    value that is not plain data. The TEST scores 0 with this message."""


@dataclass
class Limits:
    """exercise_s: each student cell and each call; notebook_s: the notebook's code cells;
    memory_mb: address space (0: none); output_mb: file size; processes: how many
    processes and threads the student may add to the user's (RLIMIT_NPROC);
    restarts: fresh student processes after a crash or a timeout."""

    exercise_s: float = 60.0
    notebook_s: float = 600.0
    memory_mb: int = 4096
    output_mb: int = 64
    processes: int = 256
    restarts: int = 2


def test_rng(secret: str, lesson: str, grade_id: str, test: str) -> np.random.Generator:
    """The TEST's generator: sha256(secret, lesson, grade_id, TEST title) seeds it."""
    text = "\0".join([secret, lesson, grade_id, test]).encode("utf-8")
    return np.random.default_rng(int.from_bytes(hashlib.sha256(text).digest()[:16], "big"))


class StudentProcess:
    """The student's notebook in a sandboxed process, started on the first call."""

    def __init__(self, lesson, program: list[dict], limits: Limits, hide: list[str]):
        self.lesson, self.program, self.limits, self.hide = lesson, program, limits, hide
        self.child, self.starts, self.notes = None, 0, []
        self.tmp = tempfile.TemporaryDirectory(prefix="minircnn-student-")
        self.output = Path(self.tmp.name, "output")
        self.output.touch()
        self.dead_reason = None

    def call(self, name: str, args: tuple, kwargs: dict):
        if self.child is None:
            self._start()
        reply = self._ask({"op": "call", "name": name, "args": list(args), "kwargs": kwargs},
                          self.limits.exercise_s, f"{name}(...)")
        if type(reply) is not dict or set(reply) not in ({"value"}, {"error"}):
            self.stop()
            raise StudentError("crashed: the student process sent a malformed reply")
        if "error" in reply:
            raise StudentError(f"{name} raised {reply['error']}" if type(reply["error"]) is str
                               else "crashed: a malformed error reply")
        return reply["value"]

    def _start(self) -> None:
        if self.starts > self.limits.restarts:
            raise StudentError(f"not run: {self.dead_reason} (no restarts left)")
        self.starts += 1
        root = Path(self.tmp.name, f"run{self.starts}")
        work = root / "work"
        work.mkdir(parents=True)
        package = forbidden_code(self.lesson.forbidden, root / "package")
        with open(self.output, "ab") as out:
            self.child = launch(package, work, out, self.hide)
        os.set_blocking(self.child.stdin.fileno(), False)   # writes wait with a deadline
        setup = {"memory_mb": self.limits.memory_mb, "output_mb": self.limits.output_mb,
                 "processes": user_tasks() + self.limits.processes, "lesson": self.lesson.name,
                 "swapped": self.lesson.forbidden.swapped}
        self._ask(setup, START_S, "starting Python")
        self._run_program()

    def _run_program(self) -> None:
        deadline, stopped = time.monotonic() + self.limits.notebook_s, []
        for step in self.program:
            limit = deadline - time.monotonic()
            if step["student"]:
                limit = min(limit, self.limits.exercise_s)
            reply = self._ask({"op": "exec", "cell": step["cell"], "source": step["source"]},
                              limit, f"cell {step['cell']}")
            error = reply.get("error") if type(reply) is dict else "a malformed reply"
            if error is not None and self.starts == 1 and step["student"]:
                self.notes.append(f"your solution cell {step['cell']} raised {error}")
            elif error is not None and self.starts == 1:
                stopped.append(str(step["cell"]))
        if stopped:
            self.notes.append(f"the lesson's cells {', '.join(stopped)} stopped early in the "
                              "student process (they use what this lesson forbids, or what "
                              "such a cell made); the TESTs call your functions directly")

    def _send(self, request, limit: float) -> None:
        write_frame(self.child.stdin.fileno(), request, deadline=time.monotonic() + limit)

    def _ask(self, request, limit: float, what: str):
        """Send ``request`` and return the reply, within ``limit`` s; on any failure the
        process is killed and StudentError says why."""
        try:
            self._send(request, limit)
            return read_frame(self.child.stdout.fileno(), deadline=time.monotonic() + limit,
                              max_bytes=MAX_REPLY)
        except TimeoutError:
            reason = f"timeout: {what} ran past its time limit of {limit:.3g} s"
        except (EOFError, BrokenPipeError, OSError):
            reason = f"crashed: the student process ended during {what}{self._ending()}"
        except CodecError as err:
            reason = f"crashed: the student process sent a malformed reply ({err})"
        self.stop()
        self.dead_reason = reason
        raise StudentError(reason)

    def _ending(self) -> str:
        code = self.child.poll() if self.child is not None else None
        if code is None:
            try:
                code = self.child.wait(timeout=2)
            except Exception:   # noqa: BLE001 - still running: stop() kills it
                return ""
        return f" (exit status {code})" if code >= 0 else f" (signal {-code})"

    def stop(self) -> None:
        """Kill the process group and the namespace; the next call starts afresh."""
        if self.child is not None:
            kill(self.child)
            self.child = None

    def close(self) -> str:
        """Stop for good (asked to leave, then killed with its group and namespace);
        returns the tail of what the notebook printed."""
        if self.child is not None:
            try:
                self._send({"op": "bye"}, 2.0)
                self.child.wait(timeout=2)
            except (OSError, TimeoutError, subprocess.TimeoutExpired):
                pass
        self.stop()
        text = self.output.read_bytes()[-OUTPUT_TAIL:].decode("utf-8", "replace")
        self.tmp.cleanup()
        return text


class Student:
    """``student.<fn>(*args, **kwargs)`` calls the notebook's function in its process."""

    def __init__(self, process: StudentProcess):
        self._process = process

    def ref(self, name: str) -> Ref:
        """A notebook variable, passed by name (the judge never receives the object)."""
        return Ref((name,))

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return lambda *args, **kwargs: self._process.call(name, args, kwargs)


def hidden_namespace(exercise) -> dict:
    """The exercise's hidden block, run in a fresh namespace of this (the judge's) process."""
    namespace = {"__name__": f"hidden_tests_{exercise.id}", "np": np, "rel_error": rel_error,
                 "numeric_gradient": numeric_gradient, "StudentError": StudentError}
    exec(exercise.code, namespace)   # noqa: S102 - the teacher's hidden tests
    return namespace


def run_tests(exercise, process: StudentProcess, secret: str, lesson: str) -> ExerciseResult:
    """Run one exercise's TESTs in this process; each scores all or nothing."""
    result = ExerciseResult(exercise.id, exercise.cell,
                            [TestResult(title, name, points)
                             for title, name, points in exercise.tests])
    namespace = hidden_namespace(exercise)
    student = Student(process)
    for test in result.tests:
        rng = test_rng(secret, lesson, exercise.id, test.name)
        try:
            namespace[test.function](student, rng)
            test.error = None
        except StudentError as err:
            test.error = str(err)
        except AssertionError as err:
            test.error = f"AssertionError: {err}" if str(err) else "a check failed"
        except Exception as err:   # noqa: BLE001 - e.g. a wrong type the checks tripped on
            test.error = f"{type(err).__name__}: {err}"[:300]
    result.settle()
    return result


def sandbox_note() -> str:
    if sandbox_mode() == "namespace":
        return ("namespace: user, mount, PID and network namespaces; the teacher's folders "
                "are hidden from the student process")
    return ("session: no namespaces here; the student process runs in its own session with "
            "a scrubbed environment, so the sandbox is the teacher's container")
