import numpy as np
import pytest

from minircnn.gradcheck import check_layer
from minircnn.layers import (
    BatchNorm2d,
    FrozenBatchNorm2d,
    batchnorm2d_backward,
    batchnorm2d_eval_backward,
    batchnorm2d_eval_forward,
    batchnorm2d_forward,
)


def _two_channel_batch():
    """(N=2, C=2, H=1, W=2): channel 0 holds 1, 3, 1, 3 (mean 2, var 1),
    channel 1 holds 0, 0, 4, 4 (mean 2, var 4)."""
    x = np.zeros((2, 2, 1, 2))
    x[:, 0, 0, :] = [[1, 3], [1, 3]]
    x[:, 1, 0, :] = [[0, 0], [4, 4]]
    return x


def test_forward_uses_batch_statistics_by_hand():
    x = _two_channel_batch()
    out, cache = batchnorm2d_forward(x, np.array([2.0, 1.0]), np.array([0.0, 5.0]), eps=0.0)
    np.testing.assert_allclose(cache.mean, [2.0, 2.0])
    np.testing.assert_allclose(cache.var, [1.0, 4.0])  # biased (divide by N*H*W = 4)
    np.testing.assert_allclose(out[:, 0, 0, :], [[-2, 2], [-2, 2]])  # 2 * (x - 2) / 1
    np.testing.assert_allclose(out[:, 1, 0, :], [[4, 4], [6, 6]])  # (x - 2) / 2 + 5


def test_backward_by_hand_constant_dout_gives_zero_dx():
    x = _two_channel_batch()
    _, cache = batchnorm2d_forward(x, np.array([2.0, 1.0]), np.zeros(2))
    dx, dgamma, dbeta = batchnorm2d_backward(np.ones_like(x), cache)
    np.testing.assert_allclose(dx, 0.0, atol=1e-12)  # a shift of x does not change out
    np.testing.assert_allclose(dbeta, [4.0, 4.0])
    np.testing.assert_allclose(dgamma, [0.0, 0.0], atol=1e-12)  # sum of xhat is 0


@pytest.mark.parametrize("std, factor", [(1.0, 1e-5), (0.01, 8.67)])
def test_dout_equal_to_xhat_gives_dx_zero_only_when_eps_is_small(std, factor):
    # docs/layers/norm.md: g = xhat gives dx = s eps / (sigma^2 + eps) xhat, not 0.
    x = np.random.default_rng(0).standard_normal((4, 1, 3, 3))
    x = (x - x.mean()) / x.std() * std                      # a channel of exactly this std
    xhat, cache = batchnorm2d_forward(x, np.ones(1), np.zeros(1), eps=1e-5)
    dx, _, _ = batchnorm2d_backward(xhat, cache)
    s = 1 / np.sqrt(std**2 + 1e-5)
    np.testing.assert_allclose(dx, s * 1e-5 / (std**2 + 1e-5) * xhat, rtol=1e-9)
    np.testing.assert_allclose(dx / xhat, factor, rtol=0.01)  # the page's rounded numbers
    if std == 0.01:
        np.testing.assert_allclose([s, 1e-5 / (std**2 + 1e-5)], [95.3, 1 / 11], rtol=1e-3)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gradcheck_train_mode(seed):
    rng = np.random.default_rng([seed, 1])
    inputs = {"x": 0.5 * rng.standard_normal((3, 2, 3, 3)),
              "gamma": rng.choice([-1, 1], size=2) * (0.5 + rng.random(2)),
              "beta": 0.1 * rng.standard_normal(2)}
    errors = check_layer(batchnorm2d_forward, batchnorm2d_backward, inputs, seed=seed)
    assert max(errors.values()) < 1e-7, errors


def test_gradcheck_eval_mode():
    rng = np.random.default_rng(5)
    inputs = {"x": rng.standard_normal((2, 3, 2, 2)), "gamma": rng.standard_normal(3),
              "beta": rng.standard_normal(3), "mean": rng.standard_normal(3),
              "var": 0.5 + rng.random(3)}
    errors = check_layer(batchnorm2d_eval_forward, batchnorm2d_eval_backward, inputs,
                         wrt=["x", "gamma", "beta"])
    assert max(errors.values()) < 1e-7, errors


def test_running_stats_update_with_momentum_and_unbiased_variance():
    bn = BatchNorm2d(2, momentum=0.1, dtype=np.float64)
    x = _two_channel_batch()
    bn.forward(x)
    # M = 4 values per channel: unbiased var = var * 4/3
    np.testing.assert_allclose(bn.running_mean, [0.9 * 0 + 0.1 * 2, 0.1 * 2])
    np.testing.assert_allclose(bn.running_var, [0.9 + 0.1 * 4 / 3, 0.9 + 0.1 * 16 / 3])
    bn.forward(x)
    np.testing.assert_allclose(bn.running_mean, [0.9 * 0.2 + 0.2, 0.9 * 0.2 + 0.2])


