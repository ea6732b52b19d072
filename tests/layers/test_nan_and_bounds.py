"""NaN/inf semantics and edge cases where the fast and naive paths must agree (or both
refuse): max_pool2d and RoIAlign with non-finite features, RoI coordinates past the
documented bound, empty batches and empty maps."""

import numpy as np
import pytest

from minircnn.layers import (
    max_pool2d_backward,
    max_pool2d_backward_naive,
    max_pool2d_forward,
    max_pool2d_forward_naive,
    roi_align_forward,
    roi_align_forward_naive,
    roi_pool_backward,
    roi_pool_backward_naive,
    roi_pool_forward,
    roi_pool_forward_naive,
)
from minircnn.layers.roi_checks import COORD_LIMIT


def _features_with(values, rng, shape=(2, 2, 6, 7)):
    x = rng.standard_normal(shape)
    for v in values:
        x[tuple(int(rng.integers(s)) for s in shape)] = v
    return x


def test_max_pool_nan_propagates_and_last_nan_gets_the_gradient():
    # PyTorch's CPU kernel: `if (val > maxval || isnan(val))`, so every NaN takes over.
    x = np.array([[[[1.0, np.nan], [np.nan, 5.0]]]])
    for forward, backward in ((max_pool2d_forward, max_pool2d_backward),
                              (max_pool2d_forward_naive, max_pool2d_backward_naive)):
        out, cache = forward(x, kernel=2, stride=2)
        assert np.isnan(out).all()
        dx = backward(np.ones_like(out), cache)
        np.testing.assert_array_equal(dx, [[[[0.0, 0.0], [1.0, 0.0]]]])   # the last NaN


def test_max_pool_nan_outside_every_window_changes_nothing():
    # floor mode: the last row and column of a 5x5 input are in no 2x2 window, so a NaN
    # there reaches no output and no argmax (the fast forward tests out, not x, for NaN)
    x = np.random.default_rng(0).standard_normal((1, 2, 5, 5))
    x[0, 0, 4, 2] = x[0, 1, 1, 4] = np.nan
    out, cache = max_pool2d_forward(x, kernel=2, stride=2)
    out_n, cache_n = max_pool2d_forward_naive(x, kernel=2, stride=2)
    assert not np.isnan(out).any()
    np.testing.assert_array_equal(out, out_n)
    np.testing.assert_array_equal(cache.arg, cache_n.arg)
    dx = max_pool2d_backward(np.ones_like(out), cache)
    np.testing.assert_array_equal(dx, max_pool2d_backward_naive(np.ones_like(out), cache_n))
    assert dx[0, 0, 4, 2] == 0 and dx[0, 1, 1, 4] == 0


@pytest.mark.parametrize("seed", range(20))
def test_max_pool_fast_equals_naive_with_non_finite(seed):
    rng = np.random.default_rng(seed)
    x = _features_with(rng.choice([np.nan, np.inf, -np.inf], size=4), rng)
    kernel, stride = int(rng.integers(1, 4)), int(rng.integers(1, 3))
    out, cache = max_pool2d_forward(x, kernel=kernel, stride=stride)
    out_n, cache_n = max_pool2d_forward_naive(x, kernel=kernel, stride=stride)
    np.testing.assert_array_equal(out, out_n)              # NaN == NaN here
    dout = rng.standard_normal(out.shape)
    # overlapping windows add in a different order: equal to rounding
    np.testing.assert_allclose(max_pool2d_backward(dout, cache),
                               max_pool2d_backward_naive(dout, cache_n), rtol=1e-12, atol=1e-15)


