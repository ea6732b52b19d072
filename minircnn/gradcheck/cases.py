"""One declarative gradient-check case per layer, shared by the tests and `minircnn gradcheck`.

Each :class:`LayerCase` names a forward/backward pair and how to make float64 inputs
that keep the check meaningful: ReLU inputs away from 0, max-pooling inputs with
distinct values (no ties), smooth-L1 differences away from |d| == beta. Adding a
layer is one entry appended to ``LAYER_CASES``::

    LAYER_CASES.append(LayerCase(
        "my_op", my_op_forward, my_op_backward,
        lambda rng: {"x": rng.standard_normal((2, 3))}, kwargs={"alpha": 0.5}))

``tests/gradcheck/test_cases.py`` runs every case; so does ``minircnn gradcheck``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from minircnn.backend import get_array_module
from minircnn.gradcheck.core import THRESHOLD, check_layer
from minircnn.layers.activations import (
    dropout_backward,
    dropout_forward,
    relu_backward,
    relu_forward,
)
from minircnn.layers.conv import (
    conv2d_backward,
    conv2d_backward_naive,
    conv2d_forward,
    conv2d_forward_naive,
)
from minircnn.layers.global_pool import global_avg_pool_backward, global_avg_pool_forward
from minircnn.layers.linear import linear_backward, linear_forward
from minircnn.layers.losses import (
    fast_rcnn_loss_backward,
    fast_rcnn_loss_forward,
    smooth_l1_backward,
    smooth_l1_forward,
    softmax_cross_entropy_backward,
    softmax_cross_entropy_forward,
)
from minircnn.layers.norm import (
    batchnorm2d_backward,
    batchnorm2d_eval_backward,
    batchnorm2d_eval_forward,
    batchnorm2d_forward,
)
from minircnn.layers.pool import (
    max_pool2d_backward,
    max_pool2d_backward_naive,
    max_pool2d_forward,
    max_pool2d_forward_naive,
)
from minircnn.layers.residual_add import add_backward, add_forward
from minircnn.layers.roi_align import (
    roi_align_backward,
    roi_align_backward_naive,
    roi_align_forward,
    roi_align_forward_naive,
)
from minircnn.layers.roi_pool import (
    roi_pool_backward,
    roi_pool_backward_naive,
    roi_pool_forward,
    roi_pool_forward_naive,
    roi_pool_forward_vectorized,
    spp_backward,
    spp_forward,
)
from minircnn.layers.rpn_loss import (
    bce_with_logits_backward,
    bce_with_logits_forward,
    rpn_loss_backward,
    rpn_loss_backward_naive,
    rpn_loss_forward,
    rpn_loss_forward_naive,
)
from minircnn.utils.text_tables import text_table


@dataclass(frozen=True)
class LayerCase:
    """A forward/backward pair and the inputs to gradient-check it on.

    Attributes:
        name: shown in the table (unique).
        forward: ``forward(*inputs.values(), **kwargs) -> (out, cache)``.
        backward: ``backward(dout, cache)`` -> the gradients of ``wrt``, in order.
        make_inputs: ``rng -> {name: array}`` in the forward's positional order;
            float64, off kinks and ties.
        kwargs: keyword-only hyperparameters for forward.
        wrt: the inputs to check (default: all; leave out integer labels).
        threshold: largest relative error that passes.
    """

    name: str
    forward: Callable
    backward: Callable
    make_inputs: Callable[[np.random.Generator], dict[str, np.ndarray]]
    kwargs: Mapping = field(default_factory=dict)
    wrt: Sequence[str] | None = None
    threshold: float = THRESHOLD


class GradcheckRow(NamedTuple):
    layer: str
    shapes: str                # e.g. "x(2,3,7,7) w(4,3,3,3) b(4,)"
    errors: dict[str, float]   # {gradient name: max relative error}
    passed: bool


# --- input makers: values kept off kinks and ties ---------------------------------------
def distinct_values(rng, shape):
    """Values 0.1 apart in a random order: no two equal, so a max never flips under h."""
    n = int(np.prod(shape))
    return (rng.permutation(n) * 0.1 - 0.05 * n).reshape(shape)


def _distinct_x(shape):
    """Input maker: {"x": distinct values} for max pooling."""
    return lambda rng: {"x": distinct_values(rng, shape)}


def ramp(shape):
    """0, 1, 2, ... laid out row-major: x[n, c, h, w] = ((n*C + c)*H + h)*W + w."""
    return np.arange(int(np.prod(shape)), dtype=np.float64).reshape(shape)


def random_rois(rng, n_rois, n_images, image_size, *, past=8.0, min_size=0.0):
    """(R, 5) RoIs in image pixels, some reaching past the border by up to ``past``."""
    x1y1 = rng.uniform(-past, image_size, (n_rois, 2))
    wh = rng.uniform(min_size, image_size / 1.5, (n_rois, 2))
    batch = rng.integers(0, n_images, (n_rois, 1))
    return np.concatenate([batch, x1y1, x1y1 + wh], axis=1)


def _off_zero(rng, shape, gap=0.1):
    """Random signs, magnitudes in [gap, 1 + gap]: away from ReLU's kink at 0."""
    return rng.choice([-1.0, 1.0], size=shape) * (gap + rng.random(shape))


