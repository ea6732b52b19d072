"""Tests of minircnn/layers/global_pool.py: global average pooling."""

import numpy as np
import pytest

from minircnn.gradcheck import check_layer
from minircnn.layers import (
    GlobalAvgPool,
    global_avg_pool_backward,
    global_avg_pool_forward,
)


def test_global_avg_pool_forward_matches_hand_computed_means():
    x = np.arange(2 * 3 * 2 * 2, dtype=np.float64).reshape(2, 3, 2, 2)
    out, _ = global_avg_pool_forward(x)
    # channel (n, c) holds 4 consecutive numbers starting at 4 * (3n + c): mean = start + 1.5
    expected = np.array([[1.5, 5.5, 9.5], [13.5, 17.5, 21.5]])
    np.testing.assert_array_equal(out, expected)


def test_global_avg_pool_backward_spreads_evenly():
    x = np.zeros((1, 2, 2, 3))
    _, cache = global_avg_pool_forward(x)
    dx = global_avg_pool_backward(np.array([[6.0, -12.0]]), cache)
    np.testing.assert_array_equal(dx[0, 0], np.full((2, 3), 1.0))
    np.testing.assert_array_equal(dx[0, 1], np.full((2, 3), -2.0))
    assert dx.flags.c_contiguous and dx.flags.writeable


def test_global_avg_pool_gradcheck_float64():
    rng = np.random.default_rng([3, 1])
    errs = check_layer(global_avg_pool_forward, global_avg_pool_backward,
                       {"x": rng.standard_normal((2, 3, 4, 5))}, seed=3)
    assert errs["x"] <= 1e-7


def test_bad_shapes_raise_with_the_shapes_named():
    with pytest.raises(ValueError, match=r"\(N, C, H, W\).*\(2, 3\)"):
        global_avg_pool_forward(np.zeros((2, 3)))
    _, cache = global_avg_pool_forward(np.zeros((2, 3, 4, 4)))
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(3, 2\)"):
        global_avg_pool_backward(np.zeros((3, 2)), cache)


def test_global_avg_pool_module_wraps_the_functions():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 4, 3, 3))
    m = GlobalAvgPool()
    np.testing.assert_allclose(m.forward(x), x.mean(axis=(2, 3)))
    dout = rng.standard_normal((2, 4))
    expected = np.broadcast_to(dout[:, :, None, None] / 9, x.shape)
    np.testing.assert_allclose(m.backward(dout), expected)
    assert m.parameters() == []
