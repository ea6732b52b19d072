"""A fuzz of the public API: each function's arguments replaced, one at a time, by wrong
types, shapes and dtypes, NaN and inf, empty and huge values.

Every call must either work (without a warning: ``filterwarnings = error``) or raise a
ValueError / TypeError whose message names the argument replaced. Any other exception
(an IndexError from deep inside, a ZeroDivisionError, a reshape error) is what a user
cannot act on, and fails here. Functions that must refuse a value rather than accept it
(NaN scores, a 0..255 image) have their own tests next to their module's tests.
"""

import warnings

import numpy as np
import pytest

from minircnn import detection as D
from minircnn import layers as L
from minircnn.data import ShapesDataset, to_coco

RNG = np.random.default_rng(0)
X = RNG.random((2, 3, 8, 8))                        # (N, C, H, W)
BOXES = np.array([[0, 0, 4, 4], [2, 2, 7, 6.0]])
ROIS = np.array([[0, 0, 0, 4, 4], [1, 2, 2, 7, 6.0]])
SAMPLE = ShapesDataset(1, image_size=32)[0]

# name -> (function, positional arguments, keyword arguments): a valid call.
CALLS = {
    "conv2d_forward": (L.conv2d_forward, (X, RNG.random((4, 3, 3, 3)), np.zeros(4)),
                       dict(stride=1, pad=1)),
    "conv2d_forward_naive": (L.conv2d_forward_naive, (X, RNG.random((4, 3, 3, 3)),
                                                      np.zeros(4)), dict(stride=2, pad=0)),
    "im2col": (L.im2col, (X, 3, 3), dict(stride=1, pad=1)),
    "col2im": (L.col2im, (np.ones((2, 27, 36)), (2, 3, 8, 8), 3, 3), dict(stride=1, pad=0)),
    "linear_forward": (L.linear_forward, (RNG.random((2, 5)), RNG.random((3, 5)), np.zeros(3)),
                       {}),
    "relu_forward": (L.relu_forward, (X,), {}),
    "dropout_forward": (L.dropout_forward, (X,), dict(p=0.5, train=True, rng=RNG)),
    "max_pool2d_forward": (L.max_pool2d_forward, (X,), dict(kernel=2, stride=2)),
    "max_pool2d_forward_naive": (L.max_pool2d_forward_naive, (X,), dict(kernel=3, stride=1)),
    "global_avg_pool_forward": (L.global_avg_pool_forward, (X,), {}),
    "add_forward": (L.add_forward, (X, X), {}),
    "batchnorm2d_forward": (L.batchnorm2d_forward, (X, np.ones(3), np.zeros(3)),
                            dict(eps=1e-5)),
    "batchnorm2d_eval_forward": (L.batchnorm2d_eval_forward, (X, np.ones(3), np.zeros(3),
                                                              np.zeros(3), np.ones(3)), {}),
    "roi_pool_forward": (L.roi_pool_forward, (X, ROIS), dict(output_size=2,
                                                             spatial_scale=1.0)),
    "roi_pool_forward_naive": (L.roi_pool_forward_naive, (X, ROIS),
                               dict(output_size=(2, 3), spatial_scale=0.5)),
    "roi_align_forward": (L.roi_align_forward, (X, ROIS), dict(output_size=2,
                                                               spatial_scale=1.0)),
    "spp_forward": (L.spp_forward, (X, ROIS), dict(levels=(2, 1), spatial_scale=1.0)),
    "softmax_cross_entropy_forward": (L.softmax_cross_entropy_forward,
                                      (RNG.random((4, 3)), np.array([0, 1, 2, 1])), {}),
    "smooth_l1_forward": (L.smooth_l1_forward, (RNG.random((4, 4)), RNG.random((4, 4))),
                          dict(beta=1.0)),
    "fast_rcnn_loss_forward": (L.fast_rcnn_loss_forward,
                               (RNG.random((2, 3)), RNG.random((2, 12)), np.array([0, 2]),
                                RNG.random((2, 4))), {}),
    "low_rank_linear_forward": (L.low_rank_linear_forward,
                                (RNG.random((2, 5)), RNG.random((2, 5)), RNG.random((3, 2)),
                                 np.zeros(3)), {}),
    "truncated_svd": (L.truncated_svd, (RNG.random((4, 5)), 2), {}),
    "box_area": (D.box_area, (BOXES,), {}),
    "box_iou": (D.box_iou, (BOXES, BOXES[::-1]), {}),
    "clip_boxes": (D.clip_boxes, (BOXES, (5, 5)), {}),
    "nms": (D.nms, (BOXES, np.array([0.9, 0.8]), 0.5), {}),
    "batched_nms": (D.batched_nms, (BOXES, np.array([0.9, 0.8]), np.array([1, 1]), 0.5), {}),
    "encode_boxes": (D.encode_boxes, (BOXES + 1, BOXES), {}),
    "decode_boxes": (D.decode_boxes, (RNG.random((2, 4)), BOXES + 1), {}),
    "postprocess": (D.postprocess, (RNG.random((2, 3)), RNG.random((2, 12)), BOXES, (16, 16)),
                    dict(score_thresh=0.05, nms_thresh=0.3, max_dets=10)),
    "match_detections": (D.match_detections, (BOXES, np.array([0.9, 0.8]), BOXES[:1]),
                         dict(iou_threshold=0.5)),
    "sample_rois": (D.sample_rois, (BOXES, BOXES[:1], np.array([1])),
                    dict(rois_per_image=4, rng=RNG)),
    "dense_boxes": (D.dense_boxes, (16,), dict(scales=(8,), aspect_ratios=(1.0,), stride=8)),
    "selective_search": (D.selective_search, (RNG.random((3, 16, 16)),),
                         dict(scale=50.0, min_size=5, max_boxes=10)),
    "resize_bilinear": (D.resize_bilinear, (X, 5, 6), {}),
    "rescale_batch": (D.rescale_batch, (X, ROIS, 0.5), {}),
    "pyramid_levels": (D.pyramid_levels, (ROIS, (1.0, 2.0), 8.0), {}),
    "to_coco": (to_coco, ([SAMPLE],), {}),
}

