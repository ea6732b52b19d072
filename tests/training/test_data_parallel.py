"""minircnn/training/data_parallel.py: one image per slot, in forked workers or here."""

import dataclasses
import os
import sys

import numpy as np
import pytest

import minircnn.training.data_parallel as dp
from minircnn.data.shapes import ShapesDataset
from minircnn.detection.proposals import dense_boxes
from minircnn.detection.sampling import hierarchical_batch
from minircnn.layers.activations import Dropout
from minircnn.layers.losses import fast_rcnn_loss_backward, fast_rcnn_loss_forward
from minircnn.models import FastRCNN, SmallVGG, read_checkpoint
from minircnn.training import TrainConfig, train_detector
from minircnn.training.data_parallel import ImageWorkers, seed_slot
from minircnn.training.step import image_jobs, train_slot
from minircnn.utils.errors import WorkerDied

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="workers are forked on Linux only")

TINY = TrainConfig(num_train=4, num_val=2, image_size=64, max_objects=2, epochs=2,
                   pretrained=False, proposal_method="dense", max_proposals=80, cache_dir="",
                   channels=(4, 8), num_pools=1, output_size=4, hidden=16, warmup_iters=1,
                   rois_per_batch=32, pictures=False)
TINY_RPN = dataclasses.replace(TINY, proposal_method="rpn", max_proposals=50)
TINY_REGION = dataclasses.replace(TINY, sampling="region", region_images=4)  # 2 per process


@linux_only
@pytest.mark.parametrize("config", [TINY, TINY_RPN, TINY_REGION],
                         ids=["fast_rcnn", "faster_rcnn_joint", "four_images_two_each"])
def test_a_forked_worker_gives_the_bits_of_one_process(config, tmp_path, monkeypatch):
    forked = train_detector(config, tmp_path / "forked", progress=False)
    monkeypatch.setattr(dp, "can_fork", lambda model: False)     # every slot runs here
    here = train_detector(config, tmp_path / "here", progress=False)
    assert (forked["train_processes"], here["train_processes"]) == (2, 1)
    assert (forked["held_out_proposals"], here["held_out_proposals"]) == \
        ("after training", "during training")
    a = read_checkpoint(tmp_path / "forked" / "model.npz").state
    b = read_checkpoint(tmp_path / "here" / "model.npz").state
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert forked["history"] == here["history"]


@pytest.mark.parametrize("change", [dict(train_workers=1), dict(batch_norm=True),
                                    dict(proposal_method="rpn", max_proposals=50,
                                         rpn_training="alternating", epochs=4)],
                         ids=["one_worker", "batch_norm", "alternating_rpn"])
def test_these_train_the_whole_minibatch_in_one_pass(change, tmp_path, monkeypatch):
    called = []
    monkeypatch.setattr(dp.ImageWorkers, "run", lambda self, jobs: called.append(jobs))
    metrics = train_detector(dataclasses.replace(TINY, **change), tmp_path, progress=False)
    assert metrics["train_processes"] == 1 and called == []     # no slot ever ran


def _float64_detector_and_minibatch():
    """A dropout-free float64 FastRCNN, two images, 2 x 16 RoIs sampled from dense boxes."""
    rng = np.random.default_rng(0)
    ds = ShapesDataset(2, image_size=64, max_objects=2, seed=3)
    model = FastRCNN(3, SmallVGG((4, 8), num_pools=1, dtype=np.float64), hidden=16,
                     output_size=(4, 4), dropout=0.0, dtype=np.float64)
    targets = [{"boxes": ds[i]["boxes"], "labels": ds[i]["labels"]} for i in range(2)]
    props = dense_boxes(64)                                    # (P, 4) boxes over the image
    batch = hierarchical_batch(targets, [props, props], rois_per_batch=32, rng=rng)
    images = np.stack([ds[i]["image"] for i in range(2)]).astype(np.float64)
    return model, images, batch


