"""Tests of minircnn/layers/roi_pool.py (RoI max pooling in three tiers, SPP, the shared
input checks) and of its table engine, minircnn/layers/roi_max_tables.py.

Every expected array below is worked out by hand (or by a plain per-bin oracle written
here from torchvision's CPU kernel), never produced by the code under test.
"""

import math

import numpy as np
import pytest

from minircnn.backend import asnumpy, to_device
from minircnn.gradcheck import check_layer, rel_error
from minircnn.gradcheck.cases import distinct_values, ramp, random_rois
from minircnn.layers import (
    RoIPool,
    SpatialPyramidPool,
    roi_align_forward,
    roi_align_forward_naive,
    roi_pool_backward,
    roi_pool_backward_naive,
    roi_pool_forward,
    roi_pool_forward_naive,
    roi_pool_forward_vectorized,
    spp_backward,
    spp_forward,
)
from minircnn.layers.roi_max_tables import plan_table, roi_max_pool_tables
from minircnn.layers.roi_pool import RoIPoolCache, c_round, checked_bins, roi_pool_bins

POOL_IMPLS = {"naive": (roi_pool_forward_naive, roi_pool_backward_naive),
              "vectorized": (roi_pool_forward_vectorized, roi_pool_backward),
              "fast": (roi_pool_forward, roi_pool_backward)}
TIERS = list(POOL_IMPLS)
FLT_MAX = float(np.finfo(np.float32).max)   # C's FLT_MAX, where torchvision's bin max starts


def tables_forward(table, table_entries=1 << 22, lookup_entries=1 << 15):
    """roi_pool_forward with the table engine's choices made by the test."""
    def forward(features, rois, *, output_size, spatial_scale):
        features, bins = checked_bins(features, rois, output_size, spatial_scale)
        out, argmax = roi_max_pool_tables(features, bins, table=table,
                                          table_entries=table_entries,
                                          lookup_entries=lookup_entries)
        return out, RoIPoolCache(tuple(features.shape), bins.batch, argmax, features.dtype)
    return forward


def oracle_roi_pool(x, rois, output_size, scale):
    """torchvision's roi_pool written bin by bin with Python's math (first max: np.argmax)."""
    PH, PW = output_size
    N, C, H, W = x.shape
    out = np.zeros((len(rois), C, PH, PW))
    dx_cell = np.full((len(rois), C, PH, PW), -1)
    for r, (b, x1, y1, x2, y2) in enumerate(rois):
        sw, sh, ew, eh = (int(math.copysign(math.floor(abs(v * scale) + 0.5), v))
                          for v in (x1, y1, x2, y2))
        rw, rh = max(ew - sw + 1, 1), max(eh - sh + 1, 1)
        for ph in range(PH):
            hs = min(max(math.floor(ph * rh / PH) + sh, 0), H)
            he = min(max(math.ceil((ph + 1) * rh / PH) + sh, 0), H)
            for pw in range(PW):
                ws = min(max(math.floor(pw * rw / PW) + sw, 0), W)
                we = min(max(math.ceil((pw + 1) * rw / PW) + sw, 0), W)
                if he <= hs or we <= ws:
                    continue
                for c in range(C):
                    window = x[int(b), c, hs:he, ws:we]
                    k = int(np.argmax(window))          # first max in row-major order
                    h, w = divmod(k, we - ws)
                    out[r, c, ph, pw] = window[h, w]
                    dx_cell[r, c, ph, pw] = ((int(b) * C + c) * H + hs + h) * W + ws + w
    return out, dx_cell


# --- roi_pool: hand-computed values --------------------------------------------------
@pytest.mark.parametrize("impl", TIERS)
def test_roi_pool_worked_example(impl):
    forward, _ = POOL_IMPLS[impl]
    x = ramp((1, 1, 4, 4))                                   # x[h, w] = 4h + w
    rois = np.array([[0, 0, 0, 20, 20], [0, 0, 10, 30, 30]], dtype=np.float64)
    out, _ = forward(x, rois, output_size=(2, 2), spatial_scale=0.1)
    np.testing.assert_array_equal(out[:, 0], [[[5, 6], [9, 10]], [[9, 11], [13, 15]]])


def test_c_round_is_half_away_from_zero():
    v = np.array([2.5, -2.5, 0.5, -0.5, 1.5, 1.4999, -1.4999, 3.0])
    np.testing.assert_array_equal(c_round(v), [3, -3, 1, -1, 2, 1, -1, 3])
    # float32: floor(v + 0.5) would give 1 here, C's roundf gives 0
    assert c_round(np.array([0.49999997], dtype=np.float32))[0] == 0


