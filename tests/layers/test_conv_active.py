"""minircnn/layers/conv_active.py: the backward over active pixels == conv2d_backward."""

import numpy as np
import pytest

from minircnn.layers.conv import Conv2d, conv2d_backward, conv2d_backward_naive, conv2d_forward
from minircnn.layers.conv_active import DENSE_FRACTION, ActiveConv2d, conv2d_backward_active
from tests.layers.test_conv import SHAPES as CONV_SHAPES

# test_conv's shapes (N, C, H, W, F, KH, KW, stride, pad), and two with more channels
SHAPES = [
    *CONV_SHAPES,
    (3, 4, 9, 9, 5, 1, 1, 1, 0),
    (2, 6, 12, 10, 4, 3, 3, 1, 1),     # the RPN's 3x3, pad 1
]
# float64 sums of a few dozen terms in another order: round-off ~1e-16 relative
TOL = 1e-12


def _case(shape, fraction, seed=0):
    N, C, H, W, F, KH, KW, stride, pad = shape
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, C, H, W))
    w = rng.standard_normal((F, C, KH, KW))
    out, cache = conv2d_forward(x, w, rng.standard_normal(F), stride=stride, pad=pad)
    keep = rng.random((N, 1, *out.shape[2:])) < fraction       # active pixels
    return rng.standard_normal(out.shape) * keep, cache


def _assert_same(got, want):
    for g, v in zip(got, want, strict=True):
        assert g.shape == v.shape and g.dtype == v.dtype
        np.testing.assert_allclose(g, v, rtol=TOL, atol=TOL * max(1.0, np.abs(v).max()))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("fraction", [0.2, 0.45, 0.9])       # 0.9: the dense path
def test_active_backward_is_conv2d_backward(shape, fraction):
    dout, cache = _case(shape, fraction)
    _assert_same(conv2d_backward_active(dout, cache), conv2d_backward(dout, cache))
    _assert_same(conv2d_backward_active(dout, cache), conv2d_backward_naive(dout, cache))


def test_no_active_pixel_gives_zero_gradients_and_border_pixels_reach_the_padding():
    shape = (2, 3, 6, 6, 4, 3, 3, 1, 1)
    dout, cache = _case(shape, 0.0)
    dx, dw, db = conv2d_backward_active(dout, cache)
    assert not dx.any() and not dw.any() and not db.any()
    dout[1, :, 0, 5] = 1.0            # a corner: part of its window is padding
    dout[0, 2, 3, 3] = -2.0           # one channel only
    assert 2 < DENSE_FRACTION * dout[:, 0].size
    _assert_same(conv2d_backward_active(dout, cache), conv2d_backward_naive(dout, cache))


def test_active_conv_layer_is_conv2d_with_that_backward():
    rng = np.random.default_rng(1)
    plain, active = (cls(4, 5, 3, pad=1, rng=np.random.default_rng(0), dtype=np.float64)
                     for cls in (Conv2d, ActiveConv2d))
    np.testing.assert_array_equal(plain.w.data, active.w.data)     # the same init
    x = rng.standard_normal((2, 4, 7, 7))
    np.testing.assert_array_equal(plain.forward(x), active.forward(x))
    dout = rng.standard_normal((2, 5, 7, 7)) * (rng.random((2, 1, 7, 7)) < 0.2)
    _assert_same([active.backward(dout), active.w.grad, active.b.grad],
                 [plain.backward(dout), plain.w.grad, plain.b.grad])
    active.impl = "naive"
    assert active.op_backward is conv2d_backward_naive


def test_active_backward_on_the_fake_gpu_matches_the_cpu(monkeypatch):
    """Only what CuPy has (the fake CuPy refuses the rest), the CPU's gradients."""
    from minircnn import backend
    from minircnn.testing import fake_cupy

    monkeypatch.setattr(backend, "FAKE_GPU", True)
    monkeypatch.setattr(backend, "_cupy", fake_cupy.module)
    dout, cache = _case((2, 6, 12, 10, 4, 3, 3, 1, 1), 0.2)
    cpu = conv2d_backward_active(dout, cache)
    on_gpu = cache._replace(x=backend.to_device(cache.x, "gpu"),
                            w=backend.to_device(cache.w, "gpu"))
    gpu = conv2d_backward_active(backend.to_device(dout, "gpu"), on_gpu)
    assert not isinstance(gpu[0], np.ndarray)
    for g, c in zip(gpu, cpu, strict=True):
        np.testing.assert_array_equal(backend.asnumpy(g), c)
