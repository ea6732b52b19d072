import numpy as np
import pytest

from minircnn.gradcheck import check_layer
from minircnn.layers import (
    Dropout,
    Flatten,
    ReLU,
    Sequential,
    dropout_backward,
    dropout_forward,
    relu_backward,
    relu_forward,
)


def test_relu_forward_backward_by_hand():
    x = np.array([[-1.0, 0.0, 2.0], [3.0, -0.5, 0.25]], dtype=np.float32)
    out, cache = relu_forward(x)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [[0, 0, 2], [3, 0, 0.25]])
    dx = relu_backward(np.full_like(x, 2.0), cache)
    np.testing.assert_array_equal(dx, [[0, 0, 2], [2, 0, 2]])  # x == 0 gets 0, as torch
    assert dx.dtype == np.float32


def test_relu_gradcheck_off_the_kink():
    rng = np.random.default_rng(0)
    x = rng.choice([-1.0, 1.0], size=(4, 5)) * (0.1 + rng.random((4, 5)))
    assert check_layer(relu_forward, relu_backward, {"x": x})["x"] < 1e-7


def test_relu_module():
    m = ReLU()
    x = np.array([-2.0, 3.0])
    np.testing.assert_array_equal(m.forward(x), [0.0, 3.0])
    np.testing.assert_array_equal(m.backward(np.array([5.0, 7.0])), [0.0, 7.0])


def test_dropout_statistics():
    p = 0.3
    x = np.ones((400, 500))
    out, cache = dropout_forward(x, p=p, train=True, rng=np.random.default_rng(0))
    kept = out != 0
    # 200k Bernoulli(0.7) draws: the fraction's std is ~1e-3, so 5e-3 is a 5-sigma margin
    assert kept.mean() == pytest.approx(1 - p, abs=5e-3)
    np.testing.assert_allclose(out[kept], 1 / (1 - p))  # survivors scaled up
    assert out.mean() == pytest.approx(1.0, abs=1e-2)  # expectation preserved
    dx = dropout_backward(np.full_like(x, 2.0), cache)
    np.testing.assert_array_equal(dx != 0, kept)  # same mask backward
    np.testing.assert_allclose(dx[kept], 2 / (1 - p))


def test_dropout_identity_when_eval_or_p0_and_zeros_when_p1():
    x = np.arange(6.0).reshape(2, 3)
    rng = np.random.default_rng(0)
    for kwargs in ({"p": 0.5, "train": False}, {"p": 0.0, "train": True}):
        out, cache = dropout_forward(x, rng=rng, **kwargs)
        np.testing.assert_array_equal(out, x)
        np.testing.assert_array_equal(dropout_backward(np.ones_like(x), cache), 1.0)
    out, _ = dropout_forward(x, p=1.0, train=True, rng=rng)
    np.testing.assert_array_equal(out, 0.0)


def test_dropout_same_seed_same_mask_and_dtype_kept():
    x = np.ones((50, 40), dtype=np.float32)
    a, _ = dropout_forward(x, p=0.5, train=True, rng=np.random.default_rng(7))
    b, _ = dropout_forward(x, p=0.5, train=True, rng=np.random.default_rng(7))
    c, _ = dropout_forward(x, p=0.5, train=True, rng=np.random.default_rng(8))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.dtype == np.float32


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("p", [0.3, 0.5, 0.9])
def test_dropout_mask_is_one_uniform_draw_per_entry(dtype, p):
    """The mask is rng.random(x.shape) >= p (one float64 draw per entry, so a seed gives
    one mask whatever the dtype or device) times 1/(1-p) rounded once to x's dtype."""
    x = np.random.default_rng(1).standard_normal((30, 40)).astype(dtype)
    out, cache = dropout_forward(x, p=p, train=True, rng=np.random.default_rng(5))
    keep = np.random.default_rng(5).random(x.shape) >= p
    expected = np.where(keep, dtype(1.0 / (1.0 - p)), dtype(0.0))
    assert cache.mask.dtype == dtype and cache.mask.tobytes() == expected.tobytes()
    assert out.tobytes() == (x * expected).tobytes()


def test_dropout_gradcheck_with_a_fixed_mask():
    x = np.random.default_rng(3).standard_normal((6, 7))

    def forward(x):
        return dropout_forward(x, p=0.4, train=True, rng=np.random.default_rng(0))

    assert check_layer(forward, dropout_backward, {"x": x})["x"] < 1e-7


def test_dropout_module_follows_training_flag_and_seed():
    x = np.ones((20, 30))
    m1, m2 = Dropout(0.5, seed=1), Dropout(0.5, seed=1)
    y1 = m1.forward(x)
    np.testing.assert_array_equal(y1, m2.forward(x))
    assert 0 < (y1 == 0).mean() < 1
    assert not np.array_equal(y1, m1.forward(x))  # the generator advances: a new mask
    y3 = m1.forward(x)
    np.testing.assert_array_equal(m1.backward(np.ones_like(x)), y3)  # dx = mask = y / x
    m1.eval()
    np.testing.assert_array_equal(m1.forward(x), x)
    np.testing.assert_array_equal(m1.backward(np.full_like(x, 3.0)), 3.0)


def test_dropout_bad_p():
    with pytest.raises(ValueError, match=r"p must be in \[0.0, 1.0\], got 1.5"):
        dropout_forward(np.ones(3), p=1.5, train=True, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="got -0.1"):
        Dropout(p=-0.1)


def test_flatten_forward_backward_channel_first():
    x = np.arange(24.0).reshape(2, 3, 2, 2)
    m = Flatten()
    y = m.forward(x)
    assert y.shape == (2, 12)
    np.testing.assert_array_equal(y[1, :4], [12.0, 13.0, 14.0, 15.0])  # channel 0 of image 1
    dx = m.backward(y * 2)
    np.testing.assert_array_equal(dx, x * 2)
    with pytest.raises(ValueError, match="batch axis"):
        m.forward(np.ones(3))


def test_modules_in_sequential():
    net = Sequential(Flatten(), ReLU(), Dropout(0.5, seed=0)).eval()
    x = np.array([[[[-1.0, 2.0]]]])
    np.testing.assert_array_equal(net.forward(x), [[0.0, 2.0]])
    np.testing.assert_array_equal(net.backward(np.array([[1.0, 1.0]])), [[[[0.0, 1.0]]]])


@pytest.mark.gpu
def test_dropout_on_gpu_draws_the_host_mask():
    from minircnn.backend import asnumpy, to_device

    x = np.random.default_rng(0).standard_normal((8, 9)).astype(np.float32)
    cpu, _ = dropout_forward(x, p=0.5, train=True, rng=np.random.default_rng(3))
    gpu, cache = dropout_forward(to_device(x, "gpu"), p=0.5, train=True,
                                 rng=np.random.default_rng(3))
    np.testing.assert_array_equal(asnumpy(gpu), cpu)
    np.testing.assert_array_equal(asnumpy(dropout_backward(gpu, cache)) != 0, cpu != 0)
