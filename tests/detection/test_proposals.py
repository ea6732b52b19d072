"""Tests for minircnn/detection/proposals.py."""

import os

import numpy as np
import pytest
from scipy import ndimage

from minircnn.data import ShapesDataset
from minircnn.detection import box_iou, compute_proposals, dense_boxes, selective_search
from minircnn.detection.proposals import (
    _adjacent_pairs,
    _grouping,
    _histogram_codes,
    _pair_terms,
    _region_features,
    _texture_features,
    convert_color,
    felzenszwalb,
    hierarchical_grouping,
)


def two_rectangles(noise=0.0):
    """Flat grey 64x64 image with a red and a blue rectangle, and their boxes."""
    img = np.full((3, 64, 64), 0.5)
    img[:, 8:28, 6:30] = np.array([0.9, 0.1, 0.1])[:, None, None]    # rows 8..27, cols 6..29
    img[:, 36:60, 40:56] = np.array([0.1, 0.2, 0.9])[:, None, None]
    img += np.random.default_rng(0).normal(0, noise, img.shape)
    boxes = np.array([[6, 8, 30, 28], [40, 36, 56, 60]], dtype=np.float64)
    return np.clip(img, 0, 1), boxes


def test_two_rectangles_are_recovered():
    img, gt = two_rectangles(noise=0.02)
    boxes = selective_search(img)
    assert boxes.dtype == np.float32 and boxes.ndim == 2 and boxes.shape[1] == 4
    assert np.all(box_iou(gt, boxes).max(axis=1) > 0.9)


def test_boxes_valid_deduplicated_truncated_deterministic():
    img = ShapesDataset(1, seed=5)[0]["image"]
    boxes = selective_search(img, max_boxes=None)
    assert np.all(boxes[:, 0] >= 0) and np.all(boxes[:, 1] >= 0)
    assert np.all(boxes[:, 2] <= 128) and np.all(boxes[:, 3] <= 128)
    assert np.all(boxes[:, 2] > boxes[:, 0]) and np.all(boxes[:, 3] > boxes[:, 1])
    assert len(np.unique(boxes, axis=0)) == len(boxes) > 30
    top = selective_search(img, max_boxes=25)
    np.testing.assert_array_equal(top, boxes[:25])       # truncation keeps the ranking
    assert not np.array_equal(selective_search(img, max_boxes=25, seed=1), top)


def test_recall_on_shapes():
    ds = ShapesDataset(8, seed=11)
    hits = []
    for sample in ds:
        boxes = selective_search(sample["image"], max_boxes=300)
        assert len(boxes) <= 300
        hits.extend(box_iou(sample["boxes"], boxes).max(axis=1) >= 0.5)
    assert np.mean(hits) >= 0.9


def test_felzenszwalb_regions_follow_colour_and_scale():
    img, _ = two_rectangles()
    labels = felzenszwalb(img, scale=100, sigma=0.0, min_size=10)   # sigma 0: crisp edges
    assert labels.shape == (64, 64) and labels.max() == 2            # background + 2 rectangles
    assert np.bincount(labels.ravel()).tolist() == [64 * 64 - 480 - 384, 480, 384]
    assert len(np.unique(labels[8:28, 6:30])) == 1
    assert labels[10, 10] != labels[40, 45] != labels[0, 0]
    noisy, _ = two_rectangles(noise=0.1)
    fine = felzenszwalb(noisy, scale=20, sigma=0.5, min_size=1).max()
    coarse = felzenszwalb(noisy, scale=500, sigma=0.5, min_size=1).max()
    assert coarse < fine
    big = felzenszwalb(noisy, scale=20, sigma=0.5, min_size=30)
    assert np.bincount(big.ravel()).min() >= 30


def test_hierarchy_ends_with_the_whole_image():
    img, _ = two_rectangles()
    labels = felzenszwalb(img, scale=100, sigma=0.5, min_size=10)
    boxes = hierarchical_grouping(labels, img, _texture_features(img), "ctsf")
    assert len(boxes) == 2 * (labels.max() + 1) - 1
    np.testing.assert_array_equal(boxes[-1], [0, 0, 64, 64])


