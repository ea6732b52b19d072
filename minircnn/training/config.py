"""The settings of a detection run (TrainConfig) and the detector and data they build.

The settings of a detection run (TrainConfig) and what they build: the detector
(make_detector, its backbone pretrained on shapes classification and partly frozen) and
the train / held-out datasets (make_datasets)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from minircnn.data.shapes import ShapesDataset
from minircnn.models.backbones import SmallVGG
from minircnn.models.fast_rcnn import FastRCNN
from minircnn.models.faster_rcnn import FasterRCNN
from minircnn.models.rcnn import RCNN, SPPNet
from minircnn.models.rpn import RegionProposalNetwork


@dataclass
class TrainConfig:
    """Every setting of a detection run (saved as config.json and inside checkpoints).

    The backbone runs at feature stride 4 (a 32x32 map for a 128-pixel image; objects are
    12..62 px, so a small shape covers 3 to 5 cells, where stride 8 gave it 1 or 2 and
    lost most of the boxes' precision). RoIAlign's bilinear sampling beats RoIPool's
    rounding, and 800 training images beat 400 at the same number of iterations. At
    test time an image pyramid (1x and 2x) scores each proposal at the scale that brings
    it closest to 48x48 pixels, which helps the smallest shapes most (paper sections 2.4, 5.2).
    What each setting measured: docs/performance.md and minircnn/weights/README.md.

    ``rpn_box_weight`` scales the RPN's box term. At 1 it is torchvision's: both RPN
    terms divided by the S sampled anchors (256 per image). The Faster R-CNN paper
    (eq. 1) divides the box term by the number of anchor locations h*w instead and
    weights it by lambda = 10, which is 2560 / (h*w) times torchvision's: about 1 for
    VGG16 on a 600x1000 image, 2.5 on this toy's 32x32 map.

    Two RPN settings depart from the Faster R-CNN paper (sections 3.1.2, 3.3) for the
    shapes. ``rpn_fg_iou`` 0.6, not 0.7: with one aspect ratio and scales a factor sqrt(2)
    apart, an IoU of 0.7 leaves most objects a handful of positive anchors (a fifth of
    them only their best one), and the box regression little to learn from; 0.6 about
    triples them. ``rpn_nms_thresh`` 0.85, not 0.7, in training and at test: the shapes'
    boxes are judged at IoU up to 0.95 (COCO AP), and NMS at 0.7 removes near-duplicates
    of which one is often the tighter box; at 0.85 the detector sees both. Neither
    touches the selective-search recipe. What they measured: minircnn/weights/README.md.

    ``train_workers`` (2): each iteration computes the gradient of each of its images on
    its own, image s in process s % train_workers (image 0 here, image 1 in a worker
    process on the other core), and adds them (data parallelism:
    training/data_parallel.py); where no worker can be forked, the same computation runs
    here, with the same result. 1 runs the minibatch in one pass instead, with other
    random draws: for Fast R-CNN the same gradient up to round-off; for joint RPN
    training the same whenever every image fills its 256 anchors and its R / N RoIs. The
    one-pass recipe is also what alternating RPN training and a model with BatchNorm2d
    run, whatever ``train_workers`` says (their minibatch is one whole).

    The RPN recipe's schedule is ``RPN_EPOCHS`` (10), not ``epochs``' 9: ``minircnn train
    --proposals rpn`` runs it when ``--epochs`` is not given (9 epochs of it score 0.02
    below selective search's; minircnn/weights/README.md).
    """
    name: str = "shapes"                 # run name: runs/<name>/
    seed: int = 0                        # model init, sampling, flips, dropout
    # data
    num_train: int = 800
    num_val: int = 300
    image_size: int = 128
    max_objects: int = 4
    data_seed: int = 0                   # train split seed; val uses data_seed + 1
    # proposals
    proposal_method: str = "selective_search"  # or "dense", or "rpn" (Faster R-CNN)
    max_proposals: int = 300
    cache_dir: str | None = None         # None: the per-user cache; "" disables caching
    proposal_workers: int = 2            # processes for proposals and evaluation (2 cores)
    rpn_training: str = "joint"          # or "alternating" (the paper's 4 steps)
    rpn_batch_size: int = 256            # anchors sampled per image, up to half positive
    rpn_positive_fraction: float = 0.5
    rpn_loss_weight: float = 1.0         # RPN loss added to Fast R-CNN's (torchvision: 1)
    rpn_box_weight: float = 1.0          # the RPN's box term, x torchvision's (see above)
    rpn_fg_iou: float = 0.6              # anchors with IoU >= this are positive (see above)
    rpn_bg_iou: float = 0.3              # anchors with IoU < this are negative
    rpn_nms_thresh: float = 0.85         # the RPN's proposals' NMS IoU (see above)
    # model
    model: str = "fast_rcnn"             # or the baselines "rcnn", "sppnet" (models/rcnn.py)
    backbone: str = "vgg"
    pretrained: bool = True              # start the backbone from shapes classification
    pretrained_path: str = ""            # a `minircnn pretrain` checkpoint ("": shipped)
    freeze_at: int = 3                   # fine-tune from block k up (1: train everything)
    channels: tuple = (16, 32, 64, 64)
    num_pools: int = 2                   # feature stride 2**num_pools = 4 (see above)
    batch_norm: bool = False             # BatchNorm2d after each backbone conv
    roi_op: str = "align"                # RoIAlign (sampling_ratio 2) or "pool"
    output_size: int = 7
    hidden: int = 256
    dropout: float = 0.5
    # minibatches
    sampling: str = "hierarchical"       # or "region" (RoIs from region_images images)
    images_per_batch: int = 2
    region_images: int = 16
    rois_per_batch: int = 128
    fg_fraction: float = 0.25
    fg_iou: float = 0.5
    bg_iou: tuple = (0.1, 0.5)
    flip: bool = True
    train_scales: tuple = (1.0,)         # each minibatch at a random one (multi-scale training)
    # optimisation
    epochs: int = 9                      # 9 x 400 iterations of 2 images
    lr: float = 0.02                     # measured against 0.01: docs/performance.md
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_iters: int = 100
    lr_steps: tuple = (0.75,)            # decay by gamma at these fractions of the run
    gamma: float = 0.1
    box_loss_weight: float = 1.0         # lambda of the multi-task loss (0: classification only)
    # evaluation
    score_thresh: float = 0.05
    nms_thresh: float = 0.3
    max_dets: int = 100
    test_scales: tuple = (1.0, 2.0)      # image pyramid at test time ((1.0,): one scale)
    pyramid_target: float = 48.0         # each RoI is scored where it is closest to this side
    device: str = "cpu"
    blas_threads: int | None = 1         # BLAS threads while training (minircnn/utils/blas.py)
    train_workers: int = 2               # processes sharing a minibatch's images (see above)
    pictures: bool = True                # write loss_curve.png and detections.png
    extra: dict = field(default_factory=dict)  # free-form notes saved with the run

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v
                for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        names = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - set(names))
        if unknown:
            raise ValueError(f"TrainConfig: unknown settings {unknown}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


# The RPN recipe's epochs: what `minircnn train --proposals rpn` runs without --epochs
# (TrainConfig.epochs is the selective-search recipe's; see TrainConfig's docstring).
RPN_EPOCHS = 10

# R-CNN warps each proposal to the input size its network was pretrained on (VGG16's
# 227 px): the shapes classifier's crops (PretrainConfig.image_size; a test checks).
RCNN_CROP = 32


# --- building blocks ---------------------------------------------------------------------
def make_detector(config: TrainConfig) -> FastRCNN:
    """The FastRCNN the config describes, initialised from ``config.seed``; with
    ``proposal_method="rpn"``, a FasterRCNN (that FastRCNN and a RegionProposalNetwork)."""
    rng = np.random.default_rng([config.seed, 0])
    backbone = _backbone(config, rng)
    size = (config.output_size, config.output_size)
    head = dict(hidden=config.hidden, dropout=config.dropout, rng=rng)
    if config.model == "rcnn":      # warps to the backbone's pretraining input, as 227 px
        return RCNN(3, backbone, crop_size=RCNN_CROP, **head)
    if config.model == "sppnet":    # the paper's {6, 3, 2, 1} pyramid
        return SPPNet(3, backbone, levels=(6, 3, 2, 1), **head)
    if config.model != "fast_rcnn":
        raise ValueError(f"model must be 'fast_rcnn', 'rcnn' or 'sppnet', got {config.model!r}")
    detector = FastRCNN(len(ShapesDataset.classes), backbone, roi_op=config.roi_op,
                        output_size=size, classes=ShapesDataset.classes, **head)
    if config.proposal_method != "rpn":
        return detector
    rpn = RegionProposalNetwork(backbone.out_channels, backbone.feature_stride,
                                post_nms_top_n=config.max_proposals,
                                nms_thresh=config.rpn_nms_thresh, rng=rng)
    own = _backbone(config, rng) if config.rpn_training == "alternating" else None
    return FasterRCNN(detector, rpn, own)


def _backbone(config: TrainConfig, rng: np.random.Generator):
    if config.backbone == "vgg":
        return _vgg_backbone(config, rng)
    if config.backbone == "resnet":
        return _resnet_backbone(config, rng)
    raise ValueError(f"backbone must be 'vgg' or 'resnet', got {config.backbone!r}")


def _vgg_backbone(config: TrainConfig, rng: np.random.Generator) -> SmallVGG:
    """SmallVGG, its weights from the pretrained VGGClassifier, blocks below freeze_at fixed.

    The paper fine-tunes VGG16 from conv3_1 up (Table 5: conv1 and conv2 fixed); with
    ``freeze_at = 3`` the toy does the same with its four blocks. The classifier was
    pretrained at stride 8 and the detector runs at ``2**num_pools`` (4): pools hold no
    weights, so the same convs serve (``with_pools``).
    """
    backbone = SmallVGG(config.channels, num_pools=config.num_pools,
                        batch_norm=config.batch_norm, rng=rng)
    if not config.pretrained:
        return backbone
    from minircnn.models.backbones import fold_batchnorm, with_pools
    from minircnn.models.pretrained import pretrained_vgg

    source = pretrained_vgg(path=config.pretrained_path or None)
    state = with_pools(fold_batchnorm(source.backbone), config.num_pools).state_dict()
    try:
        backbone.load_state_dict(state)
    except ValueError as e:
        origin = config.pretrained_path or "the shipped VGG"
        raise ValueError(f"pretrained weights {origin} do not fit the SmallVGG: {e}. "
                         f"The pretrained SmallVGG has channels "
                         f"{tuple(source.backbone.channels)}: use those channels, or "
                         f"--scratch to train without pretraining") from e
    return backbone.freeze_blocks(config.freeze_at - 1)


def _resnet_backbone(config: TrainConfig, rng: np.random.Generator):
    """The pretrained MiniResNet's stem + 3 stages (stride 8) with frozen BatchNorm, the
    stem and stages below ``freeze_at`` fixed (detectron2's FREEZE_AT); from scratch:
    the same architecture with BatchNorm2d, nothing frozen."""
    from minircnn.models.pretrained import pretrained_backbone
    from minircnn.models.resnet import ResNetBackbone, freeze_stages

    if not config.pretrained:
        return ResNetBackbone(num_stages=3, norm="bn", rng=rng)
    source = pretrained_backbone(3, path=config.pretrained_path or None)
    return freeze_stages(source, config.freeze_at - 1)


def make_datasets(config: TrainConfig) -> tuple[ShapesDataset, ShapesDataset]:
    """(train, val): disjoint splits, val drawn with seed data_seed + 1."""
    kw = dict(image_size=config.image_size, max_objects=config.max_objects)
    return (ShapesDataset(config.num_train, seed=config.data_seed, **kw),
            ShapesDataset(config.num_val, seed=config.data_seed + 1, **kw))
