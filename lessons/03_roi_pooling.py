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
# # Lesson 03 — RoI pooling vs SPP (and RoIAlign)
#
# **Goal.** Fast R-CNN runs the backbone *once* per image and then cuts every region of
# interest (RoI) out of the shared feature map, max-pooling it into a fixed PH × PW grid
# so RoIs of any size feed the same fully connected layers. We work the operation out by
# hand, see where it rounds (quantisation), follow its gradient back to the argmax
# cells, compare it with SPP-net's pyramid, and see how RoIAlign removes the rounding.
#
# | name | shape | meaning |
# |---|---|---|
# | `features` | (N, C, H, W) | backbone feature maps of N images |
# | `rois` | (R, 5) | `[batch_index, x1, y1, x2, y2]` in **image pixels** |
# | `spatial_scale` | scalar | feature cells per image pixel (1/16 for VGG16 conv5) |
# | `out` | (R, C, PH, PW) | one pooled grid per RoI |
# | SPP `out` | (R, C·Σ l²) | pyramid levels l (e.g. 4, 2, 1), flattened channel-first, concatenated |
# | `dfeatures` | (N, C, H, W) | gradient, summed over all RoIs and bins |
#
# Semantics follow `torchvision.ops.roi_pool` / `roi_align` exactly; code in
# `minircnn/layers/roi_pool.py` and `roi_align.py`, derivations in `docs/layers/roi_pool.md`.

# %%
import bdb
import inspect
import time

import matplotlib.pyplot as plt
import numpy as np

import minircnn.layers.roi_pool as roi_pool_module
from minircnn import viz
from minircnn.data import ShapesDataset
from minircnn.gradcheck import check_layer, rel_error
from minircnn.layers import (
    roi_align_backward_naive,
    roi_align_forward,
    roi_align_forward_naive,
    roi_pool_backward,
    roi_pool_backward_naive,
    roi_pool_bins,
    roi_pool_forward,
    roi_pool_forward_naive,
    roi_pool_forward_vectorized,
    spp_backward,
    spp_forward,
)

rng = np.random.default_rng(0)

# %% [markdown]
# ## 1. The worked example
#
# One 4×4 feature map holding 0..15, `spatial_scale = 0.1` (one cell per 10 pixels),
# a 2×2 output grid, two RoIs.
#
# **RoI A = (0, 0, 0, 20, 20)**: scaled and rounded, x1 = y1 = 0, x2 = y2 = 2. The end is
# *inclusive*, so the RoI spans cells 0..2: 3 × 3 cells. Each of the 2 bins per axis is
# 3/2 = 1.5 cells; bin p covers `floor(p·1.5) .. ceil((p+1)·1.5) − 1`, i.e. cells 0..1 and
# 1..2 — the bins **overlap** by a cell. Maxima: `[[5, 6], [9, 10]]`.
#
# **RoI B = (0, 0, 10, 30, 30)**: x 0..3 (4 cells, bins of 2: 0..1, 2..3), y 1..3 (3 cells,
# bins 1..2 and 2..3). Maxima: `[[9, 11], [13, 15]]`.

# %%
features = np.arange(16, dtype=np.float64).reshape(1, 1, 4, 4)   # (N=1, C=1, 4, 4)
rois = np.array([[0, 0, 0, 20, 20],
                 [0, 0, 10, 30, 30]], dtype=np.float64)          # (R=2, 5)
out_by_hand = np.array([[[5.0, 6.0], [9.0, 10.0]],
                        [[9.0, 11.0], [13.0, 15.0]]])            # (R, PH, PW)

out, cache = roi_pool_forward_naive(features, rois, output_size=2, spatial_scale=0.1)
print(out[:, 0])
assert out.shape == (2, 1, 2, 2)
assert np.array_equal(out[:, 0], out_by_hand)

bins = roi_pool_bins(rois, (2, 2), 0.1, 4, 4)
print("RoI B: rows of each bin", np.stack([bins.hstart[1], bins.hend[1] - 1], axis=1).tolist(),
      "columns of each bin", np.stack([bins.wstart[1], bins.wend[1] - 1], axis=1).tolist())
assert bins.hstart[1].tolist() == [1, 2] and bins.hend[1].tolist() == [3, 4]

# %% [markdown]
# ### Exercise 1 — RoI max pooling with loops
#
# Write `roi_pool_loops` yourself, following torchvision's recipe:
# 1. scale the corners and round them **half away from zero** (C's `round`, not
#    `np.round`, which rounds 2.5 to 2);
# 2. RoI size = end − start + 1 (inclusive end), at least 1;
# 3. bin `ph` covers rows `start + floor(ph·bin_h)` up to (excluding)
#    `start + ceil((ph+1)·bin_h)`, clipped to the map; same for columns;
# 4. each output is the max of its bin, 0 for an empty bin.

# %% nbgrader={"grade": false, "grade_id": "roi_pool_code", "locked": false, "schema_version": 3, "solution": true}
def roi_pool_loops(features, rois, *, output_size, spatial_scale):
    """features (N, C, H, W), rois (R, 5) -> out (R, C, PH, PW) by explicit loops."""
    PH, PW = output_size
    ### BEGIN SOLUTION
    N, C, H, W = features.shape
    out = np.zeros((len(rois), C, PH, PW))

    def c_round(v):   # C's round, half away from zero; exact part test, safe in float32
        whole = np.floor(abs(v))
        return int(np.copysign(whole + (abs(v) - whole >= 0.5), v))

    for r, (n, x1, y1, x2, y2) in enumerate(rois):
        x1, y1, x2, y2 = (c_round(v * spatial_scale) for v in (x1, y1, x2, y2))
        bin_h = max(y2 - y1 + 1, 1) / PH
        bin_w = max(x2 - x1 + 1, 1) / PW
        for ph in range(PH):
            h0 = min(max(y1 + int(np.floor(ph * bin_h)), 0), H)
            h1 = min(max(y1 + int(np.ceil((ph + 1) * bin_h)), 0), H)
            for pw in range(PW):
                w0 = min(max(x1 + int(np.floor(pw * bin_w)), 0), W)
                w1 = min(max(x1 + int(np.ceil((pw + 1) * bin_w)), 0), W)
                if h1 > h0 and w1 > w0:
                    out[r, :, ph, pw] = features[int(n), :, h0:h1, w0:w1].max(axis=(1, 2))
    return out
    ### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "roi_pool", "locked": true, "points": 7, "schema_version": 3, "solution": false}
