"""The two detectors Fast R-CNN improved on, with the same head, for timing comparisons.

- ``RCNN`` (Girshick et al. 2014): every proposal is cropped from the image and warped
  to a fixed size, and the backbone runs on *each crop*: R backbone passes per image.
- ``SPPNet`` (He et al. 2014): the backbone runs once per image, then spatial pyramid
  pooling turns each RoI's feature window into a fixed-length vector.
- Fast R-CNN (minircnn.models.FastRCNN): the backbone runs once, RoI pooling (a
  one-level SPP) feeds fc layers, and everything trains end to end with one loss.

Simplifications, so the three share code and a training loop: all three use the same
fc6-fc7 head with softmax classification and box regression (the originals trained
SVMs and a separate box regressor, and SPP-net could not update its convolutions
below the pyramid pooling). The warp uses bilinear sampling (RoIAlign with spatial
scale 1 on the image), R-CNN's "warp" without its 16-pixel context padding.
All keep Fast R-CNN's interface: ``forward(images, rois) -> (cls_scores, bbox_deltas)``,
``backward(dcls, dbbox)``; ``detect`` works on each.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from minircnn.layers.activations import Dropout, Flatten, ReLU
from minircnn.layers.linear import Linear
from minircnn.layers.module import Module
from minircnn.layers.roi_pool import RoIAlign, SpatialPyramidPool
from minircnn.models.detector import Detector
from minircnn.utils.validate import check_count, check_number


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
    """R-CNN: warp each RoI to ``crop_size`` pixels and run the backbone on every crop.

    Args:
        num_classes: K.  backbone: as FastRCNN's (its stride must divide crop_size).
        crop_size: side of the warped crops (227 in the paper; small here).
        hidden, dropout, rng, dtype: as FastRCNN.
    """

    def __init__(self, num_classes: int, backbone: Module, *, crop_size: int = 32,
                 hidden: int = 256, dropout: float = 0.5,
                 rng: np.random.Generator | None = None, dtype=np.float32):
        _check_head_args("RCNN", num_classes, backbone, hidden, dropout)
        crop_size = check_count("crop_size", crop_size, op="RCNN")
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
                "crop_size": self.crop_size, "hidden": self.hidden, "dropout": self.dropout,
                "dtype": self.dtype.name}

    def forward(self, images, rois):
        crops = self.warp.forward(images, rois)            # (R, 3, S, S): one image per RoI
        features = self.backbone.forward(crops)            # (R, C, S/s, S/s): R passes
        return self.head.forward(self.flatten.forward(features))

    def backward(self, dcls, dbbox):
        dx = self.head.backward(dcls, dbbox)               # (R, C*(S/s)^2)
        dfeatures = self.flatten.backward(dx)              # (R, C, S/s, S/s)
        dcrops = self.backbone.backward(dfeatures)         # (R, 3, S, S)
        if dcrops is None:                                 # frozen first blocks: no dimages
            return None
        return self.warp.backward(dcrops)                  # (N, 3, H, W)



class SPPNet(Detector):
    """SPP-net: backbone once per image, spatial pyramid pooling of each RoI, fc head.

    Args:
        num_classes, backbone, hidden, dropout, rng, dtype: as FastRCNN.
        levels: pyramid grid sizes (the paper's {6, 3, 2, 1}; (4, 2, 1) here).
    """

    def __init__(self, num_classes: int, backbone: Module, *, levels: Sequence[int] = (4, 2, 1),
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

    def backward(self, dcls, dbbox):
        dpooled = self.head.backward(dcls, dbbox)          # (R, C * sum(l^2))
        dfeatures = self.spp.backward(dpooled)             # (N, C, H/s, W/s)
        return self.backbone.backward(dfeatures)           # (N, 3, H, W)