# The names of the positional parameters, for the message check.
POSITIONAL = {
    "conv2d_forward": ("x", "w", "b"), "conv2d_forward_naive": ("x", "w", "b"),
    "im2col": ("x", "KH", "KW"), "col2im": ("dcols", "x_shape", "KH", "KW"),
    "linear_forward": ("x", "w", "b"), "relu_forward": ("x",), "dropout_forward": ("x",),
    "max_pool2d_forward": ("x",), "max_pool2d_forward_naive": ("x",),
    "global_avg_pool_forward": ("x",), "add_forward": ("a", "b"),
    "batchnorm2d_forward": ("x", "gamma", "beta"),
    "batchnorm2d_eval_forward": ("x", "gamma", "beta", "running_mean", "running_var"),
    "roi_pool_forward": ("features", "rois"), "roi_pool_forward_naive": ("features", "rois"),
    "roi_align_forward": ("features", "rois"), "spp_forward": ("features", "rois"),
    "softmax_cross_entropy_forward": ("logits", "labels"),
    "smooth_l1_forward": ("pred", "target"),
    "fast_rcnn_loss_forward": ("cls_scores", "bbox_deltas", "labels", "bbox_targets"),
    "low_rank_linear_forward": ("x", "w1", "w2", "b"), "truncated_svd": ("w", "rank"),
    "box_area": ("boxes",), "box_iou": ("a", "b"), "clip_boxes": ("boxes", "image_size"),
    "nms": ("boxes", "scores", "iou_threshold"),
    "batched_nms": ("boxes", "scores", "labels", "iou_threshold"),
    "encode_boxes": ("reference", "gt"), "decode_boxes": ("deltas", "reference"),
    "postprocess": ("cls_scores", "bbox_deltas", "proposals", "image_size"),
    "match_detections": ("det_boxes", "det_scores", "gt_boxes"),
    "sample_rois": ("proposals", "gt_boxes", "gt_labels"), "dense_boxes": ("image_size",),
    "selective_search": ("image",), "resize_bilinear": ("images", "height", "width"),
    "rescale_batch": ("images", "rois", "scale"),
    "pyramid_levels": ("rois", "scales", "target"), "to_coco": ("dataset",),
}