# forbid: minircnn.layers.roi_pool.roi_pool_forward, minircnn.layers.roi_pool.spp_forward
# forbid: minircnn.layers.roi_pool.roi_pool_forward_naive, minircnn.layers.roi_pool.roi_pool_bins
# forbid: minircnn.layers.roi_pool.roi_pool_forward_vectorized
# Your checks: the worked example, then random RoIs on two images vs the library.
mine = roi_pool_loops(features, rois, output_size=(2, 2), spatial_scale=0.1)
assert np.array_equal(mine[:, 0], out_by_hand), mine
feats = rng.standard_normal((2, 3, 10, 12))
xy = rng.uniform(0, 190, size=(12, 4))
rand_rois = np.column_stack([np.arange(12) % 2,
                             np.minimum(xy[:, 0], xy[:, 2]), np.minimum(xy[:, 1], xy[:, 3]),
                             np.maximum(xy[:, 0], xy[:, 2]), np.maximum(xy[:, 1], xy[:, 3])])
rand_rois[0, 1:] = [8, 8, 40, 24]                                 # corners land on .5 cells
ref, _ = roi_pool_forward(feats, rand_rois, output_size=(3, 3), spatial_scale=1 / 16)
assert rel_error(roi_pool_loops(feats, rand_rois, output_size=(3, 3), spatial_scale=1 / 16),
                 ref) < 1e-12
### BEGIN HIDDEN TESTS
from minircnn.layers.roi_pool import roi_pool_forward_naive


