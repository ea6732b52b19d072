"""Red team: a student who wants the points without the work, against `minircnn grade`.

Every cheat below is a submission of the tiny lesson (tests/classroom/conftest.py) whose
``area`` (or ``double``) is not solved honestly. All of them are graded in ONE batch, between
an honest submission (first) and an empty, released one (last: a cheat that changed the
grader's state would show there), with a teacher's secret; each test then checks
that the cheat scored 0 on its exercise, the honest student full marks, the empty one 0,
the teacher's files are unchanged and the gradebook CSV says what the reports say.
Cheats that only a namespace can stop (reading or writing the teacher's files by path, a
process that outlives the submission) are skipped where ``unshare`` is refused.
"""

import csv
import hashlib
import time
from pathlib import Path

import pytest

from minircnn.classroom.grade import Limits, grade_batch
from minircnn.classroom.gradebook import write_csv
from minircnn.classroom.sandbox import sandbox_mode

LIMITS = Limits(exercise_s=3, notebook_s=30, memory_mb=1024, restarts=1)
NAMESPACE = sandbox_mode() == "namespace"
needs_namespace = pytest.mark.skipif(not NAMESPACE, reason="no user namespaces here: the "
                                     "teacher's container is the sandbox for this cheat")

# name -> (exercise it targets, the body of that function, code above the def, namespace only)
CHEATS = {
    "atexit and a thread write events": ("area", """\
    import atexit, threading
    def forge():
        for name in ("../events", "events", "../../events"):
            try:
                with open(name, "a") as f:
                    f.write('{"event": "test", "step": 3, "test": 0, "error": null}\\n')
            except OSError:
                pass
    atexit.register(forge)
    threading.Thread(target=forge).start()
    return None""", "", False),
    "rebinding __main__'s helpers": ("area", """\
    import __main__
    __main__.describe = __main__.run_code = lambda *a, **k: None
    return None""", "", False),
    "rebinding np and rel_error": ("area", """\
    import minircnn.gradcheck as g
    np.allclose = np.array_equal = lambda *a, **k: True
    g.rel_error = lambda a, b: 0.0
    return boxes[:, 0] * 0""", "", False),
    "returning the setup's values": ("area", """\
    import gc, sys
    frame, found = sys._getframe(), []
    while frame is not None:
        found += [v for v in frame.f_locals.values() if isinstance(v, np.ndarray)
                  and v.shape == (len(boxes),) and v is not boxes]
        frame = frame.f_back
    found += [o for o in gc.get_objects() if isinstance(o, np.ndarray)
              and o.shape == (len(boxes),) and o is not boxes]
    return found[-1] if found else None""", "", False),
    "a forbidden function's __code__ saved early": ("area", """\
    import types
    return types.FunctionType(_SAVED, {"np": np, "check_boxes": _check})(boxes)""",
        "from minircnn.detection.boxes import box_area as _ba, check_boxes as _check\n"
        "_SAVED = _ba.__code__\n\n\n", False),
    "runpy.run_module of the reference": ("area", """\
    import runpy
    return runpy.run_module("minircnn.detection.boxes")["box_area"](boxes)""", "", False),
    "importlib.reload of the reference": ("area", """\
    import importlib
    import minircnn.detection.boxes as m
    return importlib.reload(m).box_area(boxes)""", "", False),
    "gc.get_objects search for the code": ("area", """\
    import gc, types
    for o in gc.get_objects():
        code = getattr(o, "__code__", o)
        if isinstance(code, types.CodeType) and code.co_name == "box_area" and \\
                not any("off limits" in str(c) for c in code.co_consts):
            return types.FunctionType(code, {"np": np, **vars(np)})(boxes)
    return None""", "", False),
    "the teacher's lesson read from disk": ("area", """\
    import glob, os, re
    import minircnn
    places = [os.path.join(os.path.dirname(os.path.dirname(minircnn.__file__)), "lessons"),
              {source!r}]
    for pid in os.listdir("/proc"):
        try:
            args = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\\0")
        except OSError:
            continue
        places += [a.decode() for a in args[1:] if a and os.path.isdir(a)]
    for place in places:
        for path in glob.glob(os.path.join(place, "*07_tiny.py")):
            text = open(path).read()
            body = re.search(r"### BEGIN SOLUTION\\n(.*?)### END SOLUTION",
                             text.split("def area")[1], re.S)
            if body:
                namespace = {"np": np}
                exec("def f(boxes):\\n" + body.group(1), namespace)
                return namespace["f"](boxes)
    return None""", "", True),
    "a float subclass whose == always agrees": ("double", """\
    class Yes(float):
        def __eq__(self, other):
            return True
        def __sub__(self, other):
            return 0.0
    class Yeses(list):
        def __eq__(self, other):
            return True
    return Yes(0.0) if np.ndim(x) == 0 else Yeses([0])""", "", False),
    "an ndarray subclass whose == always agrees": ("area", """\
    class Agree(np.ndarray):
        def __eq__(self, other):
            return np.ones(np.shape(other), bool)
        def __sub__(self, other):
            return np.zeros(np.shape(other))
    return np.zeros(len(boxes)).view(Agree)""", "", False),
    "rewriting the --source lesson": ("area", """\
    import glob, os
    for path in glob.glob(os.path.join({source!r}, "*")):
        try:
            with open(path, "w") as f:
                f.write("# gone\\n")
        except OSError:
            pass
    return None""", "", True),
    "a forked process edits the gradebook": ("area", """\
    import os, time
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            for _ in range(600):
                try:
                    with open({book!r}, "w") as f:
                        f.write("notebook,lesson,double,area,score,max_score\\n")
                except OSError:
                    pass
                time.sleep(0.1)
        os._exit(0)
    return None""", "", True),
    "malformed output on the pipe and stdout": ("area", """\
    import os
    print("MRCN" + "\\x00" * 8 + "garbage")
    for fd in range(3, 64):
        try:
            os.write(fd, b"MRCN\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xffgarbage")
        except OSError:
            pass
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])""", "", False),
    "os._exit": ("area", "    import os\n    os._exit(0)", "", False),
    "sys.exit": ("area", "    import sys\n    sys.exit(0)", "", False),
    "an infinite loop": ("area", "    while True:\n        pass", "", False),
    "SIGSEGV": ("area", "    import ctypes\n    return ctypes.string_at(0)", "", False),
    "a huge allocation": ("area", "    return bytearray(8 * 2**30)", "", False),
}
# Cheats on the test cells themselves: the test cells never run in the student process.
CELL_CHEATS = {
    "pass in the test cells": lambda t: t.replace("assert double(3) == 6", "pass").replace(
        "assert np.allclose(area(boxes), [6.0, 4.0])", "pass"),
    "a bonus graded cell": lambda t: t + (
        '\n# %% nbgrader={"grade": true, "grade_id": "bonus", "locked": true, "points": 100, '
        '"schema_version": 3, "solution": false}\n### BEGIN HIDDEN TESTS\n# TEST free (100 '
        'points)\ndef grade_free(student, rng):\n    pass\n### END HIDDEN TESTS\n'),
}


