"""minircnn.classroom.assign: reading notebooks with nbgrader metadata, releasing student copies;
and grading the real lessons' solutions (minircnn.classroom.grade) against their own tests."""

import json
from pathlib import Path

import pytest

from minircnn.classroom.assign import (
    NotebookFormatError,
    read_cells,
    read_notebook_metadata,
    release,
    strip_answers,
    strip_hidden_tests,
    strip_solutions,
)
from minircnn.classroom.grade import Limits, grade_batch
from minircnn.cli.main import main

LESSONS = Path(__file__).resolve().parents[2] / "lessons"

SOLVED = '''\
def double(x):
    """Twice x."""
    if True:
        ### BEGIN SOLUTION
        y = 2 * x
        return y
        ### END SOLUTION
'''
SOLUTION = {"nbgrader": {"grade": False, "grade_id": "double_code", "locked": False,
                         "schema_version": 3, "solution": True}}
TESTS = {"nbgrader": {"grade": True, "grade_id": "double", "locked": True, "points": 2,
                      "schema_version": 3, "solution": False}}

CELLS = [
    ("markdown", "# A tiny assignment\n\nWrite `double`.", {}),
    ("code", "import os\nfrom pathlib import Path", {}),
    ("code", SOLVED.rstrip("\n"), SOLUTION),
    ("code", "# TEST small (1 point)\nassert double(3) == 6\n### BEGIN HIDDEN TESTS\n"
             "# TEST negative (1 point)\nassert double(-1) == -2\n### END HIDDEN TESTS", TESTS),
]


def _write_ipynb(path: Path, cells) -> Path:
    nb = {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [
        {"cell_type": kind, "metadata": meta, "source": source.splitlines(True),
         **({"outputs": [{"output_type": "stream", "name": "stdout", "text": ["old\n"]}],
             "execution_count": 7} if kind == "code" else {})}
        for kind, source, meta in cells]}
    path.write_text(json.dumps(nb), encoding="utf-8")
    return path


def _write_percent(path: Path, cells) -> Path:
    parts = ["# ---\n# jupyter:\n#   kernelspec:\n#     name: python3\n# ---\n"]
    for kind, source, meta in cells:
        options = "".join(f" {key}={json.dumps(value)}" for key, value in meta.items())
        if kind == "markdown":
            body = "\n".join(f"# {line}" if line else "#" for line in source.split("\n"))
            parts.append(f"# %% [markdown]{options}\n{body}\n")
        else:
            parts.append(f"# %%{options}\n{source}\n")
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


@pytest.fixture
def course(tmp_path):
    """A lessons folder with one lesson in both formats."""
    src = tmp_path / "lessons"
    src.mkdir()
    _write_ipynb(src / "07_tiny.ipynb", CELLS)
    _write_percent(src / "07_tiny.py", CELLS)
    (src / "notes.py").write_text("### BEGIN SOLUTION\n")    # not a lesson: left alone
    return src


def test_strip_solutions_keeps_indentation_and_names_the_exercise():
    student, names = strip_solutions(SOLVED, "07_tiny")
    assert names == ["double"]
    assert "2 * x" not in student and "SOLUTION" not in student
    lines = student.split("\n")
    assert "        # YOUR CODE HERE" in lines
    assert "        raise NotImplementedError('07_tiny: double')" in lines
    namespace = {}
    exec(student, namespace)
    with pytest.raises(NotImplementedError, match="07_tiny: double"):
        namespace["double"](3)


def test_strip_solutions_takes_a_name_after_the_marker_and_checks_balance():
    student, names = strip_solutions("x = 1\n### BEGIN SOLUTION task 3.2\nx = 2\n"
                                     "### END SOLUTION\nprint(x)", "09_x")
    assert names == ["task 3.2"]
    assert student == ("x = 1\n# YOUR CODE HERE\nraise NotImplementedError('09_x: task 3.2')"
                       "\nprint(x)")
    with pytest.raises(ValueError, match="never closed"):
        strip_solutions("### BEGIN SOLUTION\nx = 1\n", "09_x")
    with pytest.raises(ValueError, match="without"):
        strip_solutions("x = 1\n### END SOLUTION\n", "09_x")
    assert strip_solutions("no markers\n", "09_x") == ("no markers\n", [])


