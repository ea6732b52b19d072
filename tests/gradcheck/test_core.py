import numpy as np
import pytest

from minircnn.gradcheck import (
    GradientEstimate,
    check_layer,
    gradient_error,
    numeric_gradient,
    numeric_gradient_with_bound,
    rel_error,
)


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


def test_richardson_cancels_the_h2_truncation_and_the_bound_covers_the_rest():
    x = np.linspace(-2.0, 2.0, 9)
    dout = np.ones_like(x)
    h = 1e-2  # a large step, so truncation dominates: D(h) is off by h²/6·|cos| ~ 1e-5
    plain = numeric_gradient(lambda: np.sin(x), x, dout, h=h)
    est = numeric_gradient_with_bound(lambda: np.sin(x), x, dout, h=h)
    exact = np.cos(x)
    assert np.abs(plain - exact).max() > 1e-6
    assert np.abs(est.grad - exact).max() < 1e-9          # O(h⁴): h⁴/30 ~ 3e-10
    assert np.all(np.abs(est.grad - exact) <= est.bound)
    # the truncation estimate |D(h) - D(2h)| / 3 is h²/6 · |third derivative| = h²/6 · |cos|
    np.testing.assert_allclose(est.bound, h**2 / 6 * np.abs(np.cos(x)), rtol=0.01, atol=1e-10)


def test_bound_covers_round_off_of_a_large_output():
    x = np.array([0.3, -0.7])
    dout = np.array([1.0, -1.0])
    est = numeric_gradient_with_bound(lambda: 1e6 + x, x, dout)   # |out| 1e6: round-off ~1e-5
    error = np.abs(est.grad - dout)
    assert error.max() > 1e-8                                     # round-off is visible ...
    assert np.all(error <= est.bound)                             # ... and inside the bound
    assert est.bound.max() < 1e-3


def test_gradient_error_relative_where_resolved_absolute_below_the_bound():
    numeric = GradientEstimate(grad=np.array([1.0, 1e-6]), bound=np.array([1e-12, 1e-12]))
    assert gradient_error(np.array([1.0, 1e-6]), numeric) == 0.0
    # entry 1: |a - n| = 5e-13 < bound, although its relative error is 2.5e-7
    ok = gradient_error(np.array([1.0, 1e-6 + 5e-13]), numeric)
    assert ok <= 1e-7 and rel_error(np.array([1e-6 + 5e-13]), np.array([1e-6])) > 1e-7
    # entry 0 wrong by 1%: relative error 0.01 / 2.01 whatever the bound
    assert gradient_error(np.array([1.01, 1e-6]), numeric) == pytest.approx(0.01 / 2.01)
    with pytest.raises(ValueError, match="shapes differ"):
        gradient_error(np.ones(3), numeric)
