"""The shared argument checks (minircnn/utils/validate.py) and a table of bad inputs per
public function group: each must end in a ValueError/TypeError naming the argument."""

import numpy as np
import pytest

from minircnn import layers as L
from minircnn.layers import Parameter
from minircnn.training import optim
from minircnn.utils.validate import (
    check_array,
    check_count,
    check_dout,
    check_number,
    check_pair,
    check_positive,
)

RNG = np.random.default_rng(0)
X4 = RNG.standard_normal((2, 3, 8, 8))
W4 = RNG.standard_normal((4, 3, 3, 3))
B4 = np.zeros(4)
ROIS = np.array([[0, 0, 0, 60, 60], [1, 10, 10, 100, 90]], dtype=np.float64)
NAN, INF = float("nan"), float("inf")


def gen():
    return np.random.default_rng(0)


# --- the helpers --------------------------------------------------------------------------
def test_check_array_converts_lists_and_names_problems():
    assert check_array("x", [[1.0, 2.0]], ndim=2).shape == (1, 2)
    with pytest.raises(TypeError, match=r"op: x must be an array .*got str"):
        check_array("x", "abc", op="op")
    with pytest.raises(ValueError, match=r"x must be 2-D \(N, D\), got shape \(3,\)"):
        check_array("x", np.zeros(3), ndim=2, axes="(N, D)")
    with pytest.raises(TypeError, match="x must be a float array, got dtype int64"):
        check_array("x", np.zeros(3, np.int64))
    with pytest.raises(ValueError, match="must be finite"):
        check_array("x", [1.0, NAN], finite=True)
    with pytest.raises(ValueError, match=r"must have shape \(any, 4\), got \(2, 3\)"):
        check_array("x", np.zeros((2, 3)), shape=(None, 4))


@pytest.mark.parametrize("value, error, match", [
    (NAN, ValueError, "finite"), (INF, ValueError, "finite"), (-1.0, ValueError, "> 0.0"),
    (0.0, ValueError, "> 0.0"), (True, TypeError, "real number"), ("1", TypeError, "real"),
    (np.ones(2), TypeError, "real number"),
])
def test_check_positive_refuses(value, error, match):
    with pytest.raises(error, match=match):
        check_positive("beta", value, op="f")


def test_numbers_and_counts_accept_numpy_scalars():
    assert check_number("t", np.float32(0.5), low=0, high=1) == 0.5
    assert check_count("n", np.int64(3)) == 3 and check_count("n", 3.0) == 3
    assert check_pair("k", np.int64(2)) == (2, 2)
    for bad in (0, -1, 1.5, NAN, True):
        with pytest.raises((ValueError, TypeError), match="n must be an integer"):
            check_count("n", bad)


def test_check_dout_names_shape_dtype_and_type():
    like = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match=r"dout must have the forward output's shape \(2, 3\)"):
        check_dout(np.zeros((3, 2), np.float32), (2, 3), np.float32, like, op="f")
    with pytest.raises(TypeError, match="dout must have the forward output's dtype float32"):
        check_dout(np.zeros((2, 3)), (2, 3), np.float32, like, op="f")
    with pytest.raises(TypeError, match="dout must be an array"):
        check_dout([[0.0] * 3] * 2, (2, 3), np.float32, like, op="f")


# --- layers: every backward checks dout, every forward its arguments ----------------------
def _caches():
    return {
        "conv": (L.conv2d_backward, L.conv2d_forward(X4, W4, B4, pad=1)[1], (2, 4, 8, 8)),
        "conv_naive": (L.conv2d_backward_naive, L.conv2d_forward_naive(X4, W4, B4)[1],
                       (2, 4, 6, 6)),
        "pool": (L.max_pool2d_backward, L.max_pool2d_forward(X4)[1], (2, 3, 4, 4)),
        "pool_naive": (L.max_pool2d_backward_naive, L.max_pool2d_forward_naive(X4)[1],
                       (2, 3, 4, 4)),
        "linear": (L.linear_backward, L.linear_forward(np.ones((2, 3)), np.ones((4, 3)),
                                                       np.ones(4))[1], (2, 4)),
        "relu": (L.relu_backward, L.relu_forward(X4)[1], X4.shape),
        "dropout": (L.dropout_backward, L.dropout_forward(X4, p=0.3, train=True,
                                                          rng=gen())[1], X4.shape),
        "bn": (L.batchnorm2d_backward, L.batchnorm2d_forward(X4, np.ones(3), np.zeros(3))[1],
               X4.shape),
        "roi_pool": (L.roi_pool_backward, L.roi_pool_forward(X4, ROIS, output_size=2)[1],
                     (2, 3, 2, 2)),
        "roi_pool_naive": (L.roi_pool_backward_naive,
                           L.roi_pool_forward_naive(X4, ROIS, output_size=2)[1], (2, 3, 2, 2)),
        "roi_align": (L.roi_align_backward, L.roi_align_forward(
            X4, ROIS, output_size=2, spatial_scale=1 / 16)[1], (2, 3, 2, 2)),
        "roi_align_naive": (L.roi_align_backward_naive, L.roi_align_forward_naive(
            X4, ROIS, output_size=2, spatial_scale=1 / 16)[1], (2, 3, 2, 2)),
        "spp": (L.spp_backward, L.spp_forward(X4, ROIS, spatial_scale=1 / 16)[1], (2, 63)),
    }


