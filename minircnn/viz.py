"""Pictures: detections over an image, PR curves, training curves, feature maps, RoI bins.

matplotlib only, through ``matplotlib.figure.Figure`` rather than pyplot, so nothing
here needs a display, opens a window or keeps global figure state (safe under Agg, in
the CLI and in tests). Functions that take ``ax`` draw into it and return the Axes;
the others return a new Figure. In a notebook, a Figure shows as a picture when it is
the last expression of a cell (or with ``display(fig)``), whatever matplotlib's backend
(``NotebookFigure``); write one to disk with :func:`save_figure`.
"""

from __future__ import annotations

import io
import math
import os

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from minircnn.backend import asnumpy
from minircnn.detection.boxes import check_boxes
from minircnn.utils.fileio import atomic_write

_PALETTE = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple",
            "tab:brown", "tab:pink", "tab:gray", "tab:olive", "tab:cyan")


class NotebookFigure(Figure):
    """A Figure that Jupyter draws as a PNG when it ends a cell, under any backend.

    IPython shows a plain Figure as a picture only once the inline backend has registered
    its formatter (on the first pyplot figure); under Agg, or before that, it prints
    ``<Figure size ...>``. ``_repr_png_`` is IPython's hook for any object with a PNG form.
    """

    def _repr_png_(self) -> bytes:
        buffer = io.BytesIO()
        self.savefig(buffer, format="png", bbox_inches="tight")
        return buffer.getvalue()


def class_color(label: int) -> str:
    """The color of class ``label`` (the same in every picture)."""
    return _PALETTE[int(label) % len(_PALETTE)]


def _new_axes(ax, figsize=(5, 5)):
    if ax is not None:
        return ax
    return NotebookFigure(figsize=figsize).add_subplot()


def _as_hwc(image) -> np.ndarray:
    """(3, H, W), (H, W, 3) or (H, W) image -> an array imshow takes, floats clipped to [0, 1]."""
    image = asnumpy(image)
    if image.ndim == 3 and image.shape[0] in (1, 3) and image.shape[2] not in (1, 3):
        image = image.transpose(1, 2, 0)  # (C, H, W) -> (H, W, C)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]  # (H, W, 1) -> (H, W)
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
        raise ValueError(f"image must be (3, H, W), (H, W, 3) or (H, W), got {image.shape}")
    if np.issubdtype(image.dtype, np.floating):
        image = np.clip(image, 0.0, 1.0)
    return image


def _imshow(ax, image) -> np.ndarray:
    """Show the image so that pixel (row i, col j) covers [j, j + 1] x [i, i + 1]: box coordinates
    are continuous pixel coordinates (torchvision), so box edges land on pixel edges."""
    img = _as_hwc(image)
    ax.imshow(img, cmap="gray", interpolation="nearest",
              extent=(0, img.shape[1], img.shape[0], 0))
    return img


def _caption(label, score, class_names) -> str | None:
    parts = []
    if label is not None:
        names_ok = class_names is not None and 1 <= int(label) <= len(class_names)
        parts.append(class_names[int(label) - 1] if names_ok else str(int(label)))
    if score is not None:
        parts.append(f"{float(score):.2f}")
    return " ".join(parts) if parts else None


def draw_boxes(image, boxes, labels=None, scores=None, class_names=None, ax=None):
    """Draw boxes over an image, one color per class, captioned "name 0.93".

    Args:
        image: (3, H, W) or (H, W, 3) (floats in [0, 1] or uint8), or (H, W) grayscale.
        boxes: (D, 4) boxes (x1, y1, x2, y2) in pixels.
        labels: (D,) classes in 1..K (label k is named ``class_names[k - 1]``), or None.
        scores: (D,) scores, or None.  class_names: names of classes 1..K, or None.
        ax: Axes to draw into; a new Figure's Axes when None.
    Returns:
        The Axes (one Rectangle patch and, when labels or scores are given, one text per box).
    """
    boxes = asnumpy(check_boxes(boxes, "boxes"))
    n = len(boxes)
    for name, values in (("labels", labels), ("scores", scores)):
        if values is not None and asnumpy(values).shape != (n,):
            raise ValueError(f"{name} must have shape ({n},), got {asnumpy(values).shape}")
    ax = _new_axes(ax)
    _imshow(ax, image)
    for i, (x1, y1, x2, y2) in enumerate(boxes):
        label = None if labels is None else int(asnumpy(labels)[i])
        color = class_color(0 if label is None else label)
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=color, lw=2))
        caption = _caption(label, None if scores is None else asnumpy(scores)[i], class_names)
        if caption is not None:
            ax.text(x1, y1, caption, color="white", fontsize=8, va="bottom", clip_on=True,
                    bbox=dict(facecolor=color, alpha=0.8, pad=1, edgecolor="none"))
    ax.set_axis_off()
    return ax


