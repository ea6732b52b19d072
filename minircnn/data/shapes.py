"""Synthetic shapes data: a detection set, a classification set, COCO export.

``ShapesDataset`` is the detection benchmark every lesson trains on: 1..max_objects
circles, squares (rotated) and irregular triangles of varied size and colour on
textured, noisy backgrounds with distractor clutter (thin lines, small dots) that is not
an object. Objects may overlap a little (box IoU <= 0.2), so a detector needs both its
box regression and NMS. Boxes are tight: the exact extent of each object's visible
pixels, in continuous coordinates (x2 = last column + 1), as torchvision.

Every image is drawn from ``np.random.default_rng([seed, i])``, so ``ds[i]`` does not
depend on which other images were read, nothing is cached, and the same arguments give
the same bytes on every machine (pixels are quantised to 8 bits, as in a PNG).
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Sequence

import numpy as np

from minircnn.data import draw
from minircnn.utils.fileio import write_json

CLASSES = ("circle", "square", "triangle")


def _check_count(name: str, value, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name}: expected an int, got {type(value).__name__}")
    if value < low:
        raise ValueError(f"{name}: expected an int >= {low}, got {value}")
    return int(value)


def _resolve_index(index, length: int) -> int:
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
        raise TypeError(f"index: expected an int, got {type(index).__name__}")
    i = int(index) + length if index < 0 else int(index)
    if not 0 <= i < length:
        raise IndexError(f"index {index} out of range for a dataset of {length} images")
    return i


def _mask_box(mask: np.ndarray) -> np.ndarray:
    """Tight (4,) box of a bool (H, W) mask: x1 = first column, x2 = last column + 1."""
    rows, cols = np.nonzero(mask)
    return np.array([cols.min(), rows.min(), cols.max() + 1, rows.max() + 1], dtype=np.float64)


def _max_iou(box: np.ndarray, boxes: list[np.ndarray]) -> float:
    if not boxes:
        return 0.0
    from minircnn.detection.boxes import box_iou

    return float(box_iou(box[None], np.stack(boxes)).max())


class ShapesDataset:
    """Detection images of circles, squares and triangles (labels 1, 2, 3).

    Args:
        num_images: number of images N.
        image_size: side S of the square images (objects span about S/10 .. S/2).
        seed: the dataset seed; image i is drawn from ``default_rng([seed, i])``.
        max_objects: each image holds 1..max_objects objects (fewer if they do not fit).

    ``ds[i]`` is ``dict(image=float32 (3, S, S) in [0, 1], boxes=float32 (G, 4),
    labels=int64 (G,) in 1..3, image_id=i)``; ``ds.get(i, masks=True)`` adds the
    objects' visible pixels as ``masks`` bool (G, S, S).
    """

    classes = CLASSES
    max_box_iou = 0.2          # objects overlap at most this much (box IoU)
    max_mask_cover = 0.25      # and cover at most this fraction of each other's pixels

    def __init__(self, num_images: int, *, image_size: int = 128, seed: int = 0,
                 max_objects: int = 4):
        self.num_images = _check_count("num_images", num_images, 0)
        self.image_size = _check_count("image_size", image_size, 32)
        self.seed = _check_count("seed", seed, 0)
        self.max_objects = _check_count("max_objects", max_objects, 1)

    def __len__(self) -> int:
        return self.num_images

    def __getitem__(self, index: int) -> dict:
        return self.get(index)

    def __iter__(self):
        for i in range(len(self)):
            yield self.get(i)

    def __repr__(self) -> str:
        return (f"ShapesDataset({self.num_images}, image_size={self.image_size}, "
                f"seed={self.seed}, max_objects={self.max_objects})")

    def get(self, index: int, *, masks: bool = False) -> dict:
        """Image ``index`` as a dict (see the class docstring)."""
        i = _resolve_index(index, len(self))
        image, boxes, labels, visible = self._render(i)
        out = dict(image=image, boxes=boxes, labels=labels, image_id=i)
        if masks:
            out["masks"] = visible
        return out

    def _place(self, rng: np.random.Generator, xx, yy) -> list[tuple[int, np.ndarray]]:
        """Choose up to max_objects (label, mask) pairs that overlap only a little."""
        size, scale = self.image_size, self.image_size / 128
        wanted = int(rng.integers(1, self.max_objects + 1))
        placed: list[tuple[int, np.ndarray]] = []
        boxes: list[np.ndarray] = []
        for _ in range(20 * wanted):
            if len(placed) == wanted:
                break
            label = int(rng.integers(1, len(CLASSES) + 1))
            r = rng.uniform(max(7.0 * scale, 4.0), 31.0 * scale)   # extents ~12..62 px at 128
            cx, cy = rng.uniform(r + 1, size - r - 1, size=2)
            mask = draw.shape_mask(CLASSES[label - 1], xx, yy, cx=cx, cy=cy, r=r,
                                   angle=rng.uniform(0, 2 * np.pi), rng=rng)
            area = mask.sum()
            if area < 12:                             # too small to see (tiny images only)
                continue
            box = _mask_box(mask)
            if _max_iou(box, boxes) > self.max_box_iou:
                continue
            if any((mask & m).sum() > self.max_mask_cover * min(area, m.sum())
                   for _, m in placed):
                continue
            placed.append((label, mask))
            boxes.append(box)
        return placed

    def _render(self, i: int):
        rng = np.random.default_rng([self.seed, i])
        size = self.image_size
        xx, yy = draw.pixel_grid(size)
        img = draw.background(rng, size, "textured")
        draw.draw_clutter(img, rng, lines=int(rng.integers(0, 5)), dots=int(rng.integers(0, 5)))
        placed = self._place(rng, xx, yy)
        for _, mask in placed:
            color = draw.pick_color(rng, img[:, mask].mean(axis=1))
            draw.paint(img, mask, color, rng)
        image = draw.finish(img, rng, noise=rng.uniform(0.02, 0.06))
        visible = np.stack([m for _, m in placed])                      # (G, S, S)
        for k in range(len(placed) - 1):                  # later objects hide earlier ones
            visible[k] &= ~visible[k + 1:].any(axis=0)
        boxes = np.stack([_mask_box(m) for m in visible]).astype(np.float32)  # (G, 4)
        labels = np.array([label for label, _ in placed], dtype=np.int64)
        return image, boxes, labels, visible


class Drawn(list):
    """Every item of a dataset drawn once and kept: a list of its item dicts, with the
    dataset's ``classes``. A ShapesDataset draws an image again each time it is read;
    a run that reads its held-out images several times (the proposals' report, the
    detections, the metrics, the pictures) reads them from one ``Drawn`` instead."""

    def __init__(self, dataset):
        super().__init__(dataset[i] for i in range(len(dataset)))
        self.classes = getattr(dataset, "classes", None)


class ShapesClassification:
    """One centred (jittered) shape per image, for classification pretraining.

    Args:
        num_images: number of images N; labels cycle 0, 1, .., K-1 so classes are balanced.
        image_size: side S of the images.
        classes: shape kinds, any of ``ShapesClassification.ALL_SHAPES``; label k is
            ``classes[k]``.
        seed: image i is drawn from ``default_rng([seed, i, 1])``.
        background: one of ``ShapesClassification.BACKGROUNDS`` ("textured", "plain",
            "stripes"), so that a source task and a different target task exist.

    ``ds[i]`` is ``(image float32 (3, S, S) in [0, 1], label int)``.
    """

    ALL_SHAPES = draw.ALL_SHAPES
    BACKGROUNDS = draw.BACKGROUNDS

    def __init__(self, num_images: int, *, image_size: int = 32,
                 classes: Sequence[str] = CLASSES, seed: int = 0,
                 background: str = "textured"):
        self.num_images = _check_count("num_images", num_images, 0)
        self.image_size = _check_count("image_size", image_size, 8)
        self.seed = _check_count("seed", seed, 0)
        unknown = [c for c in classes if c not in draw.ALL_SHAPES]
        if unknown or len(classes) < 2 or len(set(classes)) != len(classes):
            raise ValueError(f"classes: expected >= 2 distinct names from {draw.ALL_SHAPES}, "
                             f"got {tuple(classes)}")
        if background not in draw.BACKGROUNDS:
            raise ValueError(f"background: expected one of {draw.BACKGROUNDS}, got {background!r}")
        self.classes = tuple(classes)
        self.background = background

    def __len__(self) -> int:
        return self.num_images

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        i = _resolve_index(index, len(self))
        rng = np.random.default_rng([self.seed, i, 1])
        size = self.image_size
        label = i % len(self.classes)
        xx, yy = draw.pixel_grid(size)
        img = draw.background(rng, size, self.background)
        r = rng.uniform(0.28, 0.45) * size
        cx, cy = size / 2 + rng.uniform(-0.08, 0.08, size=2) * size
        mask = draw.shape_mask(self.classes[label], xx, yy, cx=cx, cy=cy, r=r,
                               angle=rng.uniform(0, 2 * np.pi), rng=rng)
        draw.paint(img, mask, draw.pick_color(rng, img[:, mask].mean(axis=1)), rng)
        return draw.finish(img, rng, noise=rng.uniform(0.01, 0.04)), label

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """All images stacked: X float32 (N, 3, S, S) and y int64 (N,)."""
        size = self.image_size
        x = np.empty((len(self), 3, size, size), dtype=np.float32)
        y = np.empty(len(self), dtype=np.int64)
        for i in range(len(self)):
            x[i], y[i] = self[i]
        return x, y


def _coco_entries(sample: dict, first_ann_id: int) -> tuple[dict, list[dict]]:
    """COCO ``images`` entry and ``annotations`` entries of one sample."""
    image_id = int(sample["image_id"])
    _, height, width = sample["image"].shape
    image = dict(id=image_id, file_name=f"{image_id:06d}.png", width=int(width),
                 height=int(height))
    anns = []
    for box, label in zip(sample["boxes"].tolist(), sample["labels"].tolist(), strict=True):
        w, h = box[2] - box[0], box[3] - box[1]
        anns.append(dict(id=first_ann_id + len(anns), image_id=image_id,
                         category_id=int(label), bbox=[box[0], box[1], w, h], area=w * h,
                         iscrowd=0))
    return image, anns


def _coco_categories(dataset, annotations: list[dict]) -> list[dict]:
    classes = getattr(dataset, "classes", None)
    if classes is None:
        top = max((a["category_id"] for a in annotations), default=0)
        classes = [str(k) for k in range(1, top + 1)]
    return [dict(id=k + 1, name=name) for k, name in enumerate(classes)]


def _check_sample(sample, i: int) -> None:
    if not hasattr(sample, "keys") or not {"image", "boxes", "labels"} <= set(sample.keys()):
        raise TypeError(f"to_coco: dataset[{i}] must be a dict with image, boxes and labels "
                        f"(a ShapesDataset sample), got {type(sample).__name__}")
    image_id = sample["image_id"] if "image_id" in sample else None
    # COCO ids are integers; the id also names the PNG (``000007.png``), so a string such
    # as "../x" must not reach a file name
    if isinstance(image_id, bool) or not isinstance(image_id, numbers.Integral) or image_id < 0:
        raise ValueError(f"to_coco: dataset[{i}]['image_id'] must be an integer >= 0 "
                         f"(COCO image ids are), got {image_id!r}")


def to_coco(dataset) -> dict:
    """A JSON-serialisable COCO ground-truth dict for a detection dataset.

    Image ids are the samples' ``image_id``; category ids are the labels (category
    ``k`` is ``dataset.classes[k-1]``, or named ``str(k)`` without ``.classes``); bbox
    is [x, y, w, h] (COCO); area is w * h; annotation ids start at 1 (pycocotools
    treats id 0 as "unmatched").
    """
    if not hasattr(dataset, "__len__") or not hasattr(dataset, "__getitem__"):
        raise TypeError(f"to_coco: dataset must be a sequence of samples (a ShapesDataset "
                        f"or a list of dicts), got {type(dataset).__name__}")
    images, annotations = [], []
    for i, sample in enumerate(dataset):
        _check_sample(sample, i)
        image, anns = _coco_entries(sample, len(annotations) + 1)
        images.append(image)
        annotations.extend(anns)
    return dict(images=images, annotations=annotations,
                categories=_coco_categories(dataset, annotations))


def export_dataset(dataset, out_dir: str | os.PathLike) -> str:
    """Write every image as a PNG plus ``annotations.json`` (``to_coco``) into out_dir.

    Returns the path of the JSON file. The PNGs hold exactly the dataset's 8-bit pixels.
    """
    import matplotlib.image

    os.makedirs(out_dir, exist_ok=True)
    images, annotations = [], []
    for i, sample in enumerate(dataset):         # one pass: each image is drawn once
        _check_sample(sample, i)
        image, anns = _coco_entries(sample, len(annotations) + 1)
        images.append(image)
        annotations.extend(anns)
        pixels = np.round(sample["image"].transpose(1, 2, 0) * 255).astype(np.uint8)  # (H, W, 3)
        matplotlib.image.imsave(os.path.join(out_dir, image["file_name"]), pixels)
    coco = dict(images=images, annotations=annotations,
                categories=_coco_categories(dataset, annotations))
    return write_json(os.path.join(out_dir, "annotations.json"), coco, indent=None)