@pytest.mark.parametrize("name", sorted(_caches()))
def test_backward_refuses_a_wrong_dout(name):
    backward, cache, shape = _caches()[name]
    backward(np.ones(shape), cache)                   # the right dout works
    wrong = tuple(s + 1 for s in shape)
    with pytest.raises(ValueError, match=r"dout must have the forward output's shape"):
        backward(np.ones(wrong), cache)
    with pytest.raises(TypeError, match="dout must be an array"):
        backward(np.ones(shape).tolist(), cache)


@pytest.mark.parametrize("name", ["conv", "pool", "bn", "roi_pool", "roi_align", "dropout"])
def test_backward_refuses_a_dout_of_another_dtype(name):
    backward, cache, shape = _caches()[name]
    with pytest.raises(TypeError, match="dout must have the forward output's dtype float64"):
        backward(np.ones(shape, np.float32), cache)


BAD_LAYER_CALLS = [
    # (label, call, error, words in the message)
    ("conv stride nan", lambda: L.conv2d_forward(X4, W4, B4, stride=NAN), ValueError, "stride"),
    ("conv int x", lambda: L.conv2d_forward(X4.astype(int), W4, B4), TypeError, "x must be"),
    ("conv x 3-D", lambda: L.conv2d_forward(X4[0], W4, B4), ValueError, "x must be 4-D"),
    ("Conv2d out -1", lambda: L.Conv2d(3, -1, 3), ValueError, "out_channels"),
    ("pool kernel nan", lambda: L.max_pool2d_forward(X4, kernel=NAN), ValueError, "kernel"),
    ("pool stride 0", lambda: L.max_pool2d_forward(X4, stride=0), ValueError, "stride"),
    ("linear w wrong", lambda: L.linear_forward(np.ones((2, 3)), np.ones((4, 2)), np.ones(4)),
     ValueError, "w must have shape"),
    ("Linear in 0", lambda: L.Linear(0, 3), ValueError, "in_features"),
    ("relu str", lambda: L.relu_forward("x"), TypeError, "x must be an array"),
    ("dropout p nan", lambda: L.dropout_forward(X4, p=NAN, train=True, rng=gen()),
     ValueError, "p must be a finite"),
    ("dropout int x", lambda: L.dropout_forward(np.ones((4, 4), int), p=0.3, train=True,
                                                rng=gen()), TypeError, "x must be a float"),
    ("dropout rng int", lambda: L.dropout_forward(X4, p=0.3, train=True, rng=3), TypeError,
     "rng must be a numpy.random.Generator"),
    ("Dropout p 2", lambda: L.Dropout(2.0), ValueError, "p must be in"),
    ("bn eps nan", lambda: L.batchnorm2d_forward(X4, np.ones(3), np.zeros(3), eps=NAN),
     ValueError, "eps"),
    ("bn eps -1", lambda: L.batchnorm2d_forward(X4, np.ones(3), np.zeros(3), eps=-1.0),
     ValueError, "eps"),
    ("bn int x", lambda: L.batchnorm2d_forward(X4.astype(int), np.ones(3), np.zeros(3)),
     TypeError, "x must be a float"),
    ("BatchNorm2d momentum nan", lambda: L.BatchNorm2d(3, momentum=NAN), ValueError, "momentum"),
    ("BatchNorm2d 0 features", lambda: L.BatchNorm2d(0), ValueError, "num_features"),
    ("smooth_l1 beta inf", lambda: L.smooth_l1_forward(np.ones(2), np.zeros(2), beta=INF),
     ValueError, "beta"),
    ("smooth_l1 normalizer nan", lambda: L.smooth_l1_forward(np.ones(2), np.zeros(2),
                                                             normalizer=NAN),
     ValueError, "normalizer"),
    ("smooth_l1 dloss array", lambda: L.smooth_l1_backward(
        np.ones(3), L.smooth_l1_forward(np.ones(2), np.zeros(2))[1]), ValueError, "dloss"),
    ("ce dloss array", lambda: L.softmax_cross_entropy_backward(
        np.ones(2), L.softmax_cross_entropy_forward(np.ones((2, 3)), np.array([0, 1]))[1]),
     ValueError, "dloss"),
    ("fast_rcnn_loss beta nan", lambda: L.fast_rcnn_loss_forward(
        np.ones((2, 3)), np.ones((2, 12)), np.array([0, 1]), np.ones((2, 4)), beta=NAN),
     ValueError, "beta"),
    ("roi_pool scale nan", lambda: L.roi_pool_forward(X4, ROIS, spatial_scale=NAN),
     ValueError, "spatial_scale"),
    ("roi_pool output_size nan", lambda: L.roi_pool_forward(X4, ROIS, output_size=NAN),
     ValueError, "output_size"),
    ("roi_align sampling nan", lambda: L.roi_align_forward(
        X4, ROIS, output_size=2, spatial_scale=1.0, sampling_ratio=NAN), ValueError,
     "sampling_ratio"),
    ("RoIPool scale -1", lambda: L.RoIPool(2, -1.0), ValueError, "spatial_scale"),
    ("RoIAlign scale nan", lambda: L.RoIAlign(2, NAN), ValueError, "spatial_scale"),
    ("SpatialPyramidPool levels 0", lambda: L.SpatialPyramidPool((0,)), ValueError, "levels"),
    ("optim lr nan", lambda: optim.SGD([Parameter(np.ones(2))], lr=NAN), ValueError, "lr"),
    ("optim momentum 2", lambda: optim.SGD([Parameter(np.ones(2))], lr=0.1, momentum=2.0),
     ValueError, "momentum"),
    ("optim no params", lambda: optim.SGD([], lr=0.1), ValueError, "params is empty"),
    ("step_lr gamma nan", lambda: optim.step_lr(0.1, 3, gamma=NAN), ValueError, "gamma"),
    ("step_lr base_lr inf", lambda: optim.step_lr(INF, 3), ValueError, "base_lr"),
    ("cosine warmup -1", lambda: optim.cosine_lr(0.1, 1, total_iters=5, warmup_iters=-1),
     ValueError, "warmup_iters"),
]


