"""minircnn/training/loop.py: determinism, resume, the NaN and divergence guards, fine-tuning."""

import dataclasses

import numpy as np
import pytest

import minircnn.training.loop as train_mod
import minircnn.training.runs as runs_mod
from minircnn.models import read_checkpoint
from minircnn.training import TrainConfig, train_detector
from minircnn.utils.errors import RunInterrupted, UserError

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

    def by_an_older_version(path):          # its settings lacked one this version has
        ckpt = read_checkpoint(path)
        del ckpt.config["rpn_fg_iou"]
        return ckpt
    monkeypatch.setattr(runs_mod, "read_checkpoint", by_an_older_version)
    with pytest.raises(UserError, match=r"older minircnn, which had no setting "
                                        r"rpn_fg_iou \(now 0.6\)"):
        train_detector(quiet, tmp_path / "c", resume=True)
    monkeypatch.setattr(runs_mod, "read_checkpoint", read_checkpoint)
    resumed = train_detector(quiet, tmp_path / "c", resume=True, progress=False)
    wc = _weights(tmp_path / "c" / "checkpoint.npz")
    assert all(np.array_equal(wa[k], wc[k]) for k in wa)                 # bitwise identical
    assert resumed["history"] == full["history"]
    assert read_checkpoint(tmp_path / "c" / "checkpoint.npz").extra["run_state"]["epoch"] == 2


@pytest.mark.parametrize("workers", [1, 2])       # one pass per minibatch, one per image
def test_nan_loss_stops_with_clear_error_and_keeps_checkpoint(tmp_path, monkeypatch, workers):
    calls = {"n": 0}
    real_iteration = train_mod._iteration

    def poisoned_iteration(run, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:                       # first iteration of epoch 2
            run.model.fc7.w.data[0, 0] = np.nan   # shared with a worker process, if any
        return real_iteration(run, *args, **kwargs)

    monkeypatch.setattr(train_mod, "_iteration", poisoned_iteration)
    config = dataclasses.replace(TINY, pictures=False, train_workers=workers)
    with pytest.raises(FloatingPointError, match=r"iteration 2 \(epoch 2\).*checkpoint"):
        train_detector(config, tmp_path, progress=False)
    ckpt = read_checkpoint(tmp_path / "checkpoint.npz")
    assert ckpt.extra["run_state"]["epoch"] == 1
    assert all(np.isfinite(v).all() for v in ckpt.state.values())


def test_nan_weight_after_the_last_step_is_caught_before_the_checkpoint(tmp_path, monkeypatch):
    """Weights are scanned once per checkpoint, not every iteration: an update that makes
    a weight NaN in an epoch's last step (no loss sees it) still never reaches a file."""
    calls = {"n": 0}
    real_iteration = train_mod._iteration

    def poisoning_iteration(run, *args, **kwargs):
        stats = real_iteration(run, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 4:                       # the last iteration of epoch 2
            run.model.fc7.w.data[0, 0] = np.nan
        return stats

    monkeypatch.setattr(train_mod, "_iteration", poisoning_iteration)
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



def test_the_frozen_blocks_output_kept_per_image_trains_the_same_bits(tmp_path, monkeypatch):
    """Blocks 1-2 fixed (the pretrained recipe): their output is computed once per
    (image, flip, scale) and read after (training/frozen_cache.py); the weights are those
    of computing it every time, bit for bit."""
    config = dataclasses.replace(TINY, pretrained=True, channels=(16, 32, 64, 64),
                                 num_pools=2, epochs=3)
    wa, wb = train_with_and_without_frozen_store(config, tmp_path, monkeypatch)
    assert all(np.array_equal(wa[k], wb[k]) for k in wa)


def train_with_and_without_frozen_store(config, tmp_path, monkeypatch, **train_kwargs):
    """Train ``config`` (2 iterations x 3 epochs, 4 images) twice: with the frozen-output
    store, checking it is read every iteration and holds at most 4 x 2 keys, then with
    none. Returns the two runs' weights (name -> array)."""
    from minircnn.training import frozen_cache

    kept = []
    real_lookup = frozen_cache.FrozenFeatures.lookup

    def counting_lookup(self, keys, images):
        kept.append(len(self.store))
        return real_lookup(self, keys, images)

    monkeypatch.setattr(frozen_cache.FrozenFeatures, "lookup", counting_lookup)
    train_detector(config, tmp_path / "kept", progress=False, **train_kwargs)
    assert len(kept) == 6 and 0 < kept[-1] <= 8        # 2 iterations x 3 epochs, 4 x 2 keys
    monkeypatch.setattr(frozen_cache.FrozenFeatures, "usable", staticmethod(lambda m: False))
    train_detector(config, tmp_path / "computed", progress=False, **train_kwargs)
    assert len(kept) == 6                                # no store this time
    return _weights(tmp_path / "kept" / "model.npz"), _weights(tmp_path / "computed" / "model.npz")


def test_the_frozen_store_stops_at_its_budget():
    from minircnn.training.config import make_detector
    from minircnn.training.frozen_cache import FrozenFeatures

    assert FrozenFeatures.usable(make_detector(TrainConfig(image_size=64)))
    for baseline in ("rcnn", "sppnet"):        # these run their backbone their own way
        assert not FrozenFeatures.usable(make_detector(TrainConfig(model=baseline)))
    backbone = make_detector(TrainConfig(image_size=64)).backbone
    images = np.random.default_rng(0).random((3, 3, 64, 64)).astype(np.float32)
    one = backbone.forward_frozen(images[:1]).nbytes
    store = FrozenFeatures(backbone, max_bytes=2 * one)
    first = store.lookup([(0, False, 1.0), (1, False, 1.0), (2, False, 1.0)], images)
    assert len(store.store) == 2 and store.bytes == 2 * one
    again = store.lookup([(2, False, 1.0), (0, False, 1.0)], images[[2, 0]])   # 2: computed
    np.testing.assert_array_equal(again, first[[2, 0]])
    np.testing.assert_array_equal(first, backbone.forward_frozen(images))
