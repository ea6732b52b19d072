"""The lesson notebooks: pairing, naming, stripped outputs, asserted checks.

Executing them is nbmake's job (setup.cfg adds ``--nbmake`` and ``lessons`` to the test
paths, so ``python -m pytest -q`` runs every lessons/*.ipynb in a fresh kernel).
"""

import json
import re
from pathlib import Path

import pytest

from minircnn.classroom.assign import BEGIN, END, read_cells, strip_solutions
from minircnn.classroom.lesson import Course, parse_exercise

jupytext = pytest.importorskip("jupytext")

LESSONS = Path(__file__).resolve().parents[1] / "lessons"
SCRIPTS = sorted(LESSONS.glob("[0-9][0-9]_*.py"))
NOTEBOOKS = sorted(LESSONS.glob("[0-9][0-9]_*.ipynb"))
# The eleven lessons and their numbers (docs/design.md, lessons/README.md).
EXPECTED = {"00": "00_setup_and_data", "01": "01_rcnn_to_fast_rcnn", "02": "02_cnn_backprop",
            "03": "03_roi_pooling", "04": "04_multitask_loss", "05": "05_sampling",
            "06": "06_training", "07": "07_test_time", "08": "08_ablations_and_limits",
            "09": "09_resnet_finetuning", "10": "10_region_proposal_network"}
WITH_EXERCISES = tuple(v for k, v in EXPECTED.items() if k != "00")


def _ids(paths):
    return [p.name for p in paths]


def test_expected_lessons_exist_with_design_names():
    stems = {p.stem for p in SCRIPTS}
    for number, stem in EXPECTED.items():
        assert stem in stems, f"lesson {number} must be lessons/{stem}.py (lessons/README.md)"
    numbers = [p.stem[:2] for p in SCRIPTS]
    assert len(numbers) == len(set(numbers)), f"two lessons share a number: {numbers}"
    for path in SCRIPTS:
        assert re.fullmatch(r"\d\d_[a-z0-9_]+", path.stem), f"bad lesson name {path.name}"


def test_every_script_has_a_notebook_and_back():
    assert {p.stem for p in SCRIPTS} == {p.stem for p in NOTEBOOKS}


@pytest.mark.parametrize("script", SCRIPTS, ids=_ids(SCRIPTS))
def test_py_and_ipynb_cells_are_identical(script):
    notebook = script.with_suffix(".ipynb")
    from_py = jupytext.read(script)
    from_ipynb = jupytext.read(notebook)
    cells_py = [(c.cell_type, c.source) for c in from_py.cells]
    cells_ipynb = [(c.cell_type, c.source) for c in from_ipynb.cells]
    assert cells_py == cells_ipynb, (f"{script.name} and {notebook.name} differ: run "
                                     f"`jupytext --sync lessons/{script.name}`")
    # minircnn.classroom.assign reads both formats without jupytext: it must see the same cells.
    mine = [(c.kind, c.source) for c in read_cells(script)]
    assert mine == [(c.kind, c.source) for c in read_cells(notebook)]
    assert mine == cells_py


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_notebooks_are_stored_without_outputs(notebook):
    nb = json.loads(notebook.read_text(encoding="utf-8"))
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None, notebook.name


@pytest.mark.parametrize("script", SCRIPTS, ids=_ids(SCRIPTS))
def test_lessons_assert_and_never_block(script):
    code = "\n".join(c.source for c in read_cells(script) if c.kind == "code")
    assert code.count("assert ") >= 5, f"{script.name}: a lesson asserts its results"
    assert "plt.show(" not in code, f"{script.name}: plt.show() blocks outside Jupyter"
    markdown = "\n".join(c.source for c in read_cells(script) if c.kind == "markdown")
    assert "## Summary" in markdown and "## Exercises" in markdown, script.name


@pytest.mark.parametrize("stem", WITH_EXERCISES)
def test_exercise_lessons_carry_nbgrader_cells_and_hidden_tests(stem):
    """Solutions in nbgrader solution cells; each exercise a test cell with a hidden test.

    Both files of the pair carry the metadata (jupytext keeps the nbgrader key).
    """
    for path in (LESSONS / f"{stem}.py", LESSONS / f"{stem}.ipynb"):
        cells = read_cells(path)
        solutions = [c for c in cells if BEGIN in c.source and c.kind == "code"]
        tests = [c for c in cells if c.is_test]
        assert solutions and all(c.is_solution for c in solutions), path.name
        assert len(tests) >= 1, path.name
        ids = [c.grade_id for c in cells if c.nbgrader]
        assert None not in ids and len(ids) == len(set(ids)), (path.name, ids)
        for cell in solutions:
            assert cell.nbgrader["schema_version"] == 3 and not cell.nbgrader["locked"]
            assert cell.source.count(BEGIN) == cell.source.count(END), stem
            student, names = strip_solutions(cell.source, stem)
            assert "NotImplementedError" in student and names
        for index, cell in enumerate(cells):
            if cell.is_test:
                assert cell.nbgrader["locked"] and cell.nbgrader["schema_version"] == 3
                exercise = parse_exercise(cell, index, stem)   # TESTs' points add up
                assert exercise.tests, f"{stem}: {exercise.id}"
    lesson = Course(LESSONS).lesson(stem)   # hidden blocks run, forbidden names exist
    assert [e.id for e in lesson.exercises] == [c.grade_id for c in cells if c.is_test]


@pytest.mark.parametrize("script", SCRIPTS, ids=_ids(SCRIPTS))
def test_open_exercises_have_model_answers_for_the_teacher_only(script):
    """The last cell holds a model answer and a rubric for every open exercise, as an
    nbgrader manually graded answer (0 points) that assign turns into YOUR ANSWER HERE."""
    from minircnn.classroom.assign import ANSWER_STUB, released_cells

    cells = read_cells(script)
    exercises = next(c.source for c in cells if "## Exercises" in c.source)
    numbers = re.findall(r"^(\d+)\. ", exercises.split("## Exercises", 1)[1], re.MULTILINE)
    answers = cells[-1]
    assert answers.kind == "markdown" and answers.grade_id == "open_answers", script.name
    meta = answers.nbgrader
    assert meta["grade"] and meta["solution"] and meta["points"] == 0 and not meta["locked"]
    for number in numbers:
        assert f"**{number}. " in answers.source, f"{script.name}: no answer to exercise {number}"
    assert answers.source.count("*Rubric") == len(numbers), script.name
    student = released_cells(cells, script.stem)[-1].source
    assert ANSWER_STUB in student and "Rubric" not in student and "BEGIN" not in student


def test_readme_lists_every_graded_exercise_with_its_points():
    """lessons/README.md's table of graded exercises is the lessons' nbgrader metadata."""
    readme = (LESSONS / "README.md").read_text(encoding="utf-8")
    count = total = 0
    for script in SCRIPTS:
        tests = [c for c in read_cells(script) if c.is_test]
        if not tests:
            continue
        points = [int(c.nbgrader["points"]) for c in tests]
        cells = ", ".join(f"`{c.grade_id}` {p}" for c, p in zip(tests, points, strict=True))
        assert f"| {script.stem[:2]} | {cells} | {sum(points)} |" in readme, script.name
        count, total = count + len(tests), total + sum(points)
    assert f"| all | {count} exercises | {total} |" in readme


def test_readme_maps_every_lesson():
    readme = (LESSONS / "README.md").read_text(encoding="utf-8")
    for notebook in NOTEBOOKS:
        assert f"({notebook.name})" in readme, f"lessons/README.md does not link {notebook.name}"