@pytest.mark.parametrize("label, call, error, words", BAD_LAYER_CALLS,
                         ids=[c[0] for c in BAD_LAYER_CALLS])
def test_bad_layer_and_optim_inputs_are_named(label, call, error, words):
    with pytest.raises(error, match=words):
        call()


# --- valid but unusual inputs give the right answer ---------------------------------------
def test_lists_views_fortran_order_and_float16():
    out, _ = L.linear_forward([[1.0, 2.0]], np.eye(2), np.zeros(2))          # a list
    np.testing.assert_array_equal(out, [[1.0, 2.0]])
    x_f = np.asfortranarray(X4)
    np.testing.assert_allclose(L.conv2d_forward(x_f, W4, B4)[0], L.conv2d_forward(X4, W4, B4)[0])
    view = X4[:, :, ::2, ::2]                                               # strided view
    np.testing.assert_array_equal(L.max_pool2d_forward(view)[0],
                                  L.max_pool2d_forward_naive(np.ascontiguousarray(view))[0])
    half = X4.astype(np.float16)
    out16, _ = L.max_pool2d_forward(half)
    assert out16.dtype == np.float16
    np.testing.assert_array_equal(out16, L.max_pool2d_forward_naive(half)[0])
    a, _ = L.roi_pool_forward(X4, ROIS.tolist(), output_size=2)                # rois as a list
    np.testing.assert_array_equal(a, L.roi_pool_forward(X4, ROIS, output_size=2)[0])


def test_empty_arrays():
    out, cache = L.conv2d_forward(X4, np.zeros((0, 3, 3, 3)), np.zeros(0))    # no filters
    naive, _ = L.conv2d_forward_naive(X4, np.zeros((0, 3, 3, 3)), np.zeros(0))
    assert out.shape == naive.shape == (2, 0, 6, 6)
    dx, dw, db = L.conv2d_backward(np.zeros((2, 0, 6, 6)), cache)
    np.testing.assert_array_equal(dx, 0.0)
    assert dw.shape == (0, 3, 3, 3) and db.shape == (0,)
    out, _ = L.relu_forward(np.zeros((0, 3)))
    assert out.shape == (0, 3)
    loss, _ = L.smooth_l1_forward(np.zeros((0, 4)), np.zeros((0, 4)))
    assert float(loss) == 0.0
