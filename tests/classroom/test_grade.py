"""minircnn.classroom.grade: grader-owned tests in a separate process, and the cheats it stops."""

import json
from pathlib import Path

import pytest

from minircnn.classroom.assign import release
from minircnn.classroom.grade import GradeError, Limits, grade
from minircnn.cli.main import main

SOLUTION_META = ('nbgrader={"grade": false, "grade_id": "%s", "locked": false, '
                 '"schema_version": 3, "solution": true}')
TEST_META = ('nbgrader={"grade": true, "grade_id": "%s", "locked": true, "points": %d, '
             '"schema_version": 3, "solution": false}')

# A tiny lesson: exercise "double" (3 points, one hidden) and exercise "area", whose
# library answer minircnn.detection.boxes.box_area is forbidden (2 points, one hidden).
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

# %% {SOLUTION_META % "double_code"}
def double(x):
    """Twice x."""
    ### BEGIN SOLUTION
    return 2 * x
    ### END SOLUTION

# %% {TEST_META % ("double", 3)}
# TEST small numbers (1 point)
assert double(3) == 6
# TEST arrays (1 point)
assert (double(np.arange(3)) == [0, 2, 4]).all()
### BEGIN HIDDEN TESTS
# TEST negative numbers (1 point)
assert double(-4) == -8, "double(-4) is not -8"
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
### BEGIN HIDDEN TESTS
hidden_boxes = np.array([[2.0, 2.0, 7.0, 4.0]])
hidden_expected = box_area(hidden_boxes)
### END HIDDEN TESTS
# TEST two boxes (1 point)
two = area(boxes)
assert np.allclose(two, [6.0, 4.0])
### BEGIN HIDDEN TESTS
# TEST a hidden box (1 point)
assert np.allclose(area(hidden_boxes), hidden_expected)
### END HIDDEN TESTS

