"""A grader-side harness for the lessons' exercises in the protocol format (TESTs are
``def grade_<name>(student, rng)`` functions in a test cell's hidden block).

It scores a solution the way the judge does, in this process: the hidden block runs
here, each ``student.<fn>(...)`` call gets copies of plain data, the ``forbid:``
functions raise while it runs, and its result must be plain data. Tests use it to show
that the teacher's solution scores full and plausible wrong answers score 0.
"""

import copy
import hashlib
import re
import traceback
import types
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from minircnn.classroom.assign import BEGIN_HIDDEN, END_HIDDEN, read_cells, release, release_text

LESSONS = Path(__file__).resolve().parents[2] / "lessons"
_TEST = re.compile(r"^# TEST (?P<title>.+?) \((?P<points>\d+) points?\)\s*\n"
                   r"def (?P<fn>grade_\w+)\(student, rng\):", re.MULTILINE)
_FORBID = re.compile(r"^# forbid:(?P<names>.*)$", re.MULTILINE)


@dataclass
class Exercise:
    lesson: str
    grade_id: str
    points: int
    hidden: str                                   # the hidden block's code
    tests: list = field(default_factory=list)     # (title, points, function name)
    forbid: list = field(default_factory=list)    # dotted names
    solutions: list = field(default_factory=list)  # every solution cell of the lesson


def load_exercise(lesson: str, grade_id: str) -> Exercise:
    cells = read_cells(LESSONS / f"{lesson}.py")
    cell = next(c for c in cells if c.is_test and c.grade_id == grade_id)
    text = cell.source
    hidden = text[text.index(BEGIN_HIDDEN) + len(BEGIN_HIDDEN):text.index(END_HIDDEN)]
    tests = [(m["title"], int(m["points"]), m["fn"]) for m in _TEST.finditer(hidden)]
    forbid = [name.strip() for m in _FORBID.finditer(text) for name in m["names"].split(",")]
    solutions = [c.source for c in cells if c.is_solution]
    return Exercise(lesson, grade_id, int(cell.nbgrader["points"]), hidden, tests,
                    [n for n in forbid if n], solutions)


def _plain(value):
    """A copy of ``value`` if it is plain data, else TypeError (as the judge refuses it)."""
    if value is None or type(value) in (bool, int, float, str):
        return value
    if type(value) in (np.bool_, np.int64, np.int32, np.float64, np.float32):
        return value.item()
    if type(value) is np.ndarray and value.dtype.kind in "biuf":
        return value.copy()
    if type(value) in (tuple, list):
        return type(value)(_plain(v) for v in value)
    if type(value) is dict:
        return {_plain(k): _plain(v) for k, v in value.items()}
    raise TypeError(f"not plain data: {type(value).__name__}")


def _resolve(dotted: str):
    import importlib
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


def _forbidden(*args, **kwargs):
    raise RuntimeError("this function is off limits in this exercise")


class Student:
    """``student.fn(...)``: the student's function on copies, with the forbid list raising."""

    def __init__(self, namespace: dict, forbid: list):
        self._namespace, self._forbid = namespace, [_resolve(n) for n in forbid]

    def __getattr__(self, name):
        fn = self._namespace[name]

        def call(*args, **kwargs):
            saved = [f.__code__ for f in self._forbid]
            for f in self._forbid:
                f.__code__ = _forbidden.__code__
            try:
                result = fn(*copy.deepcopy(args), **copy.deepcopy(kwargs))
            finally:
                for f, code in zip(self._forbid, saved, strict=True):
                    f.__code__ = code
            return _plain(result)
        return call


def score(exercise: Exercise, replacement: str | None = None, *, released: bool = False,
          secret: str = "suite") -> dict:
    """{TEST title: None if it passed, else why not} for the lesson's solutions, one
    replaced by ``replacement`` (the source of a wrong answer defining the same function),
    or for the released stubs."""
    namespace = {"np": np, "__name__": "student"}
    for source in exercise.solutions:
        exec(release_text(source, exercise.lesson) if released else source, namespace)
    if replacement is not None:
        exec(replacement, namespace)
    grader = {"__name__": "grader"}
    exec(exercise.hidden, grader)
    student = Student(namespace, exercise.forbid)
    results = {}
    for title, _, fn in exercise.tests:
        key = f"{secret}/{exercise.lesson}/{exercise.grade_id}/{title}".encode()
        rng = np.random.default_rng(int.from_bytes(hashlib.sha256(key).digest()[:8], "big"))
        try:
            grader[fn](student, rng)
            results[title] = None
        except Exception as err:  # noqa: BLE001 - any failure of a TEST scores 0, as in the judge
            where = traceback.format_tb(err.__traceback__)[-1]
            results[title] = f"{type(err).__name__}: {err} at {where}"
    return results


def points(exercise: Exercise, results: dict) -> int:
    return sum(p for title, p, _ in exercise.tests if results[title] is None)


@pytest.fixture
def exercise_harness():
    """(load_exercise, score, points) for the tests of the lessons' exercises."""
    return load_exercise, score, points