def _random_rois(rng, R=5, n_images=2):
    x1, y1 = rng.uniform(-20, 100, R), rng.uniform(-20, 100, R)
    w, h = rng.uniform(0, 80, R), rng.uniform(0, 80, R)
    rois = np.stack([rng.integers(0, n_images, R), x1, y1, x1 + w, y1 + h], axis=1)
    rois[::2, 1:] = np.round(rois[::2, 1:] / 8) * 8    # samples on cell edges: weight 0 reads
    return rois


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", [2, 0])
def test_roi_align_fast_equals_naive_with_non_finite(seed, aligned, sampling_ratio):
    rng = np.random.default_rng(seed)
    x = _features_with(rng.choice([np.nan, np.inf, -np.inf], size=3), rng)
    rois = _random_rois(rng)
    kw = dict(output_size=(2, 3), spatial_scale=1 / 8, sampling_ratio=sampling_ratio,
              aligned=aligned)
    out, _ = roi_align_forward(x, rois, **kw)
    with np.errstate(invalid="ignore"):          # the loops compute 0 * inf = NaN
        out_n, _ = roi_align_forward_naive(x, rois, **kw)
    np.testing.assert_allclose(out, out_n, rtol=1e-12, atol=1e-12)   # NaN/inf positions too


def test_roi_align_one_nan_stays_local():
    """A NaN cell in image 1 leaves every RoI that does not read it finite."""
    x = np.ones((2, 1, 8, 8))
    x[1, 0, 7, 7] = np.nan
    rois = np.array([[0, 0, 0, 7, 7], [1, 0, 0, 3, 3], [1, 4, 4, 7.9, 7.9]])
    out, _ = roi_align_forward(x, rois, output_size=2, spatial_scale=1.0)
    assert np.isfinite(out[:2]).all()
    np.testing.assert_allclose(out[:2], 1.0)
    assert np.isnan(out[2]).any()


@pytest.mark.parametrize("forward", [roi_pool_forward, roi_pool_forward_naive,
                                     roi_align_forward, roi_align_forward_naive])
@pytest.mark.parametrize("coord", [1e30, 7e19, -1e20, COORD_LIMIT * 16 * 1.01])
def test_coordinates_past_the_bound_are_refused(forward, coord):
    x = np.zeros((1, 1, 4, 4))
    rois = np.array([[0, 0, 0, abs(coord), abs(coord)]])
    rois[0, 1] = min(coord, 0.0)
    with pytest.raises(ValueError, match=r"2\*\*24 feature cells"):
        forward(x, rois, output_size=2, spatial_scale=1 / 16)


def test_coordinates_at_the_bound_agree():
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    rois = np.array([[0, 0, 0, COORD_LIMIT * 16, COORD_LIMIT * 16]])
    a, _ = roi_pool_forward(x, rois, output_size=2, spatial_scale=1 / 16)
    b, _ = roi_pool_forward_naive(x, rois, output_size=2, spatial_scale=1 / 16)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("shape, rois", [
    ((0, 3, 8, 8), np.zeros((0, 5))),                     # empty batch
    ((1, 3, 0, 8), np.array([[0, 0, 0, 10, 10.0]])),      # zero-height map
    ((1, 3, 8, 0), np.array([[0, 0, 0, 10, 10.0]])),      # zero-width map
    ((1, 0, 8, 8), np.array([[0, 0, 0, 10, 10.0]])),      # no channels
])
def test_roi_pool_empty_inputs_fast_equals_naive(shape, rois):
    x = np.zeros(shape)
    out, cache = roi_pool_forward(x, rois, output_size=2, spatial_scale=1.0)
    out_n, cache_n = roi_pool_forward_naive(x, rois, output_size=2, spatial_scale=1.0)
    assert out.shape == out_n.shape == (len(rois), shape[1], 2, 2)
    np.testing.assert_array_equal(out, out_n)
    dout = np.ones(out.shape)
    np.testing.assert_array_equal(roi_pool_backward(dout, cache),
                                  roi_pool_backward_naive(dout, cache_n))


@pytest.mark.parametrize("forward", [roi_align_forward, roi_align_forward_naive])
def test_roi_align_refuses_an_empty_map(forward):
    with pytest.raises(ValueError, match="H, W >= 1"):
        forward(np.zeros((1, 1, 0, 4)), np.array([[0, 0, 0, 1, 1.0]]), output_size=2,
                spatial_scale=1.0)