def _digest(folder: Path) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def _cheat_text(tiny, course, name: str, context: dict) -> str:
    honest = tiny.honest_text(course)
    if name in CELL_CHEATS:   # solutions left unwritten, test cells gutted
        stub = tiny.swap(honest, tiny.HONEST_AREA, tiny.STUB_AREA)
        return CELL_CHEATS[name](tiny.swap(stub, tiny.HONEST_DOUBLE, tiny.STUB_DOUBLE))
    exercise, body, above, _ = CHEATS[name]
    for key, value in context.items():   # the cheat knows where the teacher's files are
        body = body.replace(f"{{{key}!r}}", repr(value))
    if exercise == "double":
        return tiny.swap(honest, tiny.HONEST_DOUBLE, body)
    text = tiny.swap(honest, tiny.HONEST_AREA, body)
    return tiny.swap(text, "def area(boxes):", above + "def area(boxes):")


@pytest.fixture(scope="module")
def batch(course, tiny, tmp_path_factory):
    """Honest, empty, then every cheat, in one batch; the CSV written as the CLI does."""
    root = tmp_path_factory.mktemp("red_team")
    book = root / "gradebook" / "grades.csv"
    context = {"source": str(course[0]), "book": str(book)}
    names = [n for n, c in CHEATS.items() if NAMESPACE or not c[3]] + list(CELL_CHEATS)
    (root / "submissions").mkdir()
    files = [tiny.write_student(root / "submissions", "honest", tiny.honest_text(course))]
    for i, name in enumerate(names):
        text = _cheat_text(tiny, course, name, context)
        files.append(tiny.write_student(root / "submissions", f"cheat{i}", text))
    files.append(tiny.write_student(root / "submissions", "empty",   # after every cheat
                                    (course[1] / "07_tiny.py").read_text()))
    before = _digest(course[0])
    reports = grade_batch(files, course[0], LIMITS, secret="red team", hide=[book.parent])
    write_csv(reports, book)
    time.sleep(1.0)   # a process that outlived its submission would edit the CSV by now
    with book.open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    by_name = dict(zip(["honest", *names, "empty"], reports, strict=True))
    return {"reports": by_name, "rows": rows, "before": before, "after": _digest(course[0])}


