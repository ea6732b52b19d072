"""A tiny teacher's lesson in the judge's format, its release, and students built from it
(tests/classroom/test_grade.py, test_red_team.py, test_sandbox.py use it as fixtures:
--import-mode=importlib lets test modules share nothing else)."""

import types
from pathlib import Path

import pytest

from minircnn.classroom.assign import release

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
