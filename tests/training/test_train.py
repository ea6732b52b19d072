"""Training (minircnn/training/): loss goes down, overfitting, determinism, resume, NaN guard."""

import dataclasses

import numpy as np
import pytest

import minircnn.training.loop as train_mod
from minircnn.data.shapes import ShapesDataset
from minircnn.detection.evaluate import evaluate
from minircnn.detection.inference import detect_images
from minircnn.detection.sampling import hierarchical_batch
from minircnn.models import FastRCNN, SmallVGG, read_checkpoint
from minircnn.training import TrainConfig, flip_horizontal, train_detector, train_step
from minircnn.training.optim import SGD, step_lr
from minircnn.utils.errors import RunInterrupted, UserError


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


TINY = TrainConfig(num_train=4, num_val=2, image_size=64, max_objects=2, epochs=2,
                   pretrained=False, proposal_method="dense", max_proposals=80, cache_dir="",
                   channels=(4, 8), num_pools=1, output_size=4, hidden=16, warmup_iters=1,
                   rois_per_batch=32)


def _weights(path):
    return read_checkpoint(path).state


def test_run_is_deterministic_and_resume_continues_identically(tmp_path, monkeypatch):
    full = train_detector(TINY, tmp_path / "a", progress=False)
    quiet = dataclasses.replace(TINY, pictures=False)
    again = train_detector(quiet, tmp_path / "b", progress=False)
    wa = _weights(tmp_path / "a" / "checkpoint.npz")
    wb = _weights(tmp_path / "b" / "checkpoint.npz")
    assert all(np.array_equal(wa[k], wb[k]) for k in wa)                 # same seed, same bits
    assert full["history"] == again["history"]
    for name in ("metrics.json", "config.json", "model.npz", "loss_curve.png", "detections.png"):
        assert (tmp_path / "a" / name).is_file(), name

    real_save = train_mod.save_run_checkpoint

    def crash_after_first_epoch(path, model, optimizer, rng, config, state):
        real_save(path, model, optimizer, rng, config, state)
        raise KeyboardInterrupt("simulated crash")

    monkeypatch.setattr(train_mod, "save_run_checkpoint", crash_after_first_epoch)
    with pytest.raises(RunInterrupted, match="interrupted at iteration 2; continue with"):
        train_detector(quiet, tmp_path / "c", progress=False)
    monkeypatch.setattr(train_mod, "save_run_checkpoint", real_save)
    with pytest.raises(UserError, match=r"different settings: lr=0.02 \(now 0.5\)"):
        train_detector(dataclasses.replace(quiet, lr=0.5), tmp_path / "c", resume=True)
    resumed = train_detector(quiet, tmp_path / "c", resume=True, progress=False)
    wc = _weights(tmp_path / "c" / "checkpoint.npz")
    assert all(np.array_equal(wa[k], wc[k]) for k in wa)                 # bitwise identical
    assert resumed["history"] == full["history"]
    assert read_checkpoint(tmp_path / "c" / "checkpoint.npz").extra["run_state"]["epoch"] == 2


