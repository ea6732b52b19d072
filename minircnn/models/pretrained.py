"""The models whose weights ship inside the package (minircnn/weights/).

Four files, each made by the command given in minircnn/weights/README.md:
``fast_rcnn_shapes.npz`` (the detector), ``small_vgg_shapes.npz`` (its backbone,
pretrained on shapes classification), ``mini_resnet_shapes.npz`` (the MiniResNet of
lesson 09) and ``faster_rcnn_shapes.npz`` (Faster R-CNN, lesson 10). All four load
through ``_load_shipped``, which names the missing file or the wrong kind of model and
the command that makes the right one.
"""

from __future__ import annotations

import os

from minircnn.layers.module import Module
from minircnn.models.checkpoint import load_checkpoint

WEIGHTS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                           "weights")
DETECTOR_FILE = os.path.join(WEIGHTS_DIR, "fast_rcnn_shapes.npz")
VGG_FILE = os.path.join(WEIGHTS_DIR, "small_vgg_shapes.npz")
RESNET_FILE = os.path.join(WEIGHTS_DIR, "mini_resnet_shapes.npz")
FASTER_RCNN_FILE = os.path.join(WEIGHTS_DIR, "faster_rcnn_shapes.npz")


def _load_shipped(caller: str, path, expected: type, command: str, *,
                  device: str = "cpu") -> Module:
    """Load the checkpoint at ``path`` and check it holds an ``expected`` model.

    Raises FileNotFoundError naming ``command`` (what makes the file) when it is
    missing, and ValueError when it holds another kind of model.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{caller}: {path} is missing; create it with `{command}` "
                                "(minircnn/weights/README.md)")
    model = load_checkpoint(path, device=device)
    if not isinstance(model, expected):
        raise ValueError(f"{caller}: {path} holds a {type(model).__name__}, "
                         f"expected a {expected.__name__} from `{command}`")
    return model


def pretrained_detector(*, device: str = "cpu") -> Module:
    """The FastRCNN (SmallVGG backbone) trained on ShapesDataset by ``minircnn train``.

    The exact command and its measured AP are in minircnn/weights/README.md.
    """
    from minircnn.models.fast_rcnn import FastRCNN

    return _load_shipped("pretrained_detector", DETECTOR_FILE, FastRCNN, "minircnn train",
                         device=device)


def pretrained_faster_rcnn(*, device: str = "cpu") -> Module:
    """The FasterRCNN (FastRCNN + RPN sharing a SmallVGG) trained by ``minircnn train
    --proposals rpn``; the exact command and its figures are in minircnn/weights/README.md."""
    from minircnn.models.faster_rcnn import FasterRCNN

    return _load_shipped("pretrained_faster_rcnn", FASTER_RCNN_FILE, FasterRCNN,
                         "minircnn train --proposals rpn", device=device)


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

    return _load_shipped("pretrained_vgg", VGG_FILE if path is None else path, VGGClassifier,
                         "minircnn pretrain --backbone vgg")


def pretrained_backbone(num_stages: int | None = None, *, norm: str = "frozen",
                        path: str | None = None) -> Module:
    """The MiniResNet pretrained on ShapesClassification (minircnn/weights/README.md).

    Args:
        num_stages: None returns the classifier (MiniResNet with its source-task fc);
            an int returns a ResNetBackbone with that many stages for Fast R-CNN.
        norm: normalization of the backbone ("frozen", as detectron2, or "bn").
        path: another checkpoint written by ``minircnn pretrain`` (default: the
            shipped ``minircnn/weights/mini_resnet_shapes.npz``).
    """
    from minircnn.models.resnet import MiniResNet

    model = _load_shipped("pretrained_backbone", RESNET_FILE if path is None else path,
                          MiniResNet, "minircnn pretrain")
    return model if num_stages is None else model.as_backbone(num_stages, norm=norm)