def plot_pr_curves(eval_result: dict, ax=None):
    """Precision/recall curve of every class from ``evaluate(...)`` (its "pr" and "ap").

    Returns:
        The Axes, one line per class, labelled "name AP=0.812".
    """
    if "pr" not in eval_result or "ap" not in eval_result:
        raise ValueError("eval_result must be the dict returned by evaluate(), with 'pr' and 'ap'")
    ax = _new_axes(ax, figsize=(5, 4))
    for i, (name, (precision, recall)) in enumerate(eval_result["pr"].items()):
        ap = eval_result["ap"][name]
        ax.plot(asnumpy(recall), asnumpy(precision), color=_PALETTE[(i + 1) % len(_PALETTE)],
                label=f"{name} AP={ap:.3f}", drawstyle="steps-post")
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02),
           title=f"{eval_result.get('metric', '')} mAP={eval_result.get('mAP', float('nan')):.3f}")
    ax.legend(loc="lower left", fontsize=8)
    ax.grid(alpha=0.3)
    return ax


def plot_curves(metrics: dict, *, xlabel: str = "iteration", logy=()) -> Figure:
    """One line plot per metric (e.g. {"loss": [...], "mAP": [...]}), in rows of up to 3.

    Args:
        metrics: name -> sequence of numbers (x is the index), or a pair (xs, ys).
        xlabel: label of every x axis.  logy: names plotted on a log y axis.
    Returns:
        A Figure with one Axes per metric.
    """
    if not metrics:
        raise ValueError("metrics must name at least one curve, got an empty dict")
    cols = min(len(metrics), 3)        # rows of 3 at most: 9 inches wide, labels readable
    rows = math.ceil(len(metrics) / cols)
    fig = NotebookFigure(figsize=(3 * cols, 2.6 * rows), layout="constrained")
    grid = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in grid[len(metrics):]:     # the last row's empty places
        fig.delaxes(ax)
    axes = grid[:len(metrics)]
    for ax, (name, values) in zip(axes, metrics.items(), strict=True):
        if isinstance(values, tuple) and len(values) == 2:
            xs, ys = np.asarray(values[0], dtype=float), np.asarray(values[1], dtype=float)
        else:
            ys = np.asarray(values, dtype=float)
            xs = np.arange(len(ys))
        ax.plot(xs, ys, marker="." if len(ys) < 30 else None)
        ax.set(xlabel=xlabel, title=name, yscale="log" if name in logy else "linear")
        ax.grid(alpha=0.3)
    return fig


def show_feature_maps(features, max_maps: int = 16) -> Figure:
    """The first ``max_maps`` channels of a (C, H, W) (or (1, C, H, W)) feature map, in a grid.

    Returns:
        A Figure with one image Axes per channel shown (each with its own color scale).
    """
    features = asnumpy(features)
    if features.ndim == 4 and features.shape[0] == 1:
        features = features[0]  # (1, C, H, W) -> (C, H, W)
    if features.ndim != 3:
        raise ValueError(f"features must be (C, H, W) or (1, C, H, W), got {features.shape}")
    n = min(features.shape[0], max_maps)
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    fig = NotebookFigure(figsize=(1.6 * cols, 1.6 * rows), layout="constrained")
    for c in range(n):
        ax = fig.add_subplot(rows, cols, c + 1)
        ax.imshow(features[c], cmap="viridis", interpolation="nearest")
        ax.set_title(f"ch {c}", fontsize=7)
        ax.set_axis_off()
    return fig