@pytest.mark.parametrize("impl", TIERS)
def test_roi_pool_coordinates_on_half(impl):
    """At scale 1/16, x1 = 40 -> 2.5 -> 3 and y1 = -8 -> -0.5 -> -1 (C round).

    RoI cells: cols 3..5 (width 3, bin 1.5), rows -1..2 (height 4, bin 2).
    cols: pw0 = 3..4, pw1 = 4..5; rows: ph0 = -1..0 clipped to 0..0, ph1 = 1..2.
    Banker's rounding (x1 -> 2, y1 -> 0) would give [[9, 10], [15, 16]] instead.
    """
    forward, _ = POOL_IMPLS[impl]
    x = ramp((1, 1, 5, 6))                                   # x[h, w] = 6h + w
    rois = np.array([[0, 40, -8, 72, 24]], dtype=np.float64)  # 2.5, -0.5, 4.5, 1.5 cells
    out, _ = forward(x, rois, output_size=2, spatial_scale=1 / 16)
    np.testing.assert_array_equal(out[0, 0], [[4, 5], [16, 17]])


@pytest.mark.parametrize("impl", TIERS)
def test_roi_pool_tiny_roi_repeats_its_cell(impl):
    """A 1x1 RoI pooled to 3x3: every bin is the one cell; its gradient sums all 9."""
    forward, backward = POOL_IMPLS[impl]
    x = ramp((1, 2, 4, 4))
    rois = np.array([[0, 2, 1, 2, 1]], dtype=np.float64)     # x1 = x2 = 2, y1 = y2 = 1
    out, cache = forward(x, rois, output_size=3, spatial_scale=1.0)
    np.testing.assert_array_equal(out[0, 0], np.full((3, 3), 6.0))
    np.testing.assert_array_equal(out[0, 1], np.full((3, 3), 22.0))
    dout = np.arange(18, dtype=np.float64).reshape(1, 2, 3, 3)
    dx = backward(dout, cache)
    expected = np.zeros_like(x)
    expected[0, 0, 1, 2], expected[0, 1, 1, 2] = dout[0, 0].sum(), dout[0, 1].sum()
    np.testing.assert_array_equal(dx, expected)


@pytest.mark.parametrize("impl", TIERS)
def test_roi_pool_past_the_border_gives_empty_bins(impl):
    """Map values are negative, so an output 0 can only come from an empty bin."""
    forward, backward = POOL_IMPLS[impl]
    x = -1.0 - ramp((1, 1, 4, 4))
    rois = np.array([[0, 2, 0, 7, 3],      # cols 2..7: pw0 = 2..4 -> 2..3, pw1 = 5..7 -> empty
                     [0, 6, 6, 9, 9]],     # wholly outside the 4x4 map: all bins empty
                    dtype=np.float64)
    out, cache = forward(x, rois, output_size=(1, 2), spatial_scale=1.0)
    np.testing.assert_array_equal(out[:, 0], [[[-3.0, 0.0]], [[0.0, 0.0]]])
    dx = backward(np.ones_like(out), cache)
    expected = np.zeros_like(x)
    expected[0, 0, 0, 2] = 1.0             # only the non-empty bin's argmax gets a gradient
    np.testing.assert_array_equal(dx, expected)
    assert (asnumpy(cache.argmax)[1] == -1).all()


@pytest.mark.parametrize("impl", TIERS)
def test_roi_pool_ties_first_max_in_row_major_order(impl):
    """Equal maxima at (0, 2) and (1, 0): row-major order reaches (0, 2) first.

    (Reducing rows first, then columns, would pick (1, 0): the test tells them apart.)
    """
    forward, backward = POOL_IMPLS[impl]
    x = np.zeros((1, 1, 3, 3))
    x[0, 0, 0, 2] = x[0, 0, 1, 0] = 5.0
    rois = np.array([[0, 0, 0, 2, 2]], dtype=np.float64)
    out, cache = forward(x, rois, output_size=1, spatial_scale=1.0)
    assert out[0, 0, 0, 0] == 5.0
    dx = backward(np.full_like(out, 2.0), cache)
    expected = np.zeros_like(x)
    expected[0, 0, 0, 2] = 2.0
    np.testing.assert_array_equal(dx, expected)
    # an all-equal bin: the gradient goes to its first cell
    out, cache = forward(np.ones((1, 1, 3, 3)), rois, output_size=1, spatial_scale=1.0)
    dx = backward(np.ones_like(out), cache)
    assert dx[0, 0, 0, 0] == 1.0 and dx.sum() == 1.0


