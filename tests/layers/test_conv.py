"""Tests for minircnn/layers/conv.py: hand-computed forward, gradchecks, naive == fast."""

import numpy as np
import pytest

from minircnn.backend import asnumpy, get_array_module, to_device
from minircnn.gradcheck import check_layer, rel_error
from minircnn.layers import Parameter
from minircnn.layers import conv as conv_module
from minircnn.layers.conv import (
    Conv2d,
    col2im,
    conv2d_backward,
    conv2d_backward_naive,
    conv2d_forward,
    conv2d_forward_naive,
    im2col,
)

IMPLS = [
    pytest.param((conv2d_forward_naive, conv2d_backward_naive), id="naive"),
    pytest.param((conv2d_forward, conv2d_backward), id="fast"),
]

# (N, C, H, W, F, KH, KW, stride, pad): strides 1-3, pads 0-2, non-square kernels/inputs
SHAPES = [
    (2, 3, 5, 5, 4, 3, 3, 1, 0),
    (2, 3, 5, 5, 4, 3, 3, 1, 1),
    (1, 2, 7, 6, 3, 3, 3, 2, 1),
    (2, 2, 6, 8, 3, 2, 3, 2, 0),
    (1, 3, 7, 5, 2, 3, 2, 3, 2),
    (2, 1, 4, 9, 2, 1, 4, 3, 1),
    (1, 2, 5, 5, 2, 5, 5, 1, 2),
    (1, 4, 3, 3, 2, 1, 1, 1, 0),
]


def _inputs(shape, seed=0, dtype=np.float64):
    N, C, H, W, F, KH, KW, stride, pad = shape
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    w = rng.standard_normal((F, C, KH, KW)).astype(dtype)
    b = rng.standard_normal(F).astype(dtype)
    return x, w, b, dict(stride=stride, pad=pad)


def _hand_case():
    """x: channel 0 = arange(9) as 3x3, channel 1 = ones; 3x3 kernel, stride 2, pad 1."""
    x = np.stack([np.arange(9.0).reshape(3, 3), np.ones((3, 3))])[None]  # (1, 2, 3, 3)
    w = np.zeros((2, 2, 3, 3))
    w[0, 0] = 1.0        # filter 0: sum of channel 0 over the window ...
    w[0, 1] = 2.0        # ... plus twice the number of real (unpadded) pixels
    w[1, 0, 1, 1] = 1.0  # filter 1: the centre pixel of channel 0
    b = np.array([1.0, -1.0])
    # Padded channel 0 has rows [0 0 0 0 0], [0 0 1 2 0], [0 3 4 5 0], [0 6 7 8 0], [0]*5;
    # windows start at (0,0), (0,2), (2,0), (2,2): sums 8, 12, 20, 24; each window covers
    # 4 real pixels (+8 from channel 1); centres are 0, 2, 6, 8.
    expected = np.array([[[[17.0, 21.0], [29.0, 33.0]], [[-1.0, 1.0], [5.0, 7.0]]]])
    return x, w, b, expected


@pytest.mark.parametrize("impl", IMPLS)
def test_forward_matches_hand_computed_stride2_pad1(impl):
    x, w, b, expected = _hand_case()
    out, _ = impl[0](x, w, b, stride=2, pad=1)
    np.testing.assert_allclose(out, expected, atol=1e-12)


@pytest.mark.parametrize("impl", IMPLS)
def test_forward_matches_hand_computed_stride1(impl):
    x = np.arange(16.0).reshape(1, 1, 4, 4)  # x[i, j] = 4 i + j
    w = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    # out[i, j] = x[i,j] + 2 x[i,j+1] + 3 x[i+1,j] + 4 x[i+1,j+1] + 1 = 40 i + 10 j + 35
    expected = np.array([[[[35.0, 45.0, 55.0], [75.0, 85.0, 95.0], [115.0, 125.0, 135.0]]]])
    out, _ = impl[0](x, w, np.array([1.0]))
    np.testing.assert_allclose(out, expected, atol=1e-12)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("shape", [SHAPES[1], SHAPES[2], SHAPES[4]], ids=str)
