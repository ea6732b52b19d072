# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: nbgrader,-all
#     notebook_metadata_filter: kernelspec,jupytext,-jupytext.text_representation.jupytext_version
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Lesson 04 — The multi-task loss: softmax vs SVM, smooth L1, box parameterisation
#
# **Goal.** Fast R-CNN trains classification and box regression *together* with one loss
# (paper eq. 1):
#
# $$L(p, u, t^u, v) = L_\text{cls}(p, u) + \lambda [u \ge 1] L_\text{loc}(t^u, v)$$
#
# with a softmax log loss for the class `u` and a smooth L1 loss on the 4 box deltas of
# the true class — only for foreground RoIs. We compare softmax with the multi-class SVM
# that R-CNN used, see why smooth L1 is robust to outliers, encode and decode boxes, and
# compute the whole loss by hand for 3 RoIs.
#
# | name | shape | meaning |
# |---|---|---|
# | `cls_scores` | (R, K+1) | class scores (logits) of R RoIs; column 0 is background |
# | `bbox_deltas` | (R, 4·(K+1)) | predicted deltas; class c in columns 4c:4c+4 |
# | `labels` | (R,) | true class u in 0..K (0 = background) |
# | `bbox_targets` | (R, 4) | target deltas v = encode(RoI, its GT box) |
# | loss | () | CE averaged over R + Σ_foreground smoothL1 / R (detectron2's normalisation) |
#
# Code: `minircnn/layers/losses.py`, `minircnn/detection/boxes.py`; derivations in
# `docs/layers/losses.md`.

# %%
import matplotlib.pyplot as plt
import numpy as np

from minircnn import viz
from minircnn.data import CLASSES, ShapesDataset
from minircnn.detection import box_iou, decode_boxes, encode_boxes
from minircnn.gradcheck import check_layer, numeric_gradient, rel_error
from minircnn.layers import (
    fast_rcnn_loss_backward,
    fast_rcnn_loss_forward,
    smooth_l1_backward,
    smooth_l1_forward,
    softmax_cross_entropy_backward,
    softmax_cross_entropy_forward,
)

rng = np.random.default_rng(0)

# %% [markdown]
# ## 1. Softmax vs SVM on the same scores
#
# Three examples, three classes (cs231n's numbers). The **multi-class SVM** (hinge) loss
# wants the true class's score to beat every other by a margin Δ = 1, and is *satisfied*
# (zero) once it does: $L_i = \sum_{j \ne y_i} \max(0, s_j - s_{y_i} + 1)$.
# **Softmax cross-entropy** turns scores into probabilities and is never fully satisfied:
# $L_i = -\log\big(e^{s_{y_i}} / \sum_j e^{s_j}\big)$.
#
# By hand, SVM: row 0: max(0, 5.1 − 3.2 + 1) + max(0, −1.7 − 3.2 + 1) = 2.9 + 0;
# row 1: 0 + 0; row 2: (2.2 + 3.1 + 1) + (2.5 + 3.1 + 1) = 6.3 + 6.6 = 12.9.

# %%
scores = np.array([[3.2, 5.1, -1.7],
                   [1.3, 4.9, 2.0],
                   [2.2, 2.5, -3.1]])
labels3 = np.array([0, 1, 2])
svm_rows_by_hand = np.array([2.9, 0.0, 12.9])
exp = np.exp(scores)
softmax_rows_by_hand = -np.log(exp[np.arange(3), labels3] / exp.sum(axis=1))

ce, ce_cache = softmax_cross_entropy_forward(scores, labels3)
print("softmax loss per row:", softmax_rows_by_hand.round(4), " mean:", float(ce))
print("SVM loss per row    :", svm_rows_by_hand, " mean:", svm_rows_by_hand.mean())
assert abs(float(ce) - softmax_rows_by_hand.mean()) < 1e-12
assert softmax_rows_by_hand[1] > 0            # softmax still pushes a correct example
err = rel_error(softmax_cross_entropy_backward(1.0, ce_cache),
                numeric_gradient(lambda: softmax_cross_entropy_forward(scores, labels3)[0],
                                 scores, 1.0))
print(f"softmax CE dlogits rel error {err:.1e}")
assert err < 1e-7

# %% [markdown]
# ### Exercise 1 — the multi-class SVM loss and its gradient
#
# Return the mean hinge loss over rows and `dscores` (R, C). The gradient of each active
# margin term `s_j − s_y + 1 > 0` is +1 for `s_j` and −1 for `s_y`.

# %% nbgrader={"grade": false, "grade_id": "svm_loss_code", "locked": false, "schema_version": 3, "solution": true}
def multiclass_svm_loss(scores, labels, *, margin=1.0):
    """scores (R, C), labels (R,) -> (mean hinge loss, dscores (R, C))."""
    ### BEGIN SOLUTION
    R = scores.shape[0]
    rows = np.arange(R)
    margins = scores - scores[rows, labels][:, None] + margin     # (R, C)
    margins[rows, labels] = 0.0
    active = (margins > 0).astype(scores.dtype)                   # (R, C)
    loss = np.maximum(margins, 0.0).sum() / R
    dscores = active.copy()
    dscores[rows, labels] = -active.sum(axis=1)
    return loss, dscores / R
    ### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "svm_loss", "locked": true, "points": 4, "schema_version": 3, "solution": false}
# Your checks: the loss of the 3 rows by hand, the gradient vs a numeric gradient.
svm_loss, dsvm = multiclass_svm_loss(scores, labels3)
assert abs(svm_loss - svm_rows_by_hand.mean()) < 1e-12, svm_loss
numeric = numeric_gradient(lambda: multiclass_svm_loss(scores, labels3)[0], scores, 1.0)
assert rel_error(dsvm, numeric) < 1e-7
### BEGIN HIDDEN TESTS
def reference_svm_loss(scores, labels, margin):
    """mean over rows of sum_{c != y} max(0, s_c - s_y + margin)."""
    rows = np.arange(len(labels))
    margins = np.maximum(scores - scores[rows, labels][:, None] + margin, 0.0)
    margins[rows, labels] = 0.0
    return margins.sum() / len(labels)


