"""Tests for minircnn/data/shapes.py (and the drawing helpers in minircnn/data/draw.py)."""

import json
import os

import numpy as np
import pytest

from minircnn.cli.main import main
from minircnn.data import ShapesClassification, ShapesDataset, export_dataset, to_coco
from minircnn.data.draw import pixel_grid, polygon_mask


@pytest.fixture(scope="module")
def samples():
    ds = ShapesDataset(40, seed=3)
    return ds, [ds.get(i, masks=True) for i in range(len(ds))]


def test_same_arguments_same_bytes_and_seeds_differ():
    a, b = ShapesDataset(5, seed=7), ShapesDataset(5, seed=7)
    for i in (4, 0, 2):                            # order of access does not matter
        sa, sb = a[i], b[i]
        assert sa["image"].tobytes() == sb["image"].tobytes()
        assert sa["boxes"].tobytes() == sb["boxes"].tobytes()
        assert np.array_equal(sa["labels"], sb["labels"])
    c = ShapesDataset(5, seed=8)
    assert a[0]["image"].tobytes() != c[0]["image"].tobytes()


def test_known_pixels_are_stable():
    # Golden values: "same bytes on every machine". If drawing changes on purpose, update
    # them (and the shipped detector, which was trained on these images).
    import hashlib

    s = ShapesDataset(2, seed=0)[1]
    assert hashlib.sha256(s["image"].tobytes()).hexdigest()[:16] == "a1a29a1427f48b9f"
    assert s["boxes"].tolist() == [[5, 28, 33, 49], [72, 92, 94, 124], [39, 86, 77, 125],
                                   [96, 68, 111, 83]]
    assert s["labels"].tolist() == [3, 3, 2, 2]
    assert np.array_equal(s["image"] * 255, np.round(s["image"] * 255))   # 8-bit values


def test_sample_types_ranges_and_shapes(samples):
    ds, items = samples
    assert len(ds) == 40 and ds.classes == ("circle", "square", "triangle")
    for i, s in enumerate(items):
        img, boxes, labels = s["image"], s["boxes"], s["labels"]
        assert img.dtype == np.float32 and img.shape == (3, 128, 128)
        assert 0.0 <= img.min() and img.max() <= 1.0
        assert boxes.dtype == np.float32 and boxes.shape == (len(labels), 4)
        assert labels.dtype == np.int64 and set(labels.tolist()) <= {1, 2, 3}
        assert 1 <= len(labels) <= 4
        assert s["image_id"] == i
        assert np.all(boxes[:, :2] >= 0) and np.all(boxes[:, 2:] <= 128)
        assert np.all(boxes[:, 2:] > boxes[:, :2])


def test_boxes_are_tight_mask_extents(samples):
    _, items = samples
    for s in items:
        for box, mask in zip(s["boxes"], s["masks"], strict=True):
            rows, cols = np.nonzero(mask)
            assert box.tolist() == [cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]
            # the object really is drawn there: its pixels differ from the box surroundings
            x1, y1, x2, y2 = box.astype(int)
            ring = np.ones(s["image"].shape[1:], dtype=bool)
            ring[max(y1 - 3, 0):y2 + 3, max(x1 - 3, 0):x2 + 3] = False
            ring[max(y1 - 6, 0):y2 + 6, max(x1 - 6, 0):x2 + 6] ^= True
            ring &= ~s["masks"].any(axis=0)
            if ring.sum() > 20:
                inside = s["image"][:, mask].mean(axis=1)
                outside = s["image"][:, ring].mean(axis=1)
                assert np.linalg.norm(inside - outside) > 0.1


def test_sizes_overlaps_and_class_mix(samples):
    from minircnn.detection.boxes import box_iou

    _, items = samples
    extents, counts = [], []
    for s in items:
        b = s["boxes"]
        extents.extend(np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]).tolist())
        iou = box_iou(b, b) - np.eye(len(b))
        assert iou.max() <= 0.2 + 1e-6
        counts.append(len(b))
    assert 8 <= min(extents) and max(extents) <= 64
    assert np.percentile(extents, 90) >= 40 and np.percentile(extents, 10) <= 22
    assert len(set(counts)) >= 3
    labels = np.concatenate([s["labels"] for s in items])
    assert np.bincount(labels, minlength=4)[1:].min() >= 10


def test_indexing_and_bad_arguments():
    ds = ShapesDataset(3, image_size=64, max_objects=2)
    assert ds[-1]["image_id"] == 2 and ds[-1]["image"].shape == (3, 64, 64)
    assert len(ds[0]["labels"]) <= 2
    with pytest.raises(IndexError):
        ds[3]
    with pytest.raises(IndexError):
        ds[-4]
    with pytest.raises(ValueError, match="max_objects"):
        ShapesDataset(3, max_objects=0)
    with pytest.raises(TypeError, match="num_images"):
        ShapesDataset(2.5)