def test_gradcheck(impl, shape):
    x, w, b, kw = _inputs(shape)
    errors = check_layer(*impl, {"x": x, "w": w, "b": b}, kwargs=kw)
    assert max(errors.values()) <= 1e-7, errors


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_naive_equals_fast(shape):
    x, w, b, kw = _inputs(shape, seed=1)
    out_naive, cache_naive = conv2d_forward_naive(x, w, b, **kw)
    out_fast, cache_fast = conv2d_forward(x, w, b, **kw)
    assert out_fast.shape == out_naive.shape
    assert rel_error(out_naive, out_fast) <= 1e-9
    dout = np.random.default_rng(2).standard_normal(out_fast.shape)
    for g_naive, g_fast in zip(conv2d_backward_naive(dout, cache_naive),
                               conv2d_backward(dout, cache_fast), strict=True):
        assert g_fast.shape == g_naive.shape
        assert rel_error(g_naive, g_fast) <= 1e-9
    # the caches are interchangeable: each backward steps through the other's cache
    for g_a, g_b in zip(conv2d_backward_naive(dout, cache_fast),
                        conv2d_backward(dout, cache_naive), strict=True):
        assert rel_error(g_a, g_b) <= 1e-9


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_output_size_is_floor(shape):
    N, C, H, W, F, KH, KW, stride, pad = shape
    out, _ = conv2d_forward(*_inputs(shape)[:3], stride=stride, pad=pad)
    assert out.shape == (N, F, (H + 2 * pad - KH) // stride + 1, (W + 2 * pad - KW) // stride + 1)


@pytest.mark.parametrize("pad", [0, 1])
def test_non_contiguous_input(pad):
    # im2col's strided view must use x's own strides: a sliced/transposed x works too
    x, w, b, _ = _inputs((2, 3, 9, 8, 2, 3, 3, 1, 0))
    x = x.transpose(0, 1, 3, 2)[:, :, ::2, 1:]  # (2, 3, 4, 8), not C-contiguous
    out_fast, _ = conv2d_forward(x, w, b, pad=pad)
    out_naive, _ = conv2d_forward_naive(x, w, b, pad=pad)
    assert rel_error(out_naive, out_fast) <= 1e-9


def test_input_gradient_is_full_correlation_with_the_rotated_kernel():
    # docs/layers/conv.md: for stride 1, dx = the full cross-correlation of dout with the
    # kernel rotated by 180 degrees, f and c swapped (= a true convolution with w itself).
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((2, 3, 6, 5)), rng.standard_normal((4, 3, 3, 3))
    out, cache = conv2d_forward(x, w, np.zeros(4), stride=1, pad=0)
    dout = rng.standard_normal(out.shape)
    dx, _, _ = conv2d_backward(dout, cache)
    rotated = w.transpose(1, 0, 2, 3)[:, :, ::-1, ::-1]               # (C, F, KH, KW)
    full, _ = conv2d_forward(dout, np.ascontiguousarray(rotated), np.zeros(3), stride=1,
                             pad=2)                                    # pad K - 1
    np.testing.assert_allclose(full, dx, rtol=1e-12, atol=1e-12)
    unrotated, _ = conv2d_forward(dout, np.ascontiguousarray(w.transpose(1, 0, 2, 3)),
                                  np.zeros(3), stride=1, pad=2)
    assert not np.allclose(unrotated, dx)                               # flipping matters


def test_col2im_is_the_adjoint_of_im2col():
    # <im2col(x), y> == <x, col2im(y)> for every x, y: the defining property of the adjoint
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 7, 6))
    cols = im2col(x, 3, 2, stride=2, pad=1)
    assert cols.shape == (2, 3 * 3 * 2, 4 * 4)
    y = rng.standard_normal(cols.shape)
    dx = col2im(y, x.shape, 3, 2, stride=2, pad=1)
    assert dx.shape == x.shape
    np.testing.assert_allclose(np.sum(cols * y), np.sum(x * dx), rtol=1e-12)


