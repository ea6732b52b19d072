"""The objects a detector misses: which, how big, and a picture of each.

A ground-truth object is *missed* at IoU t when no detection of its class overlaps it
with IoU >= t. The misses are what keeps recall, and so AP, below 1: listing them (their
size, their best IoU) says whether the detector fails on tiny shapes, on occluded
ones, or on box precision.
"""

from __future__ import annotations

import numpy as np

from minircnn.detection.boxes import box_iou


def find_misses(detections: list, dataset, *, iou_threshold: float = 0.5,
                score_thresh: float = 0.0) -> list[dict]:
    """Every GT object without a detection of its class (score >= score_thresh) at IoU >=
    iou_threshold: dicts(image, box, label, side (sqrt of the area), best_iou)."""
    misses = []
    for i, det in enumerate(detections):
        item = dataset[i]
        for box, label in zip(item["boxes"], item["labels"], strict=True):
            mine = (det["labels"] == label) & (det["scores"] >= score_thresh)
            best = float(box_iou(box[None].astype(np.float64),
                                 det["boxes"][mine].astype(np.float64)).max(initial=0.0))
            if best < iou_threshold:
                side = float(np.sqrt((box[2] - box[0]) * (box[3] - box[1])))
                misses.append({"image": i, "box": box.tolist(), "label": int(label),
                               "side": side, "best_iou": best})
    return misses


def plot_misses(misses: list, dataset, detections: list, path: str, *, max_images: int = 12,
                score_thresh: float = 0.5) -> str:
    """A grid of the images holding misses: the missed box dashed red, the detections
    scoring >= score_thresh drawn as usual. Returns the PNG path."""
    from matplotlib.figure import Figure

    from minircnn.viz import draw_boxes, save_figure

    images = sorted({m["image"] for m in misses})[:max_images]
    cols = min(4, max(1, len(images)))
    rows = max(1, (len(images) + cols - 1) // cols)
    fig = Figure(figsize=(3 * cols, 3.2 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    names = getattr(dataset, "classes", None)
    for ax in axes:
        ax.set_axis_off()
    for ax, i in zip(axes, images, strict=False):
        keep = detections[i]["scores"] >= score_thresh
        d = {k: v[keep] for k, v in detections[i].items()}
        draw_boxes(dataset[i]["image"], d["boxes"], d["labels"], d["scores"],
                   class_names=names, ax=ax)
        for m in (m for m in misses if m["image"] == i):
            x1, y1, x2, y2 = m["box"]
            ax.add_patch(_dashed(x1, y1, x2 - x1, y2 - y1))
            ax.set_title(f"image {i}: missed {names[m['label'] - 1] if names else m['label']}"
                         f" ({m['side']:.0f} px, best IoU {m['best_iou']:.2f})", fontsize=8)
    return save_figure(fig, path)


def _dashed(x, y, w, h):
    from matplotlib.patches import Rectangle

    return Rectangle((x, y), w, h, fill=False, edgecolor="red", linestyle="--", linewidth=1.5)
