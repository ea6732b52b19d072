"""Wrong answers to lesson 05's graded exercises, graded by the real judge in
tests/classroom/test_exercises.py: grade_id -> {name: (the points it keeps, its source)}.

A wrong answer is appended to the teacher's solution cell (so helpers defined there stay)
and redefines the graded function; it must not call another exercise's function, since
one submission carries a wrong answer to several exercises at once.
"""

LESSON = "05_sampling"
_MB = '''
def build_minibatch(max_ious, images_per_batch, rois_per_batch, seed, *, fg_fraction=0.25,
                    fg_iou=0.5, bg_iou=(0.1, 0.5)):
    rng = np.random.default_rng(seed)
    images = IMAGES
    per_image = rois_per_batch // images_per_batch
    cols = [], [], []
    for i in images:
        ious = max_ious[i]
        fg_c = np.flatnonzero(ious >= fg_iou)
        bg_c = np.flatnonzero((ious >= bg_iou[0]) & (ious < bg_iou[1]))
        n_fg = min(int(round(fg_fraction * per_image)), fg_c.size)
        n_bg = min(per_image - n_fg, bg_c.size)
        fg, bg = PICK
        picked = np.concatenate([fg, bg]).astype(np.int64)
        cols[0].append(np.full(picked.size, i, dtype=np.int64))
        cols[1].append(picked)
        cols[2].append(np.repeat(np.array([1, 0]), [fg.size, bg.size]).astype(np.int64))
    return tuple(np.concatenate(c) for c in cols)
'''
_RANDOM_IMAGES = "rng.choice(len(max_ious), size=images_per_batch, replace=False)"
_RANDOM_PICK = "rng.choice(fg_c, n_fg, replace=False), rng.choice(bg_c, n_bg, replace=False)"


def _mb(images=_RANDOM_IMAGES, pick=_RANDOM_PICK):
    return _MB.replace("IMAGES", images).replace("PICK", pick)


# Ignores the fraction: fills R/N from foreground and background together, uniformly.
_JOINT = '''
def build_minibatch(max_ious, images_per_batch, rois_per_batch, seed, *, fg_fraction=0.25,
                    fg_iou=0.5, bg_iou=(0.1, 0.5)):
    rng = np.random.default_rng(seed)
    images = rng.choice(len(max_ious), size=images_per_batch, replace=False)
    cols = [], [], []
    for i in images:
        ious = max_ious[i]
        pool = np.flatnonzero(ious >= bg_iou[0])
        picked = rng.choice(pool, min(rois_per_batch // images_per_batch, pool.size), replace=False)
        cols[0].append(np.full(picked.size, i, dtype=np.int64))
        cols[1].append(picked.astype(np.int64))
        cols[2].append((ious[picked] >= fg_iou).astype(np.int64))
    return tuple(np.concatenate(c) for c in cols)
'''

MB_WRONG = {
    "deterministic: the first images and the first candidates": (0, _mb(
        images="np.arange(images_per_batch)", pick="fg_c[:n_fg], bg_c[:n_bg]")),
    "ignores the foreground fraction": (0, _JOINT),
    # the RoIs are sampled well; only the images' uniformity test catches it
    "always the first images": (5, _mb(images="np.arange(images_per_batch)")),
    # images fine, RoIs never sampled
    "the highest-IoU candidates instead of a sample": (1, _mb(
        pick="fg_c[np.argsort(-ious[fg_c])][:n_fg], bg_c[np.argsort(-ious[bg_c])][:n_bg]")),
}
CASES = {"minibatch": MB_WRONG}