@pytest.mark.parametrize("processes", [1, 2])
def test_the_slots_gradients_add_up_to_the_minibatch_gradient(processes):
    model, images, batch = _float64_detector_and_minibatch()
    model.zero_grad()
    cls, bbox = model.forward(images, batch.rois)
    _, cache = fast_rcnn_loss_forward(cls, bbox, batch.labels, batch.bbox_targets)
    model.backward(*fast_rcnn_loss_backward(1.0, cache))
    whole = [p.grad.copy() for p in model.parameters()]
    model.zero_grad()
    jobs = image_jobs(images, batch, None, seeds=[5, 6])
    assert [job.weight for job in jobs] == [16 / 32, 16 / 32]    # R_i / R
    with ImageWorkers(model, train_slot, processes) as workers:
        assert workers.forked == (processes == 2 and sys.platform.startswith("linux"))
        workers.run(jobs)
    for p, g in zip(model.parameters(), whole, strict=True):
        # the same sums in another order: float64 round-off, a few ulps of the largest term
        np.testing.assert_allclose(p.grad, g, rtol=1e-12, atol=1e-12 * np.abs(g).max())


def test_a_slot_seed_fixes_the_dropout_masks_and_the_sampling():
    model = FastRCNN(3, SmallVGG((4, 8), num_pools=1), hidden=16, output_size=(4, 4))
    first = seed_slot(model, 7).random(3)
    masks = [d.rng.random(4) for d in model.modules() if isinstance(d, Dropout)]
    assert len(masks) == 2 and not np.array_equal(masks[0], masks[1])   # one stream each
    np.testing.assert_array_equal(seed_slot(model, 7).random(3), first)
    again = [d.rng.random(4) for d in model.modules() if isinstance(d, Dropout)]
    np.testing.assert_array_equal(np.stack(again), np.stack(masks))


def _raising_slot(model, job):
    if job == "bad":
        raise FloatingPointError("the loss is nan")
    return {"loss": 0.0}


def _dying_slot(model, job):
    if job == "die":
        os._exit(3)
    return {"loss": 0.0}


@linux_only
def test_a_worker_error_is_raised_in_the_parent_and_the_workers_go_on():
    model = FastRCNN(3, SmallVGG((4, 8), num_pools=1), hidden=16, output_size=(4, 4))
    with ImageWorkers(model, _raising_slot, 2) as workers:
        assert workers.forked
        with pytest.raises(FloatingPointError, match="the loss is nan"):
            workers.run(["good", "bad"])                 # job 1 runs in the worker
        assert workers.run(["good", "good"]) == [{"loss": 0.0}] * 2   # no reply left over


@linux_only
def test_an_error_in_the_parents_own_slot_leaves_no_reply_behind():
    model = FastRCNN(3, SmallVGG((4, 8), num_pools=1), hidden=16, output_size=(4, 4))
    with ImageWorkers(model, _raising_slot, 2) as workers:
        with pytest.raises(FloatingPointError, match="the loss is nan"):
            workers.run(["bad", "good"])                 # job 0 runs in this process
        assert workers.run(["good", "good"]) == [{"loss": 0.0}] * 2


@linux_only
def test_a_worker_that_dies_is_reported_not_waited_for():
    model = FastRCNN(3, SmallVGG((4, 8), num_pools=1), hidden=16, output_size=(4, 4))
    with ImageWorkers(model, _dying_slot, 2) as workers:
        with pytest.raises(WorkerDied, match=r"exit code 3.*--train-workers 1"):
            workers.run(["good", "die"])


@linux_only
def test_a_worker_killed_between_minibatches_is_reported():
    model = FastRCNN(3, SmallVGG((4, 8), num_pools=1), hidden=16, output_size=(4, 4))
    with ImageWorkers(model, _raising_slot, 2) as workers:
        process = workers._workers[0][0]
        process.kill()
        process.join()
        with pytest.raises(WorkerDied, match="killed by SIGKILL"):
            workers.run(["good", "good"])


def test_no_worker_is_forked_beside_other_threads(monkeypatch):
    model = FastRCNN(3, SmallVGG((4, 8), num_pools=1), hidden=16, output_size=(4, 4))
    monkeypatch.setattr(dp.threading, "active_count", lambda: 2)
    assert not ImageWorkers(model, _raising_slot, 2).forked
    with ImageWorkers(model, _raising_slot, 2) as workers:   # the slots run here instead
        assert workers.run(["good", "good"]) == [{"loss": 0.0}] * 2