def show_roi_bins(image, roi, output_size=(7, 7), spatial_scale=1 / 16, *,
                  feature_size=None, ax=None):
    """Draw an RoI and its roi_pool bins (torchvision's rounding) over the image.

    The bins come from :func:`minircnn.layers.roi_pool.roi_pool_bins`, the helper every
    roi_pool version uses: the RoI is rounded to feature cells (C round, inclusive end),
    bins span floor/ceil cell ranges, so bins may overlap, repeat or be empty (hatched).
    One feature cell covers 1 / spatial_scale image pixels; the cell grid is drawn faintly.

    Args:
        image: (3, H, W) or (H, W, 3) image.  roi: (4,) box, or (5,) [batch, x1, y1, x2, y2].
        output_size: (PH, PW).  spatial_scale: feature cells per image pixel.
        feature_size: (Hf, Wf) of the feature map; default floor(H * scale), floor(W * scale).
        ax: Axes to draw into, or None.
    Returns:
        The Axes: one Rectangle for the RoI, then one per bin (PH * PW).
    """
    from minircnn.layers.roi_pool import roi_pool_bins

    roi = np.asarray(asnumpy(roi), dtype=np.float64).reshape(-1)
    if roi.shape not in ((4,), (5,)):
        raise ValueError(f"roi must be (4,) box or (5,) [batch, x1, y1, x2, y2], got {roi.shape}")
    box = roi[-4:]
    PH, PW = (output_size, output_size) if np.isscalar(output_size) else output_size
    height, width = _as_hwc(image).shape[:2]
    Hf, Wf = feature_size or (int(height * spatial_scale), int(width * spatial_scale))
    bins = roi_pool_bins(np.concatenate([[0.0], box])[None, :], (PH, PW), spatial_scale, Hf, Wf)
    cell = 1.0 / spatial_scale  # image pixels per feature cell
    ax = _new_axes(ax)
    _imshow(ax, image)
    for k in range(1, max(Hf, Wf)):  # faint feature-cell grid
        ax.axhline(k * cell, color="white", lw=0.3, alpha=0.4)
        ax.axvline(k * cell, color="white", lw=0.3, alpha=0.4)
    ax.add_patch(Rectangle((box[0], box[1]), box[2] - box[0], box[3] - box[1], fill=False,
                           edgecolor="yellow", lw=2, label="RoI"))
    for ph in range(PH):
        for pw in range(PW):
            y0, y1 = bins.hstart[0, ph] * cell, bins.hend[0, ph] * cell
            x0, x1 = bins.wstart[0, pw] * cell, bins.wend[0, pw] * cell
            empty = y1 <= y0 or x1 <= x0
            ax.add_patch(Rectangle((x0, y0), max(x1 - x0, 0), max(y1 - y0, 0),
                                   fill=False, edgecolor="red" if empty else "cyan", lw=1,
                                   hatch="//" if empty else None, alpha=0.8))
    ax.set_title(f"roi_pool bins {PH}x{PW}, scale 1/{cell:g}", fontsize=9)
    ax.set_axis_off()
    return ax


# File formats by extension: PNG (lossless, the default) and JPEG (through Pillow).
IMAGE_FORMATS = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg"}


def image_format(path) -> str:
    """The format ``path``'s extension names ("png" or "jpeg"); ValueError otherwise."""
    ext = os.path.splitext(os.fspath(path))[1].lower()
    if ext not in IMAGE_FORMATS:
        raise ValueError(f"{os.fspath(path)}: cannot write {ext or 'a file without an extension'}"
                         f" images; name the file .png, .jpg or .jpeg")
    return IMAGE_FORMATS[ext]


def save_figure(fig, path) -> str:
    """Write ``fig`` (a Figure, or an Axes of one) to ``path`` atomically, as PNG or JPEG
    after its extension (``image_format``).

    The image goes to a temporary file in the same folder, then ``os.replace`` moves it
    into place, so a reader never sees half a file. Parent folders are created.

    Returns:
        ``path`` as a string.
    """
    fig = getattr(fig, "figure", fig) if not isinstance(fig, Figure) else fig
    path = os.fspath(path)
    fmt = image_format(path)
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format=fmt, dpi=100, bbox_inches="tight")
    return path