# --------------------------------------------------------------------------------------
# A tiny teacher's lesson in the judge's format, its release, and students built from it
# (tests/classroom/test_grade.py, test_red_team.py).
# --------------------------------------------------------------------------------------
SOLUTION_META = ('nbgrader={"grade": false, "grade_id": "%s", "locked": false, '
                 '"schema_version": 3, "solution": true}')
TEST_META = ('nbgrader={"grade": true, "grade_id": "%s", "locked": true, "points": %d, '
             '"schema_version": 3, "solution": false}')

# Exercise "double" (3 points) and exercise "area", whose library answer
# minircnn.detection.boxes.box_area is forbidden (2 points).
LESSON = f'''\
# ---
# jupyter:
#   kernelspec:
#     name: python3
# ---

# %% [markdown]
# # A tiny assignment

# %%
import numpy as np

from minircnn.detection import box_area

rng = np.random.default_rng(0)

# %% {SOLUTION_META % "double_code"}
def double(x):
    """Twice x."""
    ### BEGIN SOLUTION
    return 2 * x
    ### END SOLUTION

# %% {TEST_META % ("double", 3)}
assert double(3) == 6
### BEGIN HIDDEN TESTS
# TEST small numbers (1 point)
def grade_small(student, rng):
    assert student.double(3) == 6, "double(3) is not 6"


# TEST random arrays and negative numbers (2 points)
def grade_random(student, rng):
    x = rng.integers(-50, 50, size=int(rng.integers(1, 9)))
    got = student.double(x)
    assert type(got) is np.ndarray and np.array_equal(got, 2 * x), "2 x for an array"
    v = -int(rng.integers(1, 99))
    assert student.double(v) == 2 * v, "a negative number"
### END HIDDEN TESTS

# %% {SOLUTION_META % "area_code"}
def area(boxes):
    """boxes (N, 4) -> (N,) areas."""
    ### BEGIN SOLUTION
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    ### END SOLUTION

# %% {TEST_META % ("area", 2)}
# forbid: minircnn.detection.boxes.box_area
boxes = np.array([[0.0, 0.0, 2.0, 3.0], [1.0, 1.0, 2.0, 5.0]])
assert np.allclose(area(boxes), [6.0, 4.0])
### BEGIN HIDDEN TESTS
from minircnn.detection.boxes import box_area


# TEST two boxes by hand (1 point)
def grade_by_hand(student, rng):
    got = student.area(np.array([[0.0, 0.0, 2.0, 3.0], [1.0, 1.0, 2.0, 5.0]]))
    assert np.array_equal(got, [6.0, 4.0]), "two boxes by hand"


# TEST random boxes vs the reference (1 point)
def grade_random(student, rng):
    corners = rng.uniform(0, 50, size=(int(rng.integers(1, 20)), 2))
    boxes = np.concatenate([corners, corners + rng.uniform(1, 9, size=corners.shape)], axis=1)
    got = student.area(boxes)
    assert np.shape(got) == (len(boxes),), "one area per box"
    assert rel_error(got, box_area(boxes)) < 1e-12, "areas"
### END HIDDEN TESTS

# %%
print("after the last test: never run by the grader")
'''

HONEST_DOUBLE = "    return x + x"
HONEST_AREA = "    w = boxes[:, 2] - boxes[:, 0]\n    return w * (boxes[:, 3] - boxes[:, 1])"
STUB_DOUBLE = "    # YOUR CODE HERE\n    raise NotImplementedError('07_tiny: double')"
STUB_AREA = "    # YOUR CODE HERE\n    raise NotImplementedError('07_tiny: area')"


def swap(text: str, old: str, new: str) -> str:
    assert old in text, old
    return text.replace(old, new)


@pytest.fixture(scope="session")
def course(tmp_path_factory):
    """(source folder, release folder) of the tiny lesson, in .py form."""
    root = tmp_path_factory.mktemp("course")
    (root / "lessons").mkdir()
    (root / "lessons" / "07_tiny.py").write_text(LESSON, encoding="utf-8")
    release(root / "lessons", root / "release")
    return root / "lessons", root / "release"


def honest_text(course) -> str:
    """The release with the honest answers typed in."""
    text = (course[1] / "07_tiny.py").read_text(encoding="utf-8")
    return swap(swap(text, STUB_DOUBLE, HONEST_DOUBLE), STUB_AREA, HONEST_AREA)


def write_student(folder: Path, name: str, text: str) -> Path:
    path = folder / f"{name}_07_tiny.py"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def tiny():
    """The helpers above, for the test modules (--import-mode=importlib: no cross imports)."""
    return types.SimpleNamespace(
        LESSON=LESSON, HONEST_DOUBLE=HONEST_DOUBLE, HONEST_AREA=HONEST_AREA,
        STUB_DOUBLE=STUB_DOUBLE, STUB_AREA=STUB_AREA, swap=swap, honest_text=honest_text,
        write_student=write_student)