def _with_one(a: np.ndarray, value) -> np.ndarray:
    out = a.astype(np.float64).copy()
    out.flat[0] = value
    return out


def array_variants(a: np.ndarray) -> dict:
    """Wrong type, shape, dtype, non-finite, empty and huge versions of a valid array."""
    variants = {"a string": "x", "None": None, "an extra axis": a[None],
                "a scalar": a.reshape(-1)[0], "complex": a.astype(np.complex128),
                "strings": a.astype(str), "empty": a[:0]}
    if a.dtype.kind == "f":
        variants |= {"a NaN": _with_one(a, np.nan), "an inf": _with_one(a, np.inf),
                     "huge": a * 1e300, "float16": a.astype(np.float16)}
    return variants


def number_variants(v) -> dict:
    return {"a string": "1", "None": None, "NaN": float("nan"), "inf": float("inf"),
            "-1": -1, "0": 0, "huge": 1e300, "a fraction": 0.5, "True": True,
            "an array": np.array([v, v])}


def cases():
    for name, (_, args, kwargs) in CALLS.items():
        slots = [(POSITIONAL[name][i], ("arg", i), v) for i, v in enumerate(args)]
        slots += [(k, ("kw", k), v) for k, v in kwargs.items()
                  if k not in ("rng", "train")]
        for arg, where, value in slots:
            if isinstance(value, np.ndarray):
                variants = array_variants(value)
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                variants = number_variants(value)
            else:                                   # tuples, lists of samples
                variants = {"a string": "x", "None": None, "empty": type(value)(),
                            "a NaN inside": type(value)([float("nan")] * len(value))}
            for label, bad in variants.items():
                yield pytest.param(name, where, arg, bad, label, id=f"{name}-{arg}-{label}")


def call_with(name, where, bad):
    fn, args, kwargs = CALLS[name]
    args, kwargs = list(args), dict(kwargs)
    if where[0] == "arg":
        args[where[1]] = bad
    else:
        kwargs[where[1]] = bad
    return fn(*args, **kwargs)


@pytest.mark.parametrize("name", CALLS)
def test_the_valid_call_works(name):
    """The baseline every bad-input case perturbs returns a value (it must not raise), so
    an error in a bad-input case is caused by the bad argument alone."""
    fn, args, kwargs = CALLS[name]
    result = fn(*args, **kwargs)
    assert result is not None, f"{name} returned nothing"


def non_finite(value) -> bool:
    """NaN, inf or a huge value: layers compute with them as IEEE arithmetic does."""
    try:
        a = np.asarray(value, dtype=np.complex128)
    except (TypeError, ValueError):
        return False
    return bool(a.size) and not bool(np.all(np.abs(a) < 1e100))


@pytest.mark.parametrize("name, where, arg, bad, label", list(cases()))
def test_a_bad_argument_works_or_is_named(name, where, arg, bad, label):
    try:
        with warnings.catch_warnings():
            if non_finite(bad):   # NaN in, NaN out (with NumPy's warnings) is allowed
                warnings.simplefilter("ignore", RuntimeWarning)
            call_with(name, where, bad)
    except (ValueError, TypeError) as err:
        # an empty array may be refused for disagreeing with another argument's length
        named = POSITIONAL[name] + tuple(CALLS[name][2]) if label == "empty" else (arg,)
        message = str(err).lower()
        assert any(a.lower() in message for a in named), \
            f"{name}: the error for a bad {arg} ({label}) does not name it: {err}"