def _histograms_by_definition(labels, image):
    """(R, 75 + 240) per region: the colour histogram (3 channels x 25 bins), then the 24
    texture histograms (3 channels x 4 angles x the derivative's positive and negative
    part, 10 bins each; the part of the other sign is 0, bin 0), each L1-normalised."""
    gy = ndimage.gaussian_filter(image, (0, 1.0, 1.0), order=(0, 1, 0))
    gx = ndimage.gaussian_filter(image, (0, 1.0, 1.0), order=(0, 0, 1))
    parts = []
    for c in range(3):
        for t in range(4):
            d = np.cos(t * np.pi / 4) * gx[c] + np.sin(t * np.pi / 4) * gy[c]   # (H, W)
            for part in (np.maximum(d, 0), np.maximum(-d, 0)):
                parts.append(np.minimum((part / 0.25 * 10).astype(int), 9))
    colour = np.minimum((image * 25).astype(int), 24)
    rows = []
    for region in range(labels.max() + 1):
        mask = labels == region
        col = np.concatenate([np.bincount(colour[c][mask], minlength=25) for c in range(3)])
        tex = np.concatenate([np.bincount(part[mask], minlength=10) for part in parts])
        rows.append(np.concatenate([col / col.sum(), tex / tex.sum()]))
    return np.array(rows)


@pytest.mark.parametrize("space", ["rgb", "hsv"])
def test_region_histograms_follow_their_definition(space):
    """One count of (region, column) pairs gives each region's 27 histograms; flat areas
    (derivative exactly 0) and saturated bins included."""
    flat, _ = two_rectangles()
    for image in (flat, two_rectangles(noise=0.1)[0], ShapesDataset(1, seed=3)[0]["image"]):
        img = convert_color(image.astype(np.float64), space)
        labels = felzenszwalb(img, scale=50, sigma=0.5, min_size=5)
        codes = _histogram_codes(img, _texture_features(img))
        got = _region_features(labels, codes)
        np.testing.assert_allclose(got["hist"], _histograms_by_definition(labels, img),
                                   rtol=0, atol=1e-15)   # same counts, same divisions
        np.testing.assert_array_equal(got["sizes"], np.bincount(labels.ravel()))


def _grouping_by_definition(f, pairs, strategy, area):
    """Uijlings et al.'s greedy grouping, plainly: every step computes the similarity of
    every pair of touching regions (in arrays) and merges the most similar. Ties go to
    the pair first in _grouping's heap order: (-s, younger, older) for a pair made by a
    merge, (-s, i, j) for an initial pair i < j."""
    n = len(f["sizes"])
    sizes, boxes, hist = list(f["sizes"]), list(f["boxes"]), list(f["hist"])
    touching = {tuple(p) for p in pairs.tolist()}           # (older, younger)
    while touching:
        i, j = np.array(sorted(touching)).T                # (P,) each
        size = np.array(sizes)[i] + np.array(sizes)[j]
        s = np.zeros(len(i))
        common = np.minimum(np.array(hist)[i], np.array(hist)[j])
        if "c" in strategy:
            s += common[:, :75].sum(axis=1)
        if "t" in strategy:
            s += common[:, 75:].sum(axis=1)
        if "s" in strategy:
            s += 1.0 - size / area
        if "f" in strategy:
            bi, bj = np.array(boxes)[i], np.array(boxes)[j]
            bw = np.maximum(bi[:, 2], bj[:, 2]) - np.minimum(bi[:, 0], bj[:, 0])
            bh = np.maximum(bi[:, 3], bj[:, 3]) - np.minimum(bi[:, 1], bj[:, 1])
            s += 1.0 - (bw * bh - size) / area
        key = [(-v, b, a) if b >= n else (-v, a, b) for v, a, b in zip(s, i, j, strict=True)]
        _, a, b = min(key)
        t = len(sizes)
        sizes.append(sizes[a] + sizes[b])
        boxes.append(np.r_[np.minimum(boxes[a][:2], boxes[b][:2]),
                           np.maximum(boxes[a][2:], boxes[b][2:])])
        hist.append((sizes[a] * hist[a] + sizes[b] * hist[b]) / (sizes[a] + sizes[b]))
        others = {x for pair in touching if {a, b} & set(pair) for x in pair} - {a, b}
        touching = {p for p in touching if not {a, b} & set(p)} | {(k, t) for k in others}
    return np.array(boxes)


