"""Tests of minircnn/layers/residual_add.py: the residual add of a ResNet block."""

import numpy as np
import pytest

from minircnn.gradcheck import check_layer
from minircnn.layers import add_backward, add_forward


def test_add_forward_backward_gives_dout_to_both_branches():
    a = np.array([[1.0, 2.0]])
    b = np.array([[10.0, 20.0]])
    out, cache = add_forward(a, b)
    np.testing.assert_array_equal(out, [[11.0, 22.0]])
    da, db = add_backward(np.array([[0.5, -1.0]]), cache)
    np.testing.assert_array_equal(da, [[0.5, -1.0]])
    np.testing.assert_array_equal(db, [[0.5, -1.0]])


def test_add_gradcheck_float64():
    rng = np.random.default_rng([4, 1])
    inputs = {"a": rng.standard_normal((2, 3, 2, 2)), "b": rng.standard_normal((2, 3, 2, 2))}
    errs = check_layer(add_forward, add_backward, inputs, seed=4)
    assert max(errs.values()) <= 1e-7


def test_bad_shapes_raise_with_the_shapes_named():
    with pytest.raises(ValueError, match=r"same shape.*\(1, 2, 4, 4\).*\(1, 3, 4, 4\)"):
        add_forward(np.zeros((1, 2, 4, 4)), np.zeros((1, 3, 4, 4)))
