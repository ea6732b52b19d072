"""Wrong answers to lesson 04's graded exercises, graded by the real judge in
tests/classroom/test_exercises.py: grade_id -> {name: (the points it keeps, its source)}.

A wrong answer is appended to the teacher's solution cell (so helpers defined there stay)
and redefines the graded function; it must not call another exercise's function, since
one submission carries a wrong answer to several exercises at once.
"""

LESSON = "04_multitask_loss"
CE_WRONG = {
    "the gradient of the sum, not the mean (no 1/R)": (0, '''
def softmax_ce_loss_and_grad(logits, labels):
    R = logits.shape[0]
    s = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(s) / np.exp(s).sum(axis=1, keepdims=True)
    loss = -np.log(p[np.arange(R), labels]).mean()
    p[np.arange(R), labels] -= 1
    return float(loss), p
'''),
    "softmax over the wrong axis (columns)": (0, '''
def softmax_ce_loss_and_grad(logits, labels):
    R = logits.shape[0]
    s = logits - logits.max(axis=0, keepdims=True)
    p = np.exp(s) / np.exp(s).sum(axis=0, keepdims=True)
    loss = -np.log(p[np.arange(R), labels]).mean()
    p[np.arange(R), labels] -= 1
    return float(loss), p / R
'''),
    # right on small scores, inf/nan in the thousands
    "no max subtraction (overflows)": (3, '''
def softmax_ce_loss_and_grad(logits, labels):
    R = logits.shape[0]
    with np.errstate(over="ignore", invalid="ignore"):
        p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        loss = -np.log(p[np.arange(R), labels]).mean()
    p[np.arange(R), labels] -= 1
    return float(loss), p / R
'''),
}

SL1_WRONG = {
    "forgets the normaliser": (0, '''
def smooth_l1_grad(pred, target, beta, normalizer):
    d = pred - target
    if beta == 0:
        return np.sign(d)
    return np.where(np.abs(d) < beta, d / beta, np.sign(d))
'''),
    "the sign the wrong way (target - pred)": (0, '''
def smooth_l1_grad(pred, target, beta, normalizer):
    d = target - pred
    if beta == 0:
        return np.sign(d) / normalizer
    return np.where(np.abs(d) < beta, d / beta, np.sign(d)) / normalizer
'''),
    # right for L1, where beta plays no part
    "forgets 1/beta inside": (1, '''
def smooth_l1_grad(pred, target, beta, normalizer):
    d = pred - target
    return np.where(np.abs(d) < beta, d, np.sign(d)) / normalizer
'''),
}

_CODER = '''
def encode(reference, gt, weights):
    wx, wy, ww, wh = weights
    r_w, r_h = reference[:, 2] - reference[:, 0] + PLUS, reference[:, 3] - reference[:, 1] + PLUS
    g_w, g_h = gt[:, 2] - gt[:, 0] + PLUS, gt[:, 3] - gt[:, 1] + PLUS
    r_cx, r_cy = reference[:, 0] + CENTRE * r_w, reference[:, 1] + CENTRE * r_h
    g_cx, g_cy = gt[:, 0] + CENTRE * g_w, gt[:, 1] + CENTRE * g_h
    return np.stack([wx * (g_cx - r_cx) / r_w, wy * (g_cy - r_cy) / r_h,
                     ww * np.log(g_w / r_w), wh * np.log(g_h / r_h)], axis=1)


def decode(deltas, reference, weights):
    wx, wy, ww, wh = weights
    r_w, r_h = reference[:, 2] - reference[:, 0] + PLUS, reference[:, 3] - reference[:, 1] + PLUS
    r_cx, r_cy = reference[:, 0] + CENTRE * r_w, reference[:, 1] + CENTRE * r_h
    cx = deltas[:, 0] / wx * r_w + r_cx
    cy = deltas[:, 1] / wy * r_h + r_cy
    w = np.exp(np.minimum(deltas[:, 2] / ww, CLAMP)) * r_w
    h = np.exp(np.minimum(deltas[:, 3] / wh, CLAMP)) * r_h
    return np.stack([cx - CENTRE * w, cy - CENTRE * h, cx + (1 - CENTRE) * w - PLUS,
                     cy + (1 - CENTRE) * h - PLUS], axis=1)
'''


def _coder(plus="0", centre="0.5", clamp="np.log(1000 / 16)"):
    return _CODER.replace("PLUS", plus).replace("CENTRE", centre).replace("CLAMP", clamp)


BOX_WRONG = {
    "widths with +1 (the old VOC convention)": (0, _coder(plus="1")),
    "moves the corner x1, not the centre": (0, _coder(centre="0")),
    # encode is right: the example and encode's test
    "no clamp before exp": (3, _coder(clamp="np.inf")),
}

_LOSS = '''
def fast_rcnn_loss_and_grads(cls_scores, bbox_deltas, labels, bbox_targets):
    R = len(labels)
    s = cls_scores - cls_scores.max(axis=1, keepdims=True)
    p = np.exp(s) / np.exp(s).sum(axis=1, keepdims=True)
    loss = -np.log(p[np.arange(R), labels]).sum() / R
    p[np.arange(R), labels] -= 1
    dcls = p / CLS_NORM
    dbbox = np.zeros_like(bbox_deltas)
    fg = np.flatnonzero(labels > 0) if FG_ONLY else np.arange(R)
    norm = BOX_NORM
    for r in fg:
        cols = COLS
        d = bbox_deltas[r, cols] - bbox_targets[r].reshape(1, 4).repeat(
            bbox_deltas[r, cols].size // 4, axis=0).ravel()
        loss += np.where(np.abs(d) < 1, 0.5 * d**2, np.abs(d) - 0.5).sum() / norm
        dbbox[r, cols] = np.where(np.abs(d) < 1, d, np.sign(d)) / norm
    return float(loss), dcls, dbbox
'''


def _loss(cls_norm="R", fg_only="True", box_norm="R",
          cols="slice(4 * labels[r], 4 * labels[r] + 4)"):
    return (_LOSS.replace("CLS_NORM", cls_norm).replace("FG_ONLY", fg_only)
            .replace("BOX_NORM", box_norm).replace("COLS", cols))


LOSS_WRONG = {
    "forgets the normaliser in dcls": (0, _loss(cls_norm="1")),
    "box loss on background RoIs too (class 0's columns)": (0, _loss(fg_only="False")),
    # no foreground: nothing to normalise, the background test passes
    "divides the box term by the foreground count, not R": (
        1, _loss(box_norm="max(1, int((labels > 0).sum()))")),
    "box gradient in every class's columns": (1, _loss(cols="slice(4, None)")),
}

CASES = {"softmax_ce": CE_WRONG, "smooth_l1_grad": SL1_WRONG, "box_coding": BOX_WRONG,
         "loss_backward": LOSS_WRONG}
