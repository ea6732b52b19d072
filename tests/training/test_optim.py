"""SGD and the learning-rate schedules (minircnn/training/optim.py), checked against hand maths."""

import numpy as np
import pytest

from minircnn.layers.module import Parameter
from minircnn.training.optim import SGD, cosine_lr, step_lr


def _param(values, grad, **kw):
    p = Parameter(np.array(values, dtype=np.float64), **kw)
    p.grad[...] = grad
    return p


def test_plain_sgd_step():
    p = _param([1.0, -2.0], [0.5, 0.25])
    SGD([p], lr=0.1, momentum=0.0, weight_decay=0.0).step()
    np.testing.assert_allclose(p.data, [1.0 - 0.05, -2.0 - 0.025], rtol=0, atol=1e-15)


def test_momentum_matches_torch_formula():
    # torch.optim.SGD: v = m v + g; w -= lr v (dampening 0)
    p = _param([1.0], [1.0])
    opt = SGD([p], lr=0.1, momentum=0.9, weight_decay=0.0)
    opt.step()                     # v = 1, w = 0.9
    opt.step()                     # v = 1.9, w = 0.9 - 0.19
    np.testing.assert_allclose(p.data, [0.71], rtol=0, atol=1e-12)


def test_weight_decay_and_multipliers():
    w = _param([2.0], [0.0])
    b = _param([2.0], [0.0], lr_mult=2.0, decay_mult=0.0)
    opt = SGD([w, b], lr=0.5, momentum=0.0, weight_decay=0.1)
    opt.step()
    np.testing.assert_allclose(w.data, [2.0 - 0.5 * 0.1 * 2.0], atol=1e-15)  # decayed
    np.testing.assert_allclose(b.data, [2.0], atol=1e-15)                   # no decay
    b.grad[...] = 1.0
    opt.step()
    np.testing.assert_allclose(b.data, [2.0 - 2 * 0.5 * 1.0], atol=1e-15)   # 2x lr


def test_frozen_parameter_is_untouched():
    p = _param([1.5, 2.5], [3.0, 4.0], requires_grad=False)
    before = p.data.copy()
    opt = SGD([p], lr=1.0)
    for _ in range(3):
        opt.step()
    assert np.array_equal(p.data, before)
    assert opt.velocity[0] is None
    opt.zero_grad()            # a frozen grad is never added to: zero_grad skips it
    assert np.array_equal(p.grad, [3.0, 4.0])


def test_state_dict_round_trip_continues_identically():
    rng = np.random.default_rng(0)
    p1 = _param(rng.standard_normal(4), rng.standard_normal(4))
    p2 = _param(p1.data.copy(), p1.grad.copy())
    o1 = SGD([p1], lr=0.1)
    o1.step()
    o2 = SGD([p2], lr=0.1)
    p2.data[...] = p1.data
    o2.load_state_dict(o1.state_dict())
    o1.step()
    o2.step()
    assert np.array_equal(p1.data, p2.data)


def test_load_state_dict_rejects_wrong_shapes():
    opt = SGD([_param([1.0, 2.0], [0.0, 0.0])], lr=0.1)
    with pytest.raises(ValueError, match="shape"):
        opt.load_state_dict({"lr": 0.1, "momentum": 0.9, "weight_decay": 0.0,
                             "velocity": [np.zeros(3)]})


def test_sgd_rejects_non_parameters():
    with pytest.raises(TypeError, match="Parameter"):
        SGD([np.zeros(2)], lr=0.1)


def test_step_lr_warmup_and_decay():
    assert step_lr(0.3, 0, warmup_iters=10) == pytest.approx(0.1)
    assert step_lr(0.3, 5, warmup_iters=10) == pytest.approx(0.3 * (1 / 3 * 0.5 + 0.5))
    assert step_lr(0.3, 10, warmup_iters=10) == pytest.approx(0.3)
    assert step_lr(0.3, 99, steps=(100, 200)) == pytest.approx(0.3)
    assert step_lr(0.3, 100, steps=(100, 200)) == pytest.approx(0.03)
    assert step_lr(0.3, 250, steps=(100, 200)) == pytest.approx(0.003)


def test_cosine_lr_endpoints():
    assert cosine_lr(1.0, 0, total_iters=100) == pytest.approx(1.0)
    assert cosine_lr(1.0, 50, total_iters=100) == pytest.approx(0.5)
    assert cosine_lr(1.0, 100, total_iters=100) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("shape, order", [((), "C"), ((5,), "C"), ((300, 97), "C"),
                                          ((97, 30, 3), "F")])
@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_blocked_step_equals_the_whole_array_formula_bit_for_bit(shape, order, momentum,
                                                                 monkeypatch):
    """SGD.step updates a block of rows at a time; with tiny blocks (many, the last one
    partial, rows of a Fortran-ordered array that are not contiguous) every element
    still gets exactly the formula's float32 operations, over three steps."""
    from minircnn.training import optim

    monkeypatch.setattr(optim, "BLOCK_BYTES", 1000)
    rng = np.random.default_rng(3)
    w = rng.standard_normal(shape).astype(np.float32)
    p = Parameter(np.array(w, order=order), lr_mult=2.0, decay_mult=0.5)
    opt = SGD([p], lr=0.1, momentum=momentum, weight_decay=0.01)
    v = np.zeros_like(w)
    for _ in range(3):
        grad = rng.standard_normal(shape).astype(np.float32)
        p.grad[...] = grad
        opt.step()
        g = grad + w * (0.01 * 0.5)              # g = grad + wd w
        v = v * momentum + g if momentum else g  # v = m v + g
        w = w - v * (0.1 * 2.0)                  # w -= lr v
    assert p.data.dtype == np.float32
    assert p.data.tobytes(order="A") == np.array(w, order=order).tobytes(order="A")