def random_case(rng, margin):
    """Random scores with every margin at least 0.05 away from the hinge's kink."""
    R, C = int(rng.integers(2, 9)), int(rng.integers(2, 6))
    labels = rng.integers(0, C, size=R)
    scores = rng.standard_normal((R, C)) * 2
    rows = np.arange(R)
    gap = scores - scores[rows, labels][:, None] + margin
    near = (np.abs(gap) < 0.05) & (np.arange(C) != labels[:, None])
    scores[near] += 0.1
    return scores, labels


# TEST the loss of 3 rows by hand (2 points)
def grade_by_hand(student, rng):
    scores = np.array([[3.2, 5.1, -1.7], [1.3, 4.9, 2.0], [2.2, 2.5, -3.1]])
    loss, _ = student.multiclass_svm_loss(scores, np.array([0, 1, 2]))
    assert abs(loss - (2.9 + 0.0 + 12.9) / 3) < 1e-12, "the 3 rows by hand"


# TEST the gradient vs the grader's numeric gradient of the reference loss (1 point)
def grade_gradient(student, rng):
    for _ in range(3):
        scores, labels = random_case(rng, 1.0)
        loss, dscores = student.multiclass_svm_loss(scores, labels)
        numeric = numeric_gradient(lambda s=scores, y=labels: reference_svm_loss(s, y, 1.0),
                                   scores, 1.0)
        assert abs(loss - reference_svm_loss(scores, labels, 1.0)) < 1e-12, "the loss"
        assert rel_error(dscores, numeric) < 1e-7, "dscores"


# TEST another margin, loss and gradient (1 point)
def grade_margin(student, rng):
    margin = float(rng.uniform(0.2, 3.0))
    scores, labels = random_case(rng, margin)
    loss, dscores = student.multiclass_svm_loss(scores, labels, margin=margin)
    numeric = numeric_gradient(lambda: reference_svm_loss(scores, labels, margin), scores, 1.0)
    assert abs(loss - reference_svm_loss(scores, labels, margin)) < 1e-12, f"margin {margin}"
    assert rel_error(dscores, numeric) < 1e-7, f"dscores at margin {margin}"
### END HIDDEN TESTS

# %% [markdown]
# ### Exercise 2 — softmax cross-entropy and its gradient
#
# Return the mean loss over the R rows and `dlogits` (R, C) for `dloss = 1`:
#
# $$p_{ij} = \frac{e^{s_{ij} - m_i}}{\sum_k e^{s_{ik} - m_i}},\quad
#   L = \frac{1}{R}\sum_i -\log p_{i,y_i},\quad
#   \frac{\partial L}{\partial s_{ij}} = \frac{p_{ij} - [j = y_i]}{R}$$
#
# Subtract each row's max `m_i` first: the probabilities do not change, and `exp` cannot
# overflow (a hidden test uses scores in the thousands). Check against the three rows
# above, whose losses we computed by hand.

# %% nbgrader={"grade": false, "grade_id": "softmax_ce_code", "locked": false, "schema_version": 3, "solution": true}
def softmax_ce_loss_and_grad(logits, labels):
    """logits (R, C), labels (R,) -> (mean loss as a float, dlogits (R, C))."""
    ### BEGIN SOLUTION
    R = logits.shape[0]
    rows = np.arange(R)
    shifted = logits - logits.max(axis=1, keepdims=True)            # (R, C), max 0 per row
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    loss = -log_p[rows, labels].mean()
    dlogits = np.exp(log_p)                                          # p
    dlogits[rows, labels] -= 1.0                                     # p - onehot
    return float(loss), dlogits / R
    ### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "softmax_ce", "locked": true, "points": 4, "schema_version": 3, "solution": false}
# forbid: minircnn.layers.losses.softmax_cross_entropy_forward, minircnn.layers.losses.softmax_cross_entropy_backward
# The visible check (not graded): the three rows by hand, and the gradient's rows sum to 0.
ce_mine, dce_mine = softmax_ce_loss_and_grad(scores, labels3)
assert abs(ce_mine - softmax_rows_by_hand.mean()) < 1e-12, ce_mine
assert np.allclose(dce_mine.sum(axis=1), 0.0), dce_mine
### BEGIN HIDDEN TESTS
import numpy as np

from minircnn.gradcheck import THRESHOLD, gradient_error, numeric_gradient_with_bound, rel_error
from minircnn.layers import softmax_cross_entropy_backward, softmax_cross_entropy_forward


def _ce_check(student, logits, labels, numeric=True):
    loss, dlogits = student.softmax_ce_loss_and_grad(logits, labels)
    want, cache = softmax_cross_entropy_forward(logits, labels)
    assert abs(loss - float(want)) <= 1e-10 * max(1.0, abs(float(want))), "the loss"
    assert rel_error(dlogits, softmax_cross_entropy_backward(1.0, cache)) < 1e-9, "dlogits"
    if numeric:
        grad = numeric_gradient_with_bound(
            lambda: softmax_cross_entropy_forward(logits, labels)[0], logits, 1.0)
        assert gradient_error(dlogits, grad) <= THRESHOLD, "dlogits vs a numeric gradient"


# TEST the cs231n scores with drawn labels (1 point)
def grade_ce_small(student, rng):
    logits = np.array([[3.2, 5.1, -1.7], [1.3, 4.9, 2.0], [2.2, 2.5, -3.1]])
    _ce_check(student, logits, rng.integers(0, 3, size=3))


