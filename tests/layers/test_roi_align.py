"""Tests of minircnn/layers/roi_align.py: RoIAlign (torchvision.ops.roi_align semantics).

Every expected array below is worked out by hand, never produced by the code under test.
The input checks RoIAlign shares with roi_pool are tested in test_roi_pool.py.
"""

import numpy as np
import pytest

import minircnn.layers.roi_align as roi_align_module
import minircnn.layers.roi_pool as roi_pool_module
from minircnn.backend import to_device
from minircnn.gradcheck import check_layer, rel_error
from minircnn.gradcheck.cases import distinct_values, ramp, random_rois
from minircnn.layers import (
    RoIAlign,
    roi_align_backward,
    roi_align_backward_naive,
    roi_align_forward,
    roi_align_forward_naive,
)
from minircnn.layers.roi_align_matrices import pool_whole, unpool_whole

ALIGN_IMPLS = {"naive": (roi_align_forward_naive, roi_align_backward_naive),
               "fast": (roi_align_forward, roi_align_backward)}


# --- roi_align ------------------------------------------------------------------------
@pytest.mark.parametrize("impl", ["naive", "fast"])
@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", [2, 0, 3])
def test_roi_align_linear_ramp_gives_bin_centres(impl, aligned, sampling_ratio):
    """Bilinear interpolation of f(y, x) = 3y + x + 1 is exact, and the samples sit
    symmetrically in each bin, so each output is f at the bin centre.

    RoI x 8..40, y 12..36 px at scale 1/8: cells x 1..5, y 1.5..4.5 (minus 0.5 if
    aligned); 2x2 bins of 2 (x) by 1.5 (y) cells, all samples inside the 8x8 map.
    """
    forward, _ = ALIGN_IMPLS[impl]
    h, w = np.meshgrid(np.arange(8.0), np.arange(8.0), indexing="ij")
    x = (3 * h + w + 1)[None, None]
    rois = np.array([[0, 8, 12, 40, 36]], dtype=np.float64)
    out, _ = forward(x, rois, output_size=2, spatial_scale=1 / 8,
                     sampling_ratio=sampling_ratio, aligned=aligned)
    shift = 0.5 if aligned else 0.0
    yc = 1.5 - shift + (np.arange(2) + 0.5) * 1.5
    xc = 1.0 - shift + (np.arange(2) + 0.5) * 2.0
    np.testing.assert_allclose(out[0, 0], 3 * yc[:, None] + xc[None, :] + 1, rtol=0, atol=1e-12)


@pytest.mark.parametrize("impl", ["naive", "fast"])
def test_roi_align_border_rules(impl):
    """One sample per bin (sampling_ratio 1) on a 2x3 map x[h, w] = 3h + w:
    y = 3.5 > H = 2 contributes 0; y = 1.5 is past the last row, so it reads row 1;
    y = -0.5 is in [-1, 0], so it reads row 0; x = 1.5 interpolates columns 1 and 2."""
    forward, backward = ALIGN_IMPLS[impl]
    x = ramp((1, 1, 2, 3))
    rois = np.array([[0, 1, 3, 2, 4], [0, 1, 1, 2, 2], [0, 1, -1, 2, 0]], dtype=np.float64)
    out, cache = forward(x, rois, output_size=1, spatial_scale=1.0, sampling_ratio=1)
    np.testing.assert_allclose(out[:, 0, 0, 0], [0.0, 4.5, 1.5], atol=1e-12)
    dx = backward(np.ones_like(out), cache)
    expected = np.zeros_like(x)
    expected[0, 0, 1, 1:] += 0.5          # RoI 1: half to (1, 1), half to (1, 2)
    expected[0, 0, 0, 1:] += 0.5          # RoI 2: the same on row 0
    np.testing.assert_allclose(dx, expected, atol=1e-12)