@pytest.mark.parametrize("impl", TIERS)
def test_roi_pool_overlapping_rois_sum_their_gradients(impl):
    forward, backward = POOL_IMPLS[impl]
    x = distinct_values(np.random.default_rng(0), (2, 1, 4, 4))
    rois = np.array([[1, 0, 0, 3, 3], [1, 0, 0, 3, 3], [1, 1, 1, 3, 3], [0, 0, 0, 3, 3]],
                    dtype=np.float64)
    out, cache = forward(x, rois, output_size=1, spatial_scale=1.0)
    dout = np.array([1.0, 10.0, 100.0, 1000.0]).reshape(4, 1, 1, 1)
    dx = backward(dout, cache)
    expected = np.zeros_like(x)
    for r, n in enumerate([1, 1, 1, 0]):
        y1 = int(rois[r, 2])
        window = x[n, 0, y1:, y1:]
        h, w = np.unravel_index(np.argmax(window), window.shape)
        expected[n, 0, y1 + h, y1 + w] += dout[r, 0, 0, 0]
    np.testing.assert_array_equal(dx, expected)


@pytest.mark.parametrize("impl", TIERS)
@pytest.mark.parametrize("scale", [1 / 16, 1 / 8, 1.0])
@pytest.mark.parametrize("output_size", [(2, 2), (3, 2), (1, 4)])
def test_roi_pool_matches_oracle_with_ties(impl, scale, output_size):
    """Integer maps (many ties), RoIs of every size, several images, past the border."""
    forward, _ = POOL_IMPLS[impl]
    rng = np.random.default_rng(3)
    x = rng.integers(0, 4, (2, 2, 5, 6)).astype(np.float64)
    size = 6 / scale
    rois = random_rois(rng, 12, 2, size, past=2 / scale)
    rois[:3, 3:] = rois[:3, 1:3]                              # three zero-size RoIs
    out, cache = forward(x, rois, output_size=output_size, spatial_scale=scale)
    expected, cell = oracle_roi_pool(x, rois, output_size, scale)
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(asnumpy(cache.argmax), cell)


def test_roi_pool_bins_shared_helper():
    """RoI (0, 0, 10, 30, 30) at scale 0.1: cols 0..3 in bins of 2, rows 1..3 in bins of 1.5."""
    rois = np.array([[0, 0, 10, 30, 30]], dtype=np.float64)
    bins = roi_pool_bins(rois, (2, 2), 0.1, 4, 4)
    np.testing.assert_array_equal(bins.hstart, [[1, 2]])
    np.testing.assert_array_equal(bins.hend, [[3, 4]])
    np.testing.assert_array_equal(bins.wstart, [[0, 2]])
    np.testing.assert_array_equal(bins.wend, [[2, 4]])


# --- roi_pool: gradients and naive == fast --------------------------------------------
def _pool_gradcheck_inputs(rng):
    x = distinct_values(rng, (2, 2, 6, 7))
    rois = np.array([[0, 0, 0, 6, 5], [1, 1, 2, 4, 4], [1, 0, 0, 1, 1], [0, 3, 3, 10, 9],
                     [0, 2, 1, 4, 2], [1, 5, 5, 5, 5], [0, 8, 0, 12, 5]], dtype=np.float64)
    return x, rois


@pytest.mark.parametrize("impl", TIERS)
def test_roi_pool_gradcheck(impl):
    forward, backward = POOL_IMPLS[impl]
    x, rois = _pool_gradcheck_inputs(np.random.default_rng(1))
    errors = check_layer(forward, backward, {"features": x, "rois": rois},
                         kwargs={"output_size": (3, 2), "spatial_scale": 1.0}, wrt=["features"])
    assert errors["features"] <= 1e-7


@pytest.mark.parametrize("impl", ["vectorized", "fast"])
@pytest.mark.parametrize("scale", [1 / 16, 1 / 8, 1.0])
def test_roi_pool_tier_equals_naive(impl, scale):
    """Same bits (value and argmax), and the caches are interchangeable: each backward
    steps through the other tier's cache."""
    forward, backward = POOL_IMPLS[impl]
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 3, 7, 8))
    rois = random_rois(rng, 20, 2, 8 / scale, past=3 / scale)
    out_n, cache_n = roi_pool_forward_naive(x, rois, output_size=(3, 4), spatial_scale=scale)
    out_f, cache_f = forward(x, rois, output_size=(3, 4), spatial_scale=scale)
    np.testing.assert_array_equal(out_n, out_f)
    np.testing.assert_array_equal(cache_n.argmax, cache_f.argmax)
    dout = rng.standard_normal(out_f.shape)
    dx_n = roi_pool_backward_naive(dout, cache_f)
    assert rel_error(dx_n, backward(dout, cache_n)) <= 1e-9


