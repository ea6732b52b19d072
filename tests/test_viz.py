"""Tests for minircnn/viz.py: the pictures hold what they should, PNGs are written whole."""

import os

import matplotlib.image
import numpy as np
import pytest
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from minircnn.viz import (
    class_color,
    draw_boxes,
    plot_curves,
    plot_pr_curves,
    save_figure,
    show_feature_maps,
    show_roi_bins,
)

CLASSES = ("circle", "square", "triangle")


def image_chw():
    return np.random.default_rng(0).random((3, 32, 48)).astype(np.float32)


def rectangles(ax):
    return [p for p in ax.patches if isinstance(p, Rectangle)]


def test_draw_boxes_one_rectangle_and_caption_per_box():
    boxes = np.array([[1, 2, 10, 12], [5, 5, 20, 30], [30, 1, 47, 9]], dtype=np.float32)
    ax = draw_boxes(image_chw(), boxes, labels=np.array([1, 2, 1]),
                    scores=np.array([0.934, 0.5, 0.25]), class_names=CLASSES)
    rects = rectangles(ax)
    assert len(rects) == 3
    assert [t.get_text() for t in ax.texts] == ["circle 0.93", "square 0.50", "circle 0.25"]
    assert rects[0].get_xy() == (1, 2) and rects[0].get_width() == 9 and rects[0].get_height() == 10
    colors = [r.get_edgecolor() for r in rects]
    assert colors[0] == colors[2] != colors[1]  # one color per class
    assert ax.images[0].get_array().shape == (32, 48, 3)  # (3, H, W) shown as (H, W, 3)


def test_draw_boxes_variants():
    hwc = np.zeros((16, 16, 3), dtype=np.uint8)
    ax = draw_boxes(hwc, np.array([[0, 0, 4, 4.0]]))
    assert len(rectangles(ax)) == 1 and len(ax.texts) == 0  # no labels, no scores: no captions
    ax = draw_boxes(hwc, np.zeros((0, 4)), ax=ax)
    ax = draw_boxes(hwc, np.array([[0, 0, 4, 4.0]]), labels=[7], ax=ax)
    assert ax.texts[-1].get_text() == "7"  # no class name known: the label number
    with pytest.raises(ValueError, match="boxes must have x2 >= x1"):
        draw_boxes(hwc, np.array([[5, 0, 4, 4.0]]))
    with pytest.raises(ValueError, match=r"scores must have shape \(1,\)"):
        draw_boxes(hwc, np.array([[0, 0, 4, 4.0]]), scores=[0.1, 0.2])
    with pytest.raises(ValueError, match="image must be"):
        draw_boxes(np.zeros((4, 5, 6, 7)), np.zeros((0, 4)))
    assert class_color(1) != class_color(2)


def test_plot_pr_curves_one_line_per_class():
    result = dict(ap={"circle": 0.5, "square": 0.25}, mAP=0.375, metric="voc07",
                  pr={"circle": (np.array([1.0, 0.5]), np.array([0.5, 0.5])),
                      "square": (np.array([1.0]), np.array([0.25]))})
    ax = plot_pr_curves(result)
    assert len(ax.lines) == 2
    np.testing.assert_array_equal(ax.lines[0].get_xdata(), [0.5, 0.5])  # x is recall
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["circle AP=0.500",
                                                                   "square AP=0.250"]
    with pytest.raises(ValueError, match="eval_result must be"):
        plot_pr_curves({"mAP": 0.1})


def test_plot_curves_one_axes_per_metric():
    fig = plot_curves({"loss": [3.0, 2.0, 1.5], "mAP": ([0, 10], [0.1, 0.6])}, logy=("loss",))
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    np.testing.assert_array_equal(fig.axes[0].lines[0].get_ydata(), [3.0, 2.0, 1.5])
    np.testing.assert_array_equal(fig.axes[1].lines[0].get_xdata(), [0, 10])
    assert fig.axes[0].get_yscale() == "log" and fig.axes[1].get_title() == "mAP"
    with pytest.raises(ValueError, match="at least one curve"):
        plot_curves({})


def test_show_feature_maps_caps_the_count():
    features = np.random.default_rng(1).normal(size=(1, 20, 6, 5))
    fig = show_feature_maps(features, max_maps=16)
    assert sum(len(ax.images) for ax in fig.axes) == 16
    np.testing.assert_array_equal(fig.axes[3].images[0].get_array(), features[0, 3])
    assert len(show_feature_maps(features[0, :3]).axes) == 3
    with pytest.raises(ValueError, match="features must be"):
        show_feature_maps(np.zeros((2, 3)))


def test_show_roi_bins_draws_roi_and_every_bin():
    image = np.zeros((3, 128, 128), dtype=np.float32)
    # x 8..100 -> cells round(0.5)=1 .. round(6.25)=6: 6 cells wide, 2x2 bins of 3 cells
    # y 30..62 -> cells round(1.875)=2 .. round(3.875)=4: 3 cells high, bins 0..2 and 1..3
    ax = show_roi_bins(image, [8, 30, 100, 62], output_size=(2, 2), spatial_scale=1 / 16)
    rects = rectangles(ax)
    assert len(rects) == 1 + 4
    bins = sorted((r.get_x(), r.get_y(), r.get_width(), r.get_height()) for r in rects[1:])
    assert bins == [(16, 32, 48, 32), (16, 48, 48, 32), (64, 32, 48, 32), (64, 48, 48, 32)]
    # an RoI smaller than the grid repeats cells: 7x7 bins, each at least one cell
    ax = show_roi_bins(image, [0, 0, 40, 40, 40], output_size=7)
    assert len(rectangles(ax)) == 1 + 49


def test_save_figure_writes_a_loadable_png_atomically(tmp_path):
    ax = draw_boxes(image_chw(), np.array([[1, 2, 10, 12.0]]), labels=[1], scores=[0.9],
                    class_names=CLASSES)
    path = tmp_path / "sub" / "detections.png"
    assert save_figure(ax, path) == str(path)  # an Axes is accepted, folders created
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000
    pixels = matplotlib.image.imread(path)
    assert pixels.ndim == 3 and pixels.shape[0] > 50 and pixels.std() > 0.01
    assert os.listdir(path.parent) == ["detections.png"]  # no temporary file left behind
    save_figure(plot_curves({"loss": [1.0, 0.5]}), path)  # overwrite in place
    assert matplotlib.image.imread(path).shape != pixels.shape


def test_new_figures_show_as_png_in_a_notebook_under_any_backend():
    """A Figure that ends a notebook cell is drawn (IPython's _repr_png_), not printed as
    ``<Figure size ...>``, even under Agg (the test suite's backend)."""
    figures = [plot_curves({"loss": [3.0, 2.0, 1.0]}),
               show_feature_maps(np.zeros((1, 2, 4, 4), dtype=np.float32)),
               draw_boxes(image_chw(), np.zeros((0, 4), dtype=np.float32)).figure]
    for fig in figures:
        png = fig._repr_png_()
        assert png.startswith(b"\x89PNG\r\n\x1a\n"), type(fig).__name__
