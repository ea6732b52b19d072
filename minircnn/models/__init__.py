"""Models: backbones, the Fast R-CNN detector, checkpoints and shipped weights.

Everything public is importable from here: ``from minircnn.models import FastRCNN``.
"""

from minircnn.models.backbones import SmallVGG, VGGClassifier
from minircnn.models.checkpoint import (
    Checkpoint,
    build_model,
    load_checkpoint,
    model_spec,
    read_checkpoint,
    register_model,
    registered_models,
    save_checkpoint,
)
from minircnn.models.fast_rcnn import FastRCNN
from minircnn.models.pretrained import pretrained_detector, pretrained_vgg
from minircnn.models.rcnn import RCNN, SPPNet
from minircnn.models.resnet import (
    BasicBlock,
    MiniResNet,
    ResNetBackbone,
    convert_frozen_batchnorm,
    freeze_stages,
    load_backbone_weights,
    pretrained_backbone,
)
