"""minircnn.compress and minircnn/layers/low_rank_linear.py: truncated SVD of Linear
layers (Fast R-CNN section 3.1)."""

import numpy as np
import pytest

from minircnn.blas import blas_threads
from minircnn.compress import compress_fast_rcnn, compress_linear, head_cost, layer_cost
from minircnn.gradcheck import check_layer, rel_error
from minircnn.layers.linear import Linear
from minircnn.layers.low_rank_linear import (
    LowRankLinear,
    low_rank_linear_backward,
    low_rank_linear_forward,
    truncated_svd,
)


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    """On a busy 2-core machine, 2-thread OpenBLAS SVDs and matmuls can be 10x slower."""
    with blas_threads(1):
        yield


def _layer(d=12, m=7, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    layer = Linear(d, m, rng=rng, dtype=dtype)
    layer.b.data[...] = rng.standard_normal(m)
    return layer


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


def test_full_rank_reproduces_the_layer():
    x = np.random.default_rng(3).standard_normal((5, 12))
    layer64 = _layer()
    low = compress_linear(layer64, 7)
    assert rel_error(low.forward(x), layer64.forward(x)) < 1e-12
    assert np.abs(low.forward(x) - layer64.forward(x)).max() < 1e-12
    layer32 = _layer(dtype=np.float32)
    low32 = compress_linear(layer32, 7)
    x32 = x.astype(np.float32)
    out = low32.forward(x32)
    assert out.dtype == np.float32
    assert np.abs(out - layer32.forward(x32)).max() < 1e-5
    assert rel_error(low32.w2.data @ low32.w1.data, layer32.w.data) < 1e-5
    assert low.b.data is not layer64.b.data and np.array_equal(low.b.data, layer64.b.data)


def test_low_rank_linear_gradcheck():
    rng = np.random.default_rng(4)
    inputs = {"x": rng.standard_normal((5, 9)), "w1": rng.standard_normal((3, 9)),
              "w2": rng.standard_normal((6, 3)), "b": rng.standard_normal(6)}
    errors = check_layer(low_rank_linear_forward, low_rank_linear_backward, inputs)
    assert max(errors.values()) <= 1e-7, errors


def test_module_backward_matches_functional_and_accumulates():
    layer = _layer()
    low = compress_linear(layer, 4)
    rng = np.random.default_rng(5)
    x, dout = rng.standard_normal((6, 12)), rng.standard_normal((6, 7))
    low.forward(x)
    dx = low.backward(dout)
    _, cache = low_rank_linear_forward(x, low.w1.data, low.w2.data, low.b.data)
    ref = low_rank_linear_backward(dout, cache)
    for got, want in zip((dx, low.w1.grad, low.w2.grad, low.b.grad), ref, strict=True):
        assert np.array_equal(got, want)
    low.forward(x)
    low.backward(dout)
    assert np.allclose(low.w1.grad, 2 * ref[1])
    assert [n for n, _ in low.named_parameters()] == ["w1", "w2", "b"]
    assert low.b.lr_mult == 2.0 and low.b.decay_mult == 0.0


def test_parameter_counts_and_flops():
    layer = _layer(d=12, m=7)
    low = compress_linear(layer, 3)
    assert layer_cost(layer) == {"params": 12 * 7 + 7, "flops": 2 * 12 * 7}
    assert layer_cost(low, rows=10) == {"params": 3 * (12 + 7) + 7, "flops": 2 * 10 * 3 * 19}
    assert layer_cost(low)["params"] == sum(p.data.size for p in low.parameters())
    with pytest.raises(TypeError, match="Linear"):
        layer_cost(object())


@pytest.mark.parametrize("rank", [0, -1, 8, 100])
def test_bad_rank_raises(rank):
    with pytest.raises(ValueError, match="rank"):
        truncated_svd(np.ones((7, 12)), rank)
    with pytest.raises(ValueError, match="rank"):
        compress_linear(_layer(), rank)


def test_bad_inputs_raise():
    with pytest.raises(TypeError, match="rank"):
        truncated_svd(np.ones((3, 4)), 2.0)
    with pytest.raises(ValueError, match="2-D"):
        truncated_svd(np.ones(4), 1)
    with pytest.raises(TypeError, match="Linear"):
        compress_linear(object(), 1)
    low = compress_linear(_layer(), 2)
    with pytest.raises(ValueError, match=r"\(N, 12\)"):
        low.forward(np.ones((2, 5)))
    with pytest.raises(ValueError, match="w2"):
        low_rank_linear_forward(np.ones((2, 12)), np.ones((2, 12)), np.ones((7, 3)), np.ones(7))
    with pytest.raises(ValueError, match="LowRankLinear"):
        LowRankLinear(np.ones((2, 12)), np.ones((7, 3)), np.ones(7))


@pytest.fixture(scope="module")
def detector_eval():
    from minircnn.data import ShapesDataset
    from minircnn.detection import compute_proposals, detect_images, evaluate
    from minircnn.models import pretrained_detector

    ds = ShapesDataset(20, seed=1)  # held out (the detector trained on seed 0)
    props = compute_proposals(ds)
    images = [ds[i]["image"] for i in range(len(ds))]

    def run(model):
        return evaluate(detect_images(model, images, props), ds)["mAP"]

    return pretrained_detector(), run


def test_compressed_shipped_detector_still_detects(detector_eval):
    model, mean_ap = detector_eval
    w6 = model.fc6.w.data.copy()
    small = compress_fast_rcnn(model, 64, 64)
    assert isinstance(small.fc6, LowRankLinear) and isinstance(small.fc7, LowRankLinear)
    assert isinstance(model.fc6, Linear) and np.array_equal(model.fc6.w.data, w6)  # untouched
    before, after = head_cost(model, 2000), head_cost(small, 2000)
    # fc6 3136 -> 256 and fc7 256 -> 256 at rank 64: 64·(3136+256) + 64·512 vs 3136·256 + 256²
    assert after["flops"] == 2 * 2000 * (64 * 3392 + 64 * 512)
    assert before["flops"] == 2 * 2000 * (3136 * 256 + 256 * 256)
    assert after["flops"] / before["flops"] < 0.3
    full, compressed = mean_ap(model), mean_ap(small)
    # measured on these 20 images: 0.964 and 0.963 (rank 8 / 8: 0.930)
    assert full > 0.9
    assert full - compressed < 0.02, (full, compressed)


def test_compress_fast_rcnn_full_rank_is_exact_and_inplace(detector_eval):
    model, _ = detector_eval
    rng = np.random.default_rng(6)
    images = rng.random((1, 3, 64, 64)).astype(np.float32)
    rois = np.array([[0, 4, 4, 40, 50], [0, 10, 0, 60, 30]], dtype=np.float32)
    model.eval()
    cls_ref, box_ref = model.forward(images, rois)
    same = compress_fast_rcnn(model, 256, None)
    assert isinstance(same.fc7, Linear)
    cls, box = same.forward(images, rois)
    assert np.abs(cls - cls_ref).max() < 1e-4 and np.abs(box - box_ref).max() < 1e-4
    target = compress_fast_rcnn(same, None, 32, inplace=True)
    assert target is same and isinstance(same.fc7, LowRankLinear)


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
