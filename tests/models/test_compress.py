"""minircnn/models/compress.py: truncated SVD of a trained model's Linear layers (Fast R-CNN
section 3.1); the LowRankLinear layer itself is tested in tests/layers/test_low_rank_linear.py."""

import numpy as np
import pytest

from minircnn.gradcheck import rel_error
from minircnn.layers.linear import Linear
from minircnn.layers.low_rank_linear import (
    LowRankLinear,
    low_rank_linear_backward,
    low_rank_linear_forward,
)
from minircnn.models.compress import compress_fast_rcnn, compress_linear, head_cost, layer_cost
from minircnn.utils.blas import blas_threads


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
        compress_linear(_layer(), rank)


def test_bad_inputs_raise():
    with pytest.raises(TypeError, match="Linear"):
        compress_linear(object(), 1)
    low = compress_linear(_layer(), 2)
    with pytest.raises(ValueError, match=r"\(N, 12\)"):
        low.forward(np.ones((2, 5)))


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
