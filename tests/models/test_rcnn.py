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
