# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: nbgrader,-all
#     notebook_metadata_filter: kernelspec,jupytext,-jupytext.text_representation.jupytext_version
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Lesson 06 — End-to-end training
#
# **Goal.** Train Fast R-CNN the way the paper does — one network, one multi-task loss,
# one stage — and see every step of an iteration: **sample → forward → loss → backward →
# SGD step**. We check one step by hand (the initial box loss, and the loss decrease that
# a gradient step predicts), train a small detector on four images for 60 iterations,
# then load the detector that ships with minircnn and measure its mAP on held-out images.
#
# | name | shape | meaning |
# |---|---|---|
# | `images` | (2, 3, 128, 128) | N = 2 images per minibatch |
# | `batch.rois` | (R, 5) | R ≤ 128 RoIs sampled from them (lesson 05) |
# | `cls_scores`, `bbox_deltas` | (R, K+1), (R, 4(K+1)) | forward pass, K = 3 classes |
# | `loss` | () | classification + box regression (lesson 04) |
# | `dcls`, `dbbox` | like the outputs | the loss's backward |
# | `p.grad` | like `p.data` | filled by `model.backward`, for every parameter |
#
# The paper's solver and ours (`minircnn.training.TrainConfig`, whose values the first
# code cell prints):
#
# | | Fast R-CNN (VGG16, VOC) | minircnn (`minircnn train`) |
# |---|---|---|
# | minibatch | 2 images, 128 RoIs, 25% foreground | the same |
# | optimizer | SGD, momentum 0.9, weight decay 5e-4 | the same |
# | learning rate | 0.001, ×0.1 after 30k of 40k iterations | `lr`, a linear warm-up, ×`gamma` at the `lr_steps` fraction |
# | biases | 2× the learning rate, no weight decay | the same (`lr_mult=2`, `decay_mult=0`) |
# | augmentation | horizontal flips | the same |
# | initialisation | ImageNet-pretrained VGG16, conv1-conv2 fixed | SmallVGG pretrained on shapes, blocks below `freeze_at` fixed |
#
# Code: `minircnn/training/step.py` (`train_step`), `minircnn/training/loop.py` (`train_detector`), `minircnn/training/optim.py` (`SGD`,
# `step_lr`), `minircnn/models/fast_rcnn.py` (`forward`, `backward`).

# %%
import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before NumPy loads (minircnn/utils/blas.py)

import matplotlib.pyplot as plt
import numpy as np

from minircnn import viz
from minircnn.data import CLASSES, ShapesDataset
from minircnn.detection import (
    compute_proposals,
    detect_images,
    evaluate,
    hierarchical_batch,
    selective_search,
)
from minircnn.layers import Parameter, fast_rcnn_loss_backward, fast_rcnn_loss_forward
from minircnn.models import FastRCNN, SmallVGG, pretrained_detector
from minircnn.training import TrainConfig, train_step
from minircnn.training.optim import SGD, step_lr

rng = np.random.default_rng(0)
recipe = TrainConfig()                                     # what `minircnn train` runs
iters_per_epoch = recipe.num_train // recipe.images_per_batch
print(f"minircnn train: lr {recipe.lr}, {recipe.warmup_iters} warm-up iterations, "
      f"x{recipe.gamma} at {recipe.lr_steps[0]:.0%} of the run; {recipe.epochs} epochs of "
      f"{iters_per_epoch} iterations = {recipe.epochs * iters_per_epoch:,} on "
      f"{recipe.num_train} images; pretrained backbone: {recipe.pretrained}, "
      f"blocks 1-{recipe.freeze_at - 1} fixed")


def small_detector():
    """A small Fast R-CNN, the same weights every call (dropout off: steps are comparable)."""
    backbone = SmallVGG((8, 16, 32, 32), num_pools=2, rng=np.random.default_rng(0))
    return FastRCNN(3, backbone, roi_op="pool", hidden=128, dropout=0.0,
                    rng=np.random.default_rng(1))


# %% [markdown]
# ## 1. The data: four training images and their proposals
#
# Proposals are computed once, before training, as in the paper (selective search,
# at most 300 per image).

# %%
train_items = [ShapesDataset(4, image_size=128, seed=0)[i] for i in range(4)]
train_images = np.stack([item["image"] for item in train_items])  # (4, 3, 128, 128)
train_proposals = [selective_search(item["image"], max_boxes=300) for item in train_items]
print("objects per image:", [len(item["boxes"]) for item in train_items],
      " proposals per image:", [len(p) for p in train_proposals])
