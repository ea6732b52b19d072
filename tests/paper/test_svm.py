"""SVMs with hard-negative mining (minircnn/paper/svm.py)."""

import numpy as np

from minircnn.paper.svm import FEATURE_NORM, feature_scale, mine_hard_negatives


def test_feature_scale_makes_the_mean_norm_20():
    x = np.random.default_rng(0).random((100, 7))
    scale = feature_scale(x, chunk=30)                  # chunks: the same as at once
    assert np.isclose(np.linalg.norm(x * scale, axis=1).mean(), FEATURE_NORM)


def test_mining_adds_the_negatives_inside_the_margin_and_then_separates_them():
    """Positives at +x; 500 easy negatives far at -x; 20 hard ones close to the
    positives. The first fit sees only 5 (random) negatives; mining must add every hard
    one, and the final SVM scores them below the positives."""
    rng = np.random.default_rng(0)
    pos = rng.normal([2.0, 0.0], 0.1, (20, 2))
    easy = rng.normal([-3.0, 0.0], 0.1, (500, 2))
    hard = rng.normal([1.0, 0.0], 0.1, (20, 2))
    x = np.concatenate([pos, easy, hard])
    positives = np.arange(20)
    negatives = np.arange(20, len(x))
    hard_rows = np.arange(520, 540)
    w, b, active = mine_hard_negatives(x, positives, negatives, scale=1.0,
                                       rng=np.random.default_rng(1), first=5, rounds=2)
    assert set(hard_rows) <= set(active)                # all hard negatives were mined
    assert len(active) < len(negatives)                 # and not every easy one
    scores = x @ w + b
    assert scores[hard_rows].max() < scores[positives].min()
    w0, b0, first = mine_hard_negatives(x, positives, negatives, scale=1.0,
                                        rng=np.random.default_rng(1), first=5, rounds=0)
    assert len(first) == 5                              # no mining: the random start only