# TEST random shapes vs a numeric gradient of the reference loss (2 points)
def grade_ce_random(student, rng):
    for _ in range(3):
        R, C = int(rng.integers(2, 9)), int(rng.integers(2, 7))
        logits = rng.standard_normal((R, C)) * rng.uniform(0.5, 4)
        _ce_check(student, logits, rng.integers(0, C, size=R))


# TEST scores in the thousands: no overflow (1 point)
def grade_ce_large(student, rng):
    R, C = int(rng.integers(3, 7)), int(rng.integers(3, 6))
    logits = rng.standard_normal((R, C)) * 5 + rng.uniform(800, 3000)
    _ce_check(student, logits, rng.integers(0, C, size=R), numeric=False)
### END HIDDEN TESTS

# %% [markdown]
# Doubling the scores of the already-correct row 1 leaves its SVM loss at 0, but its
# softmax loss keeps falling: softmax wants ever more confident scores, the SVM stops at
# the margin. Fast R-CNN (section 5.4) trains the softmax in one stage and found it
# slightly *better* than post-hoc SVMs, dropping R-CNN's separate SVM stage.

# %%
for factor in (1.0, 2.0, 4.0):
    row = scores[1:2] * factor
    sm = float(softmax_cross_entropy_forward(row, labels3[1:2])[0])
    hinge = np.maximum(0, row[0] - row[0, 1] + 1)[[0, 2]].sum()
    print(f"scores x{factor:g}: softmax {sm:.2e}, SVM {hinge:.1f}")
    assert hinge == 0.0 and sm > 0

# %% [markdown]
# ## 2. Smooth L1 vs L2 vs L1
#
# With d = prediction − target: L2 = ½ d², L1 = |d|, and smooth L1 (β = 1) is ½ d² for
# |d| < 1 and |d| − ½ beyond. Its gradient is d inside, ±1 outside: **bounded**. An
# outlier (a badly matched RoI, a huge target) therefore cannot dominate the update as
# it does under L2, whose gradient grows with d; and unlike L1 it is smooth at 0.

# %%
d = np.linspace(-3, 3, 121)
zeros = np.zeros(1)
smooth = np.array([float(smooth_l1_forward(np.array([v]), zeros)[0]) for v in d])
l1 = np.array([float(smooth_l1_forward(np.array([v]), zeros, beta=0.0)[0]) for v in d])
l2 = 0.5 * d**2
_, sl1_cache = smooth_l1_forward(d, np.zeros_like(d))
grad_smooth = smooth_l1_backward(1.0, sl1_cache)              # (121,) per-element slopes

inside = np.abs(d) < 1
assert np.allclose(smooth[inside], l2[inside])                # quadratic near 0
assert np.allclose(smooth[~inside], l1[~inside] - 0.5)        # linear (shifted L1) outside
assert np.abs(grad_smooth).max() <= 1.0                       # bounded gradient

fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
for values, name in ((l2, "L2 = ½d²"), (l1, "L1 = |d|"), (smooth, "smooth L1 (β=1)")):
    axes[0].plot(d, values, label=name)
axes[0].set(xlabel="d = pred − target", ylabel="loss", ylim=(0, 4.5), title="loss")
axes[1].plot(d, d, label="L2: d")
axes[1].plot(d, np.sign(d), label="L1: sign(d)")
axes[1].plot(d, grad_smooth, label="smooth L1", ls="--")
axes[1].set(xlabel="d", ylabel="dloss/dd", title="gradient")
for ax in axes:
    ax.legend()
    ax.grid(alpha=0.3)
fig.tight_layout()

# %% [markdown]
# **Robustness in one experiment.** Fit one number θ to the values below (five inliers
# near 1 and an outlier at 10) by gradient descent on Σ loss(θ − yᵢ). L2 gives the mean,
# 2.5, dragged by the outlier. Smooth L1 settles where the inliers' pull (θ − yᵢ each)
# balances the outlier's bounded pull (−1): 5θ − 5 = 1, θ = 1.2.

# %%
y = np.array([1.0, 1.2, 0.8, 1.1, 0.9, 10.0])
theta_l2, theta_smooth = 0.0, 0.0
for _ in range(300):
    theta_l2 -= 0.1 * np.sum(theta_l2 - y)                        # d(½Σd²)/dθ = Σd
    _, cache_s = smooth_l1_forward(np.full(6, theta_smooth), y)
    theta_smooth -= 0.1 * smooth_l1_backward(1.0, cache_s).sum()  # Σ of bounded slopes
print(f"L2 fit {theta_l2:.4f} (mean {y.mean():.4f}), smooth L1 fit {theta_smooth:.4f}")
assert abs(theta_l2 - y.mean()) < 1e-6
assert abs(theta_smooth - 1.2) < 1e-6

# %% [markdown]
# ### Exercise 3 — the smooth L1 gradient
#
# The box loss is $\frac{1}{n}\sum \text{smoothL1}_\beta(d)$ with $d$ = pred − target and
# the normaliser $n$ (Fast R-CNN's loss divides by the number of RoIs):
# smoothL1 = ½d²/β where |d| < β, |d| − ½β elsewhere; β = 0 is plain L1. Return
# `dpred` for `dloss = 1`: **d/β** inside, **sign(d)** outside (sign(0) = 0 for L1),
# divided by the normaliser. The check: β = 0.5, n = 4 on four differences by hand.

# %% nbgrader={"grade": false, "grade_id": "smooth_l1_grad_code", "locked": false, "schema_version": 3, "solution": true}
def smooth_l1_grad(pred, target, beta, normalizer):
    """pred, target (same shape) -> dpred of sum(smoothL1_beta(pred - target)) / normalizer."""
    ### BEGIN SOLUTION
    d = pred - target
    if beta == 0:
        slope = np.sign(d)                                   # L1: d|d|/dd = sign(d)
    else:
        slope = np.where(np.abs(d) < beta, d / beta, np.sign(d))
    return slope / normalizer
    ### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "smooth_l1_grad", "locked": true, "points": 4, "schema_version": 3, "solution": false}
