"""The grading child: runs one assembled notebook, reports each step and test as it ends.

``python -m minircnn.classroom.grade_child JOB EVENTS`` reads the plan that
:func:`minircnn.classroom.grade.grade` wrote to JOB (JSON) and runs its steps in order in one
fresh namespace, appending one JSON line per event to EVENTS:
``{"event": "start", "step": i}`` before each step, ``{"event": "error", ...}`` when a
teacher's or a student's cell raises (the run goes on), ``{"event": "test", ...}``
after each test, and ``{"event": "done"}`` at the end. The parent watches EVENTS to
enforce the time limits and to know how far the run got if the process dies.

While a test cell's tests run, the library functions its exercise forbids are
guarded: each function object's ``__code__`` is swapped for a stub that raises, so
every name bound to that function (``minircnn.layers.conv.conv2d_backward_naive``, its
re-export in ``minircnn.layers``, a name the student imported earlier, a default
argument, a bound method) reaches the stub, not only the module attribute.
The original code goes back when the cell ends.

A solution cell may add names to the notebook, not rebind the teacher's (``rel_error =
lambda a, b: 0``), nor rebind attributes of the modules tests rely on (``np.allclose =
...``): both are undone after the cell, and a test during which such an attribute was
rebound does not count.
"""

from __future__ import annotations

import importlib
import json
import linecache
import os
import sys
import traceback
import types

MAX_ERROR = 300   # characters of an error message kept in the report
_MESSAGE = "__FORBIDDEN_MESSAGE__"
_MISSING = object()
# Modules whose functions tests rely on: a student's code that rebinds one of their
# attributes (numpy.allclose = lambda *a, **k: True) is undone, and the test not counted.
WATCHED = ("builtins", "numpy", "numpy.linalg", "minircnn.gradcheck", "minircnn.gradcheck.core")


class Watch:
    """Identity snapshot of the WATCHED modules' attributes and the notebook's names."""

    def __init__(self, namespace: dict):
        self.modules = {name: dict(vars(importlib.import_module(name))) for name in WATCHED}
        self.namespace = namespace
        self.names = dict(namespace)

    def undo_modules(self) -> list[str]:
        """Put back every attribute of a watched module that changed; their names."""
        changed = []
        for name, before in self.modules.items():
            module = vars(importlib.import_module(name))
            for key, value in before.items():   # new keys are lazy imports: left alone
                if module.get(key, _MISSING) is not value:
                    changed.append(f"{name}.{key}")
                    module[key] = value
        return sorted(changed)

    def undo_names(self) -> list[str]:
        """Put back the notebook names a solution cell rebound (it may only add names)."""
        changed = [key for key, value in self.names.items()
                   if self.namespace.get(key, _MISSING) is not value and not key.startswith("__")]
        for key in changed:
            self.namespace[key] = self.names[key]
        return sorted(changed)


def _forbidden_stub(*args, **kwargs):
    raise RuntimeError("__FORBIDDEN_MESSAGE__")


def resolve(dotted: str):
    """The object named ``package.module.attr[.attr]``: import the longest module prefix."""
    parts = dotted.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:]:
            obj = getattr(obj, name)
        return obj
    raise ImportError(f"no module in {dotted!r}")


def guardable(obj) -> bool:
    """A plain Python function without closure cells (its __code__ can be swapped)."""
    return isinstance(obj, types.FunctionType) and not obj.__code__.co_freevars


def guard(dotted: str, exercise: str):
    """Make the function ``dotted`` raise while guarded; returns a function that restores it."""
    function = resolve(dotted)
    message = (f"{dotted} is off limits in exercise '{exercise}': the exercise asks you "
               f"to write it yourself")
    stub = _forbidden_stub.__code__
    consts = tuple(message if c == _MESSAGE else c for c in stub.co_consts)
    original = function.__code__
    function.__code__ = stub.replace(co_consts=consts, co_name=original.co_name)

    def restore():
        function.__code__ = original
    return restore


def describe(err: BaseException, prefix: str = "<cell ") -> str:
    """One line: ``Type: message (cell 8, line 5)``, the innermost notebook frame."""
    frames = [f for f in traceback.extract_tb(err.__traceback__)
              if f.filename.startswith(prefix)]
    where = f" ({frames[-1].filename[1:-1]}, line {frames[-1].lineno})" if frames else ""
    text = f"{type(err).__name__}: {err}".strip()
    if len(text) > MAX_ERROR:
        text = text[:MAX_ERROR] + " ..."
    return " ".join(text.split("\n")) + where


def run_code(source: str, namespace: dict, filename: str, first_line: int = 1):
    """exec ``source`` (IPython magics dropped) as lines first_line.. of ``filename``.

    Returns None, or the one-line description of what it raised (SystemExit and
    KeyboardInterrupt included: a cell must not end the grading).
    """
    lines = ["" if line.lstrip().startswith(("%", "!")) else line
             for line in source.split("\n")]
    code = "\n" * (first_line - 1) + "\n".join(lines) + "\n"
    linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
    try:
        exec(compile(code, filename, "exec"), namespace)   # noqa: S102 - running it is the point
    except BaseException as err:   # noqa: BLE001 - SystemExit and KeyboardInterrupt included
        return describe(err)
    return None


class Events:
    """The EVENTS file: one JSON object per line, flushed at once."""

    def __init__(self, path: str):
        self.file = open(path, "a", encoding="utf-8", buffering=1)   # noqa: SIM115

    def write(self, **event) -> None:
        self.file.write(json.dumps(event) + "\n")
        self.file.flush()


def run_test_step(step: dict, index: int, namespace: dict, events: Events) -> None:
    """Setup (unguarded: may compute expected values with the library), then each test."""
    filename = f"<cell {step['cell']}>"
    error = run_code(step["setup"], namespace, filename)
    if error is not None:
        events.write(event="error", step=index, error=f"test setup failed: {error}")
        return
    restores = [guard(name, step["exercise"]) for name in step["forbid"]]
    watch = Watch(namespace)
    try:
        for number, test in enumerate(step["tests"]):
            error = run_code(test["source"], namespace, filename, test["line"])
            rebound = watch.undo_modules()
            if rebound and error is None:
                error = (f"the code under test rebound {', '.join(rebound)} (undone): "
                         "this test does not count")
            events.write(event="test", step=index, test=number, error=error)
    finally:
        for restore in restores:
            restore()


def main(job_path: str, events_path: str) -> None:
    with open(job_path, encoding="utf-8") as f:
        job = json.load(f)
    os.remove(job_path)   # the hidden tests are not left on disk for the notebook to read
    events = Events(events_path)
    namespace = {"__name__": "__main__"}
    for index, step in enumerate(job["steps"]):
        events.write(event="start", step=index)
        if step["kind"] == "test":
            run_test_step(step, index, namespace, events)
            continue
        watch = Watch(namespace) if step["kind"] == "solution" else None
        error = run_code(step["source"], namespace, f"<cell {step['cell']}>")
        if error is not None:
            events.write(event="error", step=index, error=error)
        if watch is not None and (rebound := watch.undo_names() + watch.undo_modules()):
            events.write(event="rebound", step=index, names=rebound)
    events.write(event="done")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
