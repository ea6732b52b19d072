"""minircnn/layers/low_rank_linear.py: truncated SVD and the factored Linear layer
y = (x w1^T) w2^T + b (Fast R-CNN section 3.1)."""

import numpy as np
import pytest

from minircnn.gradcheck import check_layer
from minircnn.layers.low_rank_linear import (
    LowRankLinear,
    low_rank_linear_backward,
    low_rank_linear_forward,
    truncated_svd,
)


def test_truncated_svd_shapes_and_factors_by_hand():
    # diag(3, 2, 1) padded: the SVD is known, rank 2 keeps the 3 and the 2
    w = np.zeros((3, 4))
    w[0, 0], w[1, 1], w[2, 2] = 3.0, 2.0, 1.0
    w1, w2 = truncated_svd(w, 2)
    assert w1.shape == (2, 4) and w2.shape == (3, 2)
    expected = np.zeros((3, 4))
    expected[0, 0], expected[1, 1] = 3.0, 2.0
    assert np.allclose(w2 @ w1, expected, atol=1e-12)
    assert np.allclose(np.abs(w1).sum(axis=1), [3.0, 2.0])  # Σ_t V_tᵀ rows carry σ
    assert np.allclose(w2.T @ w2, np.eye(2))                # U_t orthonormal columns


@pytest.mark.parametrize("shape", [(7, 12), (12, 7)])  # wide (SVD of wᵀ) and tall
@pytest.mark.parametrize("rank", [1, 3, 5, 7])
def test_reconstruction_error_is_the_discarded_singular_values(rank, shape):
    w = np.random.default_rng(1).standard_normal(shape)
    s = np.linalg.svd(w, compute_uv=False)
    w1, w2 = truncated_svd(w, rank)
    assert w1.shape == (rank, shape[1]) and w2.shape == (shape[0], rank)
    err2 = np.sum((w - w2 @ w1) ** 2)          # squared Frobenius error
    assert abs(err2 - np.sum(s[rank:] ** 2)) < 1e-10 * np.sum(s**2)
    assert np.allclose(w2.T @ w2, np.eye(rank))  # the second factor is U_t
    # Eckart–Young: no other rank-t matrix does better, e.g. a random rank-t one
    other = np.random.default_rng(2).standard_normal((shape[0], rank)) @ w1
    assert np.sum((w - other) ** 2) > err2


def test_low_rank_linear_gradcheck():
    rng = np.random.default_rng(4)
    inputs = {"x": rng.standard_normal((5, 9)), "w1": rng.standard_normal((3, 9)),
              "w2": rng.standard_normal((6, 3)), "b": rng.standard_normal(6)}
    errors = check_layer(low_rank_linear_forward, low_rank_linear_backward, inputs)
    assert max(errors.values()) <= 1e-7, errors


@pytest.mark.gpu
def test_numpy_and_cupy_agree():
    from minircnn.backend import asnumpy, to_device

    rng = np.random.default_rng(7)
    w, x = rng.standard_normal((7, 12)), rng.standard_normal((5, 12))
    dout = rng.standard_normal((5, 7))
    for wide in (w, w.T.copy()):  # both SVD orientations
        w1, w2 = truncated_svd(wide, 3)
        g1, g2 = truncated_svd(to_device(wide, "gpu"), 3)
        # singular vectors are unique up to sign: compare the product
        assert np.abs(asnumpy(g2 @ g1) - w2 @ w1).max() < 1e-10
    b = rng.standard_normal(7)
    w1, w2 = truncated_svd(w, 3)
    out, cache = low_rank_linear_forward(x, w1, w2, b)
    grads = low_rank_linear_backward(dout, cache)
    gpu_in = [to_device(a, "gpu") for a in (x, w1, w2, b)]
    gout, gcache = low_rank_linear_forward(*gpu_in)
    ggrads = low_rank_linear_backward(to_device(dout, "gpu"), gcache)
    assert np.abs(asnumpy(gout) - out).max() < 1e-10
    for cpu, gpu in zip(grads, ggrads, strict=True):
        assert np.abs(asnumpy(gpu) - cpu).max() < 1e-10


def test_bad_inputs_raise():
    with pytest.raises(TypeError, match="rank"):
        truncated_svd(np.ones((3, 4)), 2.0)
    with pytest.raises(ValueError, match="2-D"):
        truncated_svd(np.ones(4), 1)
    for rank in (0, -1, 8, 100):
        with pytest.raises(ValueError, match="rank"):
            truncated_svd(np.ones((7, 12)), rank)
    with pytest.raises(ValueError, match="w2"):
        low_rank_linear_forward(np.ones((2, 12)), np.ones((2, 12)), np.ones((7, 3)), np.ones(7))
    with pytest.raises(ValueError, match="LowRankLinear"):
        LowRankLinear(np.ones((2, 12)), np.ones((7, 3)), np.ones(7))
