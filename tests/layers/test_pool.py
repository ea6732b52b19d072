"""Tests for minircnn/layers/pool.py: hand-computed forward, ties, overlaps, naive == fast."""

import numpy as np
import pytest

from minircnn.backend import asnumpy, get_array_module, to_device
from minircnn.gradcheck import check_layer, rel_error
from minircnn.layers.pool import (
    MaxPool2d,
    max_pool2d_backward,
    max_pool2d_backward_naive,
    max_pool2d_forward,
    max_pool2d_forward_naive,
)

IMPLS = [
    pytest.param((max_pool2d_forward_naive, max_pool2d_backward_naive), id="naive"),
    pytest.param((max_pool2d_forward, max_pool2d_backward), id="fast"),
]

# (N, C, H, W, kernel, stride): stride < kernel (overlapping windows) must appear
CASES = [
    (2, 3, 6, 6, 2, 2),
    (2, 2, 7, 5, 2, 2),          # floor mode drops the last row
    (1, 2, 7, 7, 3, 1),          # overlapping: each input in up to 9 windows
    (2, 2, 7, 8, 3, 2),          # overlapping, as AlexNet / ZF
    (1, 3, 8, 9, (2, 3), (1, 2)),  # non-square kernel and stride
    (1, 2, 9, 7, 2, 3),          # stride > kernel: some inputs in no window
]

X = np.array([[1.0, 3.0, 2.0, 0.0],
              [4.0, 2.0, 1.0, 5.0],
              [0.0, 6.0, 7.0, 1.0],
              [2.0, 3.0, 1.0, 8.0]])[None, None]  # (1, 1, 4, 4)


def _distinct(shape, seed=0):
    """Values spaced 0.1 apart in random order: no ties, so no argmax flips under h=1e-5."""
    rng = np.random.default_rng(seed)
    return rng.permutation(int(np.prod(shape))).reshape(shape) * 0.1 - 1.0


@pytest.mark.parametrize("impl", IMPLS)
def test_forward_matches_hand_computed(impl):
    out, _ = impl[0](X, kernel=2, stride=2)
    np.testing.assert_array_equal(out, [[[[4.0, 5.0], [6.0, 8.0]]]])
    out, _ = impl[0](X, kernel=3, stride=1)  # windows overlap
    np.testing.assert_array_equal(out, [[[[7.0, 7.0], [7.0, 8.0]]]])


@pytest.mark.parametrize("impl", IMPLS)
def test_backward_hand_computed_overlap_adds(impl):
    # kernel 3 stride 1 on X: the 7 at (2, 2) wins three windows, the 8 at (3, 3) one
    out, cache = impl[0](X, kernel=3, stride=1)
    dx = impl[1](np.array([[[[1.0, 2.0], [3.0, 4.0]]]]), cache)
    expected = np.zeros((1, 1, 4, 4))
    expected[0, 0, 2, 2] = 1.0 + 2.0 + 3.0
    expected[0, 0, 3, 3] = 4.0
    np.testing.assert_array_equal(dx, expected)


@pytest.mark.parametrize("impl", IMPLS)
def test_ties_send_the_gradient_to_the_first_max(impl):
    x = np.array([[1.0, 1.0, 0.0, 3.0],
                  [1.0, 1.0, 3.0, 2.0],
                  [2.0, 5.0, 4.0, 4.0],
                  [5.0, 5.0, 4.0, 4.0]])[None, None]
    out, cache = impl[0](x, kernel=2, stride=2)
    np.testing.assert_array_equal(out, [[[[1.0, 3.0], [5.0, 4.0]]]])
    dx = impl[1](np.array([[[[1.0, 2.0], [3.0, 4.0]]]]), cache)
    expected = np.array([[1.0, 0.0, 0.0, 2.0],   # row-major order: top-left wins
                         [0.0, 0.0, 0.0, 0.0],
                         [0.0, 3.0, 4.0, 0.0],
                         [0.0, 0.0, 0.0, 0.0]])
    np.testing.assert_array_equal(dx[0, 0], expected)


@pytest.mark.parametrize("impl", IMPLS)
def test_ties_with_overlapping_windows(impl):
    x = np.ones((1, 1, 4, 4))  # every window ties everywhere: each picks its top-left
    out, cache = impl[0](x, kernel=3, stride=1)
    dx = impl[1](np.array([[[[1.0, 2.0], [3.0, 4.0]]]]), cache)
    expected = np.zeros((4, 4))
    expected[:2, :2] = [[1.0, 2.0], [3.0, 4.0]]
    np.testing.assert_array_equal(dx[0, 0], expected)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("case", CASES, ids=str)