@pytest.mark.parametrize("impl", ["naive", "fast"])
def test_roi_align_roi_size_rules(impl):
    """A zero-size RoI at (y, x) = (1, 2) on f = 3y + x + 1, 1x1 output:
    - aligned=False forces it to 1x1 cell: samples average to f(1.5, 2.5) = 8;
    - aligned=True keeps size 0, shifted by -0.5: every sample is f(0.5, 1.5) = 4;
    - aligned=True with adaptive sampling: ceil(0 / 1) = 0 samples, output 0.
    Adaptive grid = ceil(roi_h / PH): rows 0..4 of a map with 8 on row 3 (PH = 1) give
    samples at y = 0.5, 1.5, 2.5, 3.5 reading 0, 0, 4, 4: mean 2."""
    forward, _ = ALIGN_IMPLS[impl]
    h, w = np.meshgrid(np.arange(6.0), np.arange(6.0), indexing="ij")
    ramp_map = (3 * h + w + 1)[None, None]
    point = np.array([[0, 2, 1, 2, 1]], dtype=np.float64)
    kw = {"output_size": 1, "spatial_scale": 1.0}
    assert forward(ramp_map, point, **kw, aligned=False)[0][0, 0, 0, 0] == pytest.approx(8.0)
    assert forward(ramp_map, point, **kw, aligned=True)[0][0, 0, 0, 0] == pytest.approx(4.0)
    out, _ = forward(ramp_map, point, **kw, aligned=True, sampling_ratio=0)
    assert out[0, 0, 0, 0] == 0.0
    spike = np.zeros((1, 1, 6, 6))
    spike[0, 0, 3, :] = 8.0
    out, _ = forward(spike, np.array([[0, 0, 0, 1, 4]], dtype=np.float64), **kw,
                     sampling_ratio=0)
    assert out[0, 0, 0, 0] == pytest.approx(2.0)


@pytest.mark.parametrize("impl", ["naive", "fast"])
@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", [2, 0])
def test_roi_align_gradcheck(impl, aligned, sampling_ratio):
    forward, backward = ALIGN_IMPLS[impl]
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 2, 5, 6))
    rois = np.array([[0, 0, 0, 40, 30], [1, 4, 6, 20, 20], [1, 30, 20, 60, 50],
                     [0, 10, 10, 10, 10]], dtype=np.float64)
    errors = check_layer(forward, backward, {"features": x, "rois": rois},
                         kwargs={"output_size": (2, 3), "spatial_scale": 1 / 8,
                                 "sampling_ratio": sampling_ratio, "aligned": aligned},
                         wrt=["features"])
    assert errors["features"] <= 1e-7


@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", [2, 0])
def test_roi_align_naive_equals_fast(aligned, sampling_ratio):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 3, 6, 7))
    rois = random_rois(rng, 15, 2, 56, past=16)
    kw = {"output_size": (3, 2), "spatial_scale": 1 / 8, "sampling_ratio": sampling_ratio,
          "aligned": aligned}
    out_n, cache_n = roi_align_forward_naive(x, rois, **kw)
    out_f, cache_f = roi_align_forward(x, rois, **kw)
    assert rel_error(out_n, out_f) <= 1e-9
    dout = rng.standard_normal(out_f.shape)
    dx_n = roi_align_backward_naive(dout, cache_n)
    assert rel_error(dx_n, roi_align_backward(dout, cache_f)) <= 1e-9


# --- module ---------------------------------------------------------------------------
@pytest.mark.parametrize("impl", ["naive", "fast"])
def test_module_wraps_the_functions(impl):
    rng = np.random.default_rng(7)
    x = distinct_values(rng, (1, 2, 5, 5))
    rois = np.array([[0, 0, 0, 60, 50], [0, 20, 10, 70, 70]], dtype=np.float64)
    dout = rng.standard_normal((2, 2, 2, 3))
    align = RoIAlign((2, 3), 1 / 16, sampling_ratio=0, aligned=True, impl=impl)
    out, cache = roi_align_forward(x, rois, output_size=(2, 3), spatial_scale=1 / 16,
                                   sampling_ratio=0, aligned=True)
    np.testing.assert_allclose(align.forward(x, rois), out, atol=1e-12)
    np.testing.assert_allclose(align.backward(dout), roi_align_backward(dout, cache), atol=1e-12)
    assert list(align.parameters()) == [] and f"impl='{impl}'" in repr(align)