def test_float32_stays_float32():
    x, w, b, kw = _inputs(SHAPES[2], dtype=np.float32)
    out, cache = conv2d_forward(x, w, b, **kw)
    assert out.dtype == np.float32
    dx, dw, db = conv2d_backward(np.ones_like(out), cache)
    assert dx.dtype == dw.dtype == db.dtype == np.float32
    out64, _ = conv2d_forward(*_inputs(SHAPES[2])[:3], **kw)
    assert rel_error(out, out64) < 1e-4


@pytest.mark.parametrize(
    "x_shape, w_shape, b_shape, kw, match",
    [
        ((3, 5, 5), (2, 3, 3, 3), (2,), {}, r"x must be 4-D.*\(3, 5, 5\)"),
        ((1, 3, 5, 5), (2, 3, 3), (2,), {}, r"w must be 4-D"),
        ((1, 3, 5, 5), (2, 4, 3, 3), (2,), {}, r"channels of x \(1, 3, 5, 5\) and w"),
        ((1, 3, 5, 5), (2, 3, 3, 3), (3,), {}, r"b must have shape \(2,\).*got \(3,\)"),
        ((1, 3, 2, 5), (2, 3, 3, 3), (2,), {}, r"kernel 3x3.*larger than the padded input 2x5"),
        ((1, 3, 5, 5), (2, 3, 3, 3), (2,), {"pad": -1}, r"pad must be an integer >= 0, got -1"),
        ((1, 3, 5, 5), (2, 3, 3, 3), (2,), {"stride": 0}, r"stride must be an integer >= 1"),
    ],
)
@pytest.mark.parametrize("impl", IMPLS)
def test_bad_input_raises(impl, x_shape, w_shape, b_shape, kw, match):
    with pytest.raises(ValueError, match=match):
        impl[0](np.zeros(x_shape), np.zeros(w_shape), np.zeros(b_shape), **kw)


def test_kernel_fits_once_padded():
    out, _ = conv2d_forward(np.zeros((1, 1, 2, 2)), np.zeros((1, 1, 3, 3)), np.zeros(1), pad=1)
    assert out.shape == (1, 1, 2, 2)


def test_integer_input_raises_type_error():
    with pytest.raises(TypeError, match=r"x must be a float array, got dtype int64"):
        conv2d_forward(np.zeros((1, 1, 3, 3), dtype=np.int64), np.zeros((1, 1, 2, 2)),
                       np.zeros(1))


def test_module_init_and_parameters():
    conv = Conv2d(64, 32, 3, pad=1)
    assert conv.w.shape == (32, 64, 3, 3) and conv.w.data.dtype == np.float32
    assert isinstance(conv.b, Parameter) and not conv.b.data.any()
    assert (conv.b.lr_mult, conv.b.decay_mult) == (2.0, 0.0)
    assert (conv.w.lr_mult, conv.w.decay_mult) == (1.0, 1.0)
    std = np.sqrt(2.0 / (64 * 9))  # He / Kaiming normal, fan_in
    assert abs(conv.w.data.std() / std - 1) < 0.03
    assert abs(conv.w.data.mean()) < 0.05 * std
    np.testing.assert_array_equal(conv.w.data, Conv2d(64, 32, 3).w.data)  # default seed 0
    other = Conv2d(64, 32, 3, rng=np.random.default_rng(1))
    assert not np.array_equal(conv.w.data, other.w.data)
    assert Conv2d(2, 3, (1, 2)).w.shape == (3, 2, 1, 2)
    assert [n for n, _ in conv.named_parameters()] == ["w", "b"]