def test_gradcheck(impl, case):
    N, C, H, W, kernel, stride = case
    x = _distinct((N, C, H, W))
    errors = check_layer(*impl, {"x": x}, kwargs=dict(kernel=kernel, stride=stride))
    assert errors["x"] <= 1e-7, errors


@pytest.mark.parametrize("case", CASES, ids=str)
def test_naive_equals_fast(case):
    N, C, H, W, kernel, stride = case
    rng = np.random.default_rng(1)
    x = np.round(rng.standard_normal((N, C, H, W)) * 2)  # integer values: many ties
    out_naive, cache_naive = max_pool2d_forward_naive(x, kernel=kernel, stride=stride)
    out_fast, cache_fast = max_pool2d_forward(x, kernel=kernel, stride=stride)
    KH, KW = (kernel, kernel) if np.isscalar(kernel) else kernel
    SH, SW = (stride, stride) if np.isscalar(stride) else stride
    assert out_fast.shape == (N, C, (H - KH) // SH + 1, (W - KW) // SW + 1)
    assert rel_error(out_naive, out_fast) <= 1e-9
    dout = rng.standard_normal(out_fast.shape)
    dx_naive = max_pool2d_backward_naive(dout, cache_naive)
    dx_fast = max_pool2d_backward(dout, cache_fast)
    assert rel_error(dx_naive, dx_fast) <= 1e-9
    np.testing.assert_array_equal(cache_naive.arg, cache_fast.arg)   # same argmax, ties too
    # the caches are interchangeable: each backward steps through the other's cache
    assert rel_error(max_pool2d_backward_naive(dout, cache_fast), dx_fast) <= 1e-9
    assert rel_error(max_pool2d_backward(dout, cache_naive), dx_naive) <= 1e-9
    np.testing.assert_allclose(dx_fast.sum(), dout.sum())  # every gradient lands once


def test_float32_stays_float32():
    x = _distinct((2, 3, 6, 6)).astype(np.float32)
    out, cache = max_pool2d_forward(x)
    assert out.dtype == np.float32
    assert max_pool2d_backward(np.ones_like(out), cache).dtype == np.float32


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize(
    "x, kw, error, match",
    [
        (np.zeros((3, 4, 4)), {}, ValueError, r"x must be 4-D.*\(3, 4, 4\)"),
        (np.zeros((1, 1, 4, 4), dtype=np.int32), {}, TypeError, r"x must be a float array"),
        (np.zeros((1, 1, 2, 5)), {"kernel": 3}, ValueError, r"kernel 3x3 is larger than the "
                                                            r"input 2x5"),
        (np.zeros((1, 1, 4, 4)), {"stride": 0}, ValueError, r"stride must be an int >= 1"),
        (np.zeros((1, 1, 4, 4)), {"kernel": (2, 2, 2)}, ValueError, r"kernel must be"),
    ],
)
def test_bad_input_raises(impl, x, kw, error, match):
    with pytest.raises(error, match=match):
        impl[0](x, **kw)


@pytest.mark.parametrize("impl", ["naive", "fast"])
def test_module(impl):
    x = _distinct((2, 2, 7, 8))
    pool = MaxPool2d(3, 2, impl=impl)
    out = pool.forward(x)
    ref_out, cache = max_pool2d_forward(x, kernel=3, stride=2)
    np.testing.assert_array_equal(out, ref_out)
    dout = np.random.default_rng(2).standard_normal(out.shape)
    np.testing.assert_allclose(pool.backward(dout), max_pool2d_backward(dout, cache), atol=1e-12)
    assert pool.parameters() == []
    assert MaxPool2d().forward(x).shape == (2, 2, 3, 4)


@pytest.mark.gpu
@pytest.mark.parametrize("case", [CASES[0], CASES[3]], ids=str)
def test_numpy_equals_cupy(case):
    N, C, H, W, kernel, stride = case
    x = np.round(np.random.default_rng(3).standard_normal((N, C, H, W)) * 2)  # with ties
    out, cache = max_pool2d_forward(x, kernel=kernel, stride=stride)
    out_gpu, cache_gpu = max_pool2d_forward(to_device(x, "gpu"), kernel=kernel, stride=stride)
    assert get_array_module(out_gpu) is not np          # stayed on the device
    np.testing.assert_array_equal(out, asnumpy(out_gpu))
    dout = np.random.default_rng(4).standard_normal(out.shape)
    dx_gpu = max_pool2d_backward(to_device(dout, "gpu"), cache_gpu)
    assert rel_error(max_pool2d_backward(dout, cache), asnumpy(dx_gpu)) <= 1e-9
