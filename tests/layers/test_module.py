import numpy as np
import pytest

from minircnn.layers import Module, Parameter, Sequential


class Affine(Module):
    def __init__(self, n):
        self.w = Parameter(np.arange(n, dtype=np.float64))
        self.b = Parameter(np.zeros(n), lr_mult=2.0, decay_mult=0.0)

    def forward(self, x):
        self.x = x
        return x * self.w.data + self.b.data

    def backward(self, dout):
        self.w.accumulate((dout * self.x).sum(axis=0))
        self.b.accumulate(dout.sum(axis=0))
        return dout * self.w.data


class WithBuffer(Module):
    def __init__(self):
        self.inner = Sequential(Affine(3), Affine(3))
        self.register_buffer("running", np.ones(3))


def test_named_parameters_walk_lists_in_order():
    m = WithBuffer()
    names = [n for n, _ in m.named_parameters()]
    assert names == ["inner.layers.0.w", "inner.layers.0.b", "inner.layers.1.w", "inner.layers.1.b"]
    assert set(m.state_dict()) == set(names) | {"running"}


def test_state_dict_round_trip_and_mismatch_errors():
    a, b = WithBuffer(), WithBuffer()
    a.inner[1].w.data[:] = [7.0, 8.0, 9.0]
    a.running[:] = 5.0
    b.load_state_dict(a.state_dict())
    np.testing.assert_array_equal(b.inner[1].w.data, [7.0, 8.0, 9.0])
    np.testing.assert_array_equal(b.running, 5.0)
    bad = a.state_dict()
    bad["inner.layers.0.w"] = np.zeros(4)
    del bad["running"]
    expected = r"missing keys: \['running'\].*expected shape \(3,\), got \(4,\)"
    with pytest.raises(ValueError, match=expected):
        b.load_state_dict(bad)


def test_sequential_backward_accumulates_and_zero_grad_clears():
    m = Sequential(Affine(2), Affine(2))
    x = np.array([[1.0, 2.0]])
    m.forward(x)
    m.backward(np.ones((1, 2)))
    m.forward(x)
    m.backward(np.ones((1, 2)))
    assert m[1].b.grad.tolist() == [2.0, 2.0]  # two backward calls add up
    m.zero_grad()
    assert all(not p.grad.any() for p in m.parameters())


def test_zero_grad_is_lazy_but_exact():
    """zero_grad() marks the gradient zero; the next accumulate takes g as the gradient
    (0 + g) and a read before that sees zeros. The same values as clearing the array
    and adding."""
    p = Parameter(np.ones(3, np.float32))
    p.accumulate(np.array([1.0, -2.0, 3.0], np.float32))
    p.zero_grad()
    grad_array = p._grad
    assert grad_array.tolist() == [1.0, -2.0, 3.0]           # not cleared yet: no pass
    g = np.array([0.5, 0.25, -1.0], np.float32)
    p.accumulate(g)                                          # taken over, not added
    p.accumulate(np.array([0.5, 0.25, 1.0], np.float32))    # the second one adds
    assert p.grad.tolist() == [1.0, 0.5, 0.0] and p.grad is g   # kept: no copy
    assert grad_array.tolist() == [1.0, -2.0, 3.0]           # the old array: untouched
    p.zero_grad()
    assert p.grad.tolist() == [0.0, 0.0, 0.0] and p.grad is g   # a read clears in place
    p.zero_grad()
    p.grad = np.full(3, 7.0, np.float32)                     # assigning drops the mark
    p.accumulate(np.ones(3, np.float32))
    assert p.grad.tolist() == [8.0, 8.0, 8.0]


@pytest.mark.parametrize("g", [np.arange(6, dtype=np.float32)[::2],       # a view
                               np.arange(3, dtype=np.float64),            # another dtype
                               np.arange(6, dtype=np.float32).reshape(2, 3)[0]],
                         ids=["strided view", "float64", "row view"])
