"""The two detectors Fast R-CNN improved on, with the same head, for timing comparisons.

- ``RCNN`` (Girshick et al. 2014): every proposal is cropped from the image and warped
  to a fixed size, and the backbone runs on *each crop*: R backbone passes per image.
- ``SPPNet`` (He et al. 2014): the backbone runs once per image, then spatial pyramid
  pooling turns each RoI's feature window into a fixed-length vector.
- Fast R-CNN (minircnn.models.FastRCNN): the backbone runs once, RoI pooling (a
  one-level SPP) feeds fc layers, and everything trains end to end with one loss.

R-CNN warps as the paper does: each box is first grown about its centre so that, once
warped to ``crop_size``, ``p = context * crop_size`` pixels of image surround it on every
side (the paper's 16 px at 227 px: ``context = 16 / 227``), and what falls outside the
image is the pixel mean. The warp itself is bilinear sampling (RoIAlign with spatial
scale 1 on the image). Both models share Fast R-CNN's fc6-fc7 head design and interface
(``forward(images, rois) -> (cls_scores, bbox_deltas)``, ``backward(dcls, dbbox)``;
``detect`` works on each), so they train with the same loop; ``features(images, rois)``
gives the fc7 features that the paper's later stages (SVMs, box regressors;
minircnn/paper/baselines.py) train on. SPP-net's fixed convolutions are a training
setting (``freeze_at``), not part of the model.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from minircnn.backend import get_array_module
from minircnn.layers.activations import Dropout, Flatten, ReLU
from minircnn.layers.linear import Linear
from minircnn.layers.module import Module
from minircnn.layers.roi_align import RoIAlign
from minircnn.layers.roi_pool import SpatialPyramidPool
from minircnn.models.detector import Detector
from minircnn.utils.validate import check_count, check_number

CONTEXT = 16 / 227      # R-CNN: 16 px of context around a box warped to 227 px


def context_boxes(rois, context: float = CONTEXT):
    """RoIs (R, 5) grown about their centres so that, warped to S x S, the original box
    fills S - 2p pixels with p = context * S: width and height times 1 / (1 - 2 context).

    The paper's 227 px crop with p = 16 holds the box in its central 195 px.
    """
    xp = get_array_module(rois)
    grow = 1.0 / (1.0 - 2.0 * context)                       # S / (S - 2p)
    centre = (rois[:, 1:3] + rois[:, 3:5]) / 2               # (R, 2) cx, cy
    half = (rois[:, 3:5] - rois[:, 1:3]) / 2 * grow          # (R, 2) half width, height
    return xp.concatenate([rois[:, :1], centre - half, centre + half], axis=1)   # (R, 5)


class _Head(Module):
    """fc6-relu-dropout-fc7-relu-dropout, then cls_score (K+1) and bbox_pred (4(K+1))."""

    def __init__(self, in_features: int, num_classes: int, hidden: int, dropout: float,
                 rng: np.random.Generator, dtype):
        seeds = rng.integers(0, 2**31, size=2)
        self.fc6 = Linear(in_features, hidden, rng=rng, dtype=dtype)
        self.relu6 = ReLU()
        self.drop6 = Dropout(dropout, seed=int(seeds[0]))
        self.fc7 = Linear(hidden, hidden, rng=rng, dtype=dtype)
        self.relu7 = ReLU()
        self.drop7 = Dropout(dropout, seed=int(seeds[1]))
        self.cls_score = Linear(hidden, num_classes + 1, rng=rng, dtype=dtype, std=0.01)
        self.bbox_pred = Linear(hidden, 4 * (num_classes + 1), rng=rng, dtype=dtype, std=0.001)

    def forward(self, x):
        """x (R, D) -> cls_scores (R, K+1), bbox_deltas (R, 4(K+1))."""
        x = self.drop6.forward(self.relu6.forward(self.fc6.forward(x)))
        x = self.drop7.forward(self.relu7.forward(self.fc7.forward(x)))
        return self.cls_score.forward(x), self.bbox_pred.forward(x)

    def features(self, x):
        """x (R, D) -> fc7 features (R, hidden) at test time (dropout is the identity)."""
        return self.relu7.forward(self.fc7.forward(self.relu6.forward(self.fc6.forward(x))))

    def backward(self, dcls, dbbox):
        dx = self.cls_score.backward(dcls) + self.bbox_pred.backward(dbbox)  # fan-out: add
        dx = self.fc7.backward(self.relu7.backward(self.drop7.backward(dx)))
        return self.fc6.backward(self.relu6.backward(self.drop6.backward(dx)))


def _check_head_args(op: str, num_classes, backbone, hidden, dropout) -> None:
    check_count("num_classes", num_classes, op=op)
    check_count("hidden", hidden, op=op)
    check_number("dropout", dropout, op=op, low=0.0, high=1.0, high_open=True)
    for attr in ("out_channels", "feature_stride"):
        if not hasattr(backbone, attr):
            raise TypeError(f"{op}: backbone {type(backbone).__name__} has no {attr!r}")


class RCNN(Detector):
    """R-CNN: warp each RoI, with context, to ``crop_size`` pixels; the backbone runs on
    every crop.

    Args:
        num_classes: K.  backbone: as FastRCNN's (its stride must divide crop_size).
        crop_size: side of the warped crops: the input size the backbone was pretrained
            on (227 in the paper; the shapes classifier's 32 here).
        context: p / S, the context on each side of the warped box (16 / 227).
        hidden, dropout, rng, dtype: as FastRCNN.
    """

    def __init__(self, num_classes: int, backbone: Module, *, crop_size: int = 32,
                 context: float = CONTEXT, hidden: int = 256, dropout: float = 0.5,
                 rng: np.random.Generator | None = None, dtype=np.float32):
        _check_head_args("RCNN", num_classes, backbone, hidden, dropout)
        crop_size = check_count("crop_size", crop_size, op="RCNN")
        self.context = check_number("context", context, op="RCNN", low=0.0, high=0.5,
                                    high_open=True)
        rng = np.random.default_rng(0) if rng is None else rng
        if crop_size % backbone.feature_stride:
            raise ValueError(f"RCNN: crop_size {crop_size} must be divisible by the "
                             f"backbone stride {backbone.feature_stride}")
        self.num_classes, self.crop_size = int(num_classes), int(crop_size)
        self.hidden, self.dropout, self.dtype = int(hidden), float(dropout), np.dtype(dtype)
        self.backbone = backbone
        self.warp = RoIAlign((crop_size, crop_size), 1.0, sampling_ratio=1)
        self.flatten = Flatten()
        side = crop_size // backbone.feature_stride
        self.head = _Head(backbone.out_channels * side * side, self.num_classes, self.hidden,
                          self.dropout, rng, dtype)

    def get_config(self) -> dict:
        return {"num_classes": self.num_classes, "backbone": self.backbone,
                "crop_size": self.crop_size, "context": self.context, "hidden": self.hidden,
                "dropout": self.dropout, "dtype": self.dtype.name}

    def _pixel_mean(self, images):
        """(3, 1, 1) pixel mean: R-CNN fills the part of a grown box outside the image
        with it (the warp samples 0 there, so it warps images - mean and adds it back)."""
        xp = get_array_module(images)
        mean = getattr(self.backbone, "pixel_mean", (0.0, 0.0, 0.0))
        return xp.asarray(mean, dtype=images.dtype)[:, None, None]

    def crops(self, images, rois):
        """(R, 3, S, S): each RoI grown by the context and warped to S x S pixels."""
        mean = self._pixel_mean(images)                     # (3, 1, 1)
        grown = context_boxes(rois, self.context)           # (R, 5): box + context
        return self.warp.forward(images - mean, grown) + mean   # (R, 3, S, S)

    def forward(self, images, rois):
        crops = self.crops(images, rois)                  # (R, 3, S, S): one image per RoI
        features = self.backbone.forward(crops)            # (R, C, S/s, S/s): R passes
        return self.head.forward(self.flatten.forward(features))

    def features(self, images, rois):
        """fc7 features (R, hidden) of every RoI, as at test time (eval mode)."""
        features = self.backbone.forward(self.crops(images, rois))   # (R, C, S/s, S/s)
        return self.head.features(self.flatten.forward(features))

    def backward(self, dcls, dbbox):
        dx = self.head.backward(dcls, dbbox)               # (R, C*(S/s)^2)
        dfeatures = self.flatten.backward(dx)              # (R, C, S/s, S/s)
        dcrops = self.backbone.backward(dfeatures)         # (R, 3, S, S)
        if dcrops is None:                                 # frozen first blocks: no dimages
            return None
        return self.warp.backward(dcrops)                  # (N, 3, H, W): d(images - mean)


class SPPNet(Detector):
    """SPP-net: backbone once per image, spatial pyramid pooling of each RoI, fc head.

    Args:
        num_classes, backbone, hidden, dropout, rng, dtype: as FastRCNN.
        levels: pyramid grid sizes (the paper's {6, 3, 2, 1}: 50 bins, as Fast R-CNN's
            7 x 7 RoI pooling has 49).
    """

    def __init__(self, num_classes: int, backbone: Module, *,
                 levels: Sequence[int] = (6, 3, 2, 1),
                 hidden: int = 256, dropout: float = 0.5,
                 rng: np.random.Generator | None = None, dtype=np.float32):
        _check_head_args("SPPNet", num_classes, backbone, hidden, dropout)
        if isinstance(levels, (str, bytes)) or not hasattr(levels, "__len__") or not levels:
            raise ValueError(f"SPPNet: levels must be a non-empty sequence of ints >= 1, "
                             f"got {levels!r}")
        levels = [check_count("levels", v, op="SPPNet") for v in levels]
        rng = np.random.default_rng(0) if rng is None else rng
        self.num_classes, self.levels = int(num_classes), tuple(int(v) for v in levels)
        self.hidden, self.dropout, self.dtype = int(hidden), float(dropout), np.dtype(dtype)
        self.backbone = backbone
        self.spp = SpatialPyramidPool(self.levels, 1.0 / backbone.feature_stride)
        bins = sum(v * v for v in self.levels)
        self.head = _Head(backbone.out_channels * bins, self.num_classes, self.hidden,
                          self.dropout, rng, dtype)

    def get_config(self) -> dict:
        return {"num_classes": self.num_classes, "backbone": self.backbone,
                "levels": list(self.levels), "hidden": self.hidden, "dropout": self.dropout,
                "dtype": self.dtype.name}

    def forward(self, images, rois):
        features = self.backbone.forward(images)           # (N, C, H/s, W/s): once
        pooled = self.spp.forward(features, rois)          # (R, C * sum(l^2))
        return self.head.forward(pooled)

    def features(self, images, rois):
        """fc7 features (R, hidden) of every RoI, as at test time (eval mode)."""
        return self.head.features(self.spp.forward(self.backbone.forward(images), rois))

    def backward(self, dcls, dbbox):
        dpooled = self.head.backward(dcls, dbbox)          # (R, C * sum(l^2))
        dfeatures = self.spp.backward(dpooled)             # (N, C, H/s, W/s)
        return self.backbone.backward(dfeatures)           # (N, 3, H, W)

