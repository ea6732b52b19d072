"""The detector whose weights ship inside the package (minircnn/weights/)."""

from __future__ import annotations

import os

from minircnn.layers.module import Module
from minircnn.models.checkpoint import load_checkpoint

WEIGHTS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                           "weights")
DETECTOR_FILE = os.path.join(WEIGHTS_DIR, "fast_rcnn_shapes.npz")


def pretrained_detector(*, device: str = "cpu") -> Module:
    """The FastRCNN (SmallVGG backbone) trained on ShapesDataset by ``minircnn train``.

    The exact command and its measured mAP are in minircnn/weights/README.md.
    """
    if not os.path.isfile(DETECTOR_FILE):
        raise FileNotFoundError(f"pretrained_detector: {DETECTOR_FILE} is missing; "
                                "reinstall minircnn or train one with `minircnn train`")
    return load_checkpoint(DETECTOR_FILE, device=device)