def _off_beta(rng, shape, beta):
    """Differences with |d| in [0.1, 0.8]·beta or [1.2, 2]·beta (or [0.1, 1] if beta=0)."""
    inside = 0.1 + 0.7 * rng.random(shape)
    outside = 1.2 + 0.8 * rng.random(shape)
    mag = np.where(rng.random(shape) < 0.5, inside, outside) * (beta if beta else 0.5)
    return rng.choice([-1.0, 1.0], size=shape) * mag


def _conv_inputs(x_shape, w_shape):
    """Small x and b keep |out| (and its round-off) small next to dx = sum dout·w."""
    def make(rng):
        return {"x": 0.5 * rng.standard_normal(x_shape), "w": rng.standard_normal(w_shape),
                "b": 0.1 * rng.standard_normal(w_shape[0])}
    return make


def _smooth_l1_inputs(shape, beta):
    def make(rng):
        target = rng.standard_normal(shape)
        return {"pred": target + _off_beta(rng, shape, beta), "target": target}
    return make


def _fast_rcnn_loss_inputs(rng, beta=1.0):
    """6 RoIs, K = 3: two background rows, fg rows' own deltas off |d| == beta."""
    labels = np.array([0, 1, 3, 0, 2, 3])
    bbox_deltas = rng.standard_normal((6, 16))
    own = bbox_deltas.reshape(6, 4, 4)[np.arange(6), labels]  # (6, 4) each RoI's class
    return {"cls_scores": rng.standard_normal((6, 4)), "bbox_deltas": bbox_deltas,
            "labels": labels, "bbox_targets": own - _off_beta(rng, (6, 4), beta)}


def _roi_inputs(shape, distinct=False):
    """Features and RoIs (image pixels, stride 4) that overlap, cross the border, sit in
    both images and include a 1x1 RoI; distinct features for max pooling (no ties)."""
    def make(rng):
        rois = np.array([[0, 0, 0, 23, 19], [1, 4, 6, 15, 15], [1, 0, 0, 3, 3],
                         [0, 10, 9, 40, 35], [0, 14, 4, 14, 4]], dtype=np.float64)
        rois[:, 0] = np.minimum(rois[:, 0], shape[0] - 1)
        x = distinct_values(rng, shape) if distinct else rng.standard_normal(shape)
        return {"features": x, "rois": rois}
    return make


def _dropout_fixed_mask(x, *, p):
    """Dropout with a fresh Generator(0) each call, so every call draws the same mask."""
    return dropout_forward(x, p=p, train=True, rng=np.random.default_rng(0))


def _bn_train_inputs(rng):
    """Small spread (inv_std ~ 2) and |gamma| >= 0.5, small beta: dx entries are large
    next to the round-off in ``out``, so no entry's relative error is dominated by it."""
    c = 2
    return {"x": 0.5 * rng.standard_normal((3, c, 3, 3)) + 0.1 * rng.standard_normal((c, 1, 1)),
            "gamma": _off_zero(rng, c, gap=0.5), "beta": 0.1 * rng.standard_normal(c)}


