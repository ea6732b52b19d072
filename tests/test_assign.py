"""minircnn.assign: releasing student copies and grading notebooks (and their CLI)."""

import json
from pathlib import Path

import pytest

from minircnn.assign import (
    NotebookFormatError,
    grade,
    graded_header,
    read_cells,
    release,
    strip_solutions,
)
from minircnn.cli import main

LESSONS = Path(__file__).resolve().parents[1] / "lessons"

SOLVED = '''\
def double(x):
    """Twice x."""
    if True:
        ### BEGIN SOLUTION
        y = 2 * x
        return y
        ### END SOLUTION
'''

CELLS = [
    ("markdown", "# A tiny assignment\n\nWrite `double`."),
    ("code", "import os\nfrom pathlib import Path\nDATA = Path('data.txt').read_text().strip()"),
    ("code", SOLVED.rstrip("\n")),
    ("code", "# GRADED: doubling (2 points)\nassert double(3) == 6"),
    ("code", "%matplotlib inline\nresult = double(int(DATA))"),
    ("code", "#   GRADED: data file read from the notebook's folder (1.5 points)\n"
             "assert DATA == '21' and os.path.exists('data.txt')"),
    ("code", "# GRADED: always wrong (1 point)\nassert result == 0, 'result is not 0'"),
    ("code", "raise RuntimeError('an ungraded cell fails')"),
    ("code", "# GRADED: runs after a failing cell (1 point)\nassert result == 42"),
]


def _write_ipynb(path: Path, cells) -> Path:
    nb = {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [
        {"cell_type": kind, "metadata": {}, "source": source.splitlines(True),
         **({"outputs": [{"output_type": "stream", "name": "stdout", "text": ["old\n"]}],
             "execution_count": 7} if kind == "code" else {})}
        for kind, source in cells]}
    path.write_text(json.dumps(nb), encoding="utf-8")
    return path


def _write_percent(path: Path, cells) -> Path:
    parts = ["# ---\n# jupyter:\n#   kernelspec:\n#     name: python3\n# ---\n"]
    for kind, source in cells:
        if kind == "markdown":
            body = "\n".join(f"# {line}" if line else "#" for line in source.split("\n"))
            parts.append(f"# %% [markdown]\n{body}\n")
        else:
            parts.append(f"# %%\n{source}\n")
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


@pytest.fixture
def course(tmp_path):
    """A lessons folder with one lesson in both formats, plus a data file."""
    src = tmp_path / "lessons"
    src.mkdir()
    (src / "data.txt").write_text("21\n")
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


def test_read_cells_agree_between_formats(course):
    from_ipynb = read_cells(course / "07_tiny.ipynb")
    from_py = read_cells(course / "07_tiny.py")
    assert [(c.kind, c.source) for c in from_ipynb] == list(CELLS)
    assert [(c.kind, c.source) for c in from_py] == list(CELLS)


def test_graded_header():
    assert graded_header("# GRADED: conv backward (3 points)\nx = 1") == ("conv backward", 3.0)
    assert graded_header("\n#GRADED: a b (1 point)") == ("a b", 1.0)
    assert graded_header("x = 1\n# GRADED: late (1 point)") is None
    assert graded_header("# GRADED: no points") is None


def test_release_removes_every_solution(course, tmp_path):
    out = tmp_path / "release"
    written = release(course, out)
    assert sorted(p.name for p in written) == ["07_tiny.ipynb", "07_tiny.py"]
    assert not (out / "notes.py").exists() and not (out / "data.txt").exists()
    for path in written:
        text = path.read_text(encoding="utf-8")
        assert "BEGIN SOLUTION" not in text and "2 * x" not in text
        assert "raise NotImplementedError('07_tiny: double')" in text
    nb = json.loads((out / "07_tiny.ipynb").read_text(encoding="utf-8"))
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(c["outputs"] == [] and c["execution_count"] is None for c in code)
    # Both student copies still hold the same cells.
    assert ([(c.kind, c.source) for c in read_cells(out / "07_tiny.ipynb")]
            == [(c.kind, c.source) for c in read_cells(out / "07_tiny.py")])
    with pytest.raises(ValueError, match="differ"):
        release(course, course)