def test_roi_pool_fast_in_channel_chunks():
    """A small table budget makes the fast path pool a few channels at a time."""
    rng = np.random.default_rng(9)
    x = rng.standard_normal((2, 5, 6, 7))
    rois = random_rois(rng, 9, 2, 56, past=16)
    expected, cache_n = roi_pool_forward_naive(x, rois, output_size=(2, 3), spatial_scale=1 / 8)
    forward = tables_forward(None, table_entries=2 * 6 * 7 * 4 * 2)
    out, cache = forward(x, rois, output_size=(2, 3), spatial_scale=1 / 8)
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(cache.argmax, cache_n.argmax)


@pytest.mark.parametrize("output_size", [1, 2, (1, 3)])
def test_roi_pool_large_bins_with_ties(output_size):
    """Bins up to the whole map (sparse-table levels up to 2^4 x 2^4, four overlapping
    corner blocks per bin) on integer maps full of ties: fast == oracle == naive,
    value, argmax and gradient location alike."""
    rng = np.random.default_rng(11)
    x = rng.integers(0, 3, (2, 3, 19, 23)).astype(np.float64)
    rois = np.array([[0, 0, 0, 22, 18], [1, 0, 0, 22, 18], [1, 0, 0, 400, 400],
                     [0, 1, 2, 21, 17], [1, 3, 0, 19, 18], [0, 5, 4, 9, 12]], dtype=np.float64)
    rois = np.concatenate([rois, random_rois(rng, 10, 2, 23, past=2, min_size=8)])
    expected, cell = oracle_roi_pool(x, rois, pair_of(output_size), 1.0)
    for forward, backward in POOL_IMPLS.values():
        out, cache = forward(x, rois, output_size=output_size, spatial_scale=1.0)
        np.testing.assert_array_equal(out, expected)
        np.testing.assert_array_equal(asnumpy(cache.argmax), cell)
        dout = rng.integers(1, 5, out.shape).astype(np.float64)
        dx = backward(dout, cache)
        expected_dx = np.zeros(x.size)
        hit = cell.ravel() >= 0                              # empty bins send nothing
        np.add.at(expected_dx, cell.ravel()[hit], dout.ravel()[hit])   # dout to the first max
        np.testing.assert_array_equal(dx, expected_dx.reshape(x.shape))


def pair_of(size):
    return (size, size) if np.isscalar(size) else tuple(size)


def test_roi_pool_whole_map_tie_is_first_in_row_major_order():
    """A bin of 6 x 7 cells is covered by four overlapping 4 x 4 blocks. The max 5 sits
    at (1, 5) (top-right block only) and (3, 0) (both left blocks, earlier block order):
    row-major order reaches (1, 5) first, so it must win."""
    x = np.zeros((1, 1, 6, 7))
    x[0, 0, 1, 5] = x[0, 0, 3, 0] = x[0, 0, 5, 6] = 5.0
    rois = np.array([[0, 0, 0, 6, 5]], dtype=np.float64)
    for forward, _ in POOL_IMPLS.values():
        out, cache = forward(x, rois, output_size=1, spatial_scale=1.0)
        assert out[0, 0, 0, 0] == 5.0 and cache.argmax[0, 0, 0, 0] == 1 * 7 + 5


@pytest.mark.parametrize("impl", ["vectorized", "fast"])
def test_roi_pool_signed_zero_ties_keep_the_first_cell_bits(impl):
    """-0.0 == 0.0: the first one in row-major order is the output, sign bit included."""
    x = np.full((1, 1, 5, 6), -1.0)
    x[0, 0, 2, 4], x[0, 0, 3, 1] = -0.0, 0.0      # (2, 4) comes first
    rois = np.array([[0, 0, 0, 5, 4]], dtype=np.float64)
    expected, cache_n = roi_pool_forward_naive(x, rois, output_size=1, spatial_scale=1.0)
    out, cache = POOL_IMPLS[impl][0](x, rois, output_size=1, spatial_scale=1.0)
    assert np.signbit(out[0, 0, 0, 0]) and np.signbit(expected[0, 0, 0, 0])
    np.testing.assert_array_equal(cache.argmax, cache_n.argmax)