assert train_images.shape == (4, 3, 128, 128)
assert all(len(p) > 50 for p in train_proposals)

# %% [markdown]
# ## 2. One iteration, line by line
#
# `model.backward` runs every layer's backward in reverse order and *adds* into each
# `p.grad`, so gradients must be zeroed before each step. At initialisation the box
# predictor's weights are ~N(0, 0.001²) (the paper's), so its deltas are ≈ 0 and the box
# loss is the smooth L1 of the targets themselves, by hand: Σ over foreground RoIs of
# smoothL1(t) / R. The class scores are small too, so the classification loss is near
# log(K+1) = log 4 = 1.386 (not exactly: the scores are small but not zero).

# %%
model = small_detector()
optimizer = SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)

batch = hierarchical_batch(train_items[:2], train_proposals[:2], rois_per_batch=128, rng=rng)
images = train_images[:2]                                          # (2, 3, 128, 128)

optimizer.zero_grad()                                              # 0. clear p.grad
cls_scores, bbox_deltas = model.forward(images, batch.rois)        # 1. forward
loss, cache = fast_rcnn_loss_forward(cls_scores, bbox_deltas,      # 2. loss
                                     batch.labels, batch.bbox_targets)
dcls, dbbox = fast_rcnn_loss_backward(1.0, cache)                  # 3. backward of the loss
model.backward(dcls, dbbox)                                        # 4. backward of the net
before = model.state_dict()
optimizer.step()                                                   # 5. SGD update

fg_targets = np.abs(batch.bbox_targets[batch.labels > 0])           # (F, 4)
box_loss_by_hand = np.where(fg_targets < 1, 0.5 * fg_targets**2, fg_targets - 0.5).sum() / len(
    batch.labels)
print(f"R = {len(batch.labels)} RoIs, {int((batch.labels > 0).sum())} foreground")
print(f"loss {float(loss):.4f} = cls {cache.loss_cls:.4f} (log 4 = {np.log(4):.4f}) "
      f"+ box {cache.loss_box:.4f} (by hand {box_loss_by_hand:.4f})")
assert abs(cache.loss_box - box_loss_by_hand) < 0.01
assert abs(cache.loss_cls - np.log(4)) < 0.2
changed = [k for k, v in model.state_dict().items() if not np.array_equal(v, before[k])]
assert len(changed) == len(before)                                 # every parameter moved

# %% [markdown]
# **Does the step go downhill by the right amount?** For plain SGD (no momentum, no weight
# decay) with a small learning rate, a first-order Taylor expansion predicts the loss on
# the same minibatch to fall by lr · Σ_p lr_mult_p · ‖∂L/∂p‖² (biases have lr_mult 2).
# This checks forward, backward and the update together: a wrong sign or a missing
# gradient anywhere would break it.

# %%
probe = small_detector()
probe.zero_grad()
loss0, cache0 = fast_rcnn_loss_forward(*probe.forward(images, batch.rois), batch.labels,
                                       batch.bbox_targets)
probe.backward(*fast_rcnn_loss_backward(1.0, cache0))
lr = 1e-5
predicted = lr * sum(p.lr_mult * float((p.grad.astype(np.float64) ** 2).sum())
                     for p in probe.parameters())
SGD(probe.parameters(), lr=lr, momentum=0.0, weight_decay=0.0).step()
loss1, _ = fast_rcnn_loss_forward(*probe.forward(images, batch.rois), batch.labels,
                                  batch.bbox_targets)
actual = float(loss0) - float(loss1)
print(f"loss decrease: actual {actual:.6f}, predicted {predicted:.6f}, "
      f"ratio {actual / predicted:.4f}")
assert actual > 0 and abs(actual / predicted - 1) < 0.02

# %% [markdown]
# The library's `minircnn.training.train_step` is exactly these five lines (plus a check
# that the loss is finite). Run it on a fresh copy of the model and the same minibatch:
# the weights must come out bit-identical.