# forbid: minircnn.layers.losses.smooth_l1_forward, minircnn.layers.losses.smooth_l1_backward
# The visible check (not graded): d = (-2, -0.3, 0.1, 0.7), beta 0.5 -> slopes (-1, -0.6, 0.2, 1), / 4.
sl1_mine = smooth_l1_grad(np.array([-2.0, -0.3, 0.1, 0.7]), np.zeros(4), 0.5, 4.0)
assert np.allclose(sl1_mine, np.array([-1.0, -0.6, 0.2, 1.0]) / 4), sl1_mine
### BEGIN HIDDEN TESTS
import numpy as np

from minircnn.gradcheck import THRESHOLD, gradient_error, numeric_gradient_with_bound, rel_error
from minircnn.layers import smooth_l1_backward, smooth_l1_forward


def _sl1_case(rng, beta):
    """Differences kept 0.05 away from the bend |d| = beta (and from 0 for L1)."""
    shape = tuple(int(v) for v in rng.integers(1, 6, size=int(rng.integers(1, 3))))
    target = rng.standard_normal(shape)
    size = rng.uniform(0.05, 3 * max(beta, 0.5), shape)
    size = np.where(np.abs(size - beta) < 0.05, size + 0.1, size)
    return target + rng.choice([-1.0, 1.0], shape) * size, target


def _sl1_check(student, pred, target, beta, normalizer):
    got = student.smooth_l1_grad(pred, target, beta, normalizer)
    _, cache = smooth_l1_forward(pred, target, beta=beta, normalizer=normalizer)
    assert rel_error(got, smooth_l1_backward(1.0, cache)) < 1e-12, f"beta {beta}"
    grad = numeric_gradient_with_bound(lambda: smooth_l1_forward(
        pred, target, beta=beta, normalizer=normalizer)[0], pred, 1.0)
    assert gradient_error(got, grad) <= THRESHOLD, "vs a numeric gradient"


# TEST four differences, inside and outside, beta 0.5, normaliser 4 (1 point)
def grade_sl1_small(student, rng):
    pred = rng.permutation(np.array([-2.0, -0.3, 0.1, 0.7]))
    _sl1_check(student, pred, np.zeros(4), 0.5, 4.0)


# TEST random shapes, betas and normalisers vs a numeric gradient (2 points)
def grade_sl1_random(student, rng):
    for _ in range(4):
        beta = float(rng.uniform(0.2, 3.0))
        _sl1_check(student, *_sl1_case(rng, beta), beta, float(rng.integers(2, 129)))


# TEST beta = 0 is L1 (1 point)
def grade_sl1_l1(student, rng):
    _sl1_check(student, *_sl1_case(rng, 0.0), 0.0, float(rng.integers(2, 129)))
### END HIDDEN TESTS

# %% [markdown]
# ## 3. Box parameterisation
#
# The network does not predict box corners; it predicts how to move and scale the RoI
# (R-CNN's parameterisation, torchvision's `BoxCoder`), in RoI-relative units so the same
# numbers mean the same thing for small and large boxes:
#
# $$t_x = w_x \frac{g_x - r_x}{r_w},\quad t_y = w_y \frac{g_y - r_y}{r_h},\quad
#   t_w = w_w \log\frac{g_w}{r_w},\quad t_h = w_h \log\frac{g_h}{r_h}$$
#
# (centres x, y and sizes w, h of the RoI r and the GT box g), with weights
# (10, 10, 5, 5). By hand for RoI (10, 10, 50, 50) and GT (20, 10, 60, 70):
# the RoI is 40 × 40 centred at (30, 30), the GT 40 × 60 centred at (40, 40), so
# t = (10·10/40, 10·10/40, 5·log 1, 5·log 1.5) = (2.5, 2.5, 0, 2.027).

# %%
roi = np.array([[10.0, 10.0, 50.0, 50.0]])
gt = np.array([[20.0, 10.0, 60.0, 70.0]])
t_by_hand = np.array([[2.5, 2.5, 0.0, 5 * np.log(1.5)]])
t = encode_boxes(roi, gt)                      # weights (10, 10, 5, 5) by default
print("deltas:", t.round(4))
assert np.allclose(t, t_by_hand)
assert np.allclose(decode_boxes(t, roi), gt)                           # decode inverts encode
assert np.allclose(encode_boxes(3 * roi, 3 * gt), t)                   # scale invariant
assert np.allclose(encode_boxes(roi + 7, gt + 7), t)                   # translation invariant

# %% [markdown]
# ### Exercise 4 — box encoding and decoding
#
# Write `encode` (the four formulas above, for rows of boxes, with any weights) and its
# inverse `decode`: from deltas back to corners,
# `cx = dx/wx · r_w + r_cx`, `w = exp(dw/ww) · r_w` (same for y, h), then
# `x1 = cx − w/2`, `x2 = cx + w/2`. Before the `exp`, clamp `dw/ww` and `dh/wh` from above
# at `log(1000/16)`, so that a wild prediction cannot make a box of infinite size.
# Widths are `x2 − x1` (no +1). The check: the RoI and GT box above, and decode
# inverts encode.

# %% nbgrader={"grade": false, "grade_id": "box_coding_code", "locked": false, "schema_version": 3, "solution": true}
def encode(reference, gt, weights):
    """reference, gt (R, 4) boxes -> (R, 4) deltas (dx, dy, dw, dh) of gt w.r.t. reference."""
    ### BEGIN SOLUTION
    wx, wy, ww, wh = weights
    r_w, r_h = reference[:, 2] - reference[:, 0], reference[:, 3] - reference[:, 1]
    g_w, g_h = gt[:, 2] - gt[:, 0], gt[:, 3] - gt[:, 1]
    r_cx, r_cy = reference[:, 0] + 0.5 * r_w, reference[:, 1] + 0.5 * r_h
    g_cx, g_cy = gt[:, 0] + 0.5 * g_w, gt[:, 1] + 0.5 * g_h
    return np.stack([wx * (g_cx - r_cx) / r_w, wy * (g_cy - r_cy) / r_h,
                     ww * np.log(g_w / r_w), wh * np.log(g_h / r_h)], axis=1)
    ### END SOLUTION


