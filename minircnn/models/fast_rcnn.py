"""Fast R-CNN (Girshick, ICCV 2015): one backbone pass per image, RoI pooling, two heads.

::

    images (N,3,H,W) --backbone--> features (N,C,H/s,W/s)
    features, rois (R,5) --RoI pool/align (scale 1/s)--> (R,C,PH,PW) --flatten--> (R,C*PH*PW)
    --fc6-relu-dropout--fc7-relu-dropout--> (R,hidden) --+--cls_score--> (R, K+1)
                                                         +--bbox_pred--> (R, 4(K+1))

``forward`` and ``backward`` chain the layers one line each, so a debugger steps through
a whole training step; ``backward`` runs them in exactly the reverse order. The two
heads read the same fc7 output, so its gradient is the *sum* of both heads' gradients.
Initialisation follows the paper: cls_score ~ N(0, 0.01²), bbox_pred ~ N(0, 0.001²),
biases 0 (at 2x learning rate, no weight decay).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from minircnn.backend import get_array_module
from minircnn.layers.activations import Dropout, Flatten, ReLU
from minircnn.layers.linear import Linear
from minircnn.layers.module import Module, OpModule, no_grad
from minircnn.layers.roi_align import RoIAlign
from minircnn.layers.roi_pool import RoIPool
from minircnn.models.detector import Detector
from minircnn.utils.validate import (
    check_array,
    check_attributes,
    check_choice,
    check_count,
    check_number,
    check_pair,
)


class FastRCNN(Detector):
    """The Fast R-CNN detector.

    Args:
        num_classes: K object classes (scores get K+1 columns, class 0 = background).
        backbone: a Module with forward/backward, ``out_channels`` and ``feature_stride``
            (see minircnn.models.backbones).
        roi_op: "align" (RoIAlign, Mask R-CNN's, sampling_ratio 2: what ``minircnn
            train`` uses) or "pool" (RoIPool, the paper's).
        output_size: (PH, PW) of the pooled RoI features (the paper's 7x7), or an int.
        hidden: width of fc6 and fc7 (4096 in VGG16; small here).
        dropout: drop probability after fc6 and fc7 (0 disables it).
        impl: "fast" or "naive": sets the ``impl`` of every layer that has one.
        rng: np.random.Generator for the fc weights (default seed 0); dropout seeds too.
        dtype: parameter dtype.
        classes: the K class names (label k is classes[k-1]); saved with the model so a
            checkpoint says what it detects (None: unnamed, as older checkpoints).

    The defaults are the head ``minircnn train`` trains (TrainConfig's roi_op,
    output_size, hidden and dropout; a test keeps them equal); its backbone is
    ``SmallVGG(num_pools=2)``, stride 4, pretrained with blocks 1-2 frozen
    (``minircnn.training.make_detector`` builds the whole of it).

    Example:
        >>> model = FastRCNN(3, SmallVGG(num_pools=2))               # untrained
        >>> cls_scores, bbox_deltas = model.forward(images, rois)   # rois (R, 5)
        >>> model.backward(dcls, dbbox)                             # fills p.grad
    """

    def __init__(self, num_classes: int, backbone: Module, *, roi_op: str = "align",
                 output_size: Sequence[int] = (7, 7), hidden: int = 256,
                 dropout: float = 0.5, impl: str = "fast",
                 rng: np.random.Generator | None = None, dtype=np.float32,
                 classes: Sequence[str] | None = None):
        num_classes = check_count("num_classes", num_classes, op="FastRCNN")
        hidden = check_count("hidden", hidden, op="FastRCNN")
        dropout = check_number("dropout", dropout, op="FastRCNN", low=0, high=1, high_open=True)
        self.classes = _check_classes(classes, num_classes)
        self.roi_op = check_choice("roi_op", roi_op, ("align", "pool"), op="FastRCNN")
        check_attributes("backbone", backbone, ("out_channels", "feature_stride"), op="FastRCNN")
        rng = np.random.default_rng(0) if rng is None else rng
        self.num_classes = int(num_classes)
        self.output_size = check_pair("output_size", output_size, op="FastRCNN")
        self.hidden = int(hidden)
        self.dropout = float(dropout)
        self.dtype = np.dtype(dtype)
        self.backbone = backbone
        scale = 1.0 / backbone.feature_stride
        if roi_op == "pool":
            self.roi = RoIPool(self.output_size, scale, impl=impl)
        else:
            self.roi = RoIAlign(self.output_size, scale, impl=impl)
        PH, PW = self.output_size
        K1 = self.num_classes + 1
        seeds = rng.integers(0, 2**31, size=2)
        self.flatten = Flatten()
        self.fc6 = Linear(backbone.out_channels * PH * PW, self.hidden, rng=rng, dtype=dtype)
        self.relu6 = ReLU()
        self.drop6 = Dropout(self.dropout, seed=int(seeds[0]))
        self.fc7 = Linear(self.hidden, self.hidden, rng=rng, dtype=dtype)
        self.relu7 = ReLU()
        self.drop7 = Dropout(self.dropout, seed=int(seeds[1]))
        self.cls_score = Linear(self.hidden, K1, rng=rng, dtype=dtype, std=0.01)
        self.bbox_pred = Linear(self.hidden, 4 * K1, rng=rng, dtype=dtype, std=0.001)
        self.impl = impl

    # --- configuration -----------------------------------------------------------------
    @property
    def impl(self) -> str:
        return self._impl

    @impl.setter
    def impl(self, value: str) -> None:
        """Switch every layer (backbone included) to its "fast" or "naive" version."""
        self._impl = check_choice("impl", value, ("fast", "naive"), op="FastRCNN")
        for m in list(self.modules())[1:]:
            if isinstance(m, OpModule):       # a layer with naive and fast versions
                m.impl = value
        self.backbone.impl = value            # recorded in the backbone's config

    def get_config(self) -> dict:
        """Constructor kwargs (the backbone as a Module; checkpoints store its spec)."""
        return {"num_classes": self.num_classes, "backbone": self.backbone,
                "roi_op": self.roi_op, "output_size": list(self.output_size),
                "hidden": self.hidden, "dropout": self.dropout, "impl": self.impl,
                "dtype": self.dtype.name,
                "classes": None if self.classes is None else list(self.classes)}

    # --- forward / backward --------------------------------------------------------------
    def forward(self, images, rois):
        """Class scores and class-specific box deltas for every RoI.

        Args:
            images: (N, 3, H, W) float images.
            rois: (R, 5) rows [batch_index, x1, y1, x2, y2] in image pixels.
        Returns:
            cls_scores (R, K+1) logits and bbox_deltas (R, 4(K+1)), class c's deltas in
            columns 4c:4c+4 (encoded as minircnn.detection.encode_boxes).
        """
        images = check_array("images", images, op="FastRCNN", ndim=4, axes="(N, 3, H, W)")
        rois = check_array("rois", rois, op="FastRCNN", ndim=2, shape=(None, 5), kinds="fiu",
                           like=images, axes="(R, 5)")
        features = self.backbone.forward(images)      # (N, C, H/s, W/s)
        return self.forward_head(features, rois)

    def forward_from_frozen(self, frozen, rois):
        """``forward`` from the output of the backbone's frozen blocks (a SmallVGG's
        ``forward_frozen``, which training may keep per image: training/frozen_cache.py)."""
        rois = check_array("rois", rois, op="FastRCNN", ndim=2, shape=(None, 5), kinds="fiu",
                           like=frozen, axes="(R, 5)")
        features = self.backbone.forward_trainable(frozen)   # (N, C, H/s, W/s)
        return self.forward_head(features, rois)

    def forward_levels(self, levels):
        """``forward`` over an image pyramid, at test time: one backbone pass and one RoI
        op per level, then the head once over the RoIs of every level (fc6 is one matrix
        product, not one per level).

        Nothing is kept for a backward pass: it runs as under ``no_grad``.

        Args:
            levels: [(images_j, rois_j)]: the images resized to scale j (N, 3, H_j, W_j)
                and the RoIs (R_j, 5) scored at that scale, in image pixels of level j.
        Returns:
            cls_scores (sum R_j, K+1) and bbox_deltas (sum R_j, 4(K+1)), the RoIs of
            level 0 first, then those of level 1, and so on.
        """
        with no_grad(self):
            pooled = []
            for images, rois in levels:
                images = check_array("images", images, op="FastRCNN", ndim=4,
                                     axes="(N, 3, H, W)")
                rois = check_array("rois", rois, op="FastRCNN", ndim=2, shape=(None, 5),
                                   kinds="fiu", like=images, axes="(R, 5)")
                features = self.backbone.forward(images)           # (N, C, H_j/s, W_j/s)
                pooled.append(self.roi.forward(features, rois))    # (R_j, C, PH, PW)
            if len(pooled) == 1:
                return self.forward_pooled(pooled[0])
            xp = get_array_module(pooled[0])
            return self.forward_pooled(xp.concatenate(pooled))     # (sum R_j, C, PH, PW)

    def forward_head(self, features, rois):
        """``forward`` after the backbone: features (N, C, H/s, W/s), rois (R, 5) ->
        cls_scores, bbox_deltas (Faster R-CNN shares the features with its RPN)."""
        pooled = self.roi.forward(features, rois)     # (R, C, PH, PW)
        return self.forward_pooled(pooled)

    def forward_pooled(self, pooled):
        """``forward`` after the RoI op: pooled (R, C, PH, PW) -> cls_scores, bbox_deltas."""
        x = self.flatten.forward(pooled)              # (R, C*PH*PW)
        x = self.fc6.forward(x)                       # (R, hidden)
        x = self.relu6.forward(x)
        x = self.drop6.forward(x)
        x = self.fc7.forward(x)                       # (R, hidden)
        x = self.relu7.forward(x)
        x = self.drop7.forward(x)
        cls_scores = self.cls_score.forward(x)        # (R, K+1)
        bbox_deltas = self.bbox_pred.forward(x)       # (R, 4(K+1))
        return cls_scores, bbox_deltas

    def backward(self, dcls, dbbox):
        """dcls (R, K+1), dbbox (R, 4(K+1)) -> dimages (N, 3, H, W); fills every p.grad.

        Returns None when the backbone's first block is frozen (SmallVGG.freeze_blocks(k)
        with k >= 1, a ResNet backbone with freeze_at >= 1; make_detector freezes blocks
        1-2 as the paper does): no layer below reads the gradient of the images, so the
        backbone stops at its first trainable block and does not compute it. With every
        block trainable it returns dimages.
        """
        dfeatures = self.backward_head(dcls, dbbox)   # (N, C, H/s, W/s)
        dimages = self.backbone.backward(dfeatures)   # (N, 3, H, W), or None (see above)
        return dimages

    def backward_head(self, dcls, dbbox):
        """``backward`` down to the features: -> dfeatures (N, C, H/s, W/s)."""
        if self.cls_score.cache is None:
            raise RuntimeError("FastRCNN.backward called before forward")
        dx = self.cls_score.backward(dcls)            # (R, hidden)
        dx = dx + self.bbox_pred.backward(dbbox)      # fc7's output feeds both heads: add
        dx = self.drop7.backward(dx)
        dx = self.relu7.backward(dx)
        dx = self.fc7.backward(dx)                    # (R, hidden)
        dx = self.drop6.backward(dx)
        dx = self.relu6.backward(dx)
        dx = self.fc6.backward(dx)                    # (R, C*PH*PW)
        dpooled = self.flatten.backward(dx)           # (R, C, PH, PW)
        return self.roi.backward(dpooled)             # (N, C, H/s, W/s), summed over RoIs


def _check_classes(classes, num_classes: int) -> tuple[str, ...] | None:
    """None, or exactly ``num_classes`` distinct names, as a tuple."""
    if classes is None:
        return None
    if isinstance(classes, str) or not all(isinstance(c, str) for c in classes):
        raise TypeError(f"FastRCNN: classes must be a sequence of names, got {classes!r}")
    if len(classes) != num_classes or len(set(classes)) != len(classes):
        raise ValueError(f"FastRCNN: classes must be {num_classes} distinct names "
                         f"(num_classes={num_classes}), got {list(classes)}")
    return tuple(classes)
