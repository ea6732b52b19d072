"""Lesson 07's graded rank-for-a-budget exercise: the teacher's solution scores full marks,
the released stub 0, wrong answers exactly what they deserve, at least two of them 0.

Each wrong answer: name -> (the points it keeps, its source).
"""

import pytest

LESSON = "07_test_time"

_RANK = '''
import math


def svd_rank_for_budget(shapes, budget, fc_fraction):
    before = sum(out * inp for out, inp in shapes)
    per_rank = sum(out + inp for out, inp in shapes)
    t = min(max(1, RANK), *(min(shape) for shape in shapes))
    s = before / (t * COST)
    return t, float(s), float(OVERALL)
'''


def _rank(rank="math.floor(budget * before / per_rank)",
          overall="1.0 / ((1.0 - fc_fraction) + fc_fraction / s)", cost="per_rank"):
    return _RANK.replace("RANK", rank).replace("OVERALL", overall).replace("COST", cost)


RANK_WRONG = {
    # right on the budgets that a rank meets exactly
    "rounds the rank up (over budget)": (1, _rank(rank="math.ceil(budget * before / per_rank)")),
    "the cost of the first factor only (t * in)": (
        0, _rank(cost="sum(inp for _, inp in shapes)")),
    "the fc speed-up for the whole detector (no Amdahl)": (0, _rank(overall="s")),
    "counts only the first layer": (
        # the exact budgets use identical layers
        1, _rank(rank="math.floor(budget * shapes[0][0] * shapes[0][1] / sum(shapes[0]))")),
    "a cost on the budget is over it (< for <=)": (
        3, _rank(rank="math.ceil(budget * before / per_rank) - 1")),
}
CASES = [("svd_budget", RANK_WRONG)]


@pytest.mark.parametrize("grade_id", [c[0] for c in CASES])
def test_the_solution_scores_full_and_the_stub_zero(grade_id, exercise_harness):
    load, score, points = exercise_harness
    exercise = load(LESSON, grade_id)
    assert sum(p for _, p, _ in exercise.tests) == exercise.points
    results = score(exercise)
    assert points(exercise, results) == exercise.points, results
    assert points(exercise, score(exercise, released=True)) == 0


@pytest.mark.parametrize("grade_id,wrong", [(g, w) for g, answers in CASES for w in answers])
def test_a_wrong_answer_keeps_only_what_it_deserves(grade_id, wrong, exercise_harness):
    load, score, points = exercise_harness
    exercise = load(LESSON, grade_id)
    deserved, source = dict(CASES)[grade_id][wrong]
    results = score(exercise, source)
    assert points(exercise, results) == deserved, results


def test_at_least_two_wrong_answers_score_zero_on_each_exercise():
    for grade_id, answers in CASES:
        assert sum(deserved == 0 for deserved, _ in answers.values()) >= 2, grade_id