def test_strip_hidden_tests_and_balance():
    text = "a\n### BEGIN HIDDEN TESTS\nb\n### END HIDDEN TESTS\nc\n### BEGIN HIDDEN TESTS\nd\n" \
           "### END HIDDEN TESTS"
    assert strip_hidden_tests(text, "09_x") == "a\nc"
    with pytest.raises(ValueError, match="line 1: ### BEGIN HIDDEN TESTS is never closed"):
        strip_hidden_tests("### BEGIN HIDDEN TESTS\nx\n", "09_x")
    with pytest.raises(ValueError, match="without"):
        strip_hidden_tests("### END HIDDEN TESTS\n", "09_x")


ANSWERS = {"nbgrader": {"grade": True, "grade_id": "open_answers", "locked": False, "points": 0,
                        "schema_version": 3, "solution": True}}


def test_written_answers_become_the_stub_in_both_formats(tmp_path):
    """A Markdown answer cell (model answer + rubric) reaches students as YOUR ANSWER HERE."""
    cells = [*CELLS, ("markdown", "## Answers\n\n### BEGIN SOLUTION\n**1.** the model "
                                  "answer\n\nRubric: 2 points\n### END SOLUTION", ANSWERS)]
    src = tmp_path / "lessons"
    src.mkdir()
    _write_ipynb(src / "07_tiny.ipynb", cells)
    _write_percent(src / "07_tiny.py", cells)
    written = release(src, tmp_path / "release")
    for path in written:
        text = path.read_text(encoding="utf-8")
        assert "model answer" not in text and "Rubric" not in text and "SOLUTION" not in text
        student = read_cells(path)
        assert student[-1].source == "## Answers\n\nYOUR ANSWER HERE", path.name
    with pytest.raises(ValueError, match="never closed"):
        strip_answers("# ### BEGIN SOLUTION\n# x", "07_tiny")
    with pytest.raises(ValueError, match="unbalanced"):
        strip_answers("### END SOLUTION", "07_tiny")


def test_read_cells_agree_between_formats_metadata_included(course):
    for path in (course / "07_tiny.ipynb", course / "07_tiny.py"):
        cells = read_cells(path)
        assert [(c.kind, c.source, c.metadata) for c in cells] == list(CELLS), path
        assert [c.is_solution for c in cells] == [False, False, True, False]
        assert [c.is_test for c in cells] == [False, False, False, True]
        assert cells[3].grade_id == "double"


def test_percent_metadata_after_the_marker(tmp_path):
    path = tmp_path / "x.py"
    path.write_text('# %% [markdown] tags=["a", "b"]\n# hi\n\n# %% nbgrader={"grade": true} '
                    'other=3\nx = 1\n\n# %% broken={\ny = 2\n')
    cells = read_cells(path)
    assert [c.metadata for c in cells] == [{"tags": ["a", "b"]},
                                           {"nbgrader": {"grade": True}, "other": 3}, {}]
    assert cells[1].is_test and not cells[2].is_test


def test_release_removes_every_solution_and_hidden_test(course, tmp_path):
    out = tmp_path / "release"
    written = release(course, out)
    assert sorted(p.name for p in written) == ["07_tiny.ipynb", "07_tiny.py"]
    assert not (out / "notes.py").exists()
    for path in written:
        text = path.read_text(encoding="utf-8")
        assert "BEGIN SOLUTION" not in text and "2 * x" not in text
        assert "HIDDEN" not in text and "double(-1)" not in text
        assert "raise NotImplementedError('07_tiny: double')" in text
        assert "# TEST small (1 point)" in text
    nb = json.loads((out / "07_tiny.ipynb").read_text(encoding="utf-8"))
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(c["outputs"] == [] and c["execution_count"] is None for c in code)
    assert read_notebook_metadata(out / "07_tiny.ipynb")["minircnn"] == {"lesson": "07_tiny"}
    # Both student copies still hold the same cells, nbgrader metadata included.
    from_ipynb = read_cells(out / "07_tiny.ipynb")
    assert ([(c.kind, c.source, c.metadata) for c in from_ipynb]
            == [(c.kind, c.source, c.metadata) for c in read_cells(out / "07_tiny.py")])
    assert from_ipynb[2].grade_id == "double_code"
    with pytest.raises(ValueError, match="differ"):
        release(course, course)