def test_roi_pool_fast_in_channel_and_roi_blocks():
    """Tiny table and lookup budgets: one channel per table, one RoI per lookup block;
    large bins and ties, so the blocks must still agree with the loops exactly."""
    rng = np.random.default_rng(12)
    x = rng.integers(0, 3, (2, 4, 9, 11)).astype(np.float32)
    rois = random_rois(rng, 7, 2, 88, past=16, min_size=32)
    expected, cache_n = roi_pool_forward_naive(x, rois, output_size=(2, 1), spatial_scale=1 / 8)
    forward = tables_forward(None, table_entries=1, lookup_entries=1)
    out, cache = forward(x, rois, output_size=(2, 1), spatial_scale=1 / 8)
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(cache.argmax, cache_n.argmax)


@pytest.mark.parametrize("table", ["box", "sparse", "vectorized"])
@pytest.mark.parametrize("output_size, scale", [((3, 4), 1 / 8), (7, 1.0), (2, 1.0),
                                                (1, 1.0), ((1, 3), 1.0)])
@pytest.mark.parametrize("table_entries", [1 << 22, 1])
def test_roi_pool_each_table_matches_loops_on_ties(table, output_size, scale, table_entries):
    """The box table, the sparse table (whole-map channel tables or one channel per
    table) and the vectorized tier, on integer maps full of ties, small bins (7x7 on a
    19x23 map) and large ones (1x1 up to the whole map): value, argmax and gradient
    equal the oracle's and the loops' exactly."""
    rng = np.random.default_rng(14)
    x = rng.integers(0, 3, (2, 3, 19, 23)).astype(np.float32)
    rois = np.concatenate([[[0, 0, 0, 22 / scale, 18 / scale], [1, 0, 0, 400, 400]],
                           random_rois(rng, 12, 2, 23 / scale, past=2 / scale)])
    bins = roi_pool_bins(rois.astype(np.float32), pair_of(output_size), scale, 19, 23)
    forward = roi_pool_forward_vectorized
    if table != "vectorized":
        assert plan_table(bins, (2, 19, 23), table=table).method == table
        forward = tables_forward(table, table_entries=table_entries)
    expected, cell = oracle_roi_pool(x, rois.astype(np.float32), pair_of(output_size), scale)
    out_n, cache_n = roi_pool_forward_naive(x, rois, output_size=output_size,
                                            spatial_scale=scale)
    out, cache = forward(x, rois, output_size=output_size, spatial_scale=scale)
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(out, out_n)
    np.testing.assert_array_equal(cache.argmax, cell)
    np.testing.assert_array_equal(cache.argmax, cache_n.argmax)
    dout = rng.integers(1, 5, out.shape).astype(np.float32)
    np.testing.assert_array_equal(roi_pool_backward(dout, cache),
                                  roi_pool_backward_naive(dout, cache_n))


@pytest.mark.parametrize("output_size, method", [(7, "box"), (1, "sparse"), (2, "sparse")])
def test_roi_pool_plan_picks_the_cheaper_table(output_size, method):
    """The benchmark's input (2, 64, 16, 16), RoIs of 8-128 px at scale 1/8:
    7x7 bins (at most 4x4 cells) read a box table; SPP's 2x2 and 1x1 bins (up to the
    whole 16x16 map) a sparse table, whose build grows with log2 of the bin size."""
    rng = np.random.default_rng(15)
    x1y1 = rng.uniform(0, 120, (256, 2))
    x2y2 = np.minimum(x1y1 + rng.uniform(8, 128, (256, 2)), 127)
    rois = np.concatenate([rng.integers(0, 2, (256, 1)), x1y1, x2y2], axis=1)
    bins = roi_pool_bins(rois, pair_of(output_size), 1 / 8, 16, 16)
    plan = plan_table(bins, (2, 16, 16))
    assert plan.method == method
    assert plan.rows.shape == ((1 if method == "box" else 4), 256, output_size, output_size)


def test_spp_whole_map_levels_match_naive():
    """SPP's coarse levels (bins as large as the RoI) against the loops, ties included."""
    rng = np.random.default_rng(13)
    x = rng.integers(0, 4, (2, 3, 12, 10)).astype(np.float64)
    rois = np.concatenate([[[0, 0, 0, 159, 191], [1, 0, 0, 159, 191]],
                           random_rois(rng, 6, 2, 160, past=16, min_size=48)])
    out, cache = spp_forward(x, rois, levels=(4, 2, 1), spatial_scale=1 / 16)
    parts = [roi_pool_forward_naive(x, rois, output_size=lv, spatial_scale=1 / 16)
             for lv in (4, 2, 1)]
    np.testing.assert_array_equal(out, np.concatenate([p.reshape(len(rois), -1)
                                                       for p, _ in parts], axis=1))
    for level_cache, (_, naive_cache) in zip(cache.level_caches, parts, strict=True):
        np.testing.assert_array_equal(level_cache.argmax, naive_cache.argmax)


