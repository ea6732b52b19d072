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
# # Lesson 00 — Setup and the shapes dataset
#
# **Goal.** Check the installation (versions, CPU or GPU backend), then meet the data
# every later lesson uses: `minircnn.data.ShapesDataset`, a deterministic synthetic
# detection dataset of circles, squares and triangles on noisy textured backgrounds.
# By the end you can draw its ground-truth boxes, state its statistics, and export it to
# COCO format and read it back unchanged.
#
# | name | shape | dtype | meaning |
# |---|---|---|---|
# | `image` | (3, H, W) | float32 in [0, 1] | one RGB image, channels first (NCHW without the N) |
# | `boxes` | (G, 4) | float32 | G ground-truth boxes (x1, y1, x2, y2), continuous pixel coordinates, width = x2 − x1 |
# | `labels` | (G,) | int64 in 1..3 | class of each box: 1 circle, 2 square, 3 triangle (0 is background) |
# | `image_id` | () | int | index of the image; also its COCO image id |

# %%
import json
import os
import platform
import sys
import tempfile
import time

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import scipy

import minircnn
from minircnn import viz
from minircnn.backend import asnumpy, get_array_module, gpu_available, to_device
from minircnn.data import CLASSES, ShapesDataset, export_dataset, to_coco

print(f"python     {platform.python_version()} ({sys.executable})")
print(f"numpy      {np.__version__}")
print(f"scipy      {scipy.__version__}")
print(f"matplotlib {matplotlib.__version__} (backend {matplotlib.get_backend()})")
print(f"minircnn   {minircnn.__version__} from {os.path.dirname(minircnn.__file__)}")
assert sys.version_info >= (3, 10), "minircnn needs Python 3.10 or newer"

# %% [markdown]
# ## The backend: NumPy on the CPU, CuPy on a GPU
#
# Every op in minircnn asks `xp = get_array_module(x)` and then calls `xp.zeros`,
# `xp.maximum`, ... so one implementation runs on both. Without CuPy and a CUDA GPU
# everything runs on NumPy; that is the normal case for these lessons.

# %%
device = "gpu" if gpu_available() else "cpu"
print(f"GPU available: {gpu_available()} -> lessons run on the {device.upper()}")
x = to_device(np.arange(6.0).reshape(2, 3), device)
xp = get_array_module(x)
print("array module:", xp.__name__)
assert xp.__name__ == ("cupy" if device == "gpu" else "numpy")
assert np.array_equal(asnumpy(xp.maximum(x, 2.0)), [[2, 2, 2], [3, 4, 5]])

# %% [markdown]
# ## One sample
#
# `ShapesDataset(num_images, image_size=128, seed=0, max_objects=4)` draws image `i`
# from a random generator seeded with `[seed, i]`, so the same arguments always give
# the same bytes — no files to download, and every run of these lessons sees the same data.

# %%
ds = ShapesDataset(64, image_size=128, seed=0)
sample = ds[0]
for key, value in sample.items():
    desc = f"{value.dtype} {value.shape}" if hasattr(value, "shape") else repr(value)
    print(f"{key:9s} {desc}")
print("classes:", CLASSES)

G = len(sample["labels"])
assert sample["image"].shape == (3, 128, 128) and sample["image"].dtype == np.float32
assert sample["boxes"].shape == (G, 4) and sample["boxes"].dtype == np.float32
assert sample["labels"].dtype == np.int64 and sample["image_id"] == 0
assert 0.0 <= sample["image"].min() and sample["image"].max() <= 1.0
# Deterministic: a second dataset object with the same seed gives the same bytes.
again = ShapesDataset(64, image_size=128, seed=0)[0]
assert again["image"].tobytes() == sample["image"].tobytes()
assert np.array_equal(again["boxes"], sample["boxes"])

# %% [markdown]
# ## A picture: images with their ground-truth boxes
#
# `viz.draw_boxes(image, boxes, labels, class_names=...)` draws one colour per class.
# Box coordinates are continuous: pixel (row i, column j) covers [j, j+1] × [i, i+1],
# so a box edge lies on pixel edges.

# %%
fig, axes = plt.subplots(2, 4, figsize=(9, 4.8))
for ax, i in zip(axes.ravel(), range(8), strict=True):
    s = ds[i]
    viz.draw_boxes(s["image"], s["boxes"], s["labels"], class_names=CLASSES, ax=ax)
    ax.set_title(f"image {i}: {len(s['labels'])} objects", fontsize=9)
assert len(axes[0, 0].patches) == len(ds[0]["boxes"])   # one rectangle per GT box
fig.tight_layout()

# %% [markdown]
# ## Dataset statistics
#
# Before training a detector, know the data: how many objects per image, how big the
# boxes are, how balanced the classes are. These numbers decide, for example, the RoI
# pooling output size and the proposal scales of later lessons.

# %%
t0 = time.perf_counter()
samples = [ds[i] for i in range(len(ds))]
print(f"drew {len(ds)} images in {time.perf_counter() - t0:.2f} s")
per_image = np.array([len(s["labels"]) for s in samples])
boxes = np.concatenate([s["boxes"] for s in samples])          # (sum G, 4)
labels = np.concatenate([s["labels"] for s in samples])        # (sum G,)
widths, heights = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
print("objects per image (0..4):", np.bincount(per_image, minlength=5).tolist(),
      f"mean {per_image.mean():.2f}")
per_class = np.bincount(labels, minlength=4)[1:]                 # (3,) objects of class 1..3
print("objects per class:", dict(zip(CLASSES, per_class.tolist(), strict=True)))
print(f"box width  {widths.min():.0f}..{widths.max():.0f} px (median {np.median(widths):.0f})")
print(f"box height {heights.min():.0f}..{heights.max():.0f} px (median {np.median(heights):.0f})")

