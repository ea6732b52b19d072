"""Wrong answers to lesson 07's graded exercises, graded by the real judge in
tests/classroom/test_exercises.py: grade_id -> {name: (the points it keeps, its source)}.

A wrong answer is appended to the teacher's solution cell (so helpers defined there stay)
and redefines the graded function; it must not call another exercise's function, since
one submission carries a wrong answer to several exercises at once.
"""

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
CASES = {"svd_budget": RANK_WRONG}