def _score(report, exercise: str) -> float:
    return next(e.score for e in report.exercises if e.id == exercise)


def _check_batch(batch, course) -> None:
    honest, empty = batch["reports"]["honest"], batch["reports"]["empty"]
    assert (honest.score, honest.max_score) == (5, 5), honest.format_table()
    assert empty.score == 0, empty.format_table()
    assert batch["after"] == batch["before"], "the teacher's files changed"
    reports = list(batch["reports"].values())
    assert len(batch["rows"]) == len(reports), "a submission without a CSV row"
    for row, report in zip(batch["rows"], reports, strict=True):
        assert row["notebook"] == report.notebook
        assert (row["double"], row["area"], row["score"]) == (
            f"{_score(report, 'double'):g}", f"{_score(report, 'area'):g}", f"{report.score:g}")


@pytest.mark.parametrize("name", [pytest.param(n, marks=needs_namespace) if c[3] else n
                                  for n, c in CHEATS.items()])
def test_a_cheat_scores_zero_and_hurts_no_one(name, batch, course):
    report = batch["reports"][name]
    exercise = CHEATS[name][0]
    assert _score(report, exercise) == 0, report.format_table()
    other = "double" if exercise == "area" else "area"
    assert _score(report, other) == (3 if other == "double" else 2), report.format_table()
    _check_batch(batch, course)


@pytest.mark.parametrize("name", list(CELL_CHEATS))
def test_cheats_on_the_test_cells_change_nothing(name, batch, course):
    report = batch["reports"][name]
    assert (report.score, report.max_score) == (0, 5), report.format_table()
    assert [e.id for e in report.exercises] == ["double", "area"]
    assert any(n.startswith("modified locked cell") for n in report.notes), report.notes
    _check_batch(batch, course)


def test_what_the_report_says_about_the_failures(batch):
    reports = batch["reports"]
    assert "off limits in lesson 07_tiny" in reports["runpy.run_module of the reference"
                                                     ].exercises[1].message
    assert "not plain data" in reports["a float subclass whose == always agrees"
                                       ].exercises[0].message
    assert reports["an infinite loop"].exercises[1].status == "timeout"
    assert "malformed reply" in reports["malformed output on the pipe and stdout"
                                        ].exercises[1].message
    for name in ("os._exit", "SIGSEGV"):
        assert reports[name].exercises[1].message.count("crashed") >= 1, name
    assert "MemoryError" in reports["a huge allocation"].exercises[1].message
    assert "SystemExit" in reports["sys.exit"].exercises[1].message
    assert "review by hand" in " ".join(reports["runpy.run_module of the reference"].notes)
    assert all(r.sandbox.startswith("namespace" if NAMESPACE else "session")
               for r in reports.values())