assert per_image.min() >= 1 and per_image.max() <= ds.max_objects
assert set(labels.tolist()) == {1, 2, 3}                         # every class appears
assert (widths > 0).all() and (heights > 0).all()
assert boxes.min() >= 0 and boxes.max() <= ds.image_size         # inside the image
assert 8 <= np.median(widths) <= 64                              # objects ~ S/10 .. S/2
assert per_class.min() > 0.5 * per_class.max()                    # roughly balanced

# %%
fig, axes = plt.subplots(1, 2, figsize=(9, 3))
axes[0].hist(per_image, bins=np.arange(0.5, ds.max_objects + 1.5), rwidth=0.8)
axes[0].set(xlabel="objects per image", ylabel="images")
axes[1].scatter(widths, heights, c=[viz.class_color(k) for k in labels], s=10)
axes[1].set(xlabel="box width (px)", ylabel="box height (px)", title="box sizes by class")
fig.tight_layout()

# %% [markdown]
# ## COCO export round trip
#
# `to_coco(ds)` gives the COCO ground-truth dict that pycocotools and most tools read:
# `images`, `annotations` (with `bbox = [x, y, w, h]`), `categories`.
# `export_dataset(ds, folder)` also writes every image as an 8-bit PNG. We write both,
# read them back, and check nothing changed (except the 8-bit rounding of the pixels).

# %%
small = ShapesDataset(4, image_size=64, seed=1)
coco = json.loads(json.dumps(to_coco(small)))          # through JSON text and back
assert [im["id"] for im in coco["images"]] == [0, 1, 2, 3]
assert [c["name"] for c in coco["categories"]] == list(CLASSES)
for s in small:
    anns = [a for a in coco["annotations"] if a["image_id"] == s["image_id"]]
    xywh = np.array([a["bbox"] for a in anns], dtype=np.float64).reshape(-1, 4)
    xyxy = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)   # (G, 4)
    assert np.allclose(xyxy, s["boxes"], atol=1e-4)
    assert [a["category_id"] for a in anns] == s["labels"].tolist()

with tempfile.TemporaryDirectory() as folder:
    path = export_dataset(small, folder)
    with open(path) as f:
        exported = json.load(f)
    png = plt.imread(os.path.join(folder, exported["images"][2]["file_name"]))[..., :3]
expected = np.round(small[2]["image"].transpose(1, 2, 0) * 255) / 255   # (H, W, 3)
print("PNGs + annotations.json round trip: max pixel error",
      float(np.abs(png - expected).max()))
assert exported == coco
assert np.abs(png - expected).max() < 1e-6

# %% [markdown]
# ## Summary
#
# - minircnn runs on NumPy (CPU) or CuPy (GPU) through `get_array_module`; here it ran on
#   the backend printed above.
# - `ShapesDataset` is deterministic: `(num_images, image_size, seed, max_objects)` fix the
#   bytes. Samples are dicts of `image (3, H, W)`, `boxes (G, 4)`, `labels (G,)`, `image_id`.
# - Boxes are (x1, y1, x2, y2) in continuous pixel coordinates (torchvision's convention,
#   width = x2 − x1, no +1).
# - `to_coco` / `export_dataset` give a COCO dataset that round-trips exactly.
#
# ## Exercises
#
# 1. Plot the histogram of box *areas* per class. Which class has the smallest boxes for the
#    same drawing radius, and why (think of a triangle's bounding box)?
# 2. Make a dataset with `image_size=64`. How do the median box sizes scale? Which RoI pooling
#    output size (7×7 at stride 16) still makes sense for such boxes?
# 3. Load the exported `annotations.json` with pycocotools (`COCO(path)`) and count the
#    annotations per category with `getAnnIds(catIds=[k])`.

# %% [markdown] nbgrader={"grade": true, "grade_id": "open_answers", "locked": false, "points": 0, "schema_version": 3, "solution": true}
# ### Your answers to the exercises
#
# ### BEGIN SOLUTION
# **Teacher's edition: model answers and rubrics** (points are a suggestion for a manually graded answer; `minircnn assign` replaces this block by YOUR ANSWER HERE).
#
# **1. Box areas per class.** Every shape is drawn inside a circle of radius r around its
# centre. A circle fills its whole 2r × 2r box; a rotated square's corners lie on the
# circle, so its box is between its own area (2r², axis-aligned) and 4r² (at 45°); an
# irregular triangle has only three points on the circle and rarely spans the diameter in
# both directions, so **triangles** have the smallest boxes for the same r.
# *Rubric (3):* 1 a histogram per class from `ds[i]["boxes"]` and `labels`; 1 names the
# class with the smallest boxes from the plot; 1 explains it with the bounding box of the
# shape inside its circle.
#
# **2. `image_size=64`.** The objects are drawn at sizes proportional to the image (up to
# the 4-pixel floor on the radius), so the median box sides halve. At stride 16 a box of
# side s covers s/16 feature cells: once that is below 7, a 7×7 RoI pooling repeats cells
# in several bins (lesson 03) — a smaller output (e.g. 3×3), or a backbone of stride 8,
# suits the smaller boxes.
# *Rubric (3):* 1 the medians measured at both sizes; 1 "they scale with the image";
# 1 relates s/16 to the 7×7 grid and proposes a smaller grid or stride.
#
# **3. pycocotools.** `COCO(path)` indexes the exported file; `len(coco.getAnnIds(catIds=[k]))`
# for k = 1, 2, 3 equals the number of boxes of label k counted from the dataset itself.
# *Rubric (2):* 1 working calls; 1 the counts agree with `np.bincount` of the labels.
# ### END SOLUTION