@pytest.mark.parametrize("strategy", ["ctsf", "tsf", "cs", "c", "t", "s", "f"])
def test_grouping_merges_the_most_similar_pair_each_step(strategy):
    """The heap, its stale entries and the neighbour sets give the greedy loop's boxes."""
    for seed in (0, 5):
        image = ShapesDataset(1, seed=seed)[0]["image"].astype(np.float64)
        for space in ("rgb", "hsv"):
            img = convert_color(image, space)
            labels = felzenszwalb(img)
            f = _region_features(labels, _histogram_codes(img, _texture_features(img)))
            pairs = _adjacent_pairs(labels)
            area = float(labels.size)
            expected = _grouping_by_definition(f, pairs, strategy, area)
            got = _grouping(f, pairs, _pair_terms(f, pairs, area), strategy, area)
            np.testing.assert_array_equal(got, expected, err_msg=f"seed {seed} {space}")


def test_hsv_matches_matplotlib():
    from matplotlib.colors import rgb_to_hsv

    rgb = np.random.default_rng(0).uniform(0, 1, (3, 5, 7))
    rgb[:, 0, 0] = 0.3                                                 # grey: hue 0
    rgb[:, 0, 1] = [0.8, 0.8, 0.2]                                     # ties for the max
    rgb[:, 0, 2] = [0.1, 0.7, 0.7]
    expected = rgb_to_hsv(rgb.transpose(1, 2, 0)).transpose(2, 0, 1)
    np.testing.assert_allclose(convert_color(rgb, "hsv"), expected, atol=1e-12)
    opp = convert_color(rgb, "opponent")
    assert opp.min() >= 0 and opp.max() <= 1


def test_dense_boxes_counts_and_shapes():
    boxes = dense_boxes(64, scales=(16, 32), aspect_ratios=(1.0,), stride=8)
    assert boxes.shape == (7 * 7 + 5 * 5, 4) and boxes.dtype == np.float32
    np.testing.assert_array_equal(boxes[0], [0, 0, 16, 16])
    np.testing.assert_array_equal(boxes[-1], [32, 32, 64, 64])
    tall = dense_boxes((40, 64), scales=(16,), aspect_ratios=(4.0,), stride=4)
    assert np.all(tall[:, 3] - tall[:, 1] == 32) and np.all(tall[:, 2] - tall[:, 0] == 8)
    assert len(tall) == 3 * 15 and tall[:, 3].max() <= 40
    assert len(dense_boxes(16, scales=(64,))) == 0


def test_compute_proposals_cache_round_trip_and_mismatch(tmp_path):
    ds = ShapesDataset(3, image_size=48, seed=2)
    path = tmp_path / "sub" / "props.npz"
    first = compute_proposals(ds, max_boxes=40, cache=path)
    assert [p.shape[1] for p in first] == [4, 4, 4] and all(len(p) <= 40 for p in first)
    assert os.listdir(tmp_path / "sub") == ["props.npz"]           # no temp file left
    again = compute_proposals(ds, max_boxes=40, cache=path)
    for a, b in zip(first, again, strict=True):
        assert a.dtype == b.dtype == np.float32
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="max_boxes"):
        compute_proposals(ds, max_boxes=20, cache=path)
    with pytest.raises(ValueError, match="num_images"):
        compute_proposals(ShapesDataset(2, image_size=48, seed=2), max_boxes=40, cache=path)
    with pytest.raises(ValueError, match="params"):
        compute_proposals(ds, max_boxes=40, cache=path, scale=60.0)
    with pytest.raises(TypeError):
        compute_proposals(ds, max_boxes=40, cache=path, scael=60.0)
    redone = compute_proposals(ds, max_boxes=20, cache=path, recompute=True)
    assert all(len(p) <= 20 for p in redone)
    assert len(compute_proposals(ds, max_boxes=20, cache=path)[0]) == len(redone[0])


