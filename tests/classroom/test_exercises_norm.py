"""Lesson 02's graded batch-norm backward: the teacher's solution scores full marks, the
released stub 0, wrong answers exactly what they deserve, at least two of them 0.

Each wrong answer: name -> (the points it keeps, its source).
"""

import pytest

LESSON = "02_cnn_backprop"

_BN = '''
def batchnorm_backward(dout, x, gamma, eps):
    axes = AXES
    M = np.prod([x.shape[a] for a in axes])
    mean = x.mean(axis=axes, keepdims=True)
    var = ((x - mean) ** 2).sum(axis=axes, keepdims=True) / (M - UNBIASED)
    inv_std = 1.0 / np.sqrt(var + eps)
    xhat = (x - mean) * inv_std
    dbeta = dout.sum(axis=(0, 2, 3))
    dgamma = (dout * xhat).sum(axis=(0, 2, 3))
    g = dout * gamma.reshape(1, -1, 1, 1)
    if CONSTANT_STATS:
        return g * inv_std, dgamma, dbeta
    dx = inv_std / M * (M * g - g.sum(axis=axes, keepdims=True)
                        - xhat * (g * xhat).sum(axis=axes, keepdims=True))
    return dx, dgamma, dbeta
'''


def _bn(axes="(0, 2, 3)", unbiased="0", constant="False"):
    return (_BN.replace("AXES", axes).replace("UNBIASED", unbiased)
            .replace("CONSTANT_STATS", constant))


BN_WRONG = {
    "treats the mean and variance as constants": (0, _bn(constant="True")),
    "the unbiased variance (M - 1)": (0, _bn(unbiased="1")),
    # right when H = W = 1
    "statistics over the batch axis only": (1, _bn(axes="(0,)")),
}
CASES = [("batchnorm_backward", BN_WRONG)]


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