def decode(deltas, reference, weights):
    """deltas (R, 4), reference (R, 4) boxes -> (R, 4) boxes (x1, y1, x2, y2)."""
    ### BEGIN SOLUTION
    wx, wy, ww, wh = weights
    r_w, r_h = reference[:, 2] - reference[:, 0], reference[:, 3] - reference[:, 1]
    r_cx, r_cy = reference[:, 0] + 0.5 * r_w, reference[:, 1] + 0.5 * r_h
    cx = deltas[:, 0] / wx * r_w + r_cx
    cy = deltas[:, 1] / wy * r_h + r_cy
    w = np.exp(np.minimum(deltas[:, 2] / ww, np.log(1000 / 16))) * r_w
    h = np.exp(np.minimum(deltas[:, 3] / wh, np.log(1000 / 16))) * r_h
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    ### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "box_coding", "locked": true, "points": 5, "schema_version": 3, "solution": false}
# forbid: minircnn.detection.boxes.encode_boxes, minircnn.detection.boxes.decode_boxes
# The visible check (not graded): the example by hand, then decode(encode(gt)) = gt.
t_mine = encode(roi, gt, (10.0, 10.0, 5.0, 5.0))
assert np.allclose(t_mine, t_by_hand), t_mine
assert np.allclose(decode(t_mine, roi, (10.0, 10.0, 5.0, 5.0)), gt)
### BEGIN HIDDEN TESTS
import numpy as np

from minircnn.detection import decode_boxes, encode_boxes


def _boxes(rng, n):
    """n boxes with corners in [0, 300) and sizes from 2 to 150 pixels."""
    xy = rng.uniform(0, 300, (n, 2))
    return np.concatenate([xy, xy + rng.uniform(2, 150, (n, 2))], axis=1)


def _weights(rng):
    return tuple(float(v) for v in rng.choice([1.0, 2.0, 5.0, 10.0, 20.0], size=4))


# TEST the RoI and GT box by hand, weights (10, 10, 5, 5) (1 point)
def grade_box_small(student, rng):
    roi, gt = np.array([[10.0, 10.0, 50.0, 50.0]]), np.array([[20.0, 10.0, 60.0, 70.0]])
    t = student.encode(roi, gt, (10.0, 10.0, 5.0, 5.0))
    assert np.allclose(t, [[2.5, 2.5, 0.0, 5 * np.log(1.5)]], rtol=1e-12, atol=1e-12)


# TEST encode: random boxes and weights vs the library (2 points)
def grade_box_encode(student, rng):
    for _ in range(3):
        n, weights = int(rng.integers(1, 20)), _weights(rng)
        reference, gt = _boxes(rng, n), _boxes(rng, n)
        want = encode_boxes(reference, gt, weights=weights)
        assert np.allclose(student.encode(reference, gt, weights), want, rtol=1e-10,
                           atol=1e-10), f"weights {weights}"


# TEST decode: random deltas, some past the clamp, vs the library (2 points)
def grade_box_decode(student, rng):
    for _ in range(3):
        n, weights = int(rng.integers(4, 20)), _weights(rng)
        reference = _boxes(rng, n)
        deltas = rng.standard_normal((n, 4)) * np.array(weights)
        deltas[:2, 2:] = np.array(weights[2:]) * rng.uniform(4.2, 9.0, (2, 2))   # > log(62.5)
        want = decode_boxes(deltas, reference, weights=weights)
        assert np.allclose(student.decode(deltas, reference, weights), want, rtol=1e-10,
                           atol=1e-8), f"weights {weights}"
### END HIDDEN TESTS

# %% [markdown]
# Why the weights? With RoIs that overlap their GT well, the raw (unweighted) deltas are
# small — a standard deviation under 0.2 (printed below). Weights 10, 10, 5, 5 scale them to
# roughly unit size, so the box loss is on the same scale as the classification loss and
# smooth L1's bend at |d| = 1 sits where it should. We jitter the GT boxes of 32 shapes
# images by up to ±15% of their size (like proposals that overlap well) and measure:

# %%
ds = ShapesDataset(32, image_size=128, seed=0)
gts = np.concatenate([s["boxes"] for s in ds]).astype(np.float64)     # (G, 4)
sizes = np.tile(gts[:, 2:] - gts[:, :2], 2)                           # (G, 4): w, h, w, h
rois_j = gts + rng.uniform(-0.15, 0.15, size=gts.shape) * sizes
raw_std = encode_boxes(rois_j, gts, weights=(1.0, 1.0, 1.0, 1.0)).std(axis=0)
weighted_std = encode_boxes(rois_j, gts).std(axis=0)
print("std of raw deltas      :", raw_std.round(3))
print("std with (10, 10, 5, 5):", weighted_std.round(3))
assert (raw_std < 0.2).all() and (0.3 < weighted_std).all() and (weighted_std < 2).all()
assert np.diag(box_iou(rois_j, gts)).min() > 0.4

sample = ds[0]
moved = decode_boxes(np.array([[1.0, -1.0, 1.0, 0.5]]), sample["boxes"][:1].astype(np.float64))
fig, ax = plt.subplots(figsize=(4, 4))
viz.draw_boxes(sample["image"], np.concatenate([sample["boxes"][:1], moved]),
               labels=np.array([sample["labels"][0], len(CLASSES) + 1]),
               class_names=(*CLASSES, "decoded"), ax=ax)
ax.set_title("a GT box and decode_boxes(t = (1, −1, 1, 0.5), GT)", fontsize=8)
assert len(ax.patches) == 2