def test_roi_pool_float32_and_no_rois():
    x = ramp((1, 1, 4, 4)).astype(np.float32)
    rois = np.array([[0, 0, 0, 20, 20]], dtype=np.float32)
    out, _ = roi_pool_forward(x, rois, output_size=2, spatial_scale=0.1)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out[0, 0], [[5, 6], [9, 10]])
    out, cache = roi_pool_forward(x, np.zeros((0, 5)), output_size=2, spatial_scale=0.1)
    assert out.shape == (0, 1, 2, 2)
    np.testing.assert_array_equal(roi_pool_backward(out, cache), np.zeros_like(x))


# --- SPP ------------------------------------------------------------------------------
def test_spp_layout_is_concatenated_roi_pools():
    rng = np.random.default_rng(6)
    x = distinct_values(rng, (2, 3, 6, 6))
    rois = random_rois(rng, 5, 2, 96, past=0, min_size=16)
    out, cache = spp_forward(x, rois, levels=(3, 2, 1), spatial_scale=1 / 16)
    assert out.shape == (5, 3 * (9 + 4 + 1))
    parts = [roi_pool_forward(x, rois, output_size=lv, spatial_scale=1 / 16)[0].reshape(5, -1)
             for lv in (3, 2, 1)]
    np.testing.assert_array_equal(out, np.concatenate(parts, axis=1))
    # channel-first inside a level: column c*4 + ph*2 + pw of level 2 is channel c's bin
    np.testing.assert_array_equal(out[:, 27:31], parts[1][:, :4])
    errors = check_layer(spp_forward, spp_backward, {"features": x, "rois": rois},
                         kwargs={"levels": (3, 2, 1), "spatial_scale": 1 / 16}, wrt=["features"])
    assert errors["features"] <= 1e-7


# --- modules --------------------------------------------------------------------------
@pytest.mark.parametrize("impl", TIERS)
def test_modules_wrap_the_functions(impl):
    rng = np.random.default_rng(7)
    x = distinct_values(rng, (1, 2, 5, 5))
    rois = np.array([[0, 0, 0, 60, 50], [0, 20, 10, 70, 70]], dtype=np.float64)
    dout = rng.standard_normal((2, 2, 2, 3))
    pool = RoIPool((2, 3), 1 / 16, impl=impl)
    out, cache = roi_pool_forward(x, rois, output_size=(2, 3), spatial_scale=1 / 16)
    np.testing.assert_array_equal(pool.forward(x, rois), out)
    np.testing.assert_array_equal(pool.backward(dout), roi_pool_backward(dout, cache))
    spp = SpatialPyramidPool((2, 1), 1 / 16)
    assert spp.forward(x, rois).shape == (2, 2 * 5)
    assert spp.backward(np.ones((2, 10))).shape == x.shape
    assert list(pool.parameters()) == [] and f"impl='{impl}'" in repr(pool)


def test_module_misuse():
    with pytest.raises(RuntimeError, match="before forward"):
        RoIPool(2, 1.0).backward(np.zeros((1, 1, 2, 2)))
    with pytest.raises(ValueError, match="impl"):   # refused when built, not at first use
        RoIPool(2, 1.0, impl="slow")


# --- bad input ------------------------------------------------------------------------
X = np.zeros((2, 1, 4, 4))
GOOD = np.array([[0, 0, 0, 2, 2]], dtype=np.float64)


@pytest.mark.parametrize("forward", [roi_pool_forward, roi_pool_forward_naive,
                                     roi_pool_forward_vectorized, roi_align_forward,
                                     roi_align_forward_naive, spp_forward])