class _RecordingBar:
    """Stands in for a progress bar: records every bar made and what it counted."""
    made: list = []

    def __init__(self, total=None, desc=None, **kwargs):
        self.total, self.desc, self.counted = total, desc, 0
        _RecordingBar.made.append(self)

    def update(self, n=1):
        self.counted += n

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_workers_share_the_images_under_one_bar_and_one_cache_file(tmp_path, monkeypatch):
    """2 processes give the same boxes as 1, in one cache file that 1 process then reads."""
    from minircnn.utils import progress

    monkeypatch.setattr(progress, "progress_bar",   # the bar compute_proposals asks for
                        lambda total, desc, **kwargs: _RecordingBar(total, desc))
    monkeypatch.setattr(_RecordingBar, "made", [])
    ds = ShapesDataset(11, image_size=48, seed=3)        # 2 jobs: 8 images, then 3
    one = compute_proposals(ds, max_boxes=30)
    path = tmp_path / "props.npz"
    two = compute_proposals(ds, max_boxes=30, cache=path, workers=2)
    for a, b in zip(one, two, strict=True):
        np.testing.assert_array_equal(a, b)
    assert [(bar.total, bar.counted) for bar in _RecordingBar.made] == [(11, 11), (11, 11)]
    assert os.listdir(tmp_path) == ["props.npz"]
    written = os.path.getmtime(path)
    read = compute_proposals(ds, max_boxes=30, cache=path, workers=1)    # any count reads it
    assert os.path.getmtime(path) == written and len(_RecordingBar.made) == 2
    for a, b in zip(one, read, strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="workers"):
        compute_proposals(ds, workers=0)


def test_compute_proposals_dense():
    ds = ShapesDataset(2, image_size=64)
    props = compute_proposals(ds, method="dense", max_boxes=30, scales=(16, 32), stride=8)
    assert len(props) == 2 and len(props[0]) == 30
    np.testing.assert_array_equal(props[0], props[1])
    full = dense_boxes(64, scales=(16, 32), stride=8)
    assert (box_iou(props[0], full).max(axis=1) == 1).all()


def test_proposals_never_read_ground_truth():
    images = [{"image": s["image"]} for s in ShapesDataset(2, image_size=48, seed=4)]
    props = compute_proposals(images, max_boxes=10)             # no "boxes", no "labels"
    assert len(props) == 2 and all(len(p) == 10 for p in props)


def test_bad_input_raises():
    img, _ = two_rectangles()
    with pytest.raises(ValueError, match="image"):
        selective_search(img[0])
    with pytest.raises(ValueError, match="image"):
        selective_search(img.transpose(1, 2, 0).copy())
    with pytest.raises(ValueError, match="image"):
        selective_search((img * 255).astype(np.uint8))
    bad = img.copy()
    bad[0, 3, 3] = np.nan
    with pytest.raises(ValueError, match="finite"):
        selective_search(bad)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        selective_search(img * 2)
    with pytest.raises(TypeError, match="image"):
        selective_search(img.tolist())
    with pytest.raises(ValueError, match="strategies"):
        selective_search(img, strategies=("cxz",))
    with pytest.raises(ValueError, match="method"):
        compute_proposals(ShapesDataset(1), method="edgeboxes")


def test_a_smaller_dataset_reads_the_first_images_of_a_larger_cache(tmp_path):
    from minircnn.training import TrainConfig
    from minircnn.training.proposals import load_proposals

    config = TrainConfig(cache_dir=str(tmp_path), max_proposals=20, proposal_workers=1)
    five = load_proposals(ShapesDataset(5, image_size=48, seed=2), config, progress=False)
    (made,) = os.listdir(tmp_path)
    assert made.endswith("_n5.npz")
    (tmp_path / made.replace("_n5", "_n4")).write_bytes(b"not an npz")   # tried first, passed over
    three = load_proposals(ShapesDataset(3, image_size=48, seed=2), config, progress=False)
    assert len(three) == 3 and len(os.listdir(tmp_path)) == 2            # no file of its own
    for a, b in zip(three, five[:3], strict=True):
        np.testing.assert_array_equal(a, b)
    other_seed = load_proposals(ShapesDataset(3, image_size=48, seed=7), config, progress=False)
    assert len(other_seed) == 3 and len(os.listdir(tmp_path)) == 3       # its own file