def test_first_accumulate_copies_what_it_cannot_keep(g):
    """A view (of memory another array may change) or another dtype is copied into the
    gradient's own array, cast to its dtype; the caller's array stays its own."""
    p = Parameter(np.zeros(3, np.float32))
    grad_array = p.grad
    before = g.copy()
    p.zero_grad()
    p.accumulate(g)
    assert p.grad is grad_array and p.grad.dtype == np.float32
    assert p.grad.tolist() == before.tolist()
    p.accumulate(g)
    assert p.grad.tolist() == (2 * before).tolist() and g.tolist() == before.tolist()


def test_frozen_parameters_do_not_accumulate_and_modes_propagate():
    m = Sequential(Affine(2), Affine(2))
    m[0].freeze()
    m.forward(np.ones((1, 2)))
    m.backward(np.ones((1, 2)))
    assert not m[0].b.grad.any() and m[1].b.grad.any()
    m.eval()
    assert not m.training and not m[0].training
    m.train()
    assert m[1].training


def test_one_naive_fast_switch_for_every_layer_with_versions():
    """Conv2d, MaxPool2d, RoIPool and RoIAlign pick their op pair when ``impl`` is set
    (OpModule); impl can change between forward and backward, as the caches are
    interchangeable."""
    from minircnn.layers import Conv2d, MaxPool2d, RoIAlign, RoIPool

    x = np.random.default_rng(0).permutation(2 * 2 * 6 * 6).reshape(2, 2, 6, 6) * 0.1
    rois = np.array([[0, 0, 0, 4, 5], [1, 1, 1, 5, 3]], dtype=np.float64)
    layers = [(Conv2d(2, 3, 3, pad=1, dtype=np.float64), (x,)),
              (MaxPool2d(2, 2), (x,)),
              (RoIPool(2, 1.0), (x, rois)),
              (RoIAlign(2, 1.0), (x, rois))]
    for layer, inputs in layers:
        assert set(layer.IMPLS) >= {"fast", "naive"}
        assert (layer.op_forward, layer.op_backward) == layer.IMPLS["fast"]
        out = layer.forward(*inputs)
        dout = np.random.default_rng(1).standard_normal(out.shape)
        layer.impl = "naive"                        # step the naive backward through the
        dx_naive = layer.backward(dout)             # cache the fast forward made
        layer.impl = "fast"
        dx_fast = layer.backward(dout)
        np.testing.assert_allclose(dx_naive, dx_fast, rtol=1e-9, atol=1e-12)
        with pytest.raises(ValueError, match=f"{type(layer).__name__}: impl must be one of"):
            layer.impl = "slow"
        assert layer.impl == "fast" and layer.op_backward is layer.IMPLS["fast"][1]


def test_backward_before_forward_names_the_layer():
    from minircnn.layers import MaxPool2d

    with pytest.raises(RuntimeError, match="MaxPool2d.backward called before forward"):
        MaxPool2d().backward(np.zeros((1, 1, 1, 1)))


def test_no_grad_keeps_no_cache_and_restores():
    """Inside no_grad (test time) no layer keeps a cache; afterwards they do again."""
    from minircnn.layers import Conv2d, MaxPool2d, ReLU
    from minircnn.layers.module import no_grad

    net = Sequential(Conv2d(1, 2, 3, pad=1, dtype=np.float64), ReLU(), MaxPool2d())
    x = np.random.default_rng(0).standard_normal((1, 1, 4, 4))
    expected = net.forward(x)
    with no_grad(net):
        np.testing.assert_array_equal(net.forward(x), expected)
        assert net[0]._cache is None and net[1].cache is None and net[2]._cache is None
    net.forward(x)
    assert net[0]._cache is not None and net[1].cache is not None
    assert net.backward(np.ones_like(expected)).shape == x.shape


def test_a_shared_layer_counts_once():
    """A layer reached by two names (shared, as a backbone two heads read): modules()
    and parameters() give it once, so an optimizer steps it once and no_grad restores
    it once; state_dict keeps both names."""
    from minircnn.layers.module import no_grad

    shared = Affine(3)
    net = Sequential(shared, shared)
    assert [m for m in net.modules()] == [net, shared]
    assert len(net.parameters()) == 2
    assert len(net.state_dict()) == 4
    with no_grad(net):
        assert not shared.grad_enabled
    assert shared.grad_enabled and "grad_enabled" not in vars(shared)
