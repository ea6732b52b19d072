import numpy as np
import pytest

from minircnn.gradcheck import check_layer
from minircnn.layers import Linear, linear_backward, linear_forward


def test_forward_by_hand():
    x = np.array([[1.0, 2.0], [0.0, -1.0]])
    w = np.array([[1.0, 0.0], [2.0, -1.0], [0.5, 0.5]])  # (out=3, in=2)
    b = np.array([0.0, 1.0, -1.0])
    out, _ = linear_forward(x, w, b)
    np.testing.assert_array_equal(out, [[1.0, 1.0, 0.5], [0.0, 2.0, -1.5]])


def test_backward_by_hand():
    x = np.array([[1.0, 2.0]])
    w = np.array([[3.0, 4.0], [5.0, 6.0]])
    _, cache = linear_forward(x, w, np.zeros(2))
    dx, dw, db = linear_backward(np.array([[1.0, -1.0]]), cache)
    np.testing.assert_array_equal(dx, [[-2.0, -2.0]])  # dout @ w
    np.testing.assert_array_equal(dw, [[1.0, 2.0], [-1.0, -2.0]])  # dout.T @ x
    np.testing.assert_array_equal(db, [1.0, -1.0])


def test_gradcheck():
    rng = np.random.default_rng(1)
    inputs = {"x": rng.standard_normal((5, 7)), "w": rng.standard_normal((4, 7)),
              "b": rng.standard_normal(4)}
    errors = check_layer(linear_forward, linear_backward, inputs, seed=2)
    assert max(errors.values()) < 1e-7


def test_module_accumulates_and_has_caffe_bias_multipliers():
    m = Linear(3, 2, rng=np.random.default_rng(0), dtype=np.float64)
    assert m.w.shape == (2, 3) and m.b.shape == (2,)
    assert (m.b.lr_mult, m.b.decay_mult) == (2.0, 0.0)
    assert (m.w.lr_mult, m.w.decay_mult) == (1.0, 1.0)
    x = np.ones((4, 3))
    dout = np.ones((4, 2))
    y = m.forward(x)
    np.testing.assert_allclose(y, x @ m.w.data.T + m.b.data)
    dx = m.backward(dout)
    m.forward(x)
    m.backward(dout)
    np.testing.assert_allclose(m.w.grad, 2 * dout.T @ x)  # two backward calls add up
    np.testing.assert_allclose(m.b.grad, [8.0, 8.0])
    np.testing.assert_allclose(dx, dout @ m.w.data)


def test_init_he_default_std_option_and_dtype():
    big = Linear(2000, 300, rng=np.random.default_rng(0))
    assert big.w.data.dtype == np.float32
    assert big.w.data.std() == pytest.approx(np.sqrt(2 / 2000), rel=0.02)
    assert np.all(big.b.data == 0)
    cls = Linear(2000, 300, rng=np.random.default_rng(0), std=0.01)
    assert cls.w.data.std() == pytest.approx(0.01, rel=0.02)
    a, b = Linear(4, 3), Linear(4, 3)
    np.testing.assert_array_equal(a.w.data, b.w.data)  # rng=None is seeded, deterministic


def test_state_dict_round_trip():
    a = Linear(3, 2, rng=np.random.default_rng(0))
    b = Linear(3, 2, rng=np.random.default_rng(1))
    b.load_state_dict(a.state_dict())
    assert set(a.state_dict()) == {"w", "b"}
    np.testing.assert_array_equal(b.w.data, a.w.data)


def test_bad_inputs():
    w, b = np.ones((2, 3)), np.ones(2)
    with pytest.raises(ValueError, match=r"x must be 2-D.*\(2, 3, 1\)"):
        linear_forward(np.ones((2, 3, 1)), w, b)
    with pytest.raises(ValueError, match=r"w must have shape \(out_features, 3\).*\(2, 4\)"):
        linear_forward(np.ones((5, 3)), np.ones((2, 4)), b)
    with pytest.raises(ValueError, match=r"b must have shape \(2,\), got \(3,\)"):
        linear_forward(np.ones((5, 3)), w, np.ones(3))
    with pytest.raises(TypeError, match="x must be a float array"):
        linear_forward(np.ones((5, 3), dtype=np.int64), w, b)
    m = Linear(3, 2)
    with pytest.raises(ValueError, match=r"Linear: x must have shape \(N, 3\), got \(4, 3, 1, 1\)"):
        m.forward(np.ones((4, 3, 1, 1), dtype=np.float32))
