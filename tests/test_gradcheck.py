import numpy as np
import pytest

from minircnn.gradcheck import check_layer, numeric_gradient, rel_error


def test_rel_error_values():
    assert rel_error(np.array([1.0]), np.array([1.0])) == 0.0
    assert rel_error(np.array([1.0]), np.array([3.0])) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="shapes differ"):
        rel_error(np.ones(2), np.ones(3))


def test_numeric_gradient_of_a_square_and_restores_input():
    x = np.array([[1.0, -2.0], [0.5, 3.0]])
    before = x.copy()
    dout = np.array([[1.0, 2.0], [3.0, 4.0]])
    grad = numeric_gradient(lambda: x**2, x, dout)
    np.testing.assert_allclose(grad, 2 * x * dout, rtol=1e-9)
    np.testing.assert_array_equal(x, before)  # every perturbed entry restored


def _square_forward(x):
    return x**2, x


def test_check_layer_accepts_right_and_rejects_wrong_backward():
    x = np.random.default_rng(0).standard_normal((3, 4))
    good = check_layer(_square_forward, lambda dout, c: 2 * c * dout, {"x": x})
    bad = check_layer(_square_forward, lambda dout, c: 3 * c * dout, {"x": x})
    assert good["x"] < 1e-8
    assert bad["x"] > 1e-2