# %%
print("after the last test: never run by the grader")
'''

FAST = Limits(exercise_s=5, notebook_s=60, memory_mb=2048)


def _swap(text: str, old: str, new: str) -> str:
    assert old in text, old
    return text.replace(old, new)


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """(source folder, release folder) of the tiny lesson, in .py form."""
    root = tmp_path_factory.mktemp("course")
    (root / "lessons").mkdir()
    (root / "lessons" / "07_tiny.py").write_text(LESSON, encoding="utf-8")
    release(root / "lessons", root / "release")
    return root / "lessons", root / "release"


def _student(course, tmp_path, name: str, edit=lambda text: text) -> Path:
    """A student's file: the release with the honest answers typed in, then ``edit``."""
    text = (course[1] / "07_tiny.py").read_text(encoding="utf-8")
    text = _swap(text, "    # YOUR CODE HERE\n    raise NotImplementedError('07_tiny: double')",
                 "    return x + x")
    text = _swap(text, "    # YOUR CODE HERE\n    raise NotImplementedError('07_tiny: area')",
                 "    w = boxes[:, 2] - boxes[:, 0]\n    return w * (boxes[:, 3] - boxes[:, 1])")
    path = tmp_path / f"{name}_07_tiny.py"
    path.write_text(edit(text), encoding="utf-8")
    return path


def _scores(report) -> dict:
    return {e.id: (e.score, e.status) for e in report.exercises}


def test_release_strips_solutions_and_hidden_tests(course):
    text = (course[1] / "07_tiny.py").read_text(encoding="utf-8")
    assert "HIDDEN" not in text and "negative numbers" not in text
    assert "hidden_expected" not in text and "2 * x" not in text
    assert "# TEST small numbers (1 point)" in text and '"grade_id": "area"' in text


def test_honest_student_full_marks_and_hidden_tests_counted(course, tmp_path):
    report = grade(_student(course, tmp_path, "alice"), course[0], FAST)
    assert _scores(report) == {"double": (3, "passed"), "area": (2, "passed")}
    assert (report.score, report.max_score) == (5, 5)
    assert [t.hidden for t in report.exercises[0].tests] == [False, False, True]
    assert report.notes == [], report.notes
    assert "never run" not in report.output


def test_released_copy_scores_zero_with_the_reason(course):
    report = grade(course[1] / "07_tiny.py", course[0], FAST)
    assert _scores(report) == {"double": (0, "failed"), "area": (0, "failed")}
    assert report.exercises[0].message.startswith("NotImplementedError: 07_tiny: double")


def test_tests_replaced_by_pass_change_nothing(course, tmp_path):
    def cheat(text):   # both test cells gutted, both solutions left unwritten
        text = _swap(text, "assert double(3) == 6", "pass")
        text = _swap(text, "assert np.allclose(two, [6.0, 4.0])", "pass")
        text = _swap(text, "    return x + x", "    pass")
        return _swap(text, "    w = boxes[:, 2] - boxes[:, 0]\n", "    pass\n")
    report = grade(_student(course, tmp_path, "mallory", cheat), course[0], FAST)
    assert _scores(report) == {"double": (0, "failed"), "area": (0, "failed")}
    modified = [n for n in report.notes if n.startswith("modified locked cell")]
    assert len(modified) == 2, report.notes


def test_an_extra_graded_cell_adds_nothing(course, tmp_path):
    def cheat(text):
        return text + "\n# %%\n# GRADED: bonus (100 points)\nassert True\n"
    report = grade(_student(course, tmp_path, "mallory", cheat), course[0], FAST)
    assert (report.score, report.max_score) == (5, 5)
    assert [e.id for e in report.exercises] == ["double", "area"]
    assert any("GRADED: bonus" in n for n in report.notes), report.notes


def test_calling_the_forbidden_library_function_scores_zero(course, tmp_path):
    def cheat(text):   # imported under another name before the guard goes up
        return _swap(text, "    w = boxes[:, 2] - boxes[:, 0]\n    return w * (boxes[:, 3] - "
                     "boxes[:, 1])", "    return _ba(boxes)\n\n\n"
                     "from minircnn.detection.boxes import box_area as _ba")
    report = grade(_student(course, tmp_path, "mallory", cheat), course[0], FAST)
    assert _scores(report) == {"double": (3, "passed"), "area": (0, "failed")}
    message = report.exercises[1].message
    assert "minircnn.detection.boxes.box_area is off limits in exercise 'area'" in message


@pytest.mark.parametrize("where", ["cell", "function"])
def test_rebinding_what_the_tests_use_is_undone(course, tmp_path, where):
    def cheat(text):   # area returns nothing useful, and np.allclose always says yes
        patch = "np.allclose = lambda *args, **kwargs: True"
        body = f"    {patch}\n    return None" if where == "function" else \
            f"    return None\n\n\n{patch}\ndouble = lambda x: 0"
        return _swap(text, "    w = boxes[:, 2] - boxes[:, 0]\n    return w * (boxes[:, 3] - "
                     "boxes[:, 1])", body)
    report = grade(_student(course, tmp_path, "mallory", cheat), course[0], FAST)
    assert _scores(report) == {"double": (3, "passed"), "area": (0, "failed")}, \
        report.format_table()
    if where == "function":
        assert "rebound numpy.allclose (undone)" in report.exercises[1].message
    else:
        assert "solution cell 'area_code' rebound double, numpy.allclose: undone before " \
            "the tests" in report.notes


def test_os_exit_in_a_locked_cell_is_ignored(course, tmp_path):
    def cheat(text):
        return _swap(text, "import numpy as np\n", "import os; os._exit(0)\nimport numpy as np\n")
    report = grade(_student(course, tmp_path, "mallory", cheat), course[0], FAST)
    assert report.score == 5 and any("modified locked cell" in n for n in report.notes)


@pytest.mark.parametrize("body, status, why", [
    ("    import os\n    os._exit(0)", "crashed", "os._exit or a crash"),
    ("    while True:\n        pass", "timeout", "time limit of 5 s per exercise"),
    ("    import sys\n    sys.exit()", "failed", "SystemExit"),
    ("    import os, signal\n    os.kill(os.getpid(), signal.SIGSEGV)", "crashed", "SIGSEGV"),
    ("    return bytearray(3 * 2**30)", "failed", "MemoryError"),
])
def test_exit_hang_crash_and_memory_are_graded(course, tmp_path, body, status, why):
    def cheat(text):   # double is right; area exits, hangs, crashes or eats memory
        return _swap(text, "    w = boxes[:, 2] - boxes[:, 0]\n    return w * (boxes[:, 3] - "
                     "boxes[:, 1])", body)
    report = grade(_student(course, tmp_path, "mallory", cheat), course[0], FAST)
    assert _scores(report) == {"double": (3, "passed"), "area": (0, status)}
    assert why in report.exercises[1].message, report.exercises[1].message


def test_exit_while_defining_a_solution_zeroes_what_did_not_run(course, tmp_path):
    def cheat(text):
        return _swap(text, "def double(x):", "import os\nos._exit(3)\n\n\ndef double(x):")
    report = grade(_student(course, tmp_path, "mallory", cheat), course[0], FAST)
    assert _scores(report) == {"double": (0, "not run"), "area": (0, "not run")}
    assert "exit code 3" in report.exercises[0].message
    assert "review by hand: solution cell 'double_code' uses _exit, os" in report.notes


def test_review_names():
    from minircnn.classroom.grade import review_names

    assert review_names("def f(m, x):\n    m.eval()\n    return m.open(2 * x)\n") == []
    assert review_names("import sys\nfrom importlib import reload\nf.__code__ = g") == [
        "__code__", "importlib", "sys"]
    assert review_names("exec('1')\nimportlib.reload(m)") == ["exec", "importlib", "reload"]
    assert review_names("def f(:") == ["(does not parse)"]


def test_cli_gradebook_for_three_students_is_exact(course, tmp_path, capsys):
    submissions = tmp_path / "submissions"
    submissions.mkdir()
    honest = _student(course, tmp_path, "alice")
    (submissions / "alice_07_tiny.py").write_text(honest.read_text())
    half = _swap(honest.read_text(), "    return x + x", "    return abs(x) * 2")
    (submissions / "bob_07_tiny.py").write_text(half)           # the hidden test fails
    (submissions / "carol_07_tiny.py").write_text((course[1] / "07_tiny.py").read_text())
    files = sorted(str(p) for p in submissions.iterdir())
    book = tmp_path / "grades.csv"
    argv = ["grade", *files, "--source", str(course[0]), "--csv", str(book), "--time-limit", "5"]
    assert main(argv) == 0
    assert book.read_text().splitlines() == [
        "notebook,lesson,double,area,score,max_score",
        f"{files[0]},07_tiny,3,2,5,5",
        f"{files[1]},07_tiny,2,2,4,5",
        f"{files[2]},07_tiny,0,0,0,5"]
    printed = capsys.readouterr().out
    assert "FAIL AssertionError: double(-4) is not -8" in printed
    assert "1/1   negative numbers (hidden): ok" in printed


def test_cli_json_for_one_submission(course, tmp_path, capsys):
    bob = _student(course, tmp_path, "bob", lambda t: _swap(t, "return x + x", "return 0"))
    assert main(["grade", str(bob), "--source", str(course[0]), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert {k: result[k] for k in ("notebook", "score", "max_score")} == {
        "notebook": str(bob), "score": 2, "max_score": 5}
    double = result["exercises"][0]
    assert {k: double[k] for k in ("id", "score", "max_score", "status")} == {
        "id": "double", "score": 0, "max_score": 3, "status": "failed"}
    assert double["message"].startswith("AssertionError")


def test_cli_grade_errors(course, tmp_path, capsys):
    good = str(course[1] / "07_tiny.py")
    assert main(["grade", good, "--source", str(tmp_path / "nowhere")]) == 2
    assert "minircnn grade: error: source folder" in capsys.readouterr().err
    bad = tmp_path / "07_tiny.ipynb"
    bad.write_text("{not json")
    assert main(["grade", good, str(bad), "--source", str(course[0])]) == 2
    assert "not valid notebook JSON" in capsys.readouterr().err
    stray = tmp_path / "homework.py"
    stray.write_text("x = 1\n")
    assert main(["grade", str(stray), "--source", str(course[0])]) == 2
    assert "cannot tell which lesson" in capsys.readouterr().err


def test_source_errors_name_the_fix(tmp_path):
    (tmp_path / "src").mkdir()
    wrong_points = _swap(LESSON, TEST_META % ("double", 3), TEST_META % ("double", 4))
    (tmp_path / "src" / "07_tiny.py").write_text(wrong_points)
    with pytest.raises(GradeError, match="points 4 differ from its tests' total 3"):
        grade(tmp_path / "src" / "07_tiny.py", tmp_path / "src", FAST)
    typo = _swap(LESSON, "boxes.box_area\n", "boxes.box_aera\n")
    (tmp_path / "src" / "07_tiny.py").write_text(typo)
    with pytest.raises(GradeError, match="forbids minircnn.detection.boxes.box_aera"):
        grade(tmp_path / "src" / "07_tiny.py", tmp_path / "src", FAST)