def test_module_keeps_no_cache_under_no_grad():
    """At test time (no_grad) the layer returns the same values and keeps nothing."""
    from minircnn.layers.module import no_grad

    rng = np.random.default_rng(9)
    x = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    rois = random_rois(rng, 12, 2, 32, past=4).astype(np.float32)
    align = RoIAlign(7, 1 / 4)
    expected = align.forward(x, rois)
    with no_grad(align):
        out = align.forward(x, rois)
    np.testing.assert_array_equal(out, expected)
    with pytest.raises(RuntimeError, match="before forward"):
        align.backward(np.ones_like(out))


def test_module_misuse():
    with pytest.raises(RuntimeError, match="before forward"):
        RoIAlign(2, 1.0).backward(np.zeros((1, 1, 2, 2)))
    with pytest.raises(ValueError, match="impl"):   # refused when built, not at first use
        RoIAlign(2, 1.0, impl="slow")


def test_roi_align_names_are_defined_in_roi_align_and_exported_by_the_package():
    """"Go to definition" on RoIAlign lands in roi_align.py; roi_pool.py re-exports
    nothing, minircnn.layers exports the public names."""
    import minircnn.layers as layers

    for name in ("RoIAlign", "roi_align_forward", "roi_align_backward",
                 "roi_align_forward_naive", "roi_align_backward_naive"):
        assert getattr(layers, name) is getattr(roi_align_module, name)
        assert getattr(layers, name).__module__ == "minircnn.layers.roi_align"
        assert not hasattr(roi_pool_module, name)


def test_no_rois_gives_empty_outputs_and_a_zero_gradient():
    x = np.random.default_rng(10).random((2, 3, 8, 8)).astype(np.float32)
    for forward, backward in ALIGN_IMPLS.values():
        out, cache = forward(x, np.zeros((0, 5), np.float32), output_size=7,
                             spatial_scale=1 / 4)
        assert out.shape == (0, 3, 7, 7) and out.dtype == np.float32
        dx = backward(out, cache)
        assert dx.shape == x.shape and not dx.any()


# --- bad input ------------------------------------------------------------------------
def test_bad_sampling_ratio_raises():
    x, rois = np.zeros((2, 1, 4, 4)), np.array([[0, 0, 0, 2, 2]], dtype=np.float64)
    for forward in (roi_align_forward, roi_align_forward_naive):
        with pytest.raises(ValueError, match="sampling_ratio"):
            forward(x, rois, output_size=2, spatial_scale=1.0, sampling_ratio=1.5)


# --- NumPy vs CuPy --------------------------------------------------------------------
@pytest.mark.gpu
def test_numpy_equals_cupy():
    rng = np.random.default_rng(8)
    x = rng.standard_normal((2, 4, 9, 10))
    rois = random_rois(rng, 30, 2, 160, past=32)
    kw = {"output_size": 3, "spatial_scale": 1 / 16, "sampling_ratio": 0, "aligned": True}
    out, cache = roi_align_forward(x, rois, **kw)
    out_g, cache_g = roi_align_forward(to_device(x, "gpu"), to_device(rois, "gpu"), **kw)
    assert rel_error(out, out_g) <= 1e-9
    dout = rng.standard_normal(out.shape)
    dx_g = roi_align_backward(to_device(dout, "gpu"), cache_g)
    assert rel_error(roi_align_backward(dout, cache), dx_g) <= 1e-9


