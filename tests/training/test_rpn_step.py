"""Faster R-CNN training (minircnn/training/rpn_step.py, rpn_eval.py, the loop with
proposal_method="rpn"): joint and 4-step alternating, determinism, resume, the report."""

import dataclasses

import numpy as np
import pytest

import minircnn.training.loop as loop_mod
from minircnn.models import FasterRCNN, load_checkpoint, read_checkpoint
from minircnn.training import TrainConfig, make_datasets, make_detector, train_detector
from minircnn.training.optim import SGD
from minircnn.training.rpn_step import STAGES, rpn_minibatch, rpn_train_step, stage_of
from minircnn.utils.errors import RunInterrupted, UsageError
from minircnn.utils.settings import check_train_config
from tests.training.test_loop import train_with_and_without_frozen_store

TINY_RPN = TrainConfig(num_train=4, num_val=2, image_size=64, max_objects=2, epochs=2,
                       pretrained=False, proposal_method="rpn", max_proposals=40,
                       cache_dir="", channels=(4, 8), num_pools=1, output_size=4, hidden=16,
                       warmup_iters=1, rois_per_batch=32, rpn_batch_size=64, pictures=False)


def _weights(path):
    return read_checkpoint(path).state


def test_joint_run_is_deterministic_resumes_identically_and_reports(tmp_path, monkeypatch):
    full = train_detector(TINY_RPN, tmp_path / "a", progress=False)
    report = full["proposals"]
    for name in ("rpn", "selective_search"):
        assert set(report[name]["recall"]) == {"0.5", "0.7"}
        assert 0 <= report[name]["recall"]["0.5"]["300"] <= 1
        assert report[name]["ms_per_image"] > 0
    assert report["rpn"]["mean_count"] <= TINY_RPN.max_proposals
    real_save = loop_mod.save_run_checkpoint

    def crash_after_first_epoch(path, model, optimizer, rng, config, state):
        real_save(path, model, optimizer, rng, config, state)
        raise KeyboardInterrupt("simulated crash")

    monkeypatch.setattr(loop_mod, "save_run_checkpoint", crash_after_first_epoch)
    with pytest.raises(RunInterrupted):
        train_detector(TINY_RPN, tmp_path / "c", progress=False)
    monkeypatch.setattr(loop_mod, "save_run_checkpoint", real_save)
    resumed = train_detector(TINY_RPN, tmp_path / "c", resume=True, progress=False)
    wa = _weights(tmp_path / "a" / "checkpoint.npz")
    wc = _weights(tmp_path / "c" / "checkpoint.npz")
    assert any(k.startswith("rpn.") for k in wa)
    assert all(np.array_equal(wa[k], wc[k]) for k in wa)                # bit for bit
    assert resumed["history"] == full["history"]
    model = load_checkpoint(tmp_path / "a" / "model.npz")
    assert isinstance(model, FasterRCNN) and model.rpn_backbone is None


def _changed(before, model):
    after = model.state_dict()
    return {k.split(".")[0] + ("." + k.split(".")[1] if k.startswith("detector.") else "")
            for k in before if not np.array_equal(before[k], after[k])}


def test_each_alternating_step_trains_what_the_paper_says():
    config = dataclasses.replace(TINY_RPN, rpn_training="alternating", epochs=4, dropout=0.0,
                                 weight_decay=0.0)
    model = make_detector(config)
    assert model.rpn_backbone is not None                     # step 1's own backbone
    optimizer = SGD(model.parameters(), 0.01)
    train, _ = make_datasets(config)
    items = [train[i] for i in range(len(train))]
    rng = np.random.default_rng(0)
    expected = {"rpn": {"rpn", "rpn_backbone"},
                "detector": {"detector.backbone", "detector.fc6", "detector.fc7",
                             "detector.cls_score", "detector.bbox_pred"},
                "rpn_head": {"rpn", "rpn_backbone"},        # the copy of the shared backbone
                "detector_head": {"detector.fc6", "detector.fc7", "detector.cls_score",
                                  "detector.bbox_pred"}}
    for epoch, stage in enumerate(STAGES):
        assert stage_of(config, epoch) == stage
        before = model.state_dict()
        images, targets, _ = rpn_minibatch(config, items, [0, 1], rng)
        stats = rpn_train_step(model, optimizer, images, targets, config, rng, epoch)
        assert np.isfinite(stats["loss"])
        assert _changed(before, model) == expected[stage], stage
    shared = model.backbone.state_dict()                      # steps 3-4: one backbone
    assert all(np.array_equal(v, model.rpn_backbone.state_dict()[k]) for k, v in shared.items())


