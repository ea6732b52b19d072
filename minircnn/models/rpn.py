"""The Region Proposal Network (Faster R-CNN, arXiv 1506.01497, section 3.1).

::

    features (N,C,h,w) --conv3x3-relu--> t (N,C,h,w) --+--cls_logits 1x1--> (N,k,h,w)
                                                       +--bbox_pred 1x1--> (N,4k,h,w)
    (N,k,h,w) -> objectness (N, h*w*k);  (N,4k,h,w) -> deltas (N, h*w*k, 4)

A small network slides over the backbone's feature map: a 3x3 convolution (the paper's
"n x n spatial window", n = 3) and ReLU, then two sibling 1x1 convolutions giving, for
each of the k anchors of each cell, one objectness logit and four box deltas
(torchvision RPNHead; weights N(0, 0.01²), biases 0). The outputs are then laid out in
the anchors' order (cell y, cell x, anchor a), as torchvision's
``concat_box_prediction_layers``, so row i of ``objectness`` and ``deltas`` belongs to
anchor i of ``AnchorGenerator``. ``backward`` undoes that layout and runs the layers in
reverse; the 3x3 conv's output feeds both 1x1 convs, so its gradient is their sum. That
gradient is zero except at the cells of the anchors the loss sampled, so the 3x3 conv's
backward runs over those cells only (``ActiveConv2d``: the same gradients).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from minircnn.backend import get_array_module
from minircnn.detection.anchors import AnchorGenerator
from minircnn.detection.rpn_proposals import rpn_proposals
from minircnn.layers.activations import ReLU
from minircnn.layers.conv import Conv2d
from minircnn.layers.conv_active import ActiveConv2d
from minircnn.layers.module import Module
from minircnn.utils.validate import check_array, check_count

# Anchors for the shapes (12..62 px, h/w within 0.67..1.5) at stride 4: six scales a
# factor sqrt(2) apart, one ratio; docs/layers/rpn.md measures the choice.
DEFAULT_SCALES = (12, 17, 24, 34, 48, 68)
DEFAULT_RATIOS = (1.0,)


def anchors_to_rows(x, k: int):
    """(N, k*m, h, w) map -> (N, h*w*k, m) rows in anchor order (m = 1 or 4)."""
    n, km, h, w = x.shape
    m = km // k
    x = x.reshape(n, k, m, h, w)                  # channel a*m + j -> (anchor a, value j)
    return x.transpose(0, 3, 4, 1, 2).reshape(n, h * w * k, m)  # (N, h, w, k, m) -> rows


def rows_to_anchors(rows, k: int, h: int, w: int):
    """The inverse of ``anchors_to_rows``: (N, h*w*k, m) -> (N, k*m, h, w)."""
    n, _, m = rows.shape
    x = rows.reshape(n, h, w, k, m).transpose(0, 3, 4, 1, 2)    # (N, k, m, h, w)
    return x.reshape(n, k * m, h, w)


class RPNHead(Module):
    """The RPN's layers: conv3x3 + ReLU, then 1x1 objectness and 1x1 box deltas.

    Args:
        in_channels: C of the backbone features (the conv keeps C channels, as torchvision).
        num_anchors: k, anchors per feature cell.
        rng: np.random.Generator for the N(0, 0.01²) weights (default seed 0).
        dtype: parameter dtype.  impl: "fast" or "naive" for the three convolutions.
    """

    def __init__(self, in_channels: int, num_anchors: int, *,
                 rng: np.random.Generator | None = None, dtype=np.float32,
                 impl: str = "fast"):
        self.in_channels = check_count("in_channels", in_channels, op="RPNHead")
        self.num_anchors = check_count("num_anchors", num_anchors, op="RPNHead")
        rng = np.random.default_rng(0) if rng is None else rng
        self.dtype = np.dtype(dtype)
        c, k = self.in_channels, self.num_anchors
        # the 3x3 conv's gradient is zero but at the sampled anchors' cells: its fast
        # backward multiplies over those cells only (minircnn/layers/conv_active.py)
        self.conv = ActiveConv2d(c, c, 3, pad=1, rng=rng, dtype=dtype, impl=impl)
        self.relu = ReLU()
        self.cls_logits = Conv2d(c, k, 1, rng=rng, dtype=dtype, impl=impl)
        self.bbox_pred = Conv2d(c, 4 * k, 1, rng=rng, dtype=dtype, impl=impl)
        for layer in (self.conv, self.cls_logits, self.bbox_pred):   # torchvision's init
            layer.w.data[...] = 0.01 * rng.standard_normal(layer.w.shape)
        self.impl = impl
        self._hw = None

    def get_config(self) -> dict:
        return {"in_channels": self.in_channels, "num_anchors": self.num_anchors,
                "dtype": self.dtype.name, "impl": self.impl}

    def forward(self, features):
        """features (N, C, h, w) -> objectness (N, h*w*k), deltas (N, h*w*k, 4)."""
        features = check_array("features", features, op="RPNHead", ndim=4,
                               shape=(None, self.in_channels, None, None), axes="(N, C, h, w)")
        self._hw = features.shape[2:]
        t = self.relu.forward(self.conv.forward(features))     # (N, C, h, w)
        logits = self.cls_logits.forward(t)                     # (N, k, h, w)
        deltas = self.bbox_pred.forward(t)                      # (N, 4k, h, w)
        k = self.num_anchors
        return anchors_to_rows(logits, k)[..., 0], anchors_to_rows(deltas, k)

    def backward(self, dobjectness, ddeltas):
        """dobjectness (N, h*w*k), ddeltas (N, h*w*k, 4) -> dfeatures (N, C, h, w)."""
        if self._hw is None:
            raise RuntimeError("RPNHead.backward called before forward")
        (h, w), k = self._hw, self.num_anchors
        dlogits = rows_to_anchors(dobjectness[..., None], k, h, w)   # (N, k, h, w)
        dbox = rows_to_anchors(ddeltas, k, h, w)                     # (N, 4k, h, w)
        dt = self.cls_logits.backward(dlogits)
        dt = dt + self.bbox_pred.backward(dbox)       # t feeds both 1x1 convs: add
        dt = self.relu.backward(dt)
        return self.conv.backward(dt)                 # (N, C, h, w)


class RegionProposalNetwork(Module):
    """RPNHead + anchors + proposal settings: features in, proposals out.

    Args:
        in_channels: C of the features.  stride: the backbone's feature stride.
        scales, aspect_ratios: the anchors (see minircnn.detection.anchors).
        pre_nms_top_n, post_nms_top_n, nms_thresh, min_size: proposal decoding
            (torchvision's test-time 1000 / 1000 / 0.7 / 1e-3; 1000 / 300 here, the
            number of proposals the detector is evaluated with).
        rng, dtype, impl: as RPNHead.
    """

    def __init__(self, in_channels: int, stride: int, *,
                 scales: Sequence[float] = DEFAULT_SCALES,
                 aspect_ratios: Sequence[float] = DEFAULT_RATIOS, pre_nms_top_n: int = 1000,
                 post_nms_top_n: int = 300, nms_thresh: float = 0.7, min_size: float = 1e-3,
                 rng: np.random.Generator | None = None, dtype=np.float32, impl: str = "fast"):
        self.anchor_generator = AnchorGenerator(scales, aspect_ratios, stride)
        self.head = RPNHead(in_channels, self.anchor_generator.num_anchors, rng=rng,
                            dtype=dtype, impl=impl)
        self.settings = {"pre_nms_top_n": int(pre_nms_top_n),
                         "post_nms_top_n": int(post_nms_top_n),
                         "nms_thresh": float(nms_thresh), "min_size": float(min_size)}
        self.stride = self.anchor_generator.stride

    def get_config(self) -> dict:
        return {"in_channels": self.head.in_channels, "stride": self.stride,
                "scales": list(self.anchor_generator.scales),
                "aspect_ratios": list(self.anchor_generator.aspect_ratios),
                **self.settings, "dtype": self.head.dtype.name, "impl": self.head.impl}

    def anchors(self, features):
        """(h*w*k, 4) anchors of a feature map (N, C, h, w), in the features' module."""
        xp = get_array_module(features)
        return xp.asarray(self.anchor_generator(features.shape[2:]))

    def forward(self, features):
        """features (N, C, h, w) -> objectness (N, h*w*k), deltas (N, h*w*k, 4)."""
        return self.head.forward(features)

    def backward(self, dobjectness, ddeltas):
        return self.head.backward(dobjectness, ddeltas)

    def proposals(self, features, image_size, objectness=None, deltas=None, **overrides):
        """One (P, 4) array of proposals per image, best first (``rpn_proposals``).

        ``objectness`` and ``deltas`` from a ``forward`` already run are reused.
        """
        if objectness is None:
            objectness, deltas = self.forward(features)
        anchors = self.anchors(features)
        settings = {**self.settings, **overrides}
        return [rpn_proposals(objectness[i], deltas[i], anchors, image_size, **settings)[0]
                for i in range(objectness.shape[0])]