def _bn_eval_inputs(rng):
    return {"x": rng.standard_normal((3, 2, 3, 3)), "gamma": rng.standard_normal(2),
            "beta": rng.standard_normal(2), "running_mean": rng.standard_normal(2),
            "running_var": 0.5 + rng.random(2)}


def _basic_block_forward(x, *, out_channels, stride):
    """A MiniResNet BasicBlock (float64, train-mode BN, weights from seed 0) as a function
    of x; the block itself is the cache. Checks the residual add + both branches."""
    from minircnn.models.resnet import BasicBlock

    block = BasicBlock(x.shape[1], out_channels, stride=stride,
                       rng=np.random.default_rng(0), dtype=np.float64)
    if get_array_module(x) is not np:
        block.to("gpu")  # weights follow the input (the NumPy == CuPy test)
    return block.forward(x), block


def _basic_block_backward(dout, block):
    return block.backward(dout)


def basic_block_relu_margin(block, x) -> float:
    """Smallest |input| of a BasicBlock's two ReLUs at ``x``: how far from the kink at 0.

    A centered difference with step 2h moves each ReLU input by at most ~2h·|d input/d x_i|;
    a margin far above that keeps the check on one linear piece of each ReLU.
    """
    pre1 = block.bn1.forward(block.conv1.forward(x))                      # input of relu1
    shortcut = x if block.proj_conv is None else block.proj_bn.forward(block.proj_conv.forward(x))
    pre2 = block.bn2.forward(block.conv2.forward(np.maximum(pre1, 0))) + shortcut  # of relu_out
    return min(float(np.abs(pre1).min()), float(np.abs(pre2).min()))


def _basic_block_inputs(shape, *, out_channels, stride, margin=1e-3):
    """x for ``_basic_block_forward`` whose two ReLU inputs all stay >= margin from the
    kink at 0 (redrawn until they do): the block's ReLUs act on BN outputs we cannot
    choose directly, so the draw is rejected instead."""
    def make(rng):
        while True:
            x = rng.standard_normal(shape)
            _, block = _basic_block_forward(x, out_channels=out_channels, stride=stride)
            if basic_block_relu_margin(block, x) >= margin:
                return {"x": x}
    return make


def _rpn_loss_inputs(rng, beta=1 / 9):
    """8 anchors: 2 positive, 3 negative, 3 not sampled; positives' deltas off |d| == beta."""
    labels = np.array([1, 0, -1, 0, 1, -1, 0, -1])
    deltas = rng.standard_normal((8, 4))
    return {"objectness": rng.standard_normal(8), "bbox_deltas": deltas, "labels": labels,
            "bbox_targets": deltas - _off_beta(rng, (8, 4), beta)}


def _rpn_head_forward(x, *, num_anchors):
    """The RPNHead (float64, weights from seed 0 scaled to std ~0.3 so its outputs are
    not tiny) as a function of the features; its two outputs side by side (N, h*w*k, 5)."""
    from minircnn.models.rpn import RPNHead

    head = RPNHead(x.shape[1], num_anchors, rng=np.random.default_rng(0), dtype=np.float64)
    for p in head.parameters():
        p.data *= 30.0
    if get_array_module(x) is not np:
        head.to("gpu")
    objectness, deltas = head.forward(x)
    xp = get_array_module(x)
    return xp.concatenate([objectness[..., None], deltas], axis=2), head


def _rpn_head_backward(dout, head):
    return head.backward(dout[..., 0], dout[..., 1:])


def _rpn_head_inputs(shape, num_anchors, margin=1e-3):
    """Features whose 3x3 conv outputs (the ReLU's inputs) stay >= margin from 0."""
    def make(rng):
        while True:
            x = rng.standard_normal(shape)
            _, head = _rpn_head_forward(x, num_anchors=num_anchors)
            if float(np.abs(head.conv.forward(x)).min()) >= margin:
                return {"x": x}
    return make