def _grads_after_one_step(config, part) -> dict:
    """{name: gradient} of ``part(model)``'s parameters after one step of a fresh model on
    the first two training images (the same draw for every config; lr 0: grads only)."""
    train, _ = make_datasets(config)
    items = [train[i] for i in range(len(train))]
    model = make_detector(config)
    optimizer = SGD(model.parameters(), 0.0)             # grads kept, weights unchanged
    rng = np.random.default_rng(0)
    images, targets, _ = rpn_minibatch(config, items, [0, 1], rng)
    rpn_train_step(model, optimizer, images, targets, config, rng, 0)
    return {name: p.grad.copy() for name, p in part(model).named_parameters()}


def test_rpn_box_weight_scales_the_box_gradient_alone():
    """lambda multiplies the gradient of the RPN's box layer and nothing of its objectness
    layer: one step from the same weights, on the same draw, with lambda 1 and 3."""
    config = dataclasses.replace(TINY_RPN, rpn_training="alternating", epochs=4, dropout=0.0,
                                 weight_decay=0.0)
    grads = {weight: _grads_after_one_step(dataclasses.replace(config, rpn_box_weight=weight),
                                           lambda model: model.rpn)
             for weight in (1.0, 3.0)}
    for name, g in grads[1.0].items():
        scale = 3.0 if name.startswith("head.bbox_pred") else 1.0
        if name.startswith(("head.bbox_pred", "head.cls_logits")):
            np.testing.assert_allclose(grads[3.0][name], scale * g, rtol=1e-5, atol=1e-12)
    assert np.abs(grads[1.0]["head.bbox_pred.w"]).max() > 0


def test_box_loss_weight_scales_the_detectors_box_gradient_in_joint_training():
    """Fast R-CNN's lambda in the joint step: 0 leaves the detector's box layer without a
    gradient and its classifier's as it was; 1 is no scaling at all (no copy either)."""
    from minircnn.training.step import weighted

    g = np.arange(6.0).reshape(2, 3)
    assert weighted(g, 1.0) is g
    np.testing.assert_array_equal(weighted(g, 0.5), g * 0.5)
    config = dataclasses.replace(TINY_RPN, dropout=0.0, weight_decay=0.0)
    grads = {weight: _grads_after_one_step(dataclasses.replace(config, box_loss_weight=weight),
                                           lambda model: model.detector)
             for weight in (1.0, 0.0)}
    assert np.abs(grads[1.0]["bbox_pred.w"]).max() > 0
    assert not grads[0.0]["bbox_pred.w"].any() and not grads[0.0]["bbox_pred.b"].any()
    np.testing.assert_array_equal(grads[0.0]["cls_score.w"], grads[1.0]["cls_score.w"])


def test_rpn_fg_iou_sets_which_anchors_the_loss_takes_as_positive():
    """One step from the same weights on the same draw: the anchors the RPN loss takes as
    positive are those label_anchors gives at the config's thresholds (and the model's
    label cache follows a change of them)."""
    from minircnn.detection.anchors import POSITIVE, label_anchors
    from minircnn.training import rpn_step

    train, _ = make_datasets(TINY_RPN)
    items = [train[i] for i in range(len(train))]
    model = make_detector(TINY_RPN)
    positives = {}
    for fg in (0.7, 0.4):
        config = dataclasses.replace(TINY_RPN, rpn_fg_iou=fg, rpn_bg_iou=0.3,
                                     rpn_batch_size=10_000)      # every labelled anchor
        rng = np.random.default_rng(0)
        images, targets, _ = rpn_minibatch(config, items, [0, 1], rng)
        features = model.backbone.forward(images)
        cache, _, _ = rpn_step.rpn_head_loss(model, features, targets, config, rng)
        anchors = model.rpn.anchors(features)
        expected = np.concatenate([label_anchors(anchors, t["boxes"], fg_iou=fg,
                                                 bg_iou=0.3)[0] for t in targets])
        np.testing.assert_array_equal(cache.positive, np.flatnonzero(expected == POSITIVE))
        positives[fg] = len(cache.positive)
    assert positives[0.4] > positives[0.7]