# %% [markdown]
# ## 4. The Fast R-CNN loss by hand, for 3 RoIs
#
# K = 2 classes plus background; RoI 0 is background, RoI 1 is class 1, RoI 2 class 2.
# Classification: cross-entropy averaged over all 3 RoIs. Box regression: only RoIs 1
# and 2, each on *its own class's* 4 columns (RoI 1 → columns 4:8, RoI 2 → 8:12); the
# background RoI's deltas are ignored.
#
# - RoI 1: d = (0.5, −0.2, 0.1, 2.0) − (0, 0, 0, 0.5) = (0.5, −0.2, 0.1, 1.5) →
#   0.125 + 0.02 + 0.005 + (1.5 − 0.5) = 1.15
# - RoI 2: d = (1.0, −3.0, 0.2, 0.0) − (0.2, −0.5, 0.2, 0.3) = (0.8, −2.5, 0, −0.3) →
#   0.32 + 2.0 + 0 + 0.045 = 2.365
# - box loss = (1.15 + 2.365) / 3 = 1.171667 (divided by R = 3, as detectron2)

# %%
cls_scores = np.array([[2.0, 0.5, -1.0],
                       [0.0, 3.0, 1.0],
                       [1.0, 0.0, 2.0]])
labels = np.array([0, 1, 2])
bbox_deltas = np.zeros((3, 12))
bbox_deltas[0] = rng.standard_normal(12)                  # background: ignored entirely
bbox_deltas[1, 4:8] = [0.5, -0.2, 0.1, 2.0]
bbox_deltas[2, 8:12] = [1.0, -3.0, 0.2, 0.0]
bbox_deltas[1, 8:12] = [9.0, 9.0, 9.0, 9.0]               # the wrong class: ignored
bbox_targets = np.array([[0.0, 0.0, 0.0, 0.0],
                         [0.0, 0.0, 0.0, 0.5],
                         [0.2, -0.5, 0.2, 0.3]])
e = np.exp(cls_scores)
cls_by_hand = np.mean(-np.log(e[np.arange(3), labels] / e.sum(axis=1)))
box_by_hand = (1.15 + 2.365) / 3
loss, loss_cache = fast_rcnn_loss_forward(cls_scores, bbox_deltas, labels, bbox_targets)
print(f"classification {loss_cache.loss_cls:.6f} (by hand {cls_by_hand:.6f})")
print(f"box regression {loss_cache.loss_box:.6f} (by hand {box_by_hand:.6f})")
print(f"total          {float(loss):.6f}")
assert abs(loss_cache.loss_cls - cls_by_hand) < 1e-12
assert abs(loss_cache.loss_box - box_by_hand) < 1e-12
assert abs(float(loss) - (cls_by_hand + box_by_hand)) < 1e-12

# Random inputs for the checks below: 8 RoIs, K = 3 classes plus background.
R8, K = 8, 3
random_args = (rng.standard_normal((R8, K + 1)), rng.standard_normal((R8, 4 * (K + 1))) * 2,
               rng.integers(0, K + 1, size=R8), rng.standard_normal((R8, 4)))

# %% [markdown]
# ### Exercise 5 — the multi-task loss with loops
#
# Write `fast_rcnn_loss_loops`: a loop over RoIs adding each RoI's cross-entropy and, for
# a foreground RoI, the smooth L1 (β = 1) of its own class's 4 deltas; divide the sum by R.

# %% nbgrader={"grade": false, "grade_id": "loss_loops_code", "locked": false, "schema_version": 3, "solution": true}
def fast_rcnn_loss_loops(cls_scores, bbox_deltas, labels, bbox_targets):
    """(R, K+1), (R, 4(K+1)), (R,), (R, 4) -> the total loss as a float."""
    ### BEGIN SOLUTION
    total = 0.0
    for r in range(len(labels)):
        s = cls_scores[r] - cls_scores[r].max()
        total += np.log(np.exp(s).sum()) - s[labels[r]]
        c = labels[r]
        if c > 0:
            diff = bbox_deltas[r, 4 * c:4 * c + 4] - bbox_targets[r]
            total += np.where(np.abs(diff) < 1, 0.5 * diff**2, np.abs(diff) - 0.5).sum()
    return total / len(labels)
    ### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "loss_loops", "locked": true, "points": 4, "schema_version": 3, "solution": false}
# forbid: minircnn.layers.losses.fast_rcnn_loss_forward, minircnn.layers.losses.smooth_l1_forward
# forbid: minircnn.layers.losses.softmax_cross_entropy_forward
# Your checks: the 3 RoIs by hand, then random RoIs vs the library.
assert abs(fast_rcnn_loss_loops(cls_scores, bbox_deltas, labels, bbox_targets)
           - (cls_by_hand + box_by_hand)) < 1e-12
library_loss, _ = fast_rcnn_loss_forward(*random_args)
assert abs(fast_rcnn_loss_loops(*random_args) - float(library_loss)) < 1e-12
### BEGIN HIDDEN TESTS
from minircnn.layers.losses import fast_rcnn_loss_forward


def draw_args(rng, background):
    """R RoIs, K classes: scores, deltas (large errors too), labels (a share background)."""
    R, K = int(rng.integers(3, 12)), int(rng.integers(1, 5))
    labels = np.where(rng.random(R) < background, 0, rng.integers(1, K + 1, size=R))
    return (rng.standard_normal((R, K + 1)) * 3, rng.standard_normal((R, 4 * (K + 1))) * 3,
            labels, rng.standard_normal((R, 4)))


def check(student, args):
    want, _ = fast_rcnn_loss_forward(*args)
    got = student.fast_rcnn_loss_loops(*args)
    assert type(got) in (float, int) or np.shape(got) == (), f"a number, got {type(got)}"
    assert abs(float(got) - float(want)) < 1e-12, f"{float(got)} instead of {float(want)}"


