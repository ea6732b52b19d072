"""The RPN head and its proposals (minircnn/models/rpn.py)."""

import numpy as np
import pytest

from minircnn.gradcheck import numeric_gradient
from minircnn.layers.conv import conv2d_forward
from minircnn.models.rpn import (
    RegionProposalNetwork,
    RPNHead,
    anchors_to_rows,
    rows_to_anchors,
)


def test_layout_matches_anchor_order():
    # channel a*m + j of cell (y, x) -> row (y*w + x)*k + a, column j (k = 2, m = 4)
    x = np.arange(1 * 8 * 2 * 3, dtype=float).reshape(1, 8, 2, 3)
    rows = anchors_to_rows(x, 2)
    assert rows.shape == (1, 12, 4)
    y, xx, a = 1, 2, 1
    np.testing.assert_array_equal(rows[0, (y * 3 + xx) * 2 + a], x[0, 4 * a:4 * a + 4, y, xx])
    np.testing.assert_array_equal(rows_to_anchors(rows, 2, 2, 3), x)


def test_head_forward_is_conv_relu_then_two_1x1_convs():
    rng = np.random.default_rng(0)
    head = RPNHead(3, 2, rng=rng, dtype=np.float64)
    x = rng.standard_normal((2, 3, 4, 5))
    objectness, deltas = head.forward(x)
    t = np.maximum(conv2d_forward(x, head.conv.w.data, head.conv.b.data, pad=1)[0], 0)
    logits = conv2d_forward(t, head.cls_logits.w.data, head.cls_logits.b.data)[0]
    assert objectness.shape == (2, 4 * 5 * 2) and deltas.shape == (2, 40, 4)
    assert objectness[1, (3 * 5 + 4) * 2 + 1] == pytest.approx(logits[1, 1, 3, 4])
    assert np.abs(head.conv.w.data).std() < 0.02          # torchvision's N(0, 0.01²) init


def test_head_parameter_gradients_numerically():
    rng = np.random.default_rng(1)
    head = RPNHead(2, 3, rng=rng, dtype=np.float64)
    for p in head.parameters():
        p.data[...] = rng.standard_normal(p.shape)
    x = rng.standard_normal((1, 2, 3, 3))
    dobj, ddel = rng.standard_normal((1, 27)), rng.standard_normal((1, 27, 4))

    def loss():
        o, d = head.forward(x)
        return float((o * dobj).sum() + (d * ddel).sum())
    head.forward(x)
    head.zero_grad()
    head.backward(dobj, ddel)
    for name in ("conv", "cls_logits", "bbox_pred"):
        w = getattr(head, name).w
        analytic = w.grad.copy()
        numeric = numeric_gradient(loss, w.data, 1.0)
        np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)


def test_proposals_per_image():
    rng = np.random.default_rng(0)
    rpn = RegionProposalNetwork(4, 4, post_nms_top_n=50)
    features = rng.standard_normal((2, 4, 8, 8)).astype(np.float32)
    props = rpn.proposals(features, (32, 32))
    assert len(props) == 2 and all(p.shape[1] == 4 and 0 < len(p) <= 50 for p in props)
    assert all((p >= 0).all() and (p <= 32).all() for p in props)
    assert rpn.anchors(features).shape == (8 * 8 * 6, 4)


def test_backward_before_forward():
    with pytest.raises(RuntimeError, match="before forward"):
        RPNHead(2, 1).backward(np.zeros((1, 1)), np.zeros((1, 1, 4)))


def _faster_rcnn():
    from minircnn.models import FasterRCNN, FastRCNN, SmallVGG

    backbone = SmallVGG((4, 8), num_pools=1)
    detector = FastRCNN(3, backbone, hidden=8, roi_op="align", output_size=(2, 2))
    return FasterRCNN(detector, RegionProposalNetwork(8, 2, post_nms_top_n=20))


def test_faster_rcnn_checkpoint_round_trip(tmp_path):
    from minircnn.models import load_checkpoint, save_checkpoint

    model = _faster_rcnn()
    images = np.random.default_rng(0).random((1, 3, 16, 16)).astype(np.float32)
    props = model.propose(images)
    save_checkpoint(model, tmp_path / "m.npz")
    loaded = load_checkpoint(tmp_path / "m.npz")
    np.testing.assert_array_equal(loaded.propose(images)[0], props[0])
    rois = np.concatenate([np.zeros((len(props[0]), 1), np.float32), props[0]], axis=1)
    np.testing.assert_array_equal(loaded.forward(images, rois)[0], model.forward(images, rois)[0])
    assert sorted(loaded.state_dict()) == sorted(model.state_dict())


def test_faster_rcnn_checks_the_rpn_fits_the_backbone():
    from minircnn.models import FasterRCNN

    model = _faster_rcnn()
    with pytest.raises(ValueError, match="the RPN reads 4 channels"):
        FasterRCNN(model.detector, RegionProposalNetwork(4, 2))
