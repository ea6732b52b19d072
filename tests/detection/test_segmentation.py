"""Tests for minircnn/detection/segmentation.py: the fast FH segmentation is the naive one."""

import numpy as np
import pytest

from minircnn.data import ShapesDataset
from minircnn.detection import segmentation
from minircnn.detection.proposal_cache import _fingerprint
from minircnn.detection.proposals import convert_color, selective_search
from minircnn.detection.segmentation import (
    felzenszwalb,
    felzenszwalb_naive,
    kruskal_order,
    neighbour_edges,
)


@pytest.mark.parametrize("values", [
    np.array([]), np.array([3.0]), np.array([2.0, 2.0, 2.0, 1.0, 2.0]),
    np.random.default_rng(0).integers(0, 5, 1000).astype(float),      # nearly all ties
    np.random.default_rng(1).random(2000),                              # no ties
    np.round(np.random.default_rng(2).random(5000) * 50) / 7,           # runs of ties
    np.random.default_rng(3).permutation(np.r_[np.nextafter(1.0, 2.0) ** np.arange(3000),
                                               np.ones(5), np.zeros(7), [1e300, 5e-324]]),
])                                                  # ^ weights 1 ulp apart, extremes
def test_kruskal_order_is_the_stable_argsort(values):
    np.testing.assert_array_equal(kruskal_order(values), np.argsort(values, kind="stable"))


def test_kruskal_order_refuses_negative_weights_orders_minus_zero_as_zero_and_float32():
    with pytest.raises(ValueError, match="weights >= 0"):
        kruskal_order(np.array([1.0, -1.0]))
    np.testing.assert_array_equal(kruskal_order(np.array([1.0, -0.0, 0.0, 0.5])), [1, 2, 3, 0])
    float32 = np.random.default_rng(4).integers(0, 9, 700).astype(np.float32) / 3
    np.testing.assert_array_equal(kruskal_order(float32), np.argsort(float32, kind="stable"))


def _images():
    """Random, quantised (many equal weights), uniform, tiny and shapes images, odd sizes."""
    rng = np.random.default_rng(7)
    for h, w in [(1, 1), (1, 9), (7, 1), (2, 2), (5, 3), (17, 31), (48, 33)]:
        yield f"random {h}x{w}", rng.random((3, h, w))
        yield f"quantised {h}x{w}", np.round(rng.random((3, h, w)) * 2) / 2
    yield "uniform", np.full((3, 21, 18), 0.3)
    for seed in (0, 5):
        for i, sample in enumerate(ShapesDataset(2, seed=seed)):
            yield f"shapes seed {seed} #{i}", sample["image"]
    yield "shapes 57 px", ShapesDataset(1, image_size=57, seed=3)[0]["image"]


SETTINGS = [dict(), dict(scale=20.0, sigma=0.0, min_size=1), dict(scale=500.0, sigma=0.5,
            min_size=50), dict(scale=1e-3, min_size=0), dict(scale=300, min_size=10_000)]


@pytest.mark.parametrize("chunk, loop_below, largest", [
    (segmentation.CHUNK, segmentation.LOOP_BELOW, None),
    (64, 8, 4000),
    (5, 1, 600),              # rounds until every edge is settled: no loop at all
])
def test_fast_labels_are_the_naive_labels(chunk, loop_below, largest, monkeypatch):
    """Every label of every pixel, for chunks that split chains anywhere and any share of
    rounds and loop (tiny chunks on the small images only, for time)."""
    monkeypatch.setattr(segmentation, "CHUNK", chunk)
    monkeypatch.setattr(segmentation, "LOOP_BELOW", loop_below)
    for name, image in _images():
        if largest is not None and image[0].size > largest:
            continue
        for space in ("rgb", "hsv"):
            img = convert_color(image, space)
            for kw in SETTINGS:
                naive = felzenszwalb_naive(img, **kw)
                assert naive.shape == image.shape[1:]
                np.testing.assert_array_equal(felzenszwalb(img, **kw), naive,
                                              err_msg=f"{name} {space} {kw}")


def test_the_fast_version_settles_most_edges_in_arrays(monkeypatch):
    """Its loop sees a minority of the edges (else it would be the naive one, slower)."""
    looped = []
    loop = segmentation._merge_loop
    monkeypatch.setattr(segmentation, "_merge_loop",
                        lambda *args: looped.append(len(args[3])) or loop(*args))
    image = ShapesDataset(1, seed=0)[0]["image"]
    felzenszwalb(image)
    edges = len(neighbour_edges(image)[0])
    assert 0 < sum(looped) < edges / 4


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_selective_search_tiers_give_the_same_boxes(seed):
    rng = np.random.default_rng(seed)
    images = [sample["image"] for sample in ShapesDataset(2, seed=seed)]
    images += [rng.random((3, 23, 40)), np.round(rng.random((3, 16, 16)) * 3) / 3,
               np.full((3, 2, 2), 0.5)]
    for image in images:
        for kw in (dict(), dict(scale=(50, 150), color_spaces=("rgb", "opponent"), seed=4)):
            fast = selective_search(image, max_boxes=None, **kw)
            np.testing.assert_array_equal(fast, selective_search(image, max_boxes=None,
                                                                 impl="naive", **kw))


def test_the_tier_is_not_part_of_the_proposal_cache_key():
    """Same boxes, same cache: the key holds exactly the parameters that change boxes."""
    ds = ShapesDataset(1, image_size=32)
    key = _fingerprint(ds, "selective_search", 300, {})
    assert key["params"] == dict(scale=100.0, sigma=0.8, min_size=20,
                                 color_spaces=("rgb", "hsv"),
                                 strategies=("ctsf", "tsf", "cs"), seed=0)
    assert _fingerprint(ds, "selective_search", 300, {"impl": "naive"}) == key
    with pytest.raises(ValueError, match="impl"):
        selective_search(ds[0]["image"], impl="slow")
