"""minircnn/training/step.py: one SGD step lowers the loss, overfits two images; flips and
multi-scale minibatches."""

import dataclasses

import numpy as np

from minircnn.data.shapes import ShapesDataset
from minircnn.detection.evaluate import evaluate
from minircnn.detection.inference import detect_images
from minircnn.detection.sampling import hierarchical_batch
from minircnn.models import FastRCNN, SmallVGG
from minircnn.training import TrainConfig, flip_horizontal, train_step
from minircnn.training.optim import SGD, step_lr


def _jittered_proposals(boxes, rng, num=60, size=64):
    """Boxes around each GT (some fg, some bg) plus random boxes: cheap, deterministic."""
    near = np.repeat(boxes, num // (2 * len(boxes)) + 1, axis=0)
    near = near + rng.normal(0, 4, near.shape)
    xy = rng.uniform(0, size - 12, (num // 2, 2))
    rand = np.concatenate([xy, xy + rng.uniform(8, 30, (num // 2, 2))], axis=1)
    props = np.clip(np.concatenate([near, rand]), 0, size).astype(np.float32)
    props[:, 2:] = np.maximum(props[:, 2:], props[:, :2] + 2)
    return props


def _two_images():
    ds = ShapesDataset(2, image_size=64, seed=7, max_objects=2)  # 3 classes, >= 14 px
    rng = np.random.default_rng(0)
    items = [ds[0], ds[1]]
    props = [_jittered_proposals(it["boxes"], rng) for it in items]
    return ds, items, props


def _small_model(seed=0, dropout=0.0):
    rng = np.random.default_rng(seed)
    return FastRCNN(3, SmallVGG((8, 16, 32), rng=rng), output_size=(4, 4), hidden=64,
                    dropout=dropout, rng=rng)


def _fit(model, items, props, iters, lr=0.01, seed=0):
    opt = SGD(model.parameters(), lr)
    rng = np.random.default_rng(seed)
    images = np.stack([it["image"] for it in items])
    losses = []
    for it in range(iters):
        opt.lr = step_lr(lr, it, steps=(int(0.8 * iters),), warmup_iters=10)
        b = hierarchical_batch(items, props, rois_per_batch=64, rng=rng)
        losses.append(train_step(model, opt, images, b.rois, b.labels, b.bbox_targets)["loss"])
    return losses


def test_loss_decreases_over_a_few_steps():
    _, items, props = _two_images()
    losses = _fit(_small_model(), items, props, iters=30, lr=0.02)
    assert np.mean(losses[-5:]) < 0.85 * np.mean(losses[:3]), losses   # measured: 0.44


def test_overfitting_two_images_reaches_high_map():
    ds, items, props = _two_images()
    model = _small_model()
    _fit(model, items, props, iters=100, lr=0.02)
    dets = detect_images(model, [it["image"] for it in items], props)
    result = evaluate(dets, ds, metric="voc07")
    assert result["mAP"] >= 0.95, result


def test_flip_horizontal_mirrors_boxes():
    image = np.arange(2 * 3 * 4, dtype=np.float32).reshape(3, 2, 4)
    boxes = np.array([[0.0, 0.0, 1.0, 2.0]])
    img, b, p = flip_horizontal(image, boxes, boxes + 1)
    np.testing.assert_array_equal(img[:, :, 0], image[:, :, -1])
    np.testing.assert_array_equal(b, [[3.0, 0.0, 4.0, 2.0]])
    np.testing.assert_array_equal(p, [[2.0, 1.0, 3.0, 3.0]])
    np.testing.assert_array_equal(flip_horizontal(img, b, p)[0], image)


def test_multi_scale_minibatches_resize_the_images_and_move_the_rois():
    from minircnn.training import sample_batch

    ds = ShapesDataset(4, image_size=48, seed=1)
    items = [ds[i] for i in range(len(ds))]
    rng = np.random.default_rng(0)
    props = [_jittered_proposals(it["boxes"], rng, size=48) for it in items]
    one = TrainConfig(rois_per_batch=16, flip=False)
    images, batch = sample_batch(one, items, props, [0, 1], np.random.default_rng(5))
    assert images.shape == (2, 3, 48, 48)
    twice = dataclasses.replace(one, train_scales=(2.0,))
    big, moved = sample_batch(twice, items, props, [0, 1], np.random.default_rng(5), stride=8)
    assert big.shape == (2, 3, 96, 96)                        # 96 is a multiple of 8: no pad
    np.testing.assert_array_equal(moved.rois[:, 0], batch.rois[:, 0])
    np.testing.assert_allclose(moved.rois[:, 1:], 2 * batch.rois[:, 1:])
    np.testing.assert_array_equal(moved.labels, batch.labels)
    np.testing.assert_array_equal(moved.bbox_targets, batch.bbox_targets)   # relative
    padded, _ = sample_batch(dataclasses.replace(one, train_scales=(1.5,)), items, props,
                             [0], np.random.default_rng(5), stride=16)
    assert padded.shape == (1, 3, 80, 80)                     # 72 px, padded to 5 x 16
    assert not padded[..., 72:].any() and not padded[..., 72:, :].any()
    both = dataclasses.replace(one, train_scales=(1.0, 2.0))
    sizes = {sample_batch(both, items, props, [0, 1], np.random.default_rng(s))[0].shape[-1]
             for s in range(8)}
    assert sizes == {48, 96}

