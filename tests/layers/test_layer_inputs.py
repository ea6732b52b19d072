"""Bad and unusual inputs to the layers that once failed deep inside NumPy or were
accepted silently: each is now refused naming the argument, or works."""

import numpy as np
import pytest

from minircnn import layers as L

X = np.random.default_rng(0).random((2, 3, 8, 8))
COLS = np.ones((2, 27, 36))


@pytest.mark.parametrize("call, error, words", [
    (lambda: L.im2col(X[0], 3, 3), ValueError, r"x must be 4-D \(N, C, H, W\)"),
    (lambda: L.im2col(X, 3, 3, stride=0), ValueError, "stride must be an integer >= 1"),
    (lambda: L.im2col(X, 0, 3), ValueError, "KH must be an integer >= 1"),
    (lambda: L.im2col(X, 9, 3), ValueError, "kernel 9x3 must fit in the padded input 8x8"),
    (lambda: L.col2im(COLS, (3, 8, 8), 3, 3), ValueError, r"x_shape must be the 4 sizes"),
    (lambda: L.col2im(COLS, (2, 3, 8, 8), 3, 3, stride=0), ValueError, "stride"),
    (lambda: L.col2im(COLS[:, :, :5], (2, 3, 8, 8), 3, 3), ValueError,
     r"dcols must have shape \(2, 27, 36\)"),
    (lambda: L.batchnorm2d_forward(X[:0], np.ones(3), np.zeros(3)), ValueError,
     "at least one value per channel"),
    (lambda: L.batchnorm2d_eval_forward(X, np.ones(3), np.zeros(3), np.zeros(3), -np.ones(3)),
     ValueError, "running_var must be >= 0"),
    (lambda: L.batchnorm2d_eval_forward(X, np.ones(3), np.zeros(3), np.zeros(2), np.ones(3)),
     ValueError, "running_mean must have shape"),
    (lambda: L.truncated_svd(np.full((3, 3), np.inf), 1), ValueError, "w must be finite"),
])
def test_refused_naming_the_argument(call, error, words):
    with pytest.raises(error, match=words):
        call()


def test_lists_work_like_arrays():
    np.testing.assert_array_equal(L.global_avg_pool_forward(X.tolist())[0], X.mean(axis=(2, 3)))
    np.testing.assert_array_equal(L.add_forward(X.tolist(), X.tolist())[0], 2 * X)


def test_roi_align_without_channels_and_spp_without_rois_give_empty_outputs():
    rois = np.array([[0, 0, 0, 4, 4.0]])
    out, cache = L.roi_align_forward(np.zeros((1, 0, 8, 8)), rois, output_size=2,
                                     spatial_scale=1.0)
    assert out.shape == (1, 0, 2, 2)
    assert L.roi_align_backward(out, cache).shape == (1, 0, 8, 8)
    out, cache = L.spp_forward(X, np.zeros((0, 5)), levels=(2, 1), spatial_scale=1.0)
    assert out.shape == (0, 3 * (4 + 1))
    np.testing.assert_array_equal(L.spp_backward(out, cache), np.zeros_like(X))