@pytest.mark.parametrize("impl", ["naive", "fast"])
def test_module_forward_backward_accumulates(impl):
    x, _, _, kw = _inputs(SHAPES[2])
    conv = Conv2d(2, 3, 3, dtype=np.float64, impl=impl, **kw)
    conv.b.data[:] = [0.5, -1.0, 2.0]
    out = conv.forward(x)
    ref_out, cache = conv2d_forward(x, conv.w.data, conv.b.data, **kw)
    assert rel_error(out, ref_out) <= 1e-9
    dout = np.random.default_rng(4).standard_normal(out.shape)
    dx = conv.backward(dout)
    ref_dx, ref_dw, ref_db = conv2d_backward(dout, cache)
    assert rel_error(dx, ref_dx) <= 1e-9
    assert rel_error(conv.w.grad, ref_dw) <= 1e-9 and rel_error(conv.b.grad, ref_db) <= 1e-9
    conv.forward(x)
    conv.backward(dout)  # a second pass adds to the gradients
    assert rel_error(conv.w.grad, 2 * ref_dw) <= 1e-9
    assert rel_error(conv.b.grad, 2 * ref_db) <= 1e-9
    conv.zero_grad()
    assert not conv.w.grad.any()


def test_module_float32_and_frozen():
    conv = Conv2d(3, 4, 3, pad=1)
    out = conv.forward(np.ones((1, 3, 5, 5), dtype=np.float32))
    assert out.dtype == np.float32 and out.shape == (1, 4, 5, 5)
    conv.freeze()
    conv.backward(np.ones_like(out))
    assert not conv.w.grad.any()


@pytest.mark.gpu
def test_numpy_equals_cupy():
    x, w, b, kw = _inputs(SHAPES[4])
    out, cache = conv2d_forward(x, w, b, **kw)
    dout = np.random.default_rng(5).standard_normal(out.shape)
    grads = conv2d_backward(dout, cache)
    gx, gw, gb = (to_device(a, "gpu") for a in (x, w, b))
    out_gpu, cache_gpu = conv2d_forward(gx, gw, gb, **kw)
    assert get_array_module(out_gpu) is not np          # stayed on the device
    assert rel_error(out, asnumpy(out_gpu)) <= 1e-9
    grads_gpu = conv2d_backward(to_device(dout, "gpu"), cache_gpu)
    for g, g_gpu in zip(grads, grads_gpu, strict=True):
        assert rel_error(g, asnumpy(g_gpu)) <= 1e-9
    conv = Conv2d(3, 2, 3, **kw).to("gpu")
    out32 = conv.forward(to_device(x.astype(np.float32), "gpu"))
    conv.backward(out32)
    assert out32.dtype == np.float32 and conv.w.grad.dtype == np.float32


@pytest.mark.parametrize("impl", ["naive", "fast"])
def test_no_input_gradient_when_nothing_reads_it(impl):
    """needs_input_grad=False (the layer above frozen ones): dx is skipped, dw and db are
    those of the full backward."""
    x, _, _, kw = _inputs(SHAPES[2])
    conv = Conv2d(2, 3, 3, dtype=np.float64, impl=impl, **kw)
    out, cache = conv2d_forward(x, conv.w.data, conv.b.data, **kw)
    dout = np.random.default_rng(5).standard_normal(out.shape)
    _, ref_dw, ref_db = conv2d_backward(dout, cache)
    conv.needs_input_grad = False
    conv.forward(x)
    assert conv.backward(dout) is None
    assert rel_error(conv.w.grad, ref_dw) <= 1e-9 and rel_error(conv.b.grad, ref_db) <= 1e-9