LAYER_CASES: list[LayerCase] = [
    LayerCase("conv2d_naive", conv2d_forward_naive, conv2d_backward_naive,
              _conv_inputs((2, 3, 5, 5), (2, 3, 3, 3)), kwargs={"stride": 2, "pad": 1}),
    LayerCase("conv2d", conv2d_forward, conv2d_backward,
              _conv_inputs((2, 3, 7, 7), (4, 3, 3, 3)), kwargs={"stride": 2, "pad": 1}),
    LayerCase("conv2d_1x2_kernel", conv2d_forward, conv2d_backward,
              _conv_inputs((1, 2, 4, 5), (3, 2, 1, 2)), kwargs={"stride": 1, "pad": 0}),
    LayerCase("max_pool2d_naive", max_pool2d_forward_naive, max_pool2d_backward_naive,
              _distinct_x((2, 2, 4, 4)), kwargs={"kernel": 2, "stride": 2}),
    LayerCase("max_pool2d_naive_overlap", max_pool2d_forward_naive, max_pool2d_backward_naive,
              _distinct_x((1, 2, 5, 5)), kwargs={"kernel": 3, "stride": 2}),
    LayerCase("max_pool2d", max_pool2d_forward, max_pool2d_backward,
              _distinct_x((2, 3, 6, 6)), kwargs={"kernel": 2, "stride": 2}),
    LayerCase("max_pool2d_overlap", max_pool2d_forward, max_pool2d_backward,
              _distinct_x((2, 2, 7, 7)), kwargs={"kernel": 3, "stride": 2}),
    LayerCase("linear", linear_forward, linear_backward,
              lambda rng: {"x": rng.standard_normal((4, 5)), "w": rng.standard_normal((3, 5)),
                           "b": rng.standard_normal(3)}),
    LayerCase("relu", relu_forward, relu_backward,
              lambda rng: {"x": _off_zero(rng, (3, 4, 2))}),
    LayerCase("dropout", _dropout_fixed_mask, dropout_backward,
              lambda rng: {"x": rng.standard_normal((4, 6))}, kwargs={"p": 0.3}),
    LayerCase("batchnorm2d", batchnorm2d_forward, batchnorm2d_backward, _bn_train_inputs),
    LayerCase("batchnorm2d_eval", batchnorm2d_eval_forward, batchnorm2d_eval_backward,
              _bn_eval_inputs, wrt=("x", "gamma", "beta")),
    LayerCase("softmax_cross_entropy", softmax_cross_entropy_forward,
              softmax_cross_entropy_backward,
              lambda rng: {"logits": rng.standard_normal((5, 4)),  # no tiny probabilities
                           "labels": rng.integers(0, 4, size=5)}, wrt=("logits",)),
    LayerCase("smooth_l1", smooth_l1_forward, smooth_l1_backward,
              _smooth_l1_inputs((5, 4), 1.0), kwargs={"beta": 1.0, "normalizer": 3.0},
              wrt=("pred",)),
    LayerCase("smooth_l1_beta0", smooth_l1_forward, smooth_l1_backward,
              _smooth_l1_inputs((5, 4), 0.0), kwargs={"beta": 0.0}, wrt=("pred",)),
    LayerCase("fast_rcnn_loss", fast_rcnn_loss_forward, fast_rcnn_loss_backward,
              _fast_rcnn_loss_inputs, wrt=("cls_scores", "bbox_deltas")),
    LayerCase("bce_with_logits", bce_with_logits_forward, bce_with_logits_backward,
              lambda rng: {"logits": 2 * rng.standard_normal(7),
                           "targets": rng.integers(0, 2, 7)}, wrt=("logits",)),
    LayerCase("rpn_loss_naive", rpn_loss_forward_naive, rpn_loss_backward_naive,
              _rpn_loss_inputs, wrt=("objectness", "bbox_deltas")),
    LayerCase("rpn_loss", rpn_loss_forward, rpn_loss_backward, _rpn_loss_inputs,
              wrt=("objectness", "bbox_deltas")),
    LayerCase("rpn_head", _rpn_head_forward, _rpn_head_backward,
              _rpn_head_inputs((2, 3, 4, 5), 2), kwargs={"num_anchors": 2}),
    LayerCase("roi_pool_naive", roi_pool_forward_naive, roi_pool_backward_naive,
              _roi_inputs((2, 2, 5, 6), distinct=True),
              kwargs={"output_size": (3, 2), "spatial_scale": 1 / 4}, wrt=("features",)),
    LayerCase("roi_pool_vectorized", roi_pool_forward_vectorized, roi_pool_backward,
              _roi_inputs((2, 3, 6, 7), distinct=True),
              kwargs={"output_size": (3, 2), "spatial_scale": 1 / 4}, wrt=("features",)),
    LayerCase("roi_pool", roi_pool_forward, roi_pool_backward,
              _roi_inputs((2, 3, 6, 7), distinct=True),
              kwargs={"output_size": (3, 2), "spatial_scale": 1 / 4}, wrt=("features",)),
    LayerCase("roi_align_naive", roi_align_forward_naive, roi_align_backward_naive,
              _roi_inputs((1, 2, 4, 5)), kwargs={"output_size": (2, 3), "spatial_scale": 1 / 4,
                                                 "sampling_ratio": 2}, wrt=("features",)),
    LayerCase("roi_align", roi_align_forward, roi_align_backward,
              _roi_inputs((2, 3, 6, 7)), kwargs={"output_size": (2, 3), "spatial_scale": 1 / 4,
                                                 "sampling_ratio": 0, "aligned": True},
              wrt=("features",)),
    LayerCase("spp", spp_forward, spp_backward, _roi_inputs((2, 2, 6, 7), distinct=True),
              kwargs={"levels": (3, 2, 1), "spatial_scale": 1 / 4}, wrt=("features",)),
    LayerCase("global_avg_pool", global_avg_pool_forward, global_avg_pool_backward,
              lambda rng: {"x": rng.standard_normal((2, 3, 4, 5))}),
    LayerCase("residual_add", add_forward, add_backward,
              lambda rng: {"a": rng.standard_normal((2, 3, 2, 2)),
                           "b": rng.standard_normal((2, 3, 2, 2))}),
    LayerCase("basic_block_identity", _basic_block_forward, _basic_block_backward,
              _basic_block_inputs((2, 3, 5, 5), out_channels=3, stride=1),
              kwargs={"out_channels": 3, "stride": 1}),
    LayerCase("basic_block_projection", _basic_block_forward, _basic_block_backward,
              _basic_block_inputs((2, 3, 6, 6), out_channels=4, stride=2),
              kwargs={"out_channels": 4, "stride": 2}),
]


