"""MACs counted from the layer shapes (minircnn/paper/flops.py), against hand counts."""

import numpy as np

from minircnn.models import RCNN, FastRCNN, SmallVGG, SPPNet
from minircnn.models.compress import compress_fast_rcnn
from minircnn.paper.flops import backbone_macs, head_macs, inference_macs, train_macs_per_iteration
from minircnn.training.config import TrainConfig


def _vgg():
    return SmallVGG((4, 8), num_pools=1, rng=np.random.default_rng(0))   # stride 2


def test_backbone_macs_by_hand():
    # conv1 3->4 at 8x8: 8*8*4*3*9; pool -> 4x4; conv2 4->8 at 4x4: 4*4*8*4*9
    assert backbone_macs(_vgg(), 8, 8) == (8 * 8 * 4 * 3 * 9 + 4 * 4 * 8 * 4 * 9,) * 2
    frozen = _vgg().freeze_blocks(1)
    assert backbone_macs(frozen, 8, 8) == (8 * 8 * 4 * 3 * 9 + 4 * 4 * 8 * 4 * 9,
                                           4 * 4 * 8 * 4 * 9)


def test_head_macs_count_fc6_fc7_and_both_outputs():
    model = FastRCNN(3, _vgg(), output_size=(2, 2), hidden=5)       # fc6 in: 8 * 2 * 2
    per_roi = 32 * 5 + 5 * 5 + 5 * 4 + 5 * 16
    assert head_macs(model) == (per_roi, per_roi)
    low = compress_fast_rcnn(model, 2, None)                        # fc6 at rank 2
    assert head_macs(low)[0] == (32 + 5) * 2 + 5 * 5 + 5 * 4 + 5 * 16


def test_rcnn_pays_the_backbone_once_per_roi_the_others_once_per_scale():
    fast = FastRCNN(3, _vgg(), output_size=(2, 2), hidden=5)
    rcnn = RCNN(3, _vgg(), crop_size=8, hidden=5)
    spp = SPPNet(3, _vgg(), levels=(2, 1), hidden=5)
    one, _ = backbone_macs(_vgg(), 16, 16)
    crop, _ = backbone_macs(_vgg(), 8, 8)
    assert inference_macs(rcnn, 16, 10) == {
        "backbone": 10 * crop, "head": 10 * head_macs(rcnn)[0],
        "total": 10 * crop + 10 * head_macs(rcnn)[0], "backbone_passes": 10}
    assert inference_macs(fast, 16, 10)["backbone"] == one
    two = inference_macs(spp, 16, 10, scales=(1.0, 2.0))
    assert two["backbone_passes"] == 2
    assert two["backbone"] == one + backbone_macs(_vgg(), 32, 32)[0] == 5 * one


def test_a_training_iteration_is_forward_plus_twice_the_trainable_forward():
    config = TrainConfig(image_size=16, rois_per_batch=4, images_per_batch=2)
    model = FastRCNN(3, _vgg().freeze_blocks(1), output_size=(2, 2), hidden=5)
    bb, bb_trains = backbone_macs(model.backbone, 16, 16)
    head, _ = head_macs(model)
    assert train_macs_per_iteration(model, config) == 2 * (bb + 2 * bb_trains) + 4 * 3 * head