def test_backward_reuses_the_forward_windows(monkeypatch):
    """The fast backward reads the windows and weights its forward built (no rebuild);
    from a naive forward's cache it builds them."""
    rng = np.random.default_rng(8)
    x = distinct_values(rng, (1, 2, 5, 5))
    rois = np.array([[0, 0, 0, 60, 50], [0, 20, 10, 70, 70]], dtype=np.float64)
    out, cache = roi_align_forward(x, rois, output_size=(2, 3), spatial_scale=1 / 16)
    _, naive_cache = roi_align_forward_naive(x, rois, output_size=(2, 3), spatial_scale=1 / 16)
    dout = rng.standard_normal(out.shape)
    expected = roi_align_backward(dout, naive_cache)
    calls = []
    real = roi_align_module.plan_windows
    monkeypatch.setattr(roi_align_module, "plan_windows",
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    assert rel_error(roi_align_backward(dout, cache), expected) <= 1e-12 and not calls
    roi_align_backward(dout, naive_cache)
    assert calls == [1]


def _mixed_rois(rng, sorted_batch: bool):
    """RoIs on a 24 x 20 map at scale 1/4 (96 x 80 px) of every size: tiny, small, ones
    across the border, ones covering the map, and one wholly outside it."""
    rois = np.concatenate([random_rois(rng, 30, 3, 96, past=8.0),
                           [[1, 2, 2, 9, 7], [0, 0, 0, 90, 78], [2, -40, -40, -30, -30],
                            [1, 40, 30, 47, 36], [0, 10, 10, 60, 70]]])
    if sorted_batch:
        rois = rois[np.argsort(rois[:, 0], kind="stable")]
    return rois


@pytest.mark.parametrize("sorted_batch", [True, False])
@pytest.mark.parametrize("sampling_ratio", [2, 0])
def test_windowed_products_equal_the_whole_map_products(sorted_batch, sampling_ratio):
    """Each RoI's window of the map (roi_align_windows.py) gives the whole map's sums,
    forward and backward: RoIs of every size (several window groups and the whole-map
    rest), across the border, outside the map, several images in any order."""
    rng = np.random.default_rng(11)
    x = rng.standard_normal((3, 4, 24, 20))
    rois = _mixed_rois(rng, sorted_batch)
    out, cache = roi_align_forward(x, rois, output_size=(3, 2), spatial_scale=1 / 4,
                                   sampling_ratio=sampling_ratio)
    A, B, count, batch = roi_align_module._align_matrices(cache)   # the whole map's
    plan = cache.windows
    assert len(plan.groups) >= 2 and len(plan.whole) >= 1     # both ways are exercised
    covered = np.sort(np.concatenate([g.rows for g in plan.groups] + [plan.whole]))
    np.testing.assert_array_equal(covered, np.arange(len(rois)))   # every RoI once
    per_roi = count[:, None, None, None]
    expected = pool_whole(A, B, batch, x) / per_roi
    assert rel_error(out, expected) <= 1e-12
    assert out.flags.c_contiguous                                   # fc6 flattens a view
    dout = rng.standard_normal(out.shape)
    expected_dx = unpool_whole(A, B, batch, dout / per_roi, x.shape[0])
    # the windows add the RoIs' gradients in another order: each cell's sum of n terms
    # may round differently, by at most n * eps * (the sum of the terms' magnitudes)
    magnitude = unpool_whole(abs(A), abs(B), batch, abs(dout) / per_roi,
                                         x.shape[0])
    n_terms = len(rois) * out.shape[2] * out.shape[3]
    error = abs(roi_align_backward(dout, cache) - expected_dx)
    assert (error <= n_terms * np.finfo(np.float64).eps * magnitude).all()


def test_windows_hold_every_weight_and_lie_inside_the_map():
    """A window keeps all of its RoI's nonzero weights (none is cut off at the window's
    edge) and lies inside the map; a RoI outside the map gets a 1-cell window of zeros."""
    from minircnn.layers.roi_align_windows import WINDOW_SHARE

    rng = np.random.default_rng(12)
    rois = _mixed_rois(rng, sorted_batch=False)
    _, cache = roi_align_forward(rng.standard_normal((3, 2, 24, 20)), rois, output_size=7,
                                 spatial_scale=1 / 4)
    A, B, count, _ = roi_align_module._align_matrices(cache)   # on the whole map
    H, W = A.shape[2], B.shape[2]
    for g in cache.windows.groups:
        Hc, Wc = g.a.shape[2], g.b.shape[2]
        assert Hc * Wc <= WINDOW_SHARE * H * W
        assert (g.top >= 0).all() and (g.top + Hc <= H).all()
        assert (g.left >= 0).all() and (g.left + Wc <= W).all()
        # the row weights hold the average's 1 / count (count 4: exact in binary)
        np.testing.assert_array_equal(g.a.sum(axis=2),
                                      A[g.rows].sum(axis=2) / count[g.rows, None])
        np.testing.assert_array_equal(g.b.sum(axis=2), B[g.rows].sum(axis=2))
    whole = cache.windows.whole
    assert len(whole) >= 1
    np.testing.assert_array_equal(cache.windows.whole_a, A[whole] / count[whole, None, None])
    np.testing.assert_array_equal(cache.windows.whole_b, B[whole])
    outside = len(rois) - 3                                          # the [-40, -30] box
    group = next(g for g in cache.windows.groups if outside in g.rows)
    assert not group.a[list(group.rows).index(outside)].any()


def test_float32_windows_equal_the_loops_on_every_kind_of_roi():
    """The fast tier in float32, as detection runs it (7x7, sampling_ratio 2, scale 1/4),
    against the float64 loops: tall, wide, tiny, huge, on the border, outside the map,
    coordinates on .5, several images. Each output averages 4 samples of 4 cells, so
    float32 rounding leaves it within a few float32 eps of the values it reads."""
    rng = np.random.default_rng(13)
    x = rng.standard_normal((2, 3, 32, 30)).astype(np.float32)
    rois = np.concatenate([random_rois(rng, 20, 2, 128, past=16.0),
                           [[0, 10, 4, 18, 100], [1, 4, 10, 110, 16],      # tall, wide
                            [1, 50.2, 60.1, 50.3, 60.4], [0, -60, -70, 300, 280],  # tiny, huge
                            [0, 0, 0, 8, 8], [1, 112, 120, 120, 128],      # on the border
                            [1, 130, 10, 160, 40], [0, 2.5, 6.5, 30.5, 14.5]]]  # outside, .5
                          ).astype(np.float32)
    kw = {"output_size": 7, "spatial_scale": 1 / 4, "sampling_ratio": 2}
    out, cache = roi_align_forward(x, rois, **kw)
    assert out.dtype == np.float32 and out.flags.c_contiguous
    heights = {g.a.shape[2] for g in cache.windows.groups}
    widths = {g.b.shape[2] for g in cache.windows.groups}
    assert len(heights) >= 3 and len(widths) >= 3          # several window sizes ran
    expected, cache_n = roi_align_forward_naive(x.astype(np.float64), rois.astype(np.float64),
                                                **kw)
    bound = 8 * np.finfo(np.float32).eps * np.abs(x).max()
    assert np.abs(out - expected).max() <= bound
    dout = rng.standard_normal(out.shape).astype(np.float32)
    dx = roi_align_backward(dout, cache)
    dx_n = roi_align_backward_naive(dout.astype(np.float64), cache_n)
    # each cell sums up to 4 weights per sample of every RoI over it
    magnitude = roi_align_backward_naive(np.abs(dout).astype(np.float64), cache_n)
    n_terms = len(rois) * 49 * 4
    assert (np.abs(dx - dx_n) <= n_terms * np.finfo(np.float32).eps * magnitude + 1e-30).all()