@pytest.mark.parametrize("suffix", [".ipynb", ".py"])
def test_grade_scores_graded_cells_and_continues_after_errors(course, tmp_path, suffix):
    report = grade(course / f"07_tiny{suffix}")
    by_name = {c.name: c for c in report.checks}
    assert list(by_name) == ["doubling", "data file read from the notebook's folder",
                             "always wrong", "runs after a failing cell"]
    assert by_name["doubling"].points == 2 and by_name["doubling"].passed
    assert by_name["data file read from the notebook's folder"].points == 1.5
    assert by_name["always wrong"].points == 0
    assert by_name["always wrong"].error == ("AssertionError: result is not 0 "
                                             f"(07_tiny{suffix} cell 6, line 2)")
    assert by_name["runs after a failing cell"].points == 1
    assert report.cell_errors == [
        (7, f"RuntimeError: an ungraded cell fails (07_tiny{suffix} cell 7, line 1)")]
    assert (report.total, report.max_total) == (4.5, 5.5)
    assert report.format_table().endswith("score: 4.5/5.5")
    # The released copy: the graded cells that call the student's function now fail.
    release(course, tmp_path / "release")
    (tmp_path / "release" / "data.txt").write_text("21\n")
    student = grade(tmp_path / "release" / f"07_tiny{suffix}")
    # The error points at the raise in the student's function, not at the check.
    assert student.checks[0].error == ("NotImplementedError: 07_tiny: double "
                                       f"(07_tiny{suffix} cell 2, line 5)")
    assert student.total < report.total


def test_grade_restores_the_working_directory(course):
    before = Path.cwd()
    grade(course / "07_tiny.py")
    assert Path.cwd() == before


@pytest.fixture(scope="module")
def released_lessons(tmp_path_factory):
    out = tmp_path_factory.mktemp("release")
    release(LESSONS, out)
    return out


# Every lesson with solution blocks (all but 00): graded twice, solved and released.
GRADED_LESSONS = sorted(p.stem for p in LESSONS.glob("[0-9][0-9]_*.py")
                        if "### BEGIN SOLUTION" in p.read_text())


@pytest.mark.parametrize("stem", GRADED_LESSONS)
def test_real_lessons_full_marks_solved_and_fewer_released(stem, released_lessons):
    solved = grade(LESSONS / f"{stem}.ipynb")
    assert solved.max_total > 0 and solved.total == solved.max_total, solved.format_table()
    assert solved.cell_errors == [], solved.format_table()
    student = grade(released_lessons / f"{stem}.py")
    assert student.total < solved.total
    assert all("NotImplementedError" in c.error for c in student.checks if not c.passed)
    assert student.cell_errors == [], student.format_table()   # only graded cells fail


def test_unreadable_notebooks(tmp_path):
    bad_json = tmp_path / "01_bad.ipynb"
    bad_json.write_text("{not json")
    no_cells = tmp_path / "01_nocells.ipynb"
    no_cells.write_text('{"metadata": {}}')
    for path in (bad_json, no_cells, tmp_path / "missing.ipynb", tmp_path / "x.txt"):
        if path.name == "x.txt":
            path.write_text("print(1)")
        with pytest.raises(NotebookFormatError):
            grade(path)


def test_cli_assign_and_grade(course, tmp_path, capsys):
    out = tmp_path / "release"
    assert main(["assign", str(course), "-o", str(out)]) == 0
    assert "wrote 2 student notebooks" in capsys.readouterr().out
    (out / "data.txt").write_text("21\n")
    assert main(["grade", str(out / "07_tiny.ipynb")]) == 0      # points lost: still 0
    printed = capsys.readouterr().out
    assert "FAIL NotImplementedError: 07_tiny: double" in printed
    assert printed.rstrip().endswith("score: 1.5/5.5")
    bad = tmp_path / "01_bad.ipynb"
    bad.write_text("{not json")
    assert main(["grade", str(bad)]) == 2
    assert "not valid notebook JSON" in capsys.readouterr().err
    assert main(["grade", str(tmp_path / "missing.ipynb")]) == 2
    assert main(["assign", str(tmp_path / "no_such_folder"), "-o", str(out)]) == 2
    assert "not a folder" in capsys.readouterr().err