@pytest.mark.parametrize("features, rois, match", [
    (X, GOOD[:, :4], r"rois must have shape \(R, 5\).*\(1, 4\)"),
    (X, GOOD[0], r"rois must have shape \(R, 5\)"),
    (X, [[2, 0, 0, 2, 2]], r"batch indices in \[0, 2\).*row 0 has 2"),
    (X, [[-1, 0, 0, 2, 2]], r"batch indices"),
    (X, [[0.5, 0, 0, 2, 2]], r"batch indices"),
    (X, [[0, 0, 0, 2, 2], [0, np.nan, 0, 2, 2]], r"finite, row 1"),
    (X, [[0, 0, 0, np.inf, 2]], r"finite"),
    (X, [[0, 3, 0, 2, 2]], r"x2 >= x1 and y2 >= y1, row 0"),
    (X, [[0, 0, 3, 2, 2]], r"x2 >= x1 and y2 >= y1"),
    (X[0], GOOD, r"features must be 4-D \(N, C, H, W\), got shape \(1, 4, 4\)"),
])
def test_bad_input_raises(forward, features, rois, match):
    kw = {"spatial_scale": 1.0} if forward is spp_forward else {"output_size": 2,
                                                                 "spatial_scale": 1.0}
    with pytest.raises(ValueError, match=match):
        forward(features, np.asarray(rois, dtype=np.float64), **kw)


def test_bad_hyperparameters_raise():
    with pytest.raises(TypeError, match="float"):
        roi_pool_forward(np.zeros((1, 1, 4, 4), dtype=np.int64), GOOD)
    with pytest.raises(ValueError, match="output_size"):
        roi_pool_forward(X, GOOD, output_size=0)
    with pytest.raises(ValueError, match="spatial_scale"):
        roi_pool_forward(X, GOOD, spatial_scale=-1.0)
    with pytest.raises(ValueError, match="levels"):
        spp_forward(X, GOOD, levels=(2, 0), spatial_scale=1.0)


# --- NumPy vs CuPy --------------------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.parametrize("pool", ["vectorized", None, "box", "sparse"])   # None: automatic
def test_numpy_equals_cupy(pool):
    rng = np.random.default_rng(8)
    x = rng.standard_normal((2, 4, 9, 10))
    rois = random_rois(rng, 30, 2, 160, past=32)
    xg, rg = to_device(x, "gpu"), to_device(rois, "gpu")
    forward = roi_pool_forward_vectorized if pool == "vectorized" else tables_forward(pool)
    cases = [
        (forward, roi_pool_backward, {"output_size": (3, 4), "spatial_scale": 1 / 16}),
        (spp_forward, spp_backward, {"levels": (3, 1), "spatial_scale": 1 / 16}),
    ]
    for forward, backward, kw in cases:
        out, cache = forward(x, rois, **kw)
        out_g, cache_g = forward(xg, rg, **kw)
        assert rel_error(out, out_g) <= 1e-9
        dout = rng.standard_normal(out.shape)
        dx_g = backward(to_device(dout, "gpu"), cache_g)
        assert rel_error(backward(dout, cache), dx_g) <= 1e-9



@pytest.mark.gpu
@pytest.mark.parametrize("pool", ["vectorized", "box", "sparse"])
def test_numpy_equals_cupy_with_non_finite_cells(pool):
    """NaN, +-inf and -FLT_MAX cells: the device gives the host's values, argmax and
    gradient exactly (bins of non-candidates only included)."""
    rng = np.random.default_rng(9)
    x = rng.integers(-2, 3, (2, 3, 9, 10)).astype(np.float32)
    cells = rng.random(x.shape) < 0.4
    x[cells] = rng.choice(np.array([np.nan, np.inf, -np.inf, -FLT_MAX], np.float32), cells.sum())
    rois = random_rois(rng, 20, 2, 40, past=8)
    forward = roi_pool_forward_vectorized if pool == "vectorized" else tables_forward(pool)
    out, cache = forward(x, rois, output_size=(3, 2), spatial_scale=1 / 4)
    out_g, cache_g = forward(to_device(x, "gpu"), to_device(rois, "gpu"), output_size=(3, 2),
                             spatial_scale=1 / 4)
    assert (cache.argmax == -1).any()
    assert asnumpy(out_g).tobytes() == np.ascontiguousarray(out).tobytes()
    np.testing.assert_array_equal(asnumpy(cache_g.argmax), cache.argmax)
    dout = rng.integers(1, 5, out.shape).astype(np.float32)
    np.testing.assert_array_equal(asnumpy(roi_pool_backward(to_device(dout, "gpu"), cache_g)),
                                  roi_pool_backward(dout, cache))

def test_unknown_table_raises():
    bins = roi_pool_bins(GOOD, (2, 2), 1.0, 4, 4)
    with pytest.raises(ValueError, match="table must be 'box', 'sparse' or None"):
        plan_table(bins, (2, 4, 4), table="boxes")