def test_nan_loss_stops_with_clear_error_and_keeps_checkpoint(tmp_path, monkeypatch):
    calls = {"n": 0}
    real_step = train_mod.train_step

    def poisoned_step(model, optimizer, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:                       # first iteration of epoch 2
            model.fc7.w.data[0, 0] = np.nan
        return real_step(model, optimizer, *args, **kwargs)

    monkeypatch.setattr(train_mod, "train_step", poisoned_step)
    with pytest.raises(FloatingPointError, match=r"iteration 2 \(epoch 2\).*checkpoint"):
        train_detector(dataclasses.replace(TINY, pictures=False), tmp_path, progress=False)
    ckpt = read_checkpoint(tmp_path / "checkpoint.npz")
    assert ckpt.extra["run_state"]["epoch"] == 1
    assert all(np.isfinite(v).all() for v in ckpt.state.values())


def test_nan_weight_after_the_last_step_is_caught_before_the_checkpoint(tmp_path, monkeypatch):
    """Weights are scanned once per checkpoint, not every iteration: an update that makes
    a weight NaN in an epoch's last step (no loss sees it) still never reaches a file."""
    calls = {"n": 0}
    real_step = train_mod.train_step

    def poisoning_step(model, optimizer, *args, **kwargs):
        stats = real_step(model, optimizer, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 4:                       # the last iteration of epoch 2
            model.fc7.w.data[0, 0] = np.nan
        return stats

    monkeypatch.setattr(train_mod, "train_step", poisoning_step)
    with pytest.raises(FloatingPointError, match=r"weights nan/inf"):
        train_detector(dataclasses.replace(TINY, pictures=False), tmp_path, progress=False)
    ckpt = read_checkpoint(tmp_path / "checkpoint.npz")
    assert ckpt.extra["run_state"]["epoch"] == 1


def test_high_learning_rate_divergence_is_caught(tmp_path):
    config = dataclasses.replace(TINY, lr=1e12, warmup_iters=0, epochs=1)
    with pytest.raises(FloatingPointError, match="diverged"):
        train_detector(config, tmp_path, progress=False)


def test_region_wise_sampling_and_roi_align_train(tmp_path):
    config = dataclasses.replace(TINY, sampling="region", region_images=4, roi_op="align",
                                 epochs=1, pictures=False)
    metrics = train_detector(config, tmp_path, progress=False)
    assert metrics["epochs"][0]["iterations"] == 1            # 4 images, 4 per iteration
    assert np.isfinite(metrics["history"]["loss"]).all()


def test_config_round_trip():
    d = TINY.to_dict()
    assert TrainConfig.from_dict(d) == TINY
    with pytest.raises(ValueError, match="unknown"):
        TrainConfig.from_dict({**d, "bogus": 1})


def test_fine_tunes_from_a_pretrained_vgg_keeping_the_frozen_blocks(tmp_path):
    from minircnn.models import VGGClassifier, save_checkpoint

    source = VGGClassifier(6, (4, 8), num_pools=1, rng=np.random.default_rng(5))
    save_checkpoint(source, tmp_path / "vgg.npz")
    config = dataclasses.replace(TINY, pretrained=True, pretrained_path=str(tmp_path / "vgg.npz"),
                                 freeze_at=2, epochs=1, pictures=False)
    train_detector(config, tmp_path / "run", progress=False)
    trained = read_checkpoint(tmp_path / "run" / "model.npz").state
    start = source.state_dict()
    for name in ("w", "b"):                # block 1 (layers 0-2: conv, relu, pool) stays fixed
        np.testing.assert_array_equal(trained[f"backbone.layers.0.{name}"],
                                      start[f"backbone.layers.0.{name}"])
    assert not np.array_equal(trained["backbone.layers.3.w"],   # block 2 fine-tunes
                              start["backbone.layers.3.w"])

    with pytest.raises(ValueError, match=r"channels \(4, 8\).*--scratch"):
        train_detector(dataclasses.replace(config, channels=(4, 16)), tmp_path / "bad",
                       progress=False)


def test_find_misses_lists_objects_without_a_detection_of_their_class():
    from minircnn.paper.misses import find_misses

    data = [{"boxes": np.array([[0, 0, 10, 10], [20, 20, 40, 40]], np.float32),
             "labels": np.array([1, 2])}]
    dets = [{"boxes": np.array([[0, 0, 10, 10], [20, 20, 40, 40]], np.float32),
             "scores": np.array([0.9, 0.8]), "labels": np.array([1, 1])}]   # 2nd: wrong class
    misses = find_misses(dets, data)
    assert [(m["label"], m["side"], m["best_iou"]) for m in misses] == [(2, 20.0, 0.0)]


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