# TEST the 3 RoIs by hand (1 point)
def grade_by_hand(student, rng):
    cls_scores = np.array([[2.0, 0.5, -1.0], [0.0, 3.0, 1.0], [1.0, 0.0, 2.0]])
    bbox_deltas = np.zeros((3, 12))
    bbox_deltas[0] = rng.standard_normal(12)                      # background: ignored
    bbox_deltas[1, 4:8] = [0.5, -0.2, 0.1, 2.0]
    bbox_deltas[2, 8:12] = [1.0, -3.0, 0.2, 0.0]
    bbox_deltas[1, 8:12] = [9.0, 9.0, 9.0, 9.0]                   # the wrong class: ignored
    targets = np.array([[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.5], [0.2, -0.5, 0.2, 0.3]])
    e = np.exp(cls_scores)
    by_hand = np.mean(-np.log(e[[0, 1, 2], [0, 1, 2]] / e.sum(axis=1))) + (1.15 + 2.365) / 3
    got = student.fast_rcnn_loss_loops(cls_scores, bbox_deltas, np.array([0, 1, 2]), targets)
    assert abs(float(got) - by_hand) < 1e-12, "the 3 RoIs by hand"


# TEST random RoIs and classes vs the reference (2 points)
def grade_random(student, rng):
    for _ in range(3):
        check(student, draw_args(rng, 0.3))


# TEST mostly background RoIs and large box errors (1 point)
def grade_background(student, rng):
    check(student, draw_args(rng, 0.8))
### END HIDDEN TESTS

# %% [markdown]
# ## 5. Gradient check of the multi-task loss
#
# `fast_rcnn_loss_backward` returns `dcls = (softmax − onehot) / R` and `dbbox`, nonzero
# only in each foreground RoI's own 4 columns (the slope d or ±1, divided by R). Smooth
# L1's second derivative jumps at |d| = 1, so a finite difference straddling that point
# is slightly off: keep the deltas away from it (random normals almost surely are), and
# check in float64.

# %%
dcls, dbbox = fast_rcnn_loss_backward(1.0, loss_cache)
assert np.array_equal(dbbox[0], np.zeros(12))                  # background RoI: no box grad
assert np.array_equal(dbbox[1, 8:], np.zeros(4))               # wrong class: no box grad
assert np.allclose(dbbox[1, 4:8], np.array([0.5, -0.2, 0.1, 1.0]) / 3)

errors = check_layer(fast_rcnn_loss_forward, fast_rcnn_loss_backward,
                     dict(zip(("cls_scores", "bbox_deltas", "labels", "bbox_targets"),
                              random_args, strict=True)),
                     wrt=["cls_scores", "bbox_deltas"])
for name, err in errors.items():
    print(f"fast_rcnn_loss d{name}: rel error {err:.1e}  (expect < 1e-7)")
assert max(errors.values()) < 1e-7

# %% [markdown]
# ### Exercise 6 — the multi-task loss and its gradients, with the normaliser
#
# Return `(loss, dcls, dbbox)` of the Fast R-CNN loss for `dloss = 1`: the mean
# cross-entropy over all R RoIs plus, for each **foreground** RoI only, the smooth L1
# (β = 1) of **its own class's** four deltas `bbox_deltas[r, 4u:4u+4]` against
# `bbox_targets[r]`, that sum divided by **R** — all RoIs, not only the foreground ones
# (detectron2's normalisation: each RoI weighs the same whatever the batch's foreground
# share). So `dcls = (softmax − onehot) / R`, and `dbbox` is zero except in each
# foreground RoI's own four columns. You may call your functions of Exercises 2 and 3.
# The check: the 3 RoIs by hand of section 4.

# %% nbgrader={"grade": false, "grade_id": "loss_backward_code", "locked": false, "schema_version": 3, "solution": true}
def fast_rcnn_loss_and_grads(cls_scores, bbox_deltas, labels, bbox_targets):
    """(R, K+1), (R, 4(K+1)), (R,), (R, 4) -> (loss float, dcls (R, K+1), dbbox (R, 4(K+1)))."""
    ### BEGIN SOLUTION
    R = len(labels)
    loss_cls, dcls = softmax_ce_loss_and_grad(cls_scores, labels)   # mean over R already
    dbbox = np.zeros_like(bbox_deltas)
    loss_box = 0.0
    for r in np.flatnonzero(labels > 0):                            # foreground RoIs only
        cols = slice(4 * labels[r], 4 * labels[r] + 4)              # their own class
        d = bbox_deltas[r, cols] - bbox_targets[r]
        loss_box += np.where(np.abs(d) < 1, 0.5 * d**2, np.abs(d) - 0.5).sum()
        dbbox[r, cols] = smooth_l1_grad(bbox_deltas[r, cols], bbox_targets[r], 1.0, R)
    return float(loss_cls + loss_box / R), dcls, dbbox
    ### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "loss_backward", "locked": true, "points": 5, "schema_version": 3, "solution": false}
# forbid: minircnn.layers.losses.fast_rcnn_loss_forward, minircnn.layers.losses.fast_rcnn_loss_backward
# forbid: minircnn.layers.losses.softmax_cross_entropy_forward, minircnn.layers.losses.softmax_cross_entropy_backward
# forbid: minircnn.layers.losses.smooth_l1_forward, minircnn.layers.losses.smooth_l1_backward
# The visible check (not graded): the 3 RoIs by hand (the box rows of section 5).
mt_loss, mt_dcls, mt_dbbox = fast_rcnn_loss_and_grads(cls_scores, bbox_deltas, labels, bbox_targets)
assert abs(mt_loss - (cls_by_hand + box_by_hand)) < 1e-12, mt_loss
assert np.allclose(mt_dbbox[1, 4:8], np.array([0.5, -0.2, 0.1, 1.0]) / 3), mt_dbbox[1]
assert np.array_equal(mt_dbbox[0], np.zeros(12)) and np.array_equal(mt_dbbox[1, 8:], np.zeros(4))
### BEGIN HIDDEN TESTS
import numpy as np