def test_eval_uses_running_stats_and_does_not_update_them():
    bn = BatchNorm2d(2, eps=1e-5, dtype=np.float64)
    bn.running_mean[:] = [1.0, -1.0]
    bn.running_var[:] = [4.0, 0.25]
    bn.weight.data[:] = [2.0, 1.0]
    bn.bias.data[:] = [0.5, 0.0]
    bn.eval()
    x = _two_channel_batch()
    out = bn.forward(x)
    def per_channel(values):
        return np.array(values).reshape(1, 2, 1, 1)

    expected = ((x - per_channel([1.0, -1.0])) / np.sqrt(per_channel([4.0, 0.25]) + 1e-5)
                * per_channel([2.0, 1.0]) + per_channel([0.5, 0.0]))
    np.testing.assert_allclose(out, expected, rtol=1e-12)
    np.testing.assert_array_equal(bn.running_mean, [1.0, -1.0])
    dout = np.ones_like(x)
    dx = bn.backward(dout)  # the affine map's backward: dout * gamma / sqrt(var + eps)
    np.testing.assert_allclose(dx[:, 0], 2.0 / np.sqrt(4.0 + 1e-5))
    np.testing.assert_allclose(bn.bias.grad, [4.0, 4.0])


def test_train_module_backward_matches_functional_and_accumulates():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 4, 4))
    dout = rng.standard_normal(x.shape)
    bn = BatchNorm2d(3, dtype=np.float64)
    bn.weight.data[:] = [1.0, 2.0, 3.0]
    bn.forward(x)
    dx = bn.backward(dout)
    _, cache = batchnorm2d_forward(x, bn.weight.data, bn.bias.data)
    dx_ref, dgamma, dbeta = batchnorm2d_backward(dout, cache)
    np.testing.assert_allclose(dx, dx_ref)
    np.testing.assert_allclose(bn.weight.grad, dgamma)
    np.testing.assert_allclose(bn.bias.grad, dbeta)


def test_frozen_batchnorm_equals_eval_batchnorm_and_has_no_parameters():
    rng = np.random.default_rng(1)
    bn = BatchNorm2d(3, dtype=np.float64)
    bn.weight.data[:] = rng.standard_normal(3)
    bn.bias.data[:] = rng.standard_normal(3)
    for _ in range(3):
        bn.forward(rng.standard_normal((2, 3, 4, 4)) * 2 + 1)  # non-trivial running stats
    bn.eval()
    frozen = FrozenBatchNorm2d(3, dtype=np.float64)
    frozen.load_state_dict(bn.state_dict())  # same names: weight, bias, running_*
    assert frozen.parameters() == []
    x = rng.standard_normal((2, 3, 4, 4))
    np.testing.assert_allclose(frozen.forward(x), bn.forward(x), rtol=1e-12, atol=1e-12)
    dout = rng.standard_normal(x.shape)
    np.testing.assert_allclose(frozen.backward(dout), bn.backward(dout), rtol=1e-12)
    frozen.train()  # training mode changes nothing for the frozen layer
    np.testing.assert_allclose(frozen.forward(x), bn.forward(x), rtol=1e-12, atol=1e-12)


def test_frozen_batchnorm_gradcheck_of_dx():
    frozen = FrozenBatchNorm2d(2, dtype=np.float64)
    frozen.weight[:] = [2.0, -0.5]
    frozen.running_var[:] = [0.5, 3.0]
    x = np.random.default_rng(2).standard_normal((2, 2, 3, 3))

    def forward(x):
        return frozen.forward(x), None

    def backward(dout, _):
        return frozen.backward(dout)

    assert check_layer(forward, backward, {"x": x})["x"] < 1e-7


def test_state_dict_round_trip_includes_buffers():
    a = BatchNorm2d(2)
    a.forward(np.random.default_rng(0).standard_normal((2, 2, 3, 3)).astype(np.float32))
    a.weight.data[:] = [3.0, 4.0]
    state = a.state_dict()
    assert set(state) == {"weight", "bias", "running_mean", "running_var"}
    b = BatchNorm2d(2)
    b.load_state_dict(state)
    for name, value in b.state_dict().items():
        np.testing.assert_array_equal(value, state[name])
    assert b.running_mean.dtype == np.float32


def test_bad_inputs():
    g = np.ones(2)
    with pytest.raises(ValueError, match=r"x must be 4-D \(N, C, H, W\), got shape \(2, 2\)"):
        batchnorm2d_forward(np.ones((2, 2)), g, g)
    with pytest.raises(ValueError, match=r"gamma must have shape \(3,\).*got \(2,\)"):
        batchnorm2d_forward(np.ones((2, 3, 2, 2)), g, np.ones(3))
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        BatchNorm2d(2).forward(np.ones((1, 2, 1, 1)))


@pytest.mark.gpu
def test_batchnorm_modules_on_gpu_match_numpy():
    from minircnn.backend import asnumpy, to_device

    x = np.random.default_rng(0).standard_normal((2, 3, 4, 4))
    cpu, gpu = BatchNorm2d(3, dtype=np.float64), BatchNorm2d(3, dtype=np.float64).to("gpu")
    np.testing.assert_allclose(asnumpy(gpu.forward(to_device(x, "gpu"))), cpu.forward(x))
    np.testing.assert_allclose(asnumpy(gpu.running_var), cpu.running_var)
    np.testing.assert_allclose(asnumpy(gpu.backward(to_device(x, "gpu"))), cpu.backward(x))
    cpu.eval()
    gpu.eval()
    np.testing.assert_allclose(asnumpy(gpu.forward(to_device(x, "gpu"))), cpu.forward(x))
    frozen = FrozenBatchNorm2d(3, dtype=np.float64).to("gpu")
    np.testing.assert_allclose(asnumpy(frozen.forward(to_device(x, "gpu"))), x / np.sqrt(1 + 1e-5))