def test_unreadable_notebooks(tmp_path):
    bad_json = tmp_path / "01_bad.ipynb"
    bad_json.write_text("{not json")
    no_cells = tmp_path / "01_nocells.ipynb"
    no_cells.write_text('{"metadata": {}}')
    text = tmp_path / "x.txt"
    text.write_text("print(1)")
    for path in (bad_json, no_cells, tmp_path / "missing.ipynb", text):
        with pytest.raises(NotebookFormatError):
            read_cells(path)


def test_cli_assign(course, tmp_path, capsys):
    out = tmp_path / "release"
    assert main(["assign", str(course), "-o", str(out)]) == 0
    assert "wrote 2 student notebooks" in capsys.readouterr().out
    assert main(["assign", str(tmp_path / "no_such_folder"), "-o", str(out)]) == 2
    assert "minircnn assign: error: src_dir" in capsys.readouterr().err


# --------------------------------------------------------------------------------------
# The real lessons: a student who types in the teacher's solutions gets full marks.
# --------------------------------------------------------------------------------------
GRADED_LESSONS = sorted(p.stem for p in LESSONS.glob("[0-9][0-9]_*.py")
                        if any(c.is_test for c in read_cells(p)))


@pytest.fixture(scope="module")
def released_lessons(tmp_path_factory):
    out = tmp_path_factory.mktemp("release")
    release(LESSONS, out)
    return out


def _perfect_student(stem: str, released: Path, folder: Path) -> Path:
    """The released .ipynb with each solution cell replaced by the teacher's."""
    answers = {c.grade_id: c.source for c in read_cells(LESSONS / f"{stem}.py") if c.is_solution}
    nb = json.loads((released / f"{stem}.ipynb").read_text(encoding="utf-8"))
    for cell in nb["cells"]:
        grade_id = cell["metadata"].get("nbgrader", {}).get("grade_id")
        if cell["cell_type"] == "code" and cell["metadata"].get("nbgrader", {}).get("solution"):
            cell["source"] = answers.pop(grade_id)
    assert answers == {}, f"{stem}: solution cells missing from the release: {list(answers)}"
    path = folder / f"student_{stem}.ipynb"
    path.write_text(json.dumps(nb), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def real_reports(released_lessons, tmp_path_factory):
    """Every lesson's perfect student and the released lesson 02, graded in one batch."""
    folder = tmp_path_factory.mktemp("students")
    students = [_perfect_student(stem, released_lessons, folder) for stem in GRADED_LESSONS]
    reports = grade_batch([*students, released_lessons / "02_cnn_backprop.py"], LESSONS,
                          Limits(exercise_s=600, notebook_s=1200), secret="a teacher's key")
    return dict(zip([*GRADED_LESSONS, "released 02"], reports, strict=True))


@pytest.mark.parametrize("stem", GRADED_LESSONS)
def test_real_lessons_solutions_get_full_marks(stem, real_reports):
    report = real_reports[stem]
    assert report.max_score > 0 and report.score == report.max_score, report.format_table()
    unexpected = [n for n in report.notes if not n.startswith("the lesson's cells")]
    assert unexpected == [], report.format_table()


def test_a_real_released_lesson_scores_zero(real_reports):
    report = real_reports["released 02"]
    assert report.score == 0 and report.max_score > 0
    for exercise in report.exercises:
        assert "NotImplementedError: 02_cnn_backprop" in exercise.message, exercise