def test_rpn_nms_thresh_is_the_proposals_nms_in_training_and_at_test(tmp_path):
    """The config's NMS IoU is the RPN's (saved with it): no two proposals of an image
    overlap above it, and a lower threshold keeps fewer of the same candidates."""
    from minircnn.detection.boxes import box_iou
    from minircnn.models import save_checkpoint

    train, _ = make_datasets(TINY_RPN)
    images = np.stack([train[0]["image"], train[1]["image"]])
    counts = {}
    for thresh in (0.3, 0.9):
        config = dataclasses.replace(TINY_RPN, rpn_nms_thresh=thresh, max_proposals=1000)
        model = make_detector(config)
        save_checkpoint(model, tmp_path / f"m{thresh}.npz", config.to_dict())
        loaded = load_checkpoint(tmp_path / f"m{thresh}.npz")
        assert loaded.rpn.settings["nms_thresh"] == thresh
        proposals = loaded.propose(images)
        for boxes in proposals:
            iou = box_iou(boxes, boxes) - np.eye(len(boxes))      # each box with the others
            assert iou.max() <= thresh
        counts[thresh] = sum(len(p) for p in proposals)
    assert counts[0.3] < counts[0.9]


def test_alternating_run_ends_with_one_shared_backbone(tmp_path):
    config = dataclasses.replace(TINY_RPN, rpn_training="alternating", epochs=4)
    metrics = train_detector(config, tmp_path / "alt", progress=False)
    assert np.isfinite(metrics["eval"]["coco_AP"])
    model = load_checkpoint(tmp_path / "alt" / "model.npz")
    assert model.rpn_backbone is None


@pytest.mark.parametrize("change,message", [
    ({"sampling": "region", "num_train": 16}, "hierarchical sampling"),
    ({"train_scales": (1.0, 2.0)}, "at one scale"),
    ({"rpn_training": "alternating", "epochs": 3}, "4 steps"),
    ({"rpn_training": "both"}, "rpn_training must be"),
    ({"rpn_fg_iou": 0.4, "rpn_bg_iou": 0.5}, "must not exceed rpn_fg_iou"),
    ({"rpn_fg_iou": 1.5}, "rpn_fg_iou must be"),
])
def test_rpn_settings_are_checked(change, message):
    with pytest.raises(UsageError, match=message):
        check_train_config(dataclasses.replace(TINY_RPN, **change))


def test_joint_training_keeps_the_frozen_blocks_output_and_trains_the_same_bits(
        tmp_path, monkeypatch):
    """Joint training reads the detector's backbone, blocks 1-2 fixed: their output is
    kept per (image, flip) as in the selective-search recipe (training/frozen_cache.py),
    and the weights are those of computing it every time, bit for bit. The alternating
    recipe (an RPN backbone of its own) keeps none."""
    from minircnn.training import frozen_cache

    config = dataclasses.replace(TINY_RPN, pretrained=True, channels=(16, 32, 64, 64),
                                 num_pools=2, epochs=3)
    assert frozen_cache.FrozenFeatures.usable(make_detector(config))
    alternating = dataclasses.replace(config, rpn_training="alternating")
    assert not frozen_cache.FrozenFeatures.usable(make_detector(alternating))
    wa, wb = train_with_and_without_frozen_store(config, tmp_path, monkeypatch,
                                                 evaluate=False)
    assert any(k.startswith("rpn.") for k in wa)
    assert all(np.array_equal(wa[k], wb[k]) for k in wa)
