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
feats = rng.standard_normal((2, 3, 10, 12))
xy = rng.uniform(0, 190, size=(12, 4))
rand_rois = np.column_stack([np.arange(12) % 2,
                             np.minimum(xy[:, 0], xy[:, 2]), np.minimum(xy[:, 1], xy[:, 3]),
                             np.maximum(xy[:, 0], xy[:, 2]), np.maximum(xy[:, 1], xy[:, 3])])
rand_rois[0, 1:] = [8, 8, 40, 24]                                 # corners land on .5 cells
ref, _ = roi_pool_forward(feats, rand_rois, output_size=(3, 3), spatial_scale=1 / 16)
### BEGIN HIDDEN TESTS
hidden_feats = np.random.default_rng(31).standard_normal((1, 2, 9, 9))
hidden_rois = np.array([[0, 0.0, 0.0, 3.0, 3.0],                  # smaller than the grid
                        [0, 40.0, 10.0, 90.0, 70.0],              # past the border
                        [0, 12.0, 20.0, 12.0, 20.0]])             # 1 x 1
hidden_ref, _ = roi_pool_forward(hidden_feats, hidden_rois, output_size=(2, 3),
                                 spatial_scale=1 / 8)
### END HIDDEN TESTS
# TEST the worked example (2 points)
mine = roi_pool_loops(features, rois, output_size=(2, 2), spatial_scale=0.1)
assert np.array_equal(mine[:, 0], out_by_hand), mine
# TEST random RoIs on two images vs the library (3 points)
assert rel_error(roi_pool_loops(feats, rand_rois, output_size=(3, 3), spatial_scale=1 / 16),
                 ref) < 1e-12
### BEGIN HIDDEN TESTS
# TEST tiny, border and 1x1 RoIs, a 2x3 grid at scale 1/8 (2 points)
assert np.array_equal(roi_pool_loops(hidden_feats, hidden_rois, output_size=(2, 3),
                                     spatial_scale=1 / 8), hidden_ref)
### END HIDDEN TESTS

# %% [markdown]
# ## 2. Quantisation: where RoI pooling rounds
#
# Rounding happens twice: the RoI corners snap to whole feature cells, and the bins snap
# to whole cells (floor / ceil). At `spatial_scale = 1/16` one cell is 16 pixels, so a box
# can move by up to 8 pixels without the pooled cells changing. The rounding is C's
# `round`: 0.5 goes **up** to 1 (NumPy's `np.round` would give 0).
#
# The picture shows the 7×7 bins of a small RoI on a shapes image: with fewer than 7
# cells across, bins repeat the same cells (outlined in cyan; an empty bin would be
# hatched red).

# %%
print("C round(0.5, 1.5, 2.5) =", roi_pool_module.c_round(np.array([0.5, 1.5, 2.5])),
      " np.round =", np.round([0.5, 1.5, 2.5]))
assert roi_pool_module.c_round(np.array([0.5, 1.5, 2.5])).tolist() == [1, 2, 3]

sample = ShapesDataset(1, image_size=128, seed=0)[0]
roi = np.array([0.0, 24.0, 40.0, 88.0, 72.0])                   # 64 x 32 pixels
small_bins = roi_pool_bins(roi[None], (7, 7), 1 / 16, 8, 8)
cells_x = (int(small_bins.wstart.min()), int(small_bins.wend.max()))
row_bins = np.stack([small_bins.hstart[0], small_bins.hend[0] - 1], axis=1)   # (7, 2)
print("rows of the 7 bins (first, last):", row_bins.tolist())
# x1 = 24 px -> 1.5 cells -> rounds to 2, i.e. the pooled region starts at pixel 32: 8 px off.
assert cells_x[0] * 16 - roi[1] == 8
assert len({tuple(b) for b in row_bins.tolist()}) < 7             # some bins repeat

fig, axes = plt.subplots(1, 2, figsize=(10, 5))
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
