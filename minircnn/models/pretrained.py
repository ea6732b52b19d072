"""The detector whose weights ship inside the package (minircnn/weights/)."""

from __future__ import annotations

import os

from minircnn.layers.module import Module
from minircnn.models.checkpoint import load_checkpoint

WEIGHTS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                           "weights")
DETECTOR_FILE = os.path.join(WEIGHTS_DIR, "fast_rcnn_shapes.npz")
VGG_FILE = os.path.join(WEIGHTS_DIR, "small_vgg_shapes.npz")


def pretrained_detector(*, device: str = "cpu") -> Module:
    """The FastRCNN (SmallVGG backbone) trained on ShapesDataset by ``minircnn train``.

    The exact command and its measured mAP are in minircnn/weights/README.md.
    """
    if not os.path.isfile(DETECTOR_FILE):
        raise FileNotFoundError(f"pretrained_detector: {DETECTOR_FILE} is missing; "
                                "reinstall minircnn or train one with `minircnn train`")
    return load_checkpoint(DETECTOR_FILE, device=device)


def pretrained_vgg(*, path: str | None = None) -> Module:
    """The VGGClassifier (SmallVGG + fc) pretrained on ShapesClassification.

    ``minircnn train`` starts its SmallVGG backbone from ``.backbone`` of this model,
    as Fast R-CNN starts from an ImageNet-trained VGG16. The command that makes the
    file is in minircnn/weights/README.md (``minircnn pretrain --backbone vgg``).

    Args:
        path: a checkpoint written by ``minircnn pretrain --backbone vgg`` (default:
            the shipped ``minircnn/weights/small_vgg_shapes.npz``).
    """
    from minircnn.models.backbones import VGGClassifier

    path = VGG_FILE if path is None else os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"pretrained_vgg: {path} is missing; create it with "
                                "`minircnn pretrain --backbone vgg` (minircnn/weights/README.md)")
    model = load_checkpoint(path)
    if not isinstance(model, VGGClassifier):
        raise ValueError(f"pretrained_vgg: {path} holds a {type(model).__name__}, "
                         "expected a VGGClassifier from `minircnn pretrain --backbone vgg`")
    return model
