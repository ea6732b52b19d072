"""The exercises added for issue 25 (and lesson 10's, issue 28), graded by the real
judge (minircnn.classroom.grade): plausible wrong answers keep exactly the points they
deserve, at least two of them 0 per exercise, and the released copies score 0. (The
teacher's solutions scoring full marks is tests/classroom/test_assign.py's real-lesson
batch.)

Wrong answers live in wrong_answers_NN.py. To keep the batch short, one submission
carries a wrong answer to every exercise of its lesson that has one left: submission k
of a lesson holds each exercise's k-th wrong answer, appended to the teacher's solution
cell, and the teacher's solutions elsewhere.
"""

import json
from pathlib import Path

import pytest

from minircnn.classroom.assign import read_cells, release
from minircnn.classroom.grade import Limits, grade_batch
from tests.classroom import (
    wrong_answers_02,
    wrong_answers_03,
    wrong_answers_04,
    wrong_answers_05,
    wrong_answers_07,
    wrong_answers_10,
)

LESSONS = Path(__file__).resolve().parents[2] / "lessons"
MODULES = (wrong_answers_02, wrong_answers_03, wrong_answers_04, wrong_answers_05,
           wrong_answers_07, wrong_answers_10)
WRONG = [(m.LESSON, grade_id, name) for m in MODULES for grade_id, answers in m.CASES.items()
         for name in answers]
NEW = {m.LESSON: list(m.CASES) for m in MODULES}


def _submission(lesson: str, released: Path, wrong: dict, path: Path) -> Path:
    """The released notebook answered with the teacher's solutions, each exercise in
    ``wrong`` (grade_id -> source) followed by its wrong answer."""
    solutions = {c.grade_id: c.source for c in read_cells(LESSONS / f"{lesson}.py")
                 if c.is_solution}
    nb = json.loads((released / f"{lesson}.ipynb").read_text(encoding="utf-8"))
    for cell in nb["cells"]:
        meta = cell["metadata"].get("nbgrader", {})
        if cell["cell_type"] == "code" and meta.get("solution"):
            source = solutions[meta["grade_id"]]
            extra = wrong.get(meta["grade_id"].removesuffix("_code"))
            cell["source"] = source if extra is None else source + "\n\n" + extra
    path.write_text(json.dumps(nb), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def judged(tmp_path_factory):
    """{(lesson, grade_id, wrong answer or "released"): points}, from one grading batch."""
    released = tmp_path_factory.mktemp("release")
    release(LESSONS, released)
    folder = tmp_path_factory.mktemp("submissions")
    paths, carried = [], []
    for module in MODULES:
        answers = {g: list(a.items()) for g, a in module.CASES.items()}
        for k in range(max(len(a) for a in answers.values())):
            wrong = {g: a[k] for g, a in answers.items() if k < len(a)}
            name = f"wrong{k}_{module.LESSON}.ipynb"
            paths.append(_submission(module.LESSON, released, {g: w[1][1] for g, w in
                                                               wrong.items()}, folder / name))
            carried.append({g: w[0] for g, w in wrong.items()})
        paths.append(released / f"{module.LESSON}.ipynb")
        carried.append({g: "released" for g in module.CASES})
    reports = grade_batch(paths, LESSONS, Limits(exercise_s=600, notebook_s=1200),
                          secret="issue 25's wrong answers")
    points = {}
    for report, which in zip(reports, carried, strict=True):
        scores = {e.id: e.score for e in report.exercises}
        for grade_id, name in which.items():
            points[(report.lesson, grade_id, name)] = scores[grade_id]
    return points


@pytest.mark.parametrize("lesson,grade_id,wrong", WRONG, ids=[w[2] for w in WRONG])
def test_a_wrong_answer_keeps_only_what_it_deserves(lesson, grade_id, wrong, judged):
    module = next(m for m in MODULES if m.LESSON == lesson)
    deserved, _ = module.CASES[grade_id][wrong]
    assert judged[(lesson, grade_id, wrong)] == deserved


@pytest.mark.parametrize("lesson", sorted(NEW))
def test_the_released_copy_scores_zero(lesson, judged):
    for grade_id in NEW[lesson]:
        assert judged[(lesson, grade_id, "released")] == 0, grade_id


def test_at_least_two_wrong_answers_score_zero_on_each_exercise():
    for module in MODULES:
        for grade_id, answers in module.CASES.items():
            assert sum(points == 0 for points, _ in answers.values()) >= 2, grade_id
    assert len({(lesson, grade_id) for lesson, grade_id, _ in WRONG}) == 12   # + lesson 10's 2