# %%
twin = small_detector()
twin_optimizer = SGD(twin.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
stats = train_step(twin, twin_optimizer, images, batch.rois, batch.labels, batch.bbox_targets)
print({k: round(v, 4) for k, v in stats.items()})
assert stats["loss"] == float(loss)
assert all(np.array_equal(v, model.state_dict()[k]) for k, v in twin.state_dict().items())

# %% [markdown]
# ### Exercise 1 — the SGD update with momentum and weight decay
#
# Write the update `minircnn.training.optim.SGD.step` performs (Caffe's and PyTorch's), for every
# parameter `p` with `p.requires_grad`, using its velocity buffer `v` (updated in place):
#
# $$g = \nabla_p L + \text{wd}\cdot\text{decay\_mult}\cdot p,\qquad
#   v \leftarrow \mu v + g,\qquad p \leftarrow p - \text{lr}\cdot\text{lr\_mult}\cdot v$$

# %% nbgrader={"grade": false, "grade_id": "sgd_momentum_code", "locked": false, "schema_version": 3, "solution": true}
def sgd_momentum_step(params, velocities, *, lr, momentum=0.9, weight_decay=5e-4):
    """Update each Parameter's .data in place; velocities: one array per param (in place)."""
    ### BEGIN SOLUTION
    for p, v in zip(params, velocities, strict=True):
        if not p.requires_grad:
            continue
        g = p.grad + weight_decay * p.decay_mult * p.data
        v *= momentum
        v += g
        p.data -= lr * p.lr_mult * v
    ### END SOLUTION

# %% [markdown]
# The grader talks to your notebook in plain arrays, so it calls your `sgd_momentum_step`
# through this wrapper (given, not graded): Parameters built from `datas`, one step per
# entry of `grads`, the final values and velocities back.

# %%
def sgd_steps(datas, grads, velocities, *, lr_mults, decay_mults, trainable, **hyper):
    """datas: one array per parameter; grads: one such list per step -> (datas, velocities)."""
    params = [Parameter(d, lr_mult=m, decay_mult=dm, requires_grad=t)
              for d, m, dm, t in zip(datas, lr_mults, decay_mults, trainable, strict=True)]
    for step_grads in grads:
        for p, g in zip(params, step_grads, strict=True):
            p.grad = g
        sgd_momentum_step(params, velocities, **hyper)
    return [p.data for p in params], velocities

# %% nbgrader={"grade": true, "grade_id": "sgd_momentum", "locked": true, "points": 4, "schema_version": 3, "solution": false}
# forbid: minircnn.training.optim.SGD.step
def sgd_case(seed, steps, **hyper):
    """The exercise's parameters, their gradients, and where SGD (training/optim.py) takes them."""
    case_rng = np.random.default_rng(seed)
    shapes = [(3, 4), (4,), (2, 2)]
    params = [Parameter(case_rng.standard_normal(s)) for s in shapes]
    params[1].lr_mult, params[1].decay_mult = 2.0, 0.0            # a bias, as Fast R-CNN's
    params[2].requires_grad = False                               # frozen: never touched
    reference = [Parameter(p.data.copy(), lr_mult=p.lr_mult, decay_mult=p.decay_mult,
                           requires_grad=p.requires_grad) for p in params]
    grads = [[case_rng.standard_normal(s) for s in shapes] for _ in range(steps)]
    optimizer = SGD(reference, **hyper)
    for step_grads in grads:
        for q, g in zip(reference, step_grads, strict=True):
            q.grad = g.copy()
        optimizer.step()
    return params, grads, [q.data for q in reference]


def sgd_matches(case, **hyper):
    params, grads, expected = case
    buffers = [np.zeros_like(p.data) for p in params]
    for step_grads in grads:
        for p, g in zip(params, step_grads, strict=True):
            p.grad = g.copy()
        sgd_momentum_step(params, buffers, **hyper)
    return all(np.allclose(p.data, e, rtol=0, atol=1e-12)
               for p, e in zip(params, expected, strict=True))


# Your check: 3 steps match minircnn.training.optim.SGD (lr_mult, decay_mult, frozen).
assert sgd_matches(sgd_case(11, 3, lr=0.1, momentum=0.9, weight_decay=0.01),
                   lr=0.1, momentum=0.9, weight_decay=0.01)
### BEGIN HIDDEN TESTS
from minircnn.layers import Parameter
from minircnn.training.optim import SGD


def check(student, rng, steps, **hyper):
    """Random parameters (a bias, a frozen one) and gradients: SGD here vs sgd_steps there."""
    count = int(rng.integers(3, 6))
    shapes = [tuple(int(v) for v in rng.integers(1, 5, size=rng.integers(1, 3)))
              for _ in range(count)]
    datas = [rng.standard_normal(s) for s in shapes]
    grads = [[rng.standard_normal(s) for s in shapes] for _ in range(steps)]
    lr_mults = [float(v) for v in rng.choice([1.0, 2.0, 0.5], size=count)]
    decay_mults = [float(v) for v in rng.choice([1.0, 0.0], size=count)]
    trainable = [True] * count
    trainable[int(rng.integers(count))] = False                   # one frozen parameter
    reference = [Parameter(d.copy(), lr_mult=m, decay_mult=dm, requires_grad=t)
                 for d, m, dm, t in zip(datas, lr_mults, decay_mults, trainable, strict=True)]
    optimizer = SGD(reference, **hyper)
    for step_grads in grads:
        for p, g in zip(reference, step_grads, strict=True):
            p.grad = g.copy()
        optimizer.step()
    got, _ = student.sgd_steps(datas, grads, [np.zeros(s) for s in shapes],
                               lr_mults=lr_mults, decay_mults=decay_mults,
                               trainable=trainable, **hyper)
    assert len(got) == count, f"{len(got)} parameters back, expected {count}"
    for i, (a, p) in enumerate(zip(got, reference, strict=True)):
        assert np.shape(a) == p.data.shape, f"parameter {i}: shape {np.shape(a)}"
        assert np.allclose(a, p.data, rtol=0, atol=1e-12), f"parameter {i} " + (
            "(frozen)" if not p.requires_grad else f"(lr_mult {p.lr_mult}, "
            f"decay_mult {p.decay_mult})")


# TEST steps match minircnn.training.optim.SGD (lr_mult, decay_mult, frozen) (3 points)
def grade_steps(student, rng):
    check(student, rng, 3, lr=0.1, momentum=0.9, weight_decay=0.01)


# TEST more steps with other hyperparameters (1 point)
def grade_hyper(student, rng):
    check(student, rng, int(rng.integers(4, 8)), lr=float(rng.uniform(0.01, 0.2)),
          momentum=float(rng.uniform(0.1, 0.95)), weight_decay=float(rng.uniform(0.01, 0.2)))
### END HIDDEN TESTS

# %% [markdown]
# ## 3. A small training run: 60 iterations on four images
#
# Now the loop: every iteration takes two of the four images (alternating), samples
# 128 RoIs from them, and does the five steps above; the learning rate warms up linearly
# over 10 iterations (`step_lr`, detectron2's warm-up). With four images the detector
# mostly memorises them — enough to watch the loss fall, not to detect well.

# %%
model = small_detector()
optimizer = SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
history = {"loss": [], "loss_cls": [], "loss_box": [], "accuracy": []}
for it in range(60):
    optimizer.lr = step_lr(0.01, it, warmup_iters=10)
    pair = [2 * (it % 2), 2 * (it % 2) + 1]                        # images 0,1 then 2,3
    batch = hierarchical_batch([train_items[i] for i in pair],
                               [train_proposals[i] for i in pair], rng=rng)
    optimizer.zero_grad()
    cls_scores, bbox_deltas = model.forward(train_images[pair], batch.rois)
    loss, cache = fast_rcnn_loss_forward(cls_scores, bbox_deltas, batch.labels,
                                         batch.bbox_targets)
    model.backward(*fast_rcnn_loss_backward(1.0, cache))
    optimizer.step()
    for key, value in (("loss", float(loss)), ("loss_cls", cache.loss_cls),
                       ("loss_box", cache.loss_box), ("accuracy", cache.accuracy)):
        history[key].append(value)

first, last = np.mean(history["loss"][:10]), np.mean(history["loss"][-10:])
print(f"mean loss, first 10 iterations {first:.3f}, last 10 {last:.3f}; RoI accuracy "
      f"{np.mean(history['accuracy'][:10]):.2f} -> {np.mean(history['accuracy'][-10:]):.2f}")
assert last < 0.5 * first
assert np.mean(history["accuracy"][-10:]) > np.mean(history["accuracy"][:10])

fig = viz.plot_curves(history, xlabel="iteration")
assert len(fig.axes) == 4
fig  # noqa: B018 - the last expression of a cell is displayed

# %% [markdown]
# ## 4. The shipped detector
#
# A real run is `minircnn train` (= `train_detector(TrainConfig(), "runs/shapes")`, the
# recipe printed at the top: a few minutes on 2 CPU cores). Its result ships with the
# package (`minircnn/weights/fast_rcnn_shapes.npz`; the command, its time and its
# numbers on 300 held-out images with a two-scale pyramid are in
# `minircnn/weights/README.md`), so we load it instead of training.
#
# We evaluate it on 20 **held-out** images (the validation split, seed 1, never seen in
# training) with selective-search proposals, here at one scale, and compare with our
# 60-iteration model.

# %%
detector = pretrained_detector()
print(type(detector).__name__, "with", sum(p.data.size for p in detector.parameters()),
      "parameters")
val = ShapesDataset(20, image_size=128, seed=1)
val_images = [val[i]["image"] for i in range(len(val))]
val_proposals = compute_proposals(val, method="selective_search", max_boxes=300)

detections = detect_images(detector, val_images, val_proposals)
voc = evaluate(detections, val, iou_threshold=0.5, metric="voc07")
coco = evaluate(detections, val, metric="coco")
ours = evaluate(detect_images(model, val_images, val_proposals), val, metric="voc07")
print(f"shipped detector: VOC07 mAP@0.5 {voc['mAP']:.3f} "
      f"({', '.join(f'{k} {v:.3f}' for k, v in voc['ap'].items())}); "
      f"COCO AP@[.5:.95] {coco['mAP']:.3f}")
print(f"our 60-iteration model: VOC07 mAP@0.5 {ours['mAP']:.3f}")
assert voc["mAP"] > 0.85 and coco["mAP"] > 0.55                   # the values: printed above
assert ours["mAP"] < voc["mAP"] - 0.3

# %% [markdown]
# Detections scoring at least 0.5 on the first four held-out images, and the
# precision/recall curve of each class:

# %%
fig, axes = plt.subplots(2, 3, figsize=(9, 6.2))   # 4 images, the PR curves, one blank
axes = axes.ravel()
axes[5].set_axis_off()
for i, ax in enumerate(axes[:4]):
    keep = detections[i]["scores"] >= 0.5
    viz.draw_boxes(val_images[i], detections[i]["boxes"][keep], detections[i]["labels"][keep],
                   detections[i]["scores"][keep], class_names=CLASSES, ax=ax)
    ax.set_title(f"{keep.sum()} detections, {len(val[i]['boxes'])} objects", fontsize=9)
viz.plot_pr_curves(voc, ax=axes[4])
fig.tight_layout()
assert sum(len(ax.patches) for ax in axes[:4]) >= sum(len(val[i]["boxes"]) for i in range(4)) - 1

# %% [markdown]
# ## 5. Two cores: the minibatch's images side by side
#
# Each RoI belongs to one image, so the minibatch's loss is a sum over its images,
# L = Σᵢ (Rᵢ / R) Lᵢ with Lᵢ image i's loss averaged over its own Rᵢ RoIs, and so is its
# gradient: ∂L/∂θ = Σᵢ (Rᵢ / R) ∂Lᵢ/∂θ. Each image's gradient can then be computed on its
# own core and the gradients added, which is what multi-GPU training does with its GPUs.
# `minircnn train` does it on the CPU's two cores (`TrainConfig.train_workers`,
# `minircnn/training/data_parallel.py`): image 0 in the training process, image 1 in a
# forked worker process that reads the same weights from shared memory; the training
# process adds the worker's gradient to its own and takes the SGD step. Where no worker
# can be forked (in a notebook's kernel, which runs threads of its own; on macOS or
# Windows), the two images run one after the other, with the same result.
#
# We check the identity on the small detector in float64: one pass over the minibatch,
# against the two images' slots (`train_slot`, dloss = Rᵢ / R) added up.

# %%
from minircnn.training.data_parallel import ImageWorkers
from minircnn.training.step import image_jobs, train_slot

backbone64 = SmallVGG((8, 16, 32, 32), num_pools=2, rng=np.random.default_rng(0),
                      dtype=np.float64)
model64 = FastRCNN(3, backbone64, roi_op="pool", hidden=128, dropout=0.0,
                   rng=np.random.default_rng(1), dtype=np.float64)
images64 = train_images[:2].astype(np.float64)                    # (2, 3, 128, 128)
batch = hierarchical_batch(train_items[:2], train_proposals[:2], rng=np.random.default_rng(2))

model64.zero_grad()                                                # one pass, both images
cls_scores, bbox_deltas = model64.forward(images64, batch.rois)
_, cache = fast_rcnn_loss_forward(cls_scores, bbox_deltas, batch.labels, batch.bbox_targets)
model64.backward(*fast_rcnn_loss_backward(1.0, cache))
one_pass = [p.grad.copy() for p in model64.parameters()]

model64.zero_grad()                                                # one slot per image
jobs = image_jobs(images64, batch, None, seeds=[0, 1])             # image i: RoIs, Rᵢ / R
with ImageWorkers(model64, train_slot, processes=2) as workers:
    workers.run(jobs)                                              # adds the two gradients
worst = max(np.abs(p.grad - g).max() / np.abs(g).max()
            for p, g in zip(model64.parameters(), one_pass, strict=True) if np.abs(g).any())
print(f"weights Rᵢ / R: {[round(job.weight, 3) for job in jobs]}; image 1 in a worker "
      f"process: {workers.forked}; largest difference: {worst:.1e} of a gradient's "
      "largest entry (the same sums in another order)")
assert abs(sum(job.weight for job in jobs) - 1) < 1e-12
assert worst < 1e-12

# %% [markdown]
# ## Summary
#
# - One iteration = sample RoIs from 2 images → `forward` → `fast_rcnn_loss_forward` →
#   `fast_rcnn_loss_backward` → `model.backward` (fills every `p.grad`, conv layers
#   included) → `SGD.step`; `minircnn.training.train_step` is exactly that.
# - At initialisation the box loss is the smooth L1 of the targets (checked by hand), and
#   a small gradient step lowers the loss by lr·Σ lr_mult‖g‖² (checked to 2%).
# - 60 iterations on four images more than halve the loss but do not make a detector;
#   the shipped one (the `TrainConfig()` recipe printed at the top) reaches a VOC07 mAP
#   above 0.85 on held-out images.
# - A minibatch's gradient is the sum of its images' gradients (each weighted by its
#   share of the RoIs), so `minircnn train` computes them on two cores and adds them.
#
# ## Exercises
#
# 1. Set `momentum=0.0` in the 60-iteration run. How much higher is the final loss?
#    Then try lr 0.05 and 0.1: at what rate does training diverge (the loss becomes
#    nan; `train_step` raises `FloatingPointError`)?
# 2. Turn dropout back on (`dropout=0.5` in `small_detector`). Why does the first-order
#    check of section 2 above then fail, and how would you fix it?
# 3. Train a real detector with fewer images: `train_detector(TrainConfig(num_train=100,
#    num_val=50, epochs=4), "runs/small")` (a minute or two). Plot its `metrics.json`
#    history and compare its mAP with the shipped detector's.
# 4. Freeze the backbone (`model.backbone.freeze()`) and train only the fc layers, as
#    SPP-net did (lesson 01). How does the 60-iteration loss curve change?

# %% [markdown] nbgrader={"grade": true, "grade_id": "open_answers", "locked": false, "points": 0, "schema_version": 3, "solution": true}
# ### Your answers to the exercises
#
# ### BEGIN SOLUTION
# **Teacher's edition: model answers and rubrics** (points are a suggestion for a manually graded answer; `minircnn assign` replaces this block by YOUR ANSWER HERE).
#
# **1. `momentum=0.0`; larger learning rates.** Without momentum the effective step is
# about 1/(1 − μ) = 10× smaller, so after 60 iterations the loss is clearly higher. Raising
# lr, training eventually diverges: the loss explodes to inf/nan and `train_step` raises
# `FloatingPointError`; report the first rate that does.
# *Rubric (3):* 1 the two curves; 1 the effective step size explanation; 1 the diverging
# rate found.
#
# **2. Dropout on.** The first-order check compares the loss after the step with the
# prediction from the gradient at the *same* network; with dropout each forward draws a
# new mask, so the two losses come from different random networks and the difference is
# dominated by the mask, not by the step. Fix: use the same dropout mask (same rng state)
# for both forwards, or evaluate in eval mode for the check.
# *Rubric (2):* 1 the failure explained by random masks; 1 a valid fix.
#
# **3. A smaller real detector.** Its history shows the loss falling and the mAP rising
# over the epochs; with fewer images and epochs it ends below the shipped detector,
# which trained on more data for longer.
# *Rubric (3):* 1 the run; 1 the plot from `metrics.json`; 1 a comparison with the
# shipped detector's mAP measured the same way.
#
# **4. Frozen backbone.** Only the fc layers learn: the loss falls more slowly and
# plateaus higher, since the features cannot adapt to detection (SPP-net's limitation,
# lesson 01).
# *Rubric (2):* 1 the curve; 1 the explanation.
# ### END SOLUTION