def test_merge_equals_a_select_bit_for_bit():
    """The arithmetic merge keeps exactly what a select on ``new > best`` keeps: on ties
    the first value (signed zeros included) and its index."""
    from minircnn.layers.roi_max_tables import _merge_first_max

    rng = np.random.default_rng(21)
    best = rng.integers(-1, 2, (6, 50)).astype(np.float32) * np.float32(0.0)
    best[::2] = rng.integers(-2, 3, (3, 50))                # ties, +0.0, -0.0 and others
    best[1, :3] = [np.inf, -np.inf, -FLT_MAX]
    new = rng.choice(np.array([-0.0, 0.0, 1.0, -1.0, np.inf, -FLT_MAX], np.float32), (6, 50))
    arg, new_arg = rng.integers(0, 99, (2, 6, 50)).astype(np.int32)
    out, out_arg = np.empty_like(best), np.empty_like(arg)
    _merge_first_max(best, arg, new, new_arg, out, out_arg)
    better = new > best
    assert out.tobytes() == np.where(better, new, best).tobytes()
    np.testing.assert_array_equal(out_arg, np.where(better, new_arg, arg))



@pytest.mark.parametrize("impl", ["naive", "vectorized", "box", "sparse"])
def test_roi_pool_nan_and_inf_follow_torchvision(impl):
    """torchvision's loop starts a non-empty bin at -FLT_MAX and takes a cell only if it
    is ``>``: NaN, -inf and -FLT_MAX never win; a bin of such cells only outputs -FLT_MAX
    with argmax -1 (no gradient); +inf wins, first one on a tie. Worked by hand on the
    four 2 x 2 quadrants of a 4 x 4 map."""
    nan, inf = np.nan, np.inf
    x = np.array([[nan, 3, nan, nan],
                  [1, nan, nan, nan],
                  [-inf, -inf, inf, 2],
                  [-FLT_MAX, -inf, inf, nan]], dtype=np.float32)[None, None]
    rois = np.array([[0, 0, 0, 3, 3]], dtype=np.float32)
    forward, backward = POOL_IMPLS.get(impl) or (tables_forward(impl), roi_pool_backward)
    out, cache = forward(x, rois, output_size=2, spatial_scale=1.0)
    expected = np.array([[3, -FLT_MAX], [-FLT_MAX, inf]], dtype=np.float32)
    np.testing.assert_array_equal(out[0, 0], expected)
    np.testing.assert_array_equal(cache.argmax[0, 0], [[1, -1], [-1, 10]])   # 1: (0, 1)
    dx = backward(np.ones_like(out), cache)                                   # 10: (2, 2)
    np.testing.assert_array_equal(np.flatnonzero(dx), [1, 10])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("impl", ["vectorized", "box", "sparse"])
@pytest.mark.parametrize("output_size, scale", [((3, 4), 1 / 4), (1, 1.0), (2, 1.0)])
def test_roi_pool_non_finite_tier_equals_naive(impl, dtype, output_size, scale):
    """Maps sprinkled with NaN, +inf, -inf, -FLT_MAX (and, in float64, values below it),
    a whole image of NaN, small and large bins, empty ones: every tier gives the loops'
    value, argmax and gradient exactly, and never outputs NaN."""
    rng = np.random.default_rng(31)
    x = rng.integers(-2, 3, (2, 3, 9, 11)).astype(dtype)           # ties as well
    specials = [np.nan, np.inf, -np.inf, -FLT_MAX] + ([-1e300] if dtype == np.float64 else [])
    cells = rng.random(x.shape) < 0.3
    x[cells] = rng.choice(np.array(specials, dtype), cells.sum())
    x[1, 2] = np.nan                                                # a channel without a value
    rois = np.concatenate([[[0, 0, 0, 10 / scale, 8 / scale], [1, 0, 0, 400, 400]],
                           random_rois(rng, 10, 2, 11 / scale, past=2 / scale)])
    forward = roi_pool_forward_vectorized if impl == "vectorized" else tables_forward(impl)
    out_n, cache_n = roi_pool_forward_naive(x, rois, output_size=output_size,
                                            spatial_scale=scale)
    out, cache = forward(x, rois, output_size=output_size, spatial_scale=scale)
    assert not np.isnan(out_n).any()
    assert (out_n == dtype(-FLT_MAX)).any() and (cache_n.argmax == -1).any()
    assert out.tobytes() == np.ascontiguousarray(out_n).tobytes()
    np.testing.assert_array_equal(cache.argmax, cache_n.argmax)
    dout = rng.integers(1, 5, out.shape).astype(dtype)
    np.testing.assert_array_equal(roi_pool_backward(dout, cache),
                                  roi_pool_backward_naive(dout, cache_n))