def random_rois(rng, count, num_images, extent):
    """(count, 5) RoIs: random corners in [0, extent), some past the border, some on .5."""
    xy = rng.uniform(0, extent, size=(count, 4))
    xy[: count // 3] = np.round(xy[: count // 3] / 8) * 8       # scaled by 1/16: on .5
    return np.column_stack([rng.integers(0, num_images, count),
                            np.minimum(xy[:, 0], xy[:, 2]), np.minimum(xy[:, 1], xy[:, 3]),
                            np.maximum(xy[:, 0], xy[:, 2]), np.maximum(xy[:, 1], xy[:, 3])])


def check(student, features, rois, output_size, spatial_scale):
    want, _ = roi_pool_forward_naive(features, rois, output_size=output_size,
                                     spatial_scale=spatial_scale)
    got = student.roi_pool_loops(features, rois, output_size=output_size,
                                 spatial_scale=spatial_scale)
    assert np.shape(got) == want.shape, f"shape {np.shape(got)}, expected {want.shape}"
    assert np.array_equal(got, want), f"output {output_size}, scale {spatial_scale}"


# TEST the worked example (2 points)
def grade_worked(student, rng):
    features = np.arange(16, dtype=np.float64).reshape(1, 1, 4, 4)
    rois = np.array([[0, 0, 0, 20, 20], [0, 0, 10, 30, 30]], dtype=np.float64)
    got = student.roi_pool_loops(features, rois, output_size=(2, 2), spatial_scale=0.1)
    want = [[[5.0, 6.0], [9.0, 10.0]], [[9.0, 11.0], [13.0, 15.0]]]
    assert np.array_equal(np.asarray(got)[:, 0], want), "the worked example"


# TEST random overlapping RoIs on several images vs the reference (3 points)
def grade_random(student, rng):
    N, C = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    H, W = (int(v) for v in rng.integers(6, 14, size=2))
    features = rng.standard_normal((N, C, H, W))
    PH, PW = (int(v) for v in rng.integers(1, 5, size=2))
    check(student, features, random_rois(rng, 12, N, 16 * max(H, W)), (PH, PW), 1 / 16)


# TEST RoIs smaller than the grid, past the border and 1x1, at scale 1/8 (2 points)
def grade_edges(student, rng):
    features = rng.standard_normal((1, 2, 9, 9))
    size = rng.uniform(0, 3, size=(4, 1))
    small = np.column_stack([np.zeros(4), rng.uniform(0, 60, (4, 2))])
    small = np.column_stack([small, small[:, 1:] + size])         # tiny and 1x1 RoIs
    border = random_rois(rng, 4, 1, 110)                          # up to 110 / 8 > 9 cells
    check(student, features, np.concatenate([small, border]), (2, 3), 1 / 8)
### END HIDDEN TESTS

# %% [markdown]
# ## 2. Quantisation: where RoI pooling rounds
#
# Rounding happens twice: the RoI corners snap to whole feature cells, and the bins snap
# to whole cells (floor / ceil). At `spatial_scale = 1/16` one cell is 16 pixels: every
# corner in a 16-pixel range snaps to the same cell edge, so a box can move by up to 15
# pixels without the pooled cells changing, and its pooled region is off by up to half a
# cell, 8 pixels (both counted below). The rounding is C's `round`: 0.5 goes **up** to 1
# (NumPy's `np.round` would give 0).
#
# The picture shows the 7×7 bins of a small RoI on a shapes image: with fewer than 7
# cells across, bins repeat the same cells (outlined in cyan; an empty bin would be
# hatched red).

# %%
print("C round(0.5, 1.5, 2.5) =", roi_pool_module.c_round(np.array([0.5, 1.5, 2.5])),
      " np.round =", np.round([0.5, 1.5, 2.5]))
assert roi_pool_module.c_round(np.array([0.5, 1.5, 2.5])).tolist() == [1, 2, 3]
corners = np.arange(0, 128)                                     # whole-pixel x1 of a box
snapped = roi_pool_module.c_round(corners / 16)                 # the cell edge it snaps to
runs = np.diff(np.flatnonzero(np.diff(snapped)))                # pixels per snapped edge
misalignment = np.abs(snapped * 16 - corners).max()
print(f"a corner moves by up to {runs.max() - 1} px with the same cell edge; the pooled "
      f"region is off the box by up to {misalignment} px")
assert runs.max() - 1 == 16 - 1 and misalignment == 16 // 2

sample = ShapesDataset(1, image_size=128, seed=0)[0]
roi = np.array([0.0, 24.0, 40.0, 88.0, 72.0])                   # 64 x 32 pixels
small_bins = roi_pool_bins(roi[None], (7, 7), 1 / 16, 8, 8)
cells_x = (int(small_bins.wstart.min()), int(small_bins.wend.max()))
row_bins = np.stack([small_bins.hstart[0], small_bins.hend[0] - 1], axis=1)   # (7, 2)
print("rows of the 7 bins (first, last):", row_bins.tolist())
# x1 = 24 px -> 1.5 cells -> rounds to 2, i.e. the pooled region starts at pixel 32: 8 px off.
assert cells_x[0] * 16 - roi[1] == 8
assert len({tuple(b) for b in row_bins.tolist()}) < 7             # some bins repeat

fig, axes = plt.subplots(1, 2, figsize=(9, 4.5))
viz.show_roi_bins(sample["image"], roi, output_size=(7, 7), spatial_scale=1 / 16, ax=axes[0])
viz.show_roi_bins(sample["image"], roi, output_size=(2, 2), spatial_scale=1 / 16, ax=axes[1])
assert len(axes[0].patches) == 1 + 7 * 7                          # the RoI and its bins
fig.tight_layout()

# %% [markdown]
# ## 3. Backward: gradients go to the argmax cells
#
# Each output *is* one input cell (its bin's max), so its gradient goes to that cell, and
# cells picked by several bins or RoIs receive the sum. In the worked example with
# `dout = 1`: RoI A picks 5, 6, 9, 10 and RoI B picks 9, 11, 13, 15 — cell 9 is picked
# twice, so `dfeatures` is 2 there, 1 at the other six winners, 0 elsewhere.

# %%
dfeatures_by_hand = np.zeros(16)
dfeatures_by_hand[[5, 6, 10, 11, 13, 15]] = 1.0
dfeatures_by_hand[9] = 2.0
dfeatures_by_hand = dfeatures_by_hand.reshape(4, 4)

dfeatures = roi_pool_backward_naive(np.ones_like(out), cache)
print(dfeatures[0, 0])
assert np.array_equal(dfeatures[0, 0], dfeatures_by_hand)
assert np.array_equal(roi_pool_backward(np.ones_like(out), cache), dfeatures)

# %% [markdown]
# ### Exercise 2 — RoI max pooling backward, by routing to the argmax
#
# The forward pass remembers, for every output `out[r, c, ph, pw]`, which cell won its
# bin. Given that cache as plain arrays, write the backward pass:
#
# - `argmax` (R, C, PH, PW): `h·W + w` of the winning cell in the map
#   `features[batch_index[r], c]`, or **−1** for an empty bin (which has no input, so no
#   gradient);
# - `batch_index` (R,): the image each RoI was cut from; `features_shape` = (N, C, H, W).
#
# `dfeatures[n, c, h, w]` = Σ of `dout` over all outputs (of all RoIs and bins) whose
# winner is that cell. Bins overlap and RoIs overlap, so one cell can win several times:
# **add**, never assign. Loops over r, c, ph, pw are fine (that is the point).
# The check below routes `dout = 1` through the worked example: cell 9 must get 2.

# %% nbgrader={"grade": false, "grade_id": "roi_pool_backward_code", "locked": false, "schema_version": 3, "solution": true}
def roi_pool_backward_loops(dout, argmax, batch_index, features_shape):
    """dout (R, C, PH, PW), argmax (R, C, PH, PW) of h*W + w or -1, batch_index (R,)
    -> dfeatures of shape features_shape = (N, C, H, W)."""
    ### BEGIN SOLUTION
    N, C, H, W = features_shape
    dfeatures = np.zeros(features_shape)
    R, _, PH, PW = argmax.shape
    for r in range(R):
        n = int(batch_index[r])
        for c in range(C):
            for ph in range(PH):
                for pw in range(PW):
                    idx = int(argmax[r, c, ph, pw])
                    if idx < 0:                      # empty bin: no input, no gradient
                        continue
                    h, w = divmod(idx, W)            # idx = h * W + w
                    dfeatures[n, c, h, w] += dout[r, c, ph, pw]
    return dfeatures
    ### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "roi_pool_backward", "locked": true, "points": 6, "schema_version": 3, "solution": false}
# forbid: minircnn.layers.roi_pool.roi_pool_backward, minircnn.layers.roi_pool.roi_pool_backward_naive
# forbid: minircnn.layers.roi_pool.spp_backward
# The visible check (not graded): the worked example with dout = 1.
argmax_hw = np.where(cache.argmax >= 0, cache.argmax % 16, -1)    # flat index -> h*W + w
mine = roi_pool_backward_loops(np.ones((2, 1, 2, 2)), argmax_hw, np.zeros(2, int), (1, 1, 4, 4))
assert np.array_equal(mine[0, 0], dfeatures_by_hand), mine[0, 0]
### BEGIN HIDDEN TESTS
import numpy as np  # the hidden tests run in the grader's process

from minircnn.gradcheck import THRESHOLD, gradient_error, numeric_gradient_with_bound, rel_error
from minircnn.layers import roi_pool_backward, roi_pool_forward


def _random_case(rng, border=False):
    """Two images, distinct feature values (no ties under a finite difference), H != W,
    overlapping RoIs: inside the map (no empty bin) or, with border, past its edges."""
    N, C = 2, int(rng.integers(1, 3))
    H, W = (int(v) for v in rng.choice(np.arange(4, 9), size=2, replace=False))
    features = rng.permutation(N * C * H * W).reshape(N, C, H, W) * 0.1
    R = int(rng.integers(3, 7))
    low, high = (-30, 16 * max(H, W) + 60) if border else (0, 16 * (min(H, W) - 1))
    xy = rng.uniform(low, high, (R, 4))
    rois = np.column_stack([np.arange(R) % 2, np.minimum(xy[:, 0], xy[:, 2]),
                            np.minimum(xy[:, 1], xy[:, 3]), np.maximum(xy[:, 0], xy[:, 2]),
                            np.maximum(xy[:, 1], xy[:, 3])])
    rois[-1] = rois[0]                                     # one RoI twice: overlap for sure
    size = (int(rng.integers(2, 5)), int(rng.integers(2, 5)))
    return features, rois, size


def _student_backward(student, features, rois, size, dout):
    _, cache = roi_pool_forward(features, rois, output_size=size, spatial_scale=1 / 16)
    H, W = features.shape[2:]
    argmax = np.where(cache.argmax >= 0, cache.argmax % (H * W), -1)
    got = student.roi_pool_backward_loops(dout, argmax, rois[:, 0].astype(np.int64),
                                          tuple(features.shape))
    return got, roi_pool_backward(dout, cache)


# TEST the worked example, on the second of two images: cell 9 wins twice (2 points)
def grade_pool_worked_example(student, rng):
    features = np.stack([rng.permutation(16).reshape(1, 4, 4) + 100.0,
                         np.arange(16.0).reshape(1, 4, 4)])            # (2, 1, 4, 4)
    rois = np.array([[1, 0, 0, 20, 20], [1, 0, 10, 30, 30]], dtype=np.float64)
    dout = rng.uniform(0.5, 2.0, size=(2, 1, 2, 2))
    _, cache = roi_pool_forward(features, rois, output_size=2, spatial_scale=0.1)
    want = roi_pool_backward(dout, cache)
    argmax = np.where(cache.argmax >= 0, cache.argmax % 16, -1)
    got = student.roi_pool_backward_loops(dout, argmax, np.ones(2, np.int64), (2, 1, 4, 4))
    assert got.shape == (2, 1, 4, 4) and rel_error(got, want) < 1e-12, "dfeatures"


# TEST random overlapping RoIs on maps with H != W vs a numeric gradient (3 points)
def grade_pool_random(student, rng):
    for _ in range(3):
        features, rois, size = _random_case(rng)
        dout = rng.standard_normal((len(rois), features.shape[1], *size))
        got, library = _student_backward(student, features, rois, size, dout)
        numeric = numeric_gradient_with_bound(lambda: roi_pool_forward(   # noqa: B023
            features, rois, output_size=size, spatial_scale=1 / 16)[0], features, dout)  # noqa: B023
        assert gradient_error(got, numeric) <= THRESHOLD and rel_error(got, library) < 1e-12


# TEST RoIs past the border: empty bins get no gradient (1 point)
def grade_pool_empty_bins(student, rng):
    for _ in range(3):
        features, rois, size = _random_case(rng, border=True)
        rois[0, 1:] = [16 * features.shape[3] + 8, 8, 16 * features.shape[3] + 40, 40]
        dout = rng.standard_normal((len(rois), features.shape[1], *size))
        got, library = _student_backward(student, features, rois, size, dout)
        assert rel_error(got, library) < 1e-12
### END HIDDEN TESTS

# %% [markdown]
# Gradient check: use features with **distinct, well-separated values** (a permutation
# times 0.1), so that a ±h step never changes which cell wins a bin.

# %%
perm_features = rng.permutation(2 * 3 * 6 * 6).reshape(2, 3, 6, 6) * 0.1
check_rois = np.array([[0, 0, 0, 50, 50], [1, 16, 8, 60, 40], [0, 30, 30, 35, 35]], float)
for fwd, bwd in ((roi_pool_forward_naive, roi_pool_backward_naive),
                 (roi_pool_forward, roi_pool_backward)):
    err = check_layer(fwd, bwd, {"features": perm_features, "rois": check_rois},
                      kwargs=dict(output_size=(3, 3), spatial_scale=0.1),
                      wrt=["features"])["features"]
    print(f"{fwd.__name__}: dfeatures rel error {err:.1e}  (expect < 1e-7)")
    assert err < 1e-7

# %% [markdown]
# ## 4. Vectorized version: a loop over the offsets inside a bin
#
# The loops above visit R · C · PH · PW bins one by one. `roi_pool_forward_vectorized`
# turns the loops inside out, as `max_pool2d_forward` does for max pooling: it loops only
# over the cell offsets `(kh, kw)` of the largest bin (KH × KW), and at each offset reads
# cell `(hstart + kh, wstart + kw)` of **every** bin, RoI and channel in one gather. The
# cell counts where it lies inside its bin and is strictly larger than the max so far;
# offsets run in row-major order, so the first maximum wins, exactly as in the loops.
# Read it (below), then check that it matches the loops bit for bit, argmax included.

# %%
print(inspect.getsource(roi_pool_forward_vectorized))

# %%
feat_big = rng.standard_normal((2, 16, 16, 16))
k = 64
corners = rng.uniform(0, 250, size=(k, 4))
rois_big = np.column_stack([np.arange(k) % 2,
                            np.minimum(corners[:, 0], corners[:, 2]),
                            np.minimum(corners[:, 1], corners[:, 3]),
                            np.maximum(corners[:, 0], corners[:, 2]),
                            np.maximum(corners[:, 1], corners[:, 3])])
times, results = {}, {}
for name, forward in (("naive", roi_pool_forward_naive),
                      ("vectorized", roi_pool_forward_vectorized),
                      ("tables (the default)", roi_pool_forward)):
    start = time.perf_counter()
    results[name] = forward(feat_big, rois_big, output_size=(7, 7), spatial_scale=1 / 16)
    times[name] = time.perf_counter() - start
    print(f"roi_pool forward {name:>20}, {k} RoIs x 16 channels: {times[name] * 1e3:7.1f} ms")
out_naive, cache_naive = results["naive"]
for out_tier, cache_tier in results.values():
    assert np.array_equal(out_naive, out_tier)
    assert np.array_equal(cache_naive.argmax, cache_tier.argmax)
# the caches are interchangeable: the naive backward steps through the vectorized cache
dout_big = rng.standard_normal(out_naive.shape)
assert rel_error(roi_pool_backward_naive(dout_big, results["vectorized"][1]),
                 roi_pool_backward(dout_big, cache_naive)) < 1e-9

# %% [markdown]
# The default `roi_pool_forward`, used for training, gives the same bits again but
# spends its work differently: it builds a table of rectangle maxima once and answers each
# bin by looking it up (`minircnn/layers/roi_max_tables.py`, the advanced path, explained
# in `docs/layers/roi_pool.md`). All three share one backward, `roi_pool_backward`, which
# scatters `dout` to the argmax cells with `xp.add.at`.

# %% [markdown]
# ## 5. A breakpoint inside `roi_pool.py`, hit from this notebook
#
# Everything here is plain Python, so you can step through the library itself:
#
# - **JupyterLab / VS Code**: open `minircnn/layers/roi_pool.py`, click in the gutter next to
#   the line `if features[n, c, h, w] > best:` inside `roi_pool_forward_naive`, then run the
#   worked-example cell with the debugger on ("Debug Cell" in VS Code, the bug icon in
#   JupyterLab). Execution stops there; watch `r, ph, pw, h, w, best` change.
# - **pdb**: `import pdb; pdb.runcall(roi_pool_forward_naive, features, rois, output_size=2,
#   spatial_scale=0.1)`, then `b minircnn/layers/roi_pool.py:<line>` and `c`.
#
# Debuggers are built on Python's `bdb` module. The cell below uses it directly: it sets a
# breakpoint on that line, runs the worked example, and records the variables at every
# stop. Each bin of the example covers 2×2 cells and there are 2 RoIs × 4 bins, so the
# comparison line must be hit 2 · 4 · 4 = 32 times.

# %%
class RecordingDebugger(bdb.Bdb):
    """A debugger that, instead of waiting for you, notes the loop indices and continues."""

    def __init__(self):
        super().__init__()
        self.stops = []

    def user_line(self, frame):
        if self.break_here(frame):
            self.stops.append({k: frame.f_locals[k] for k in ("r", "ph", "pw", "h", "w")})
        self.set_continue()


source, first = inspect.getsourcelines(roi_pool_forward_naive)
line = first + next(i for i, text in enumerate(source) if "> best" in text)
path = inspect.getsourcefile(roi_pool_forward_naive)
print(f"breakpoint at {path}:{line}: {source[line - first].strip()}")

debugger = RecordingDebugger()
assert debugger.set_break(path, line) is None                    # None: breakpoint accepted
traced_out, _ = debugger.runcall(roi_pool_forward_naive, features, rois,
                                 output_size=2, spatial_scale=0.1)
debugger.clear_all_breaks()
print(f"hit {len(debugger.stops)} times; first stops: {debugger.stops[:3]}")
assert len(debugger.stops) == 32
assert debugger.stops[0] == dict(r=0, ph=0, pw=0, h=0, w=0)
assert np.array_equal(traced_out[:, 0], out_by_hand)

# %% [markdown]
# ## 6. SPP: a pyramid of RoI poolings
#
# SPP-net pools each RoI at several grid sizes (levels) and concatenates them, giving a
# fixed-length vector with coarse and fine layout. Fast R-CNN's RoI pooling is the
# one-level special case. With levels (2, 1) on the worked example each RoI gives
# 4 + 1 values per channel: its 2×2 grid, then the max over the whole RoI.

# %%
spp_by_hand = np.array([[5.0, 6.0, 9.0, 10.0, 10.0],
                        [9.0, 11.0, 13.0, 15.0, 15.0]])
spp_out, spp_cache = spp_forward(features, rois, levels=(2, 1), spatial_scale=0.1)
print(spp_out)
assert np.array_equal(spp_out, spp_by_hand)

levels = (4, 2, 1)
spp_big, _ = spp_forward(feat_big, rois_big, levels=levels, spatial_scale=1 / 16)
parts = [roi_pool_forward(feat_big, rois_big, output_size=lv, spatial_scale=1 / 16)[0]
         for lv in levels]
assert spp_big.shape == (k, 16 * (16 + 4 + 1))
assert np.array_equal(spp_big, np.concatenate([p.reshape(k, -1) for p in parts], axis=1))

err = check_layer(spp_forward, spp_backward, {"features": perm_features, "rois": check_rois},
                  kwargs=dict(levels=(3, 2, 1), spatial_scale=0.1), wrt=["features"])["features"]
print(f"spp dfeatures rel error {err:.1e}  (expect < 1e-7)")
assert err < 1e-7

# %% [markdown]
# ### Exercise 3 — SPP backward
#
# SPP's output row of RoI r is `[level l0's (C, l0, l0) block flattened, level l1's
# block, ...]`, each block **channel-first** (index `c·l² + i·l + j`). Its backward
# cuts `dout` (R, C·Σ l²) back into one (R, C, l, l) block per level, in the order of
# `levels`, routes each block to the argmax cells of that level, and **sums** the levels
# (every level reads the same features). `argmaxes[k]` is level k's argmax array, as in
# Exercise 2. You may call your `roi_pool_backward_loops`.
# The check: levels (2, 1) on the worked example; the 1×1 level's winner of RoI A is
# cell 10, which also wins a 2×2 bin, so it collects 2.

# %% nbgrader={"grade": false, "grade_id": "spp_backward_code", "locked": false, "schema_version": 3, "solution": true}
def spp_backward_loops(dout, argmaxes, batch_index, features_shape, levels):
    """dout (R, C * sum(l*l)), argmaxes: one (R, C, l, l) array per level -> dfeatures."""
    ### BEGIN SOLUTION
    R, C = dout.shape[0], features_shape[1]
    dfeatures = np.zeros(features_shape)
    col = 0
    for lv, argmax in zip(levels, argmaxes, strict=True):
        block = dout[:, col:col + C * lv * lv].reshape(R, C, lv, lv)   # channel-first
        col += C * lv * lv
        dfeatures += roi_pool_backward_loops(block, argmax, batch_index, features_shape)
    return dfeatures
    ### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "spp_backward", "locked": true, "points": 4, "schema_version": 3, "solution": false}
# forbid: minircnn.layers.roi_pool.spp_backward, minircnn.layers.roi_pool.roi_pool_backward
# forbid: minircnn.layers.roi_pool.roi_pool_backward_naive
# The visible check (not graded): levels (2, 1) on the worked example, dout = 1.
spp_argmaxes = [np.where(c_.argmax >= 0, c_.argmax % 16, -1) for c_ in spp_cache.level_caches]
mine = spp_backward_loops(np.ones((2, 5)), spp_argmaxes, np.zeros(2, int), (1, 1, 4, 4), (2, 1))
spp_by_hand_grad = dfeatures_by_hand.copy()
spp_by_hand_grad[2, 2] += 1                    # RoI A's whole-RoI max is cell 10
spp_by_hand_grad[3, 3] += 1                    # RoI B's is cell 15
assert np.array_equal(mine[0, 0], spp_by_hand_grad), mine[0, 0]
### BEGIN HIDDEN TESTS
import numpy as np  # the hidden tests run in the grader's process

from minircnn.gradcheck import THRESHOLD, gradient_error, numeric_gradient_with_bound, rel_error
from minircnn.layers import spp_backward, spp_forward


def _spp_case(rng, levels):
    N, C = int(rng.integers(1, 3)), 2                                 # C >= 2: order matters
    H, W = (int(v) for v in rng.choice(np.arange(4, 9), size=2, replace=False))
    features = rng.permutation(N * C * H * W).reshape(N, C, H, W) * 0.1
    R = int(rng.integers(2, 6))
    xy = rng.uniform(0, 16 * max(H, W), (R, 4))
    rois = np.column_stack([rng.integers(0, N, R), np.minimum(xy[:, 0], xy[:, 2]),
                            np.minimum(xy[:, 1], xy[:, 3]), np.maximum(xy[:, 0], xy[:, 2]),
                            np.maximum(xy[:, 1], xy[:, 3])])
    out, cache = spp_forward(features, rois, levels=levels, spatial_scale=1 / 16)
    dout = rng.standard_normal(out.shape)
    argmaxes = [np.where(c.argmax >= 0, c.argmax % (H * W), -1) for c in cache.level_caches]
    return features, rois, dout, argmaxes, cache


# TEST levels (4, 2, 1) vs a numeric gradient of spp_forward and vs spp_backward (2 points)
def grade_spp_pyramid(student, rng):
    for numeric_check in (True, False):
        levels = (4, 2, 1)
        features, rois, dout, argmaxes, cache = _spp_case(rng, levels)
        got = student.spp_backward_loops(dout, argmaxes, rois[:, 0].astype(np.int64),
                                         tuple(features.shape), levels)
        assert rel_error(got, spp_backward(dout, cache)) < 1e-12
        if numeric_check:
            numeric = numeric_gradient_with_bound(lambda: spp_forward(   # noqa: B023
                features, rois, levels=levels, spatial_scale=1 / 16)[0], features, dout)  # noqa: B023
            assert gradient_error(got, numeric) <= THRESHOLD


# TEST levels in a drawn order, not sorted (2 points)
def grade_spp_level_order(student, rng):
    for _ in range(3):
        levels = tuple(int(v) for v in rng.permutation([1, 2, 3, 5])[:3])
        features, rois, dout, argmaxes, cache = _spp_case(rng, levels)
        got = student.spp_backward_loops(dout, argmaxes, rois[:, 0].astype(np.int64),
                                         tuple(features.shape), levels)
        assert rel_error(got, spp_backward(dout, cache)) < 1e-12, f"levels {levels}"
### END HIDDEN TESTS

# %% [markdown]
# ## 7. RoIAlign: bilinear sampling instead of rounding
#
# RoIAlign (Mask R-CNN) keeps the RoI's exact (fractional) position: each bin averages
# `sampling_ratio²` points sampled at fractional positions by **bilinear interpolation**
# of the four neighbouring cells. Nothing is rounded, so the output moves continuously
# with the box. On a feature map that is a linear ramp (value = column index), bilinear
# interpolation is exact, and each output equals the x coordinate of its bin centre (with
# `aligned=True`, which shifts by half a cell so cell centres sit at +0.5).
#
# Move the RoI right by 4 pixels at scale 1/16: RoI pooling cannot see it (both corners
# round to the same cells), RoIAlign shifts by exactly 4/16 = 0.25 cells.

# %%
ramp = np.tile(np.arange(16, dtype=np.float64), (16, 1))[None, None]   # (1, 1, 16, 16)
box = np.array([[0, 40.0, 40.0, 120.0, 120.0]])
moved = box + np.array([0, 4.0, 0, 4.0, 0])

align = [roi_align_forward(ramp, b_, output_size=(2, 2), spatial_scale=1 / 16,
                           sampling_ratio=2, aligned=True)[0][0, 0] for b_ in (box, moved)]
pool = [roi_pool_forward(ramp, b_, output_size=(2, 2), spatial_scale=1 / 16)[0][0, 0]
        for b_ in (box, moved)]
centres = 40 / 16 - 0.5 + (np.arange(2) + 0.5) * (80 / 16) / 2        # bin centres, cells
print("RoIAlign :", align[0][0], "->", align[1][0])
print("RoI pool :", pool[0][0], "->", pool[1][0])
assert np.allclose(align[0][0], centres)
assert np.allclose(align[1] - align[0], 0.25)                          # follows the box
assert np.array_equal(pool[1], pool[0])                                # quantised away

err = check_layer(roi_align_forward_naive, roi_align_backward_naive,
                  {"features": rng.standard_normal((2, 2, 6, 6)), "rois": check_rois},
                  kwargs=dict(output_size=(2, 2), spatial_scale=0.1, sampling_ratio=2),
                  wrt=["features"])["features"]
print(f"roi_align dfeatures rel error {err:.1e}  (expect < 1e-7)")
assert err < 1e-7
naive_al, _ = roi_align_forward_naive(feat_big[:, :4], rois_big[:8], output_size=(7, 7),
                                      spatial_scale=1 / 16, sampling_ratio=2)
fast_al, _ = roi_align_forward(feat_big[:, :4], rois_big[:8], output_size=(7, 7),
                               spatial_scale=1 / 16, sampling_ratio=2)
assert rel_error(naive_al, fast_al) < 1e-9

# %% [markdown]
# ### Exercise 4 — RoIAlign backward: bilinear weights at the four neighbours
#
# RoIAlign is **linear** in the features: each output is a weighted sum of cells, so its
# backward adds `weight × dout` to each cell the forward read. Rebuild torchvision's
# sampling (aligned or not, a fixed `sampling_ratio` S ≥ 1) and scatter:
#
# 1. `offset = 0.5` if `aligned` else 0; `x1·scale − offset` = start_w (same for y);
#    `roi_w = (x2 − x1)·scale`, at least 1 when not aligned (the legacy rule); same for h.
# 2. `bin_h = roi_h / PH`; bin (ph, pw) samples S × S points
#    `y = start_h + ph·bin_h + (iy + ½)·bin_h / S`, `x = start_w + pw·bin_w + (ix + ½)·bin_w / S`.
# 3. A point with `y < −1`, `y > H`, `x < −1` or `x > W` reads nothing. Otherwise clamp
#    y, x to ≥ 0; `y_low = int(y)`; if `y_low ≥ H − 1` then `y_low = y_high = H − 1` and
#    `y = y_low`, else `y_high = y_low + 1`; `ly = y − y_low`, `hy = 1 − ly` (same for x).
#    It reads `(y_low, x_low)` with weight `hy·hx`, `(y_low, x_high)` with `hy·lx`,
#    `(y_high, x_low)` with `ly·hx` and `(y_high, x_high)` with `ly·lx`.
# 4. The output is the **mean** over the S² points, so each weight is divided by S².
#
# The check: one 1×1 bin, one sample at (y, x) = (1.25, 2.5) of a 4×4 map; by hand its
# four neighbours (1, 2), (1, 3), (2, 2), (2, 3) get .75·.5, .75·.5, .25·.5 and .25·.5.

# %% nbgrader={"grade": false, "grade_id": "roi_align_backward_code", "locked": false, "schema_version": 3, "solution": true}
def roi_align_backward_loops(dout, rois, features_shape, *, spatial_scale, sampling_ratio,
                             aligned):
    """dout (R, C, PH, PW), rois (R, 5) -> dfeatures of shape features_shape (N, C, H, W)."""
    ### BEGIN SOLUTION
    N, C, H, W = features_shape
    R, _, PH, PW = dout.shape
    S = sampling_ratio
    dfeatures = np.zeros(features_shape)
    offset = 0.5 if aligned else 0.0
    for r in range(R):
        n = int(rois[r, 0])
        start_w, start_h = rois[r, 1] * spatial_scale - offset, rois[r, 2] * spatial_scale - offset
        roi_w = rois[r, 3] * spatial_scale - offset - start_w
        roi_h = rois[r, 4] * spatial_scale - offset - start_h
        if not aligned:
            roi_w, roi_h = max(roi_w, 1.0), max(roi_h, 1.0)
        bin_h, bin_w = roi_h / PH, roi_w / PW
        for ph in range(PH):
            for pw in range(PW):
                for iy in range(S):
                    y = start_h + ph * bin_h + (iy + 0.5) * bin_h / S
                    for ix in range(S):
                        x = start_w + pw * bin_w + (ix + 0.5) * bin_w / S
                        for h, w, weight in bilinear_neighbours(y, x, H, W):
                            dfeatures[n, :, h, w] += weight / S**2 * dout[r, :, ph, pw]
    return dfeatures


def bilinear_neighbours(y, x, H, W):
    """[(h, w, weight)] of the cells a sample at (y, x) reads (step 3)."""
    if y < -1.0 or y > H or x < -1.0 or x > W:
        return []
    y, x = max(y, 0.0), max(x, 0.0)
    y_low, x_low = int(y), int(x)
    if y_low >= H - 1:
        y_low = y_high = H - 1
        y = float(y_low)
    else:
        y_high = y_low + 1
    if x_low >= W - 1:
        x_low = x_high = W - 1
        x = float(x_low)
    else:
        x_high = x_low + 1
    ly, lx = y - y_low, x - x_low
    hy, hx = 1 - ly, 1 - lx
    return [(y_low, x_low, hy * hx), (y_low, x_high, hy * lx),
            (y_high, x_low, ly * hx), (y_high, x_high, ly * lx)]
    ### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "roi_align_backward", "locked": true, "points": 6, "schema_version": 3, "solution": false}
# forbid: minircnn.layers.roi_align.roi_align_backward, minircnn.layers.roi_align.roi_align_backward_naive
# The visible check (not graded): RoI x 2.5..3.5, y 1.5..2, aligned -> one sample at (1.25, 2.5).
one_roi = np.array([[0, 2.5, 1.5, 3.5, 2.0]])
mine = roi_align_backward_loops(np.ones((1, 1, 1, 1)), one_roi, (1, 1, 4, 4), spatial_scale=1.0,
                                sampling_ratio=1, aligned=True)
align_by_hand = np.zeros((4, 4))
align_by_hand[1:3, 2:4] = [[0.75 * 0.5, 0.75 * 0.5], [0.25 * 0.5, 0.25 * 0.5]]
assert np.allclose(mine[0, 0], align_by_hand), mine[0, 0]
### BEGIN HIDDEN TESTS
import numpy as np  # the hidden tests run in the grader's process

from minircnn.gradcheck import THRESHOLD, gradient_error, numeric_gradient_with_bound, rel_error
from minircnn.layers import roi_align_backward, roi_align_forward


def _align_case(rng, i, border=False):
    """Case i of a series: aligned alternates, the sampling ratio cycles through 1, 2, 3."""
    N, C = int(rng.integers(1, 3)), int(rng.integers(1, 3))
    H, W = (int(v) for v in rng.choice(np.arange(4, 9), size=2, replace=False))   # H != W
    R = int(rng.integers(2, 5))
    scale = float(rng.choice([1 / 4, 1 / 8]))
    low, high = (-3 / scale, (max(H, W) + 3) / scale) if border else (0, min(H, W) / scale)
    xy = rng.uniform(low, high, (R, 4))
    rois = np.column_stack([rng.integers(0, N, R), np.minimum(xy[:, 0], xy[:, 2]),
                            np.minimum(xy[:, 1], xy[:, 3]), np.maximum(xy[:, 0], xy[:, 2]),
                            np.maximum(xy[:, 1], xy[:, 3])])
    kw = dict(output_size=(int(rng.integers(1, 4)), int(rng.integers(1, 4))),
              spatial_scale=scale, sampling_ratio=1 + i % 3, aligned=bool(i % 2))
    return rng.standard_normal((N, C, H, W)), rois, kw


def _check_align(student, rng, features, rois, kw):
    out, cache = roi_align_forward(features, rois, **kw)
    dout = rng.standard_normal(out.shape)
    got = student.roi_align_backward_loops(dout, rois, tuple(features.shape),
                                           **{k: v for k, v in kw.items() if k != "output_size"})
    numeric = numeric_gradient_with_bound(lambda: roi_align_forward(features, rois, **kw)[0],
                                          features, dout)
    assert got.shape == features.shape, "dfeatures has the features' shape"
    assert gradient_error(got, numeric) <= THRESHOLD, f"{kw} vs a numeric gradient"
    assert rel_error(got, roi_align_backward(dout, cache)) < 1e-9, f"{kw}"


# TEST one sample of one bin: the four bilinear weights (1 point)
def grade_align_one_sample(student, rng):
    y, x = rng.uniform(0.1, 2.9, size=2)                    # inside a 4x4 map, not on a cell
    roi = np.array([[0, x, y, x + 1, y + 1]])               # aligned: its one sample at (y, x)
    kw = dict(output_size=(1, 1), spatial_scale=1.0, sampling_ratio=1, aligned=True)
    _check_align(student, rng, rng.standard_normal((1, 1, 4, 4)), roi, kw)


# TEST random RoIs, grids, sampling ratios, aligned or not (3 points)
def grade_align_random(student, rng):
    for i in range(4):
        _check_align(student, rng, *_align_case(rng, i))


# TEST RoIs past the border: skipped and clamped samples (2 points)
def grade_align_border(student, rng):
    for i in range(4):
        _check_align(student, rng, *_align_case(rng, i, border=True))
### END HIDDEN TESTS

# %% [markdown]
# The picture: outputs of the two ops for a box sliding right over the ramp, one pixel
# at a time. RoI pooling is a staircase (16-pixel steps, jumping where a corner crosses a
# .5 cell); RoIAlign is a straight line.

# %%
shifts = np.arange(0, 48)
pooled_line, aligned_line = [], []
for s in shifts:
    b_ = box + np.array([0, s, 0, s, 0])
    pooled_line.append(roi_pool_forward(ramp, b_, output_size=1, spatial_scale=1 / 16)[0].item())
    aligned_line.append(roi_align_forward(ramp, b_, output_size=1, spatial_scale=1 / 16,
                                          sampling_ratio=2, aligned=True)[0].item())
assert np.allclose(np.diff(aligned_line), 1 / 16)                      # linear in the shift
assert len(set(pooled_line)) < len(shifts) / 8                         # a few steps only

fig, ax = plt.subplots(figsize=(6, 3))
ax.step(shifts, pooled_line, where="post", label="RoI pooling (max, rounded)")
ax.plot(shifts, aligned_line, label="RoIAlign (bilinear, aligned=True)")
ax.set(xlabel="box shift (pixels)", ylabel="pooled value on the ramp", title="1×1 output")
ax.legend()
fig.tight_layout()

# %% [markdown]
# ## Summary
#
# - RoI pooling: round the RoI to cells (C rounding, inclusive end), split it into PH × PW
#   floor/ceil bins (they may overlap, repeat or be empty), max-pool each bin.
# - Its backward sends each output's gradient to its argmax cell; cells picked several
#   times sum their gradients (`xp.add.at` in the vectorized version).
# - The vectorized version loops over the cell offsets of the largest bin, not over RoIs,
#   channels and bins; the default one reads bins from precomputed max tables. All three
#   give the same bits, ties included.
# - SPP-net = RoI pooling at several levels, concatenated; Fast R-CNN uses one level (7×7).
# - RoIAlign samples bilinearly at exact positions: no quantisation, so the features follow
#   the box to sub-cell precision — which matters for precise localisation (and masks).
# - You can put a breakpoint in the library and hit it from a notebook: it is all Python.
#
# ## Exercises
#
# 1. Find an RoI for which a 7×7 `roi_pool` has **empty** bins (output 0, no gradient).
#    Draw it with `viz.show_roi_bins`. (Hint: an RoI that sticks out of the feature map.)
# 2. Compute by hand the output of RoI A with `output_size=3`, then check with the library.
# 3. With `aligned=False`, where are RoIAlign's sample points on the ramp? Explain the
#    constant offset you measure against `aligned=True`.
# 4. Time `roi_pool_forward` against `spp_forward(levels=(4, 2, 1))`. Where does the cost go?

# %% [markdown] nbgrader={"grade": true, "grade_id": "open_answers", "locked": false, "points": 0, "schema_version": 3, "solution": true}
# ### Your answers to the exercises
#
# ### BEGIN SOLUTION
# **Teacher's edition: model answers and rubrics** (points are a suggestion for a manually graded answer; `minircnn assign` replaces this block by YOUR ANSWER HERE).
#
# **1. Empty bins.** An RoI that sticks out past the right or bottom edge of the feature
# map: its bins beyond the map are clipped to nothing, output 0, argmax −1, no gradient.
# E.g. at scale 1/16 on an 8×8 map, `[0, 64, 64, 160, 160]`: its bins past cell 7 are
# empty; `viz.show_roi_bins` hatches them.
# *Rubric (2):* 1 an RoI with empty bins verified (output 0 / argmax −1); 1 the picture.
#
# **2. RoI A with `output_size=3`.** RoI A covers cells 0..2 (3×3), so each bin is exactly
# one cell: the output is the 3×3 block `[[0, 1, 2], [4, 5, 6], [8, 9, 10]]`.
# *Rubric (2):* 1 the bins by hand; 1 the library agrees.
#
# **3. `aligned=False`.** Without the half-cell shift the sample points sit half a cell to
# the right of (and below) where `aligned=True` puts them, so on the ramp every output is
# larger by exactly 0.5: the legacy mode treats cell indices as cell corners, not
# centres.
# *Rubric (2):* 1 the constant offset measured; 1 explained by the −0.5 shift.
#
# **4. `roi_pool_forward` vs `spp_forward(levels=(4, 2, 1))`.** SPP runs RoI max pooling
# once per level, so it costs roughly the sum of three poolings; the output is 21 values
# per channel instead of 49, so the later fc layer is smaller. The cost per level
# depends on the bins, not on the grid size alone: the coarse levels have few, large bins.
# *Rubric (2):* 1 timings; 1 cost attributed to the per-level poolings.
# ### END SOLUTION