def test_to_coco_loads_in_pycocotools_and_round_trips():
    ds = ShapesDataset(6, seed=1)
    coco_dict = json.loads(json.dumps(to_coco(ds)))
    COCO = pytest.importorskip("pycocotools.coco").COCO
    coco = COCO()
    coco.dataset = coco_dict
    coco.createIndex()
    assert sorted(coco.getImgIds()) == list(range(6))
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == list(ds.classes)
    for i in range(6):
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[i]))
        boxes = np.array([[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2],
                           a["bbox"][1] + a["bbox"][3]] for a in anns])
        np.testing.assert_allclose(boxes, ds[i]["boxes"])
        assert [a["category_id"] for a in anns] == ds[i]["labels"].tolist()
    assert min(a["id"] for a in coco_dict["annotations"]) == 1


def test_export_and_cli_write_pngs_and_json(tmp_path):
    import matplotlib.image

    assert main(["dataset", str(tmp_path / "cli"), "--num-images", "3", "--seed", "2",
                 "--image-size", "64"]) == 0
    files = sorted(os.listdir(tmp_path / "cli"))
    assert files == ["000000.png", "000001.png", "000002.png", "annotations.json"]
    ds = ShapesDataset(3, seed=2, image_size=64)
    png = matplotlib.image.imread(str(tmp_path / "cli" / "000001.png"))[..., :3]
    np.testing.assert_array_equal(png.transpose(2, 0, 1), ds[1]["image"])
    path = export_dataset(ShapesDataset(2, seed=2, image_size=64), tmp_path / "lib")
    COCO = pytest.importorskip("pycocotools.coco").COCO
    assert len(COCO(path).getImgIds()) == 2


def test_classification_shapes_labels_balance():
    ds = ShapesClassification(20, classes=("circle", "star", "ring", "cross"), seed=4)
    x, y = ds.arrays()
    assert x.shape == (20, 3, 32, 32) and x.dtype == np.float32 and y.dtype == np.int64
    assert 0 <= x.min() and x.max() <= 1
    assert np.bincount(y).tolist() == [5, 5, 5, 5]
    img, label = ds[-1]
    assert label == 3 and np.array_equal(img, x[19])
    assert len(ShapesClassification.ALL_SHAPES) >= 8
    plain = ShapesClassification(4, background="plain", seed=4)
    assert plain[0][0].tobytes() != ShapesClassification(4, seed=4)[0][0].tobytes()
    with pytest.raises(ValueError, match="classes"):
        ShapesClassification(4, classes=("circle", "blob"))
    with pytest.raises(ValueError, match="background"):
        ShapesClassification(4, background="sky")


def test_every_shape_kind_draws_a_centred_blob():
    for kind in ShapesClassification.ALL_SHAPES:
        other = "square" if kind == "circle" else "circle"
        ds = ShapesClassification(1, classes=(kind, other), background="plain", seed=0)
        img, label = ds[0]
        assert label == 0
        corner = img[:, :3, :3].reshape(3, -1).mean(axis=1)
        shape = np.linalg.norm(img - corner[:, None, None], axis=0) > 0.2   # (S, S)
        assert 0.08 < shape.mean() < 0.6, kind
        rows, cols = np.nonzero(shape)
        assert abs(rows.mean() - 16) < 4 and abs(cols.mean() - 16) < 4, kind


def test_polygon_mask_square_matches_pixel_count():
    xx, yy = pixel_grid(10)
    mask = polygon_mask(xx, yy, np.array([[2.0, 3.0], [7.0, 3.0], [7.0, 8.0], [2.0, 8.0]]))
    assert mask.sum() == 25 and mask[3:8, 2:7].all()


@pytest.mark.parametrize("image_id", [None, "../etc/x", -1, 1.5, True])
def test_to_coco_needs_an_integer_image_id(image_id):
    """The id names the PNG (000007.png): a path-like or missing id is refused."""
    sample = dict(ShapesDataset(1, image_size=32)[0])
    if image_id is None:
        del sample["image_id"]
    else:
        sample["image_id"] = image_id
    with pytest.raises(ValueError, match=r"dataset\[0\]\['image_id'\] must be an integer >= 0"):
        to_coco([sample])


def test_drawn_keeps_every_item_and_the_classes():
    """Drawn reads each image once and keeps it: the same items as the dataset's, with
    its classes (what evaluation names the per-class APs by)."""
    from minircnn.data.shapes import Drawn

    ds = ShapesDataset(3, image_size=64, seed=5)
    kept = Drawn(ds)
    assert len(kept) == 3 and kept.classes == ds.classes
    for i in range(3):
        np.testing.assert_array_equal(kept[i]["image"], ds[i]["image"])
        np.testing.assert_array_equal(kept[i]["boxes"], ds[i]["boxes"])
    assert kept[1] is kept[1]                                   # not drawn again