def test_layers_keep_no_columns():
    """The cache holds the inputs only (the backward unfolds x again); a frozen layer
    nothing differentiates through keeps no cache at all."""
    x, _, _, kw = _inputs(SHAPES[2])
    conv = Conv2d(2, 3, 3, dtype=np.float64, **kw)
    out = conv.forward(x)
    assert conv._cache.x is x and conv._cache.w is conv.w.data
    assert conv._cache._fields == ("x", "w", "stride", "pad")
    dout = np.random.default_rng(6).standard_normal(out.shape)
    dx_train = conv.backward(dout)
    conv.eval().forward(x)
    assert rel_error(conv.backward(dout), dx_train) <= 1e-9
    conv.train().freeze()
    conv.needs_input_grad = False
    conv.forward(x)
    with pytest.raises(RuntimeError, match="frozen layer, which keeps no cache"):
        conv.backward(dout)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("block_bytes", [1, 200, 1 << 18])
def test_blocks_of_rows_give_the_whole_product(shape, block_bytes, monkeypatch):
    """The forward and the weight gradient unfold a block of output rows at a time (one
    row, a few rows with a shorter last block, or all of them): the values of one
    product over the whole im2col matrix (to float64 round-off: a BLAS may add a small
    product's terms in another order, and dw sums the blocks one after another)."""
    x, w, b, kw = _inputs(shape)
    N, F = x.shape[0], w.shape[0]
    cols = im2col(x, *w.shape[2:], **kw)                               # (N, K, P)
    whole = w.reshape(F, -1) @ cols + b[:, None]                       # (N, F, P)
    monkeypatch.setattr(conv_module, "BLOCK_BYTES", block_bytes)
    out, cache = conv2d_forward(x, w, b, **kw)
    assert rel_error(out, whole.reshape(out.shape)) <= 1e-12
    dout = np.random.default_rng(7).standard_normal(out.shape)
    dw_whole = (dout.reshape(N, F, -1) @ cols.transpose(0, 2, 1)).sum(axis=0)  # (F, K)
    _, dw, db = conv2d_backward(dout, cache)
    assert rel_error(dw, dw_whole.reshape(w.shape)) <= 1e-12
    assert rel_error(db, dout.sum(axis=(0, 2, 3))) <= 1e-12


def _random_shape(rng):
    """(N, C, H, W, F, KH, KW, stride, pad) with N 1..3, 1x1 or 3x3 kernels (or one of
    each side), pad 0..2, stride 1..2, non-square inputs; the kernel fits the padded input."""
    KH, KW = rng.choice([1, 3], size=2)
    pad, stride = int(rng.integers(0, 3)), int(rng.integers(1, 3))
    H = int(rng.integers(max(1, KH - 2 * pad), 9))
    W = int(rng.integers(max(1, KW - 2 * pad), 9))
    return (int(rng.integers(1, 4)), int(rng.integers(1, 5)), H, W, int(rng.integers(1, 5)),
            int(KH), int(KW), stride, pad)


@pytest.mark.parametrize("seed", range(12))
def test_naive_equals_fast_on_random_shapes(seed, monkeypatch):
    """The fast tier (blocks of one row, so every block boundary is exercised) against
    the loops, float64: the same sums in another order, so round-off only (<= 1e-9)."""
    shape = _random_shape(np.random.default_rng(seed))
    x, w, b, kw = _inputs(shape, seed=seed)
    out_naive, cache_naive = conv2d_forward_naive(x, w, b, **kw)
    monkeypatch.setattr(conv_module, "BLOCK_BYTES", 1)
    out_fast, cache_fast = conv2d_forward(x, w, b, **kw)
    dout = np.random.default_rng(seed + 100).standard_normal(out_fast.shape)
    grads_fast = conv2d_backward(dout, cache_fast)
    assert out_fast.shape == out_naive.shape, shape
    assert rel_error(out_naive, out_fast) <= 1e-9, shape
    for g_naive, g_fast in zip(conv2d_backward_naive(dout, cache_naive), grads_fast,
                               strict=True):
        assert g_fast.shape == g_naive.shape, shape
        assert rel_error(g_naive, g_fast) <= 1e-9, shape