from minircnn.gradcheck import THRESHOLD, gradient_error, numeric_gradient_with_bound, rel_error
from minircnn.layers import fast_rcnn_loss_backward, fast_rcnn_loss_forward


def _mt_check(student, args, numeric=True):
    loss, dcls, dbbox = student.fast_rcnn_loss_and_grads(*args)
    want, cache = fast_rcnn_loss_forward(*args)
    want_cls, want_bbox = fast_rcnn_loss_backward(1.0, cache)
    assert abs(loss - float(want)) < 1e-10 * max(1.0, abs(float(want))), "the loss"
    assert rel_error(dcls, want_cls) < 1e-9 and rel_error(dbbox, want_bbox) < 1e-9, "grads"
    if numeric:
        for x, got in ((args[0], dcls), (args[1], dbbox)):
            grad = numeric_gradient_with_bound(lambda: fast_rcnn_loss_forward(*args)[0], x, 1.0)
            assert gradient_error(got, grad) <= THRESHOLD, "vs a numeric gradient"


def _mt_case(rng, R, K, labels=None):
    if labels is None:                                  # at least one background, one not
        labels = rng.integers(0, K + 1, size=R)
        labels[:2] = [0, rng.integers(1, K + 1)]
    deltas = rng.standard_normal((R, 4 * (K + 1))) * 2
    return rng.standard_normal((R, K + 1)), deltas, labels, rng.standard_normal((R, 4))


# TEST the 3 RoIs of section 4 with drawn box errors (1 point)
def grade_mt_small(student, rng):
    scores = np.array([[2.0, 0.5, -1.0], [0.0, 3.0, 1.0], [1.0, 0.0, 2.0]])
    deltas = rng.standard_normal((3, 12)) * 2
    _mt_check(student, (scores, deltas, np.array([0, 1, 2]), rng.standard_normal((3, 4))))


# TEST random RoIs and classes vs numeric gradients of the reference loss (3 points)
def grade_mt_random(student, rng):
    for _ in range(3):
        _mt_check(student, _mt_case(rng, int(rng.integers(4, 12)), int(rng.integers(1, 5))))


# TEST a minibatch without foreground: no box term, no box gradient (1 point)
def grade_mt_background(student, rng):
    R, K = int(rng.integers(2, 9)), int(rng.integers(1, 5))
    _mt_check(student, _mt_case(rng, R, K, labels=np.zeros(R, np.int64)), numeric=False)
### END HIDDEN TESTS

# %% [markdown]
# ## Summary
#
# - Softmax cross-entropy is never satisfied and gives calibrated probabilities; the SVM
#   hinge stops at the margin. Fast R-CNN trains a softmax end to end instead of R-CNN's
#   post-hoc SVMs.
# - Smooth L1 = L2 near 0, L1 beyond |d| = β: bounded gradients, robust to outliers
#   (θ = 1.2 instead of the mean's 2.5 above).
# - Boxes are regressed as RoI-relative deltas (tx, ty, tw, th), scale and translation
#   invariant; weights (10, 10, 5, 5) bring them to unit scale.
# - The multi-task loss = mean CE over all RoIs + smooth L1 on each foreground RoI's own
#   class deltas, divided by R; background and other-class columns get no gradient.
#
# ## Exercises
#
# 1. Add λ (the paper's balance weight) to the loss by scaling `bbox_targets` and
#    `bbox_deltas`. How does the box term scale inside and outside |d| < 1?
# 2. Re-run the robustness experiment with L1 (`beta=0`). Where does θ end, and why is
#    the answer not unique?
# 3. Decode deltas (0, 0, 20, 20) against a 16×16 RoI. What does the clamp at
#    log(1000/16) do, and why is it there?

# %% [markdown] nbgrader={"grade": true, "grade_id": "open_answers", "locked": false, "points": 0, "schema_version": 3, "solution": true}
# ### Your answers to the exercises
#
# ### BEGIN SOLUTION
# **Teacher's edition: model answers and rubrics** (points are a suggestion for a manually graded answer; `minircnn assign` replaces this block by YOUR ANSWER HERE).
#
# **1. λ by scaling.** Scaling both `bbox_targets` and `bbox_deltas` by λ scales every
# difference d by λ. Inside |λd| < 1 the term ½(λd)² grows by λ²; outside, |λd| − ½ grows
# by about λ: so it is not the paper's λ·L_loc (which multiplies the whole term by λ),
# except approximately far outside the quadratic zone. The paper's λ = 1 with
# normalised targets keeps both terms on a comparable scale.
# *Rubric (3):* 1 λ² inside; 1 λ outside; 1 the difference from multiplying the loss.
#
# **2. L1 (`beta=0`).** With L1, each inlier pulls with slope sign(θ − yᵢ) = ±1 and the
# outlier too: the minimiser of Σ|θ − yᵢ| is any median of the six values, here any θ
# between the two middle values (1.0 and 1.1): gradient descent stops somewhere in that
# interval, depending on the step and the start — the answer is not unique because the
# loss is flat between them.
# *Rubric (3):* 1 the final θ measured; 1 "a median"; 1 why not unique (flat segment).
#
# **3. The clamp.** dw = 20 / 5 = 4 (weights 5) and log(1000/16) ≈ 4.14, so (0, 0, 20, 20)
# is just under the clamp: the box grows by e⁴ ≈ 55× to about 873 pixels. Larger deltas
# are clamped to 1000/16 = 62.5×, so a 16-pixel RoI decodes to at most 1000 pixels: the
# clamp stops exp from overflowing or making absurd boxes early in training.
# *Rubric (2):* 1 the decoded box; 1 what the clamp is for.
# ### END SOLUTION
