"""Models: backbones, the Fast R-CNN detector, checkpoints and shipped weights.

Everything public is importable from here: ``from minircnn.models import FastRCNN``.
"""

from minircnn.models.backbones import SmallVGG, VGGClassifier
from minircnn.models.checkpoint import (
    Checkpoint,
    load_checkpoint,
    read_checkpoint,
    register_model,
    save_checkpoint,
)
from minircnn.models.fast_rcnn import FastRCNN
from minircnn.models.faster_rcnn import FasterRCNN
from minircnn.models.pretrained import (
    pretrained_backbone,
    pretrained_detector,
    pretrained_faster_rcnn,
    pretrained_vgg,
)
from minircnn.models.rcnn import RCNN, SPPNet
from minircnn.models.resnet import (
    BasicBlock,
    MiniResNet,
    ResNetBackbone,
    convert_frozen_batchnorm,
    freeze_stages,
)
from minircnn.models.rpn import RegionProposalNetwork, RPNHead
