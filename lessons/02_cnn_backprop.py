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
# # Lesson 02 — CNN backprop by hand: convolution and max pooling
#
# **Goal.** Derive the backward pass of a convolution and of max pooling, check it on a
# tiny input whose answer we compute by hand, check it numerically with a float64
# gradient check, then see why the library's fast (im2col) version computes the same thing
# much faster. Fast R-CNN's backbone is nothing but these two layers (plus ReLU).
#
# | name | shape | meaning |
# |---|---|---|
# | `x` | (N, C, H, W) | input: N images, C channels |
# | `w` | (F, C, KH, KW) | F filters of size KH × KW |
# | `b` | (F,) | one bias per filter |
# | `out` | (N, F, OH, OW) | OH = (H + 2·pad − KH) // stride + 1 |
# | `dout` | (N, F, OH, OW) | upstream gradient ∂L/∂out |
# | `dx`, `dw`, `db` | like `x`, `w`, `b` | what backward returns |
# | `cols` | (N, C·KH·KW, OH·OW) | im2col: every window as one column |
#
# The library code is in `minircnn/layers/conv.py` and `minircnn/layers/pool.py`; the
# derivations are in `docs/layers/conv.md` and `docs/layers/pool.md`.

# %%
import time

import matplotlib.pyplot as plt
import numpy as np

from minircnn import viz
from minircnn.data import ShapesDataset
from minircnn.gradcheck import check_layer, rel_error
from minircnn.layers import (
    conv2d_backward,
    conv2d_backward_naive,
    conv2d_forward,
    conv2d_forward_naive,
    im2col,
    max_pool2d_backward,
    max_pool2d_backward_naive,
    max_pool2d_forward,
    max_pool2d_forward_naive,
    relu_forward,
)

rng = np.random.default_rng(0)

# %% [markdown]
# ## 1. The forward pass on a tiny input
#
# A convolution (really a cross-correlation, as in PyTorch: the kernel is not flipped)
# slides each filter over the input:
#
# $$\text{out}[n, f, i, j] = b[f] + \sum_{c, k_h, k_w} w[f, c, k_h, k_w]\; x_\text{pad}[n, c, i s + k_h, j s + k_w]$$
#
# Take a 3×3 input `0..8` and one 2×2 filter `[[1, 2], [3, 4]]`, stride 1, no padding.
# The top-left output is 0·1 + 1·2 + 3·3 + 4·4 = 27; moving one column right adds
# 1+2+3+4 = 10 (every input grew by 1), moving one row down adds 3·10 = 30:

# %%
x = np.arange(9, dtype=np.float64).reshape(1, 1, 3, 3)
w = np.array([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 1, 2, 2)
b = np.zeros(1)
out_by_hand = np.array([[27.0, 37.0], [57.0, 67.0]])

out, cache = conv2d_forward_naive(x, w, b)
print(out[0, 0])
assert out.shape == (1, 1, 2, 2)
assert np.array_equal(out[0, 0], out_by_hand)

# %% [markdown]
# ## 2. Deriving the backward pass
#
# Each output is a sum of products `w · x`, so by the chain rule each output sends
# `dout[n, f, i, j]` times "the other factor" to everything it touched:
#
# - $\partial L / \partial b[f] = \sum_{n,i,j} \text{dout}[n,f,i,j]$ — the bias was added to every output of filter f;
# - $\partial L / \partial w[f] = \sum_{n,i,j} \text{dout}[n,f,i,j]\; x_\text{pad}[n, :, \text{window}(i,j)]$ — each window, weighted by its output's gradient;
# - $\partial L / \partial x_\text{pad}[n, :, \text{window}(i,j)] \mathrel{+}= \text{dout}[n,f,i,j]\; w[f]$ — windows overlap, so contributions **add up**.
#
# By hand with `dout = 1` everywhere: `db = 4` (four outputs); `dw[kh, kw]` is the sum of
# the 2×2 block of inputs at offset (kh, kw): `[[0+1+3+4, 1+2+4+5], [3+4+6+7, 4+5+7+8]]`;
# `dx[h, w]` sums the weights that touched pixel (h, w): the centre pixel is in all four
# windows (1+2+3+4 = 10), a corner in one.

# %%
dout = np.ones((1, 1, 2, 2))
dx_by_hand = np.array([[1.0, 3.0, 2.0], [4.0, 10.0, 6.0], [3.0, 7.0, 4.0]])
dw_by_hand = np.array([[8.0, 12.0], [20.0, 24.0]])
db_by_hand = np.array([4.0])

dx, dw, db = conv2d_backward_naive(dout, cache)
print("dx =\n", dx[0, 0], "\ndw =\n", dw[0, 0], "\ndb =", db)
assert np.array_equal(dx[0, 0], dx_by_hand)
assert np.array_equal(dw[0, 0], dw_by_hand)
assert np.array_equal(db, db_by_hand)

# %% [markdown]
# ### Exercise 1 — write the backward loops yourself
#
# Complete `conv2d_backward_loops`: explicit loops over `n, f, i, j`, one idea per line,
# padding handled by working on a zero-padded copy of `x` and cropping `dx` at the end.
# (The library's `conv2d_backward_naive` is the reference; don't call it.)

# %% nbgrader={"grade": false, "grade_id": "conv_backward_code", "locked": false, "schema_version": 3, "solution": true}
def conv2d_backward_loops(dout, x, w, *, stride=1, pad=0):
    """dout (N, F, OH, OW), x (N, C, H, W), w (F, C, KH, KW) -> dx, dw, db."""
    ### BEGIN SOLUTION
    N, C, H, W = x.shape
    F, _, KH, KW = w.shape
    _, _, OH, OW = dout.shape
    x_pad = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    dx_pad = np.zeros_like(x_pad)
    dw = np.zeros_like(w)
    db = np.zeros(F)
    for n in range(N):
        for f in range(F):
            for i in range(OH):
                for j in range(OW):
                    top, left = i * stride, j * stride
                    g = dout[n, f, i, j]
                    dx_pad[n, :, top:top + KH, left:left + KW] += w[f] * g
                    dw[f] += x_pad[n, :, top:top + KH, left:left + KW] * g
                    db[f] += g
    dx = dx_pad[:, :, pad:pad + H, pad:pad + W]
    return dx, dw, db
    ### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "conv_backward", "locked": true, "points": 7, "schema_version": 3, "solution": false}
# forbid: minircnn.layers.conv.conv2d_backward_naive, minircnn.layers.conv.conv2d_backward
# Your checks: the tiny example by hand, then stride 2 and padding 1 vs the library.
dx, dw, db = conv2d_backward_loops(dout, x, w)
assert np.array_equal(dx[0, 0], dx_by_hand), dx
assert np.array_equal(dw[0, 0], dw_by_hand), dw
assert np.array_equal(db, db_by_hand), db
xs = rng.standard_normal((2, 3, 5, 5))
ws = rng.standard_normal((4, 3, 3, 3))
outs, cache_s = conv2d_forward_naive(xs, ws, rng.standard_normal(4), stride=2, pad=1)
douts = rng.standard_normal(outs.shape)
mine = conv2d_backward_loops(douts, xs, ws, stride=2, pad=1)
for name, a, ref in zip(("dx", "dw", "db"), mine, conv2d_backward_naive(douts, cache_s),
                        strict=True):
    print(f"{name}: rel error vs library {rel_error(a, ref):.1e}")
    assert rel_error(a, ref) < 1e-9
### BEGIN HIDDEN TESTS
from minircnn.layers.conv import conv2d_backward_naive, conv2d_forward_naive


def check_random(student, rng, kernel_max, stride_max, pad_max):
    """Random shapes, kernel, stride and padding; the reference gradients, compared."""
    N, C, F = (int(v) for v in rng.integers(1, 4, size=3))
    KH, KW = (int(v) for v in rng.integers(1, kernel_max + 1, size=2))
    stride, pad = int(rng.integers(1, stride_max + 1)), int(rng.integers(0, pad_max + 1))
    H, W = KH + int(rng.integers(0, 6)), KW + int(rng.integers(0, 6))
    x, w = rng.standard_normal((N, C, H, W)), rng.standard_normal((F, C, KH, KW))
    out, cache = conv2d_forward_naive(x, w, rng.standard_normal(F), stride=stride, pad=pad)
    dout = rng.standard_normal(out.shape)
    got = student.conv2d_backward_loops(dout, x, w, stride=stride, pad=pad)
    assert len(got) == 3, "return (dx, dw, db)"
    for name, a, ref in zip(("dx", "dw", "db"), got, conv2d_backward_naive(dout, cache),
                            strict=False):
        assert np.shape(a) == ref.shape, f"{name} shape {np.shape(a)}, expected {ref.shape}"
        assert rel_error(a, ref) < 1e-9, f"{name} (kernel {KH}x{KW}, stride {stride}, pad {pad})"


# TEST the tiny example, by hand (2 points)
def grade_tiny(student, rng):
    x = np.arange(9.0).reshape(1, 1, 3, 3)
    w = np.array([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 1, 2, 2)
    dx, dw, db = student.conv2d_backward_loops(np.ones((1, 1, 2, 2)), x, w)
    assert np.array_equal(dx[0, 0], [[1, 3, 2], [4, 10, 6], [3, 7, 4]]), "dx by hand"
    assert np.array_equal(dw[0, 0], [[8, 12], [20, 24]]), "dw by hand"
    assert np.array_equal(db, [4.0]), "db by hand"


# TEST random shapes, kernels, strides and paddings vs the reference (3 points)
def grade_random(student, rng):
    for _ in range(4):
        check_random(student, rng, kernel_max=3, stride_max=2, pad_max=1)


# TEST strides larger than the kernel, padding up to 2 (2 points)
def grade_stride(student, rng):
    for _ in range(3):
        check_random(student, rng, kernel_max=2, stride_max=4, pad_max=2)
### END HIDDEN TESTS

# %% [markdown]
# ## 3. Gradient check
#
# The definitive test of a backward pass: compare it with centred differences
# $\partial L/\partial x_k \approx \sum \text{dout}\cdot(f(x + h e_k) - f(x - h e_k)) / 2h$,
# in **float64** (float32 has only ~7 digits: the differences would be noise).
# A correct layer shows a relative error around 1e-9 … 1e-11; a bug, 1e-2 or worse.

# %%
errors = check_layer(conv2d_forward_naive, conv2d_backward_naive,
                     {"x": rng.standard_normal((2, 3, 5, 5)),
                      "w": rng.standard_normal((4, 3, 3, 3)),
                      "b": rng.standard_normal(4)},
                     kwargs=dict(stride=2, pad=1))
for name, err in errors.items():
    print(f"conv2d (naive) d{name}: rel error {err:.1e}  (expect < 1e-7)")
assert max(errors.values()) < 1e-7

# %% [markdown]
# ## 4. The fast version: im2col + one matrix product
#
# The loops above run `N·F·OH·OW` tiny Python iterations. `im2col` copies every window
# into one column of a matrix `cols` (N, C·KH·KW, OH·OW) — once — and then the whole
# layer is one matrix product `w.reshape(F, -1) @ cols`. On the tiny input the four
# windows become the four columns:

# %%
cols = im2col(x, 2, 2)                       # (1, 4, 4): 4 window values x 4 windows
print(cols[0])
assert np.array_equal(cols[0, :, 0], [0, 1, 3, 4])   # window (0, 0), flattened
out_mat = (w.reshape(1, -1) @ cols).reshape(1, 1, 2, 2)   # (1, 4) @ (1, 4, 4) -> (1, 1, 4)
assert np.array_equal(out_mat[0, 0], out_by_hand)

# %% [markdown]
# Backward is a linear layer's backward per image (`dw = dout · colsᵀ`,
# `dcols = wᵀ · dout`) followed by `col2im`, which adds each column back onto its window.
# Same numbers, different speed:

# %%
x_big = rng.standard_normal((4, 3, 16, 16))
w_big = rng.standard_normal((8, 3, 3, 3))
b_big = rng.standard_normal(8)
dout_big = rng.standard_normal((4, 8, 16, 16))

def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start

(out_n, cache_n), t_fwd_naive = timed(conv2d_forward_naive, x_big, w_big, b_big, pad=1)
(out_f, cache_f), t_fwd_fast = timed(conv2d_forward, x_big, w_big, b_big, pad=1)
grads_n, t_bwd_naive = timed(conv2d_backward_naive, dout_big, cache_n)
grads_f, t_bwd_fast = timed(conv2d_backward, dout_big, cache_f)

print(f"forward : naive {t_fwd_naive * 1e3:7.1f} ms, fast {t_fwd_fast * 1e3:6.2f} ms, "
      f"{t_fwd_naive / t_fwd_fast:5.0f}x faster")
print(f"backward: naive {t_bwd_naive * 1e3:7.1f} ms, fast {t_bwd_fast * 1e3:6.2f} ms, "
      f"{t_bwd_naive / t_bwd_fast:5.0f}x faster")
assert rel_error(out_n, out_f) < 1e-9
for name, g_n, g_f in zip(("dx", "dw", "db"), grads_n, grads_f, strict=True):
    print(f"{name}: naive vs fast rel error {rel_error(g_n, g_f):.1e}")
    assert rel_error(g_n, g_f) < 1e-9

# %% [markdown]
# ## 5. Max pooling, including overlapping windows
#
# Max pooling outputs the largest value of each window; its gradient is 1 at that
# argmax and 0 elsewhere, so **each output's gradient goes to one input**. With
# `stride < kernel` (overlapping pooling, as in AlexNet) one input can win several
# windows and then receives the *sum* of their gradients.
#
# Below, a 4×4 input pooled with a 3×3 kernel and stride 1: the 9 at (1, 1) wins three
# windows, the 12 at (3, 3) the fourth. With `dout = [[1, 2], [3, 4]]`, by hand
# `dx[1, 1] = 1 + 2 + 3 = 6` and `dx[3, 3] = 4`.

# %%
xp4 = np.array([[1.0, 2.0, 0.0, 3.0],
                [4.0, 9.0, 5.0, 1.0],
                [2.0, 6.0, 8.0, 0.0],
                [3.0, 1.0, 7.0, 12.0]]).reshape(1, 1, 4, 4)
dout_pool = np.array([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 1, 2, 2)
pool_by_hand = {(2, 2): np.array([[9.0, 5.0], [6.0, 12.0]]),     # kernel 2, stride 2
                (3, 1): np.array([[9.0, 9.0], [9.0, 12.0]])}     # kernel 3, stride 1: overlap
dx_pool_by_hand = np.zeros((4, 4))
dx_pool_by_hand[1, 1], dx_pool_by_hand[3, 3] = 6.0, 4.0

for (k, s), expected in pool_by_hand.items():
    out_p, _ = max_pool2d_forward_naive(xp4, kernel=k, stride=s)
    print(f"kernel {k}, stride {s}:\n{out_p[0, 0]}")
    assert np.array_equal(out_p[0, 0], expected)
out_p, cache_p = max_pool2d_forward_naive(xp4, kernel=3, stride=1)
dx_p = max_pool2d_backward_naive(dout_pool, cache_p)
print("dx (kernel 3, stride 1):\n", dx_p[0, 0])
assert np.array_equal(dx_p[0, 0], dx_pool_by_hand)

# %% [markdown]
# ### Exercise 2 — max pooling backward
#
# Complete `max_pool_backward_loops`: for every output, find the argmax of its window
# (the *first* maximum in row-major order wins ties, as PyTorch) and **add** the output's
# gradient there.

# %% nbgrader={"grade": false, "grade_id": "pool_backward_code", "locked": false, "schema_version": 3, "solution": true}
def max_pool_backward_loops(dout, x, *, kernel, stride):
    """dout (N, C, OH, OW), x (N, C, H, W) -> dx (N, C, H, W); square kernel and stride."""
    ### BEGIN SOLUTION
    N, C, OH, OW = dout.shape
    dx = np.zeros_like(x)
    for n in range(N):
        for c in range(C):
            for i in range(OH):
                for j in range(OW):
                    window = x[n, c, i * stride:i * stride + kernel, j * stride:j * stride + kernel]
                    kh, kw = divmod(int(np.argmax(window)), kernel)
                    dx[n, c, i * stride + kh, j * stride + kw] += dout[n, c, i, j]
    return dx
    ### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "pool_backward", "locked": true, "points": 4, "schema_version": 3, "solution": false}
# forbid: minircnn.layers.pool.max_pool2d_backward, minircnn.layers.pool.max_pool2d_backward_naive
# Your checks: overlapping windows by hand, then kernel 3, stride 2 vs the library.
assert np.array_equal(max_pool_backward_loops(dout_pool, xp4, kernel=3, stride=1)[0, 0],
                      dx_pool_by_hand)
x_rand = rng.permutation(2 * 3 * 7 * 7).reshape(2, 3, 7, 7) * 0.1   # distinct: no ties
out_r, cache_r = max_pool2d_forward(x_rand, kernel=3, stride=2)
dout_r = rng.standard_normal(out_r.shape)
expected_r = max_pool2d_backward(dout_r, cache_r)
assert rel_error(max_pool_backward_loops(dout_r, x_rand, kernel=3, stride=2), expected_r) < 1e-9
### BEGIN HIDDEN TESTS
from minircnn.layers.pool import max_pool2d_backward_naive, max_pool2d_forward_naive


def check_random(student, rng, x, kernel, stride):
    out, cache = max_pool2d_forward_naive(x, kernel=kernel, stride=stride)
    dout = rng.standard_normal(out.shape)
    got = student.max_pool_backward_loops(dout, x, kernel=kernel, stride=stride)
    want = max_pool2d_backward_naive(dout, cache)
    assert np.shape(got) == want.shape, f"shape {np.shape(got)}, expected {want.shape}"
    assert rel_error(got, want) < 1e-9, f"kernel {kernel}, stride {stride}"


def random_shape(rng, kernel):
    N, C = (int(v) for v in rng.integers(1, 4, size=2))
    return N, C, kernel + int(rng.integers(0, 6)), kernel + int(rng.integers(0, 6))


# TEST overlapping windows, by hand (1 point)
def grade_by_hand(student, rng):
    x = np.array([[1.0, 2.0, 0.0, 3.0], [4.0, 9.0, 5.0, 1.0],
                  [2.0, 6.0, 8.0, 0.0], [3.0, 1.0, 7.0, 12.0]]).reshape(1, 1, 4, 4)
    dout = np.array([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 1, 2, 2)
    want = np.zeros((4, 4))
    want[1, 1], want[3, 3] = 6.0, 4.0                   # 9 wins three windows, 12 one
    got = student.max_pool_backward_loops(dout, x, kernel=3, stride=1)
    assert np.array_equal(np.asarray(got)[0, 0], want), "the overlapping example"


# TEST random shapes, overlapping and strided windows, distinct values (2 points)
def grade_random(student, rng):
    for kernel, stride in ((3, 2), (3, 1), (2, 2), (2, 3)):
        shape = random_shape(rng, kernel)
        x = rng.permutation(int(np.prod(shape))).reshape(shape) * 0.1
        check_random(student, rng, x, kernel, stride)


# TEST ties: the first maximum in row-major order gets the gradient (1 point)
def grade_ties(student, rng):
    for kernel, stride in ((2, 2), (3, 1)):
        x = rng.integers(0, 3, size=random_shape(rng, kernel)).astype(np.float64)
        check_random(student, rng, x, kernel, stride)
### END HIDDEN TESTS

# %% [markdown]
# Gradient check of pooling: keep the inputs **distinct and well separated** (a random
# permutation times 0.1), otherwise a ±h step can swap the argmax of a window with a tie
# and the numeric gradient is meaningless. Then naive == fast, forward and backward.

# %%
errors = check_layer(max_pool2d_forward_naive, max_pool2d_backward_naive,
                     {"x": rng.permutation(2 * 2 * 7 * 7).reshape(2, 2, 7, 7) * 0.1},
                     kwargs=dict(kernel=3, stride=2))
print(f"max_pool2d (naive, overlapping) dx: rel error {errors['x']:.1e}  (expect < 1e-7)")
assert errors["x"] < 1e-7

x_pool = rng.standard_normal((8, 8, 32, 32))
(out_pn, cache_pn), t_naive = timed(max_pool2d_forward_naive, x_pool, kernel=3, stride=2)
(out_pf, cache_pf), t_fast = timed(max_pool2d_forward, x_pool, kernel=3, stride=2)
dout_pf = rng.standard_normal(out_pf.shape)
assert np.array_equal(out_pn, out_pf)
assert rel_error(max_pool2d_backward_naive(dout_pf, cache_pn),
                 max_pool2d_backward(dout_pf, cache_pf)) < 1e-9
print(f"max pool forward: naive {t_naive * 1e3:.1f} ms, fast {t_fast * 1e3:.2f} ms "
      f"({t_naive / t_fast:.0f}x faster)")

# %% [markdown]
# ## 6. A picture: what a convolution sees
#
# Four hand-made 3×3 filters — vertical edges (Sobel x), horizontal edges (Sobel y),
# a Laplacian and a blur — applied to the grey version of a shapes image, then ReLU and
# 2×2 max pooling: the first layers of a trained CNN learn filters much like these.
# First a check we can state exactly: on an image whose right half is bright, the
# vertical-edge filter responds only at the edge.

# %%
sobel_x = np.array([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
filters = np.stack([sobel_x, sobel_x.T, np.array([[0.0, 1, 0], [1, -4, 1], [0, 1, 0]]),
                    np.full((3, 3), 1 / 9)])[:, None]            # (4, 1, 3, 3)
step = np.zeros((1, 1, 8, 8))
step[..., 4:] = 1.0                                               # edge between columns 3 and 4
edge, _ = conv2d_forward(step, filters[:1], np.zeros(1))          # (1, 1, 6, 6)
print("Sobel-x response to a step edge:\n", edge[0, 0])
assert np.array_equal(np.flatnonzero(edge[0, 0].any(axis=0)), [2, 3])   # windows over the edge
assert (edge[0, 0, :, 2:4] == 4.0).all()

fig, axes = plt.subplots(1, 2, figsize=(6, 3))
axes[0].imshow(step[0, 0], cmap="gray", vmin=0, vmax=1)
axes[0].set_title("input: a step edge")
axes[1].imshow(edge[0, 0], cmap="viridis")
axes[1].set_title("Sobel-x response (6×6)")
fig.tight_layout()

# %% [markdown]
# Now the four filters on a shapes image, after ReLU and 2×2 max pooling
# (`viz.show_feature_maps` draws one panel per channel).

# %%
image = ShapesDataset(1, image_size=96, seed=3)[0]["image"]
gray = image.mean(axis=0)[None, None].astype(np.float64)         # (1, 1, 96, 96)
fmap, _ = conv2d_forward(gray, filters, np.zeros(4), pad=1)       # (1, 4, 96, 96)
fmap, _ = relu_forward(fmap)
pooled, _ = max_pool2d_forward(fmap, kernel=2, stride=2)          # (1, 4, 48, 48)
assert pooled.shape == (1, 4, 48, 48)
fig = viz.show_feature_maps(pooled)
fig  # noqa: B018 - the last expression of a cell is displayed

# %% [markdown]
# ## 7. Batch norm backward (train mode)
#
# ResNet backbones (lesson 09) put a batch norm after every convolution. In train mode
# it normalises each channel c with the mean μ and the **biased** variance σ² of its
# M = N·H·W values in the batch, then scales and shifts:
#
# $$\hat x = \frac{x - \mu}{\sqrt{\sigma^2 + \epsilon}},\qquad out = \gamma\,\hat x + \beta$$
#
# μ and σ² are functions of **every** x of the channel, so the gradient has three paths:
# through x̂ directly, through μ and through σ². With g = dout·γ (the gradient at x̂)
# and sums over the channel's M values, they add up to
#
# $$dx = \frac{1}{M\sqrt{\sigma^2+\epsilon}}\Big(M g - \textstyle\sum g - \hat x \sum g\,\hat x\Big),
#   \quad d\gamma = \textstyle\sum dout\,\hat x,\quad d\beta = \sum dout$$
#
# (derivation: `docs/layers/norm.md`). A consequence worth checking: dx sums to 0 over
# each channel, since shifting a whole channel does not change x̂.
#
# ### Exercise 3 — batch norm backward
#
# Write `batchnorm_backward(dout, x, gamma, eps)` returning `(dx, dgamma, dbeta)`;
# recompute μ, σ² and x̂ from `x` first. The check: a numeric gradient of the library's
# forward on a small batch.

# %% nbgrader={"grade": false, "grade_id": "batchnorm_backward_code", "locked": false, "schema_version": 3, "solution": true}
def batchnorm_backward(dout, x, gamma, eps):
    """dout, x (N, C, H, W), gamma (C,) -> dx (N, C, H, W), dgamma (C,), dbeta (C,)."""
    ### BEGIN SOLUTION
    M = x.shape[0] * x.shape[2] * x.shape[3]                        # values per channel
    mean = x.mean(axis=(0, 2, 3), keepdims=True)                    # (1, C, 1, 1)
    var = ((x - mean) ** 2).mean(axis=(0, 2, 3), keepdims=True)     # biased
    inv_std = 1.0 / np.sqrt(var + eps)
    xhat = (x - mean) * inv_std
    dbeta = dout.sum(axis=(0, 2, 3))
    dgamma = (dout * xhat).sum(axis=(0, 2, 3))
    g = dout * gamma.reshape(1, -1, 1, 1)                           # dL/dxhat
    dx = inv_std / M * (M * g - g.sum(axis=(0, 2, 3), keepdims=True)
                        - xhat * (g * xhat).sum(axis=(0, 2, 3), keepdims=True))
    return dx, dgamma, dbeta
    ### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "batchnorm_backward", "locked": true, "points": 5, "schema_version": 3, "solution": false}
# forbid: minircnn.layers.norm.batchnorm2d_backward, minircnn.layers.norm.batchnorm2d_eval_backward
# The visible check (not graded): a small batch vs a numeric gradient; dx sums to 0 per channel.
from minircnn.gradcheck import numeric_gradient
from minircnn.layers import batchnorm2d_forward

x_bn = rng.standard_normal((2, 3, 2, 2))
gamma_bn, beta_bn = rng.uniform(0.5, 2.0, 3), rng.standard_normal(3)
dout_bn = rng.standard_normal(x_bn.shape)
dx_bn, dgamma_bn, dbeta_bn = batchnorm_backward(dout_bn, x_bn, gamma_bn, 1e-5)
dx_num = numeric_gradient(lambda: batchnorm2d_forward(x_bn, gamma_bn, beta_bn)[0], x_bn, dout_bn)
print(f"batch norm dx rel error {rel_error(dx_bn, dx_num):.1e}  (expect < 1e-7)")
assert rel_error(dx_bn, dx_num) < 1e-7
assert np.allclose(dx_bn.sum(axis=(0, 2, 3)), 0.0) and np.allclose(dbeta_bn, dout_bn.sum(axis=(0, 2, 3)))
### BEGIN HIDDEN TESTS
import numpy as np

from minircnn.gradcheck import THRESHOLD, gradient_error, numeric_gradient_with_bound, rel_error
from minircnn.layers import batchnorm2d_backward, batchnorm2d_forward


def _bn_check(student, shape, rng, numeric=True):
    x = rng.standard_normal(shape) * rng.uniform(0.5, 3) + rng.uniform(-2, 2)
    gamma, beta = rng.uniform(0.5, 2.0, shape[1]), rng.standard_normal(shape[1])
    eps = float(rng.choice([1e-5, 1e-3, 0.1]))
    dout = rng.standard_normal(shape)
    dx, dgamma, dbeta = student.batchnorm_backward(dout, x, gamma, eps)
    _, cache = batchnorm2d_forward(x, gamma, beta, eps=eps)
    for got, want in zip((dx, dgamma, dbeta), batchnorm2d_backward(dout, cache), strict=True):
        assert got.shape == want.shape and rel_error(got, want) < 1e-8, f"shape {shape}"
    if numeric:
        for arr, got in ((x, dx), (gamma, dgamma), (beta, dbeta)):
            grad = numeric_gradient_with_bound(
                lambda: batchnorm2d_forward(x, gamma, beta, eps=eps)[0], arr, dout)
            assert gradient_error(got, grad) <= THRESHOLD, "vs a numeric gradient"


# TEST a small batch with drawn values, vs a numeric gradient (1 point)
def grade_bn_small(student, rng):
    _bn_check(student, (2, 2, 2, 3), rng)


# TEST random shapes and eps vs numeric gradients of the reference forward (3 points)
def grade_bn_random(student, rng):
    for numeric in (True, True, False, False):
        shape = tuple(int(v) for v in rng.integers(1, 5, size=4))
        shape = (max(shape[0], 2), *shape[1:])                      # N >= 2
        _bn_check(student, shape, rng, numeric)


# TEST after a fully connected layer (H = W = 1): statistics over the batch only (1 point)
def grade_bn_fc(student, rng):
    _bn_check(student, (int(rng.integers(3, 9)), int(rng.integers(1, 5)), 1, 1), rng)
### END HIDDEN TESTS

# %% [markdown]
# ## Summary
#
# - Conv backward: `db` sums `dout`; `dw` sums windows weighted by `dout`; `dx` adds
#   `dout · w` back onto every window — overlapping windows accumulate.
# - Max-pool backward routes each gradient to its window's (first) argmax; with
#   overlapping windows an input can collect several gradients.
# - Gradient checks in float64 with inputs off ties and kinks give ~1e-10; assert < 1e-7.
# - im2col turns the conv into one matrix product: identical results (rel error < 1e-9),
#   orders of magnitude faster (ratios printed above).
# - Batch norm's statistics depend on the whole batch, so its dx has three paths (x̂, μ,
#   σ²) and sums to zero over each channel.
#
# ## Exercises
#
# 1. Show that `dx` of a stride-1 convolution is a "full" cross-correlation of `dout`
#    with the kernel rotated by 180° (a true convolution with the kernel itself: one flip,
#    not two). Check it numerically with `conv2d_forward` and `pad=KH-1`.
# 2. Why does `col2im` use `+=` on slices, and why is that exact here even though the
#    windows overlap? (Hint: look at one kernel offset at a time.)
# 3. What happens to the max-pool gradient check if two inputs of a window are equal?
#    Try `x = np.ones(...)` and explain the relative error you see.

# %% [markdown] nbgrader={"grade": true, "grade_id": "open_answers", "locked": false, "points": 0, "schema_version": 3, "solution": true}
# ### Your answers to the exercises
#
# ### BEGIN SOLUTION
# **Teacher's edition: model answers and rubrics** (points are a suggestion for a manually graded answer; `minircnn assign` replaces this block by YOUR ANSWER HERE).
#
# **1. dx is a full convolution.** For stride 1, dx[c, i, j] = Σ_f Σ_{p,q} dout[f, i − p,
# j − q] · w[f, c, p, q]: a correlation of `dout`, zero-padded by KH − 1 and KW − 1, with the
# kernel flipped in both axes (and its F and C axes swapped). Numerically:
# `conv2d_forward(dout, w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3), np.zeros(C), pad=KH-1)`
# equals `conv2d_backward`'s dx (square kernel).
# *Rubric (4):* 2 the index derivation; 1 the flip and the F/C swap; 1 the numerical
# check with a small rel_error.
#
# **2. `+=` in col2im.** Overlapping windows put several column entries onto one input
# pixel, and their contributions must be added. Looping over one kernel offset (kh, kw)
# at a time, the strided slice `x[:, :, kh:kh+stride*OH:stride, kw:...]` addresses each
# pixel at most once (distinct windows shift by the stride), so `+=` on that slice never
# sees a repeated index; repeats only happen across offsets, which are separate
# statements. Fancy-index `a[idx] += v` would drop repeats; here there are none.
# *Rubric (3):* 1 why accumulation is needed; 2 why one offset's slice has no repeats.
#
# **3. Ties in max pooling.** With equal inputs, a ±h step changes which input wins, so
# the function is not differentiable there: the numeric gradient splits the gradient
# (about half to each tied input, from the two one-sided moves), while the analytic
# backward sends all of it to the first maximum. The relative error is of order 1, not
# 1e-10 — a tie, not a bug; break ties (distinct values) before gradient checking.
# *Rubric (2):* 1 the measured large error; 1 the explanation by non-differentiability.
# ### END SOLUTION