def _describe_shapes(inputs: Mapping[str, np.ndarray]) -> str:
    return " ".join(f"{k}({','.join(map(str, np.shape(v)))}{',' if np.ndim(v) == 1 else ''})"
                    for k, v in inputs.items())


def run_case(case: LayerCase, seed: int = 0) -> GradcheckRow:
    """Gradient-check one case; inputs and the random ``dout`` come from ``seed``.

    The inputs use the stream ``default_rng([seed, 1])``, distinct from check_layer's
    ``default_rng(seed)`` for dout: were they the same draws, dout would be a linear
    function of x, and batch norm's dx (which projects those out) would be ~0.
    """
    inputs = case.make_inputs(np.random.default_rng([seed, 1]))
    errors = check_layer(case.forward, case.backward, inputs, kwargs=case.kwargs,
                         wrt=case.wrt, seed=seed, threshold=case.threshold)
    passed = all(np.isfinite(e) and e <= case.threshold for e in errors.values())
    return GradcheckRow(case.name, _describe_shapes(inputs), errors, bool(passed))


def run_gradchecks(seed: int = 0, cases: Sequence[LayerCase] | None = None) -> list[GradcheckRow]:
    """Run every case of ``LAYER_CASES`` (or ``cases``); one row each, in order."""
    return [run_case(case, seed) for case in (LAYER_CASES if cases is None else cases)]


def format_gradcheck_table(rows: Sequence[GradcheckRow]) -> str:
    """A plain-text table: layer, input shapes, relative error of each gradient, pass/FAIL."""
    cells = [(r.layer, r.shapes, "  ".join(f"d{k} {v:.1e}" for k, v in r.errors.items()),
              "pass" if r.passed else "FAIL") for r in rows]
    header = ("layer", "input shapes", f"max relative error (pass <= {THRESHOLD:.0e})", "result")
    return text_table(header, cells)
