"""R-CNN and SPP-net baselines (minircnn/models/rcnn.py): shapes, gradcheck, checkpoints."""

import numpy as np
import pytest

from minircnn.gradcheck import gradient_error, numeric_gradient_with_bound
from minircnn.models import RCNN, SmallVGG, SPPNet, load_checkpoint, save_checkpoint


def _build(kind, dtype=np.float64):
    rng = np.random.default_rng(0)
    backbone = SmallVGG((3, 4), rng=rng, dtype=dtype)                    # stride 2
    if kind == "rcnn":
        model = RCNN(2, backbone, crop_size=4, hidden=5, dropout=0.0, rng=rng, dtype=dtype)
    else:
        model = SPPNet(2, backbone, levels=(2, 1), hidden=5, dropout=0.0, rng=rng, dtype=dtype)
    for p in model.parameters():
        if p.data.ndim == 1:
            p.data[...] = rng.uniform(-0.1, 0.1, p.data.shape)
    images = rng.random((2, 3, 8, 8))
    rois = np.array([[0, 0.5, 1.0, 6.0, 7.5], [1, 2.0, 0.0, 8.0, 5.0], [0, 3.0, 3.0, 7.0, 7.0]])
    return model, images, rois


@pytest.mark.parametrize("kind", ["rcnn", "spp"])
def test_gradcheck_and_shapes(kind):
    model, images, rois = _build(kind)
    cls, bbox = model.forward(images, rois)
    assert cls.shape == (3, 3) and bbox.shape == (3, 12)
    rng = np.random.default_rng(1)
    dcls, dbbox = rng.standard_normal(cls.shape), rng.standard_normal(bbox.shape)
    model.zero_grad()
    dimages = model.backward(dcls, dbbox)
    assert dimages.shape == images.shape
    dout = np.concatenate([dcls.ravel(), dbbox.ravel()])

    def outputs():
        c, b = model.forward(images, rois)
        return np.concatenate([c.ravel(), b.ravel()])

    for name, p in model.named_parameters():
        numeric = numeric_gradient_with_bound(outputs, p.data, dout)
        err = gradient_error(p.grad, numeric, threshold=1e-5)
        assert err <= 1e-5, (name, err)


@pytest.mark.parametrize("kind", ["rcnn", "spp"])
def test_checkpoint_and_detect(kind, tmp_path):
    model, images, rois = _build(kind, dtype=np.float32)
    loaded = load_checkpoint(save_checkpoint(model, tmp_path / "m.npz"))
    assert type(loaded) is type(model)
    images, rois = images.astype(np.float32), rois.astype(np.float32)
    np.testing.assert_array_equal(model.forward(images, rois)[0], loaded.forward(images, rois)[0])
    dets = loaded.detect(images[0], rois[:, 1:], score_thresh=0.0)
    assert set(dets) == {"boxes", "scores", "labels"}


def test_rcnn_crop_size_must_fit_the_stride():
    with pytest.raises(ValueError, match="crop_size"):
        RCNN(2, SmallVGG((3, 4, 4)), crop_size=6)


def test_context_boxes_leave_p_pixels_of_context_after_the_warp():
    """Grown by 1 / (1 - 2 * 16/227), a box warped to S px fills S - 2p, p = 16/227 S."""
    from minircnn.models.rcnn import CONTEXT, context_boxes

    rois = np.array([[1, 10.0, 20.0, 30.0, 60.0]])           # 20 x 40 px box of image 1
    grown = context_boxes(rois)
    assert grown[0, 0] == 1
    np.testing.assert_allclose((grown[0, 1:3] + grown[0, 3:]) / 2, [20.0, 40.0])  # centre
    S = 227
    p = CONTEXT * S
    # the original box's share of the warped crop: (S - 2p) / S on both axes
    np.testing.assert_allclose([20.0 / (grown[0, 3] - grown[0, 1]),
                                40.0 / (grown[0, 4] - grown[0, 2])], (S - 2 * p) / S)
    np.testing.assert_allclose((S - 2 * p), 195.0)            # the paper's 227 - 2 * 16


def test_rcnn_warp_fills_what_lies_outside_the_image_with_the_pixel_mean():
    backbone = SmallVGG((4,), num_pools=1)
    model = RCNN(2, backbone, crop_size=8, context=0.25, hidden=4)   # box = central half
    images = np.ones((1, 3, 16, 16), np.float32)
    rois = np.array([[0, -16.0, -16.0, 0.0, 0.0]], np.float32)  # grown: far outside
    crops = model.crops(images, rois)                          # (1, 3, 8, 8)
    mean = np.asarray(backbone.pixel_mean, np.float32)
    np.testing.assert_allclose(crops[0, :, 0, 0], mean, atol=1e-6)


@pytest.mark.parametrize("kind", ["rcnn", "spp"])
def test_features_are_what_the_classifier_reads(kind):
    """features() = relu(fc7) at test time: cls_score of it is forward's scores."""
    model, images, rois = _build(kind)
    model.eval()
    cls, _ = model.forward(images, rois)
    np.testing.assert_allclose(model.head.cls_score.forward(model.features(images, rois)),
                               cls, rtol=1e-12)


def test_rcnn_crops_are_the_pretraining_input_size():
    from minircnn.training.config import RCNN_CROP, TrainConfig, make_detector
    from minircnn.training.transfer import PretrainConfig

    assert RCNN_CROP == PretrainConfig().image_size
    model = make_detector(TrainConfig(model="rcnn", pretrained=False))
    assert model.crop_size == RCNN_CROP
