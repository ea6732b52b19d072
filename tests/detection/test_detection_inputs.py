"""A table of bad inputs for the detection functions: each ends in a ValueError or
TypeError naming the argument; counts are never wrapped around; proposal caches are
validated; a model's class list is checked against the dataset's."""

import json

import numpy as np
import pytest

from minircnn import detection as D
from minircnn.data import ShapesDataset
from minircnn.detection.proposal_cache import _load_cache

BOXES = np.array([[0, 0, 10, 10], [5, 5, 15, 15]], dtype=np.float64)
SCORES = np.array([0.9, 0.8])
NAN, INF = float("nan"), float("inf")
IMAGE = np.random.default_rng(0).random((3, 24, 24))
DS = ShapesDataset(2, image_size=32)


def gen():
    return np.random.default_rng(0)


BAD_CALLS = [
    ("nms complex scores", lambda: D.nms(BOXES, SCORES + 1j, 0.5), TypeError, "scores"),
    ("postprocess nan scores", lambda: D.postprocess(np.array([[NAN, 0.5]]), np.zeros((1, 8)),
                                                     BOXES[:1], (10, 10)),
     ValueError, "cls_scores"),
    ("postprocess inf deltas", lambda: D.postprocess(np.zeros((1, 2)), np.full((1, 8), INF),
                                                     BOXES[:1], (10, 10)),
     ValueError, "bbox_deltas"),
    ("match nan scores", lambda: D.match_detections(BOXES, np.array([NAN, 1.0]), BOXES),
     ValueError, "det_scores"),
    ("box_area huge", lambda: D.box_area(np.array([[-1e200, -1e200, 1e200, 1e200]])),
     ValueError, "coordinates within"),
    ("box_iou huge float32", lambda: D.box_iou(np.array([[0, 0, 1e20, 1e20]], np.float32),
                                               BOXES), ValueError, "coordinates within"),
    ("clip int boxes to a fractional size", lambda: D.clip_boxes(np.array([[0, 0, 20, 20]]),
                                                                 (10.5, 10.5)),
     ValueError, "integer boxes"),
    ("selective_search no colour spaces",
     lambda: D.selective_search(IMAGE, color_spaces=()), ValueError, "color_spaces"),
    ("selective_search strategies as one string",
     lambda: D.selective_search(IMAGE, strategies="ctsf"), ValueError, "strategies"),
    ("hierarchical_batch target without labels",
     lambda: D.hierarchical_batch([{"boxes": BOXES}], [BOXES], rng=gen()),
     ValueError, "targets"),
    ("region_wise_batch target without labels",
     lambda: D.region_wise_batch([{"boxes": BOXES}], [BOXES], rng=gen()),
     ValueError, "targets"),
    ("nms threshold nan", lambda: D.nms(BOXES, SCORES, NAN), ValueError, "iou_threshold"),
    ("nms threshold -1", lambda: D.nms(BOXES, SCORES, -1.0), ValueError, "iou_threshold"),
    ("nms scores nan", lambda: D.nms(BOXES, np.array([NAN, 1.0]), 0.5), ValueError, "scores"),
    ("batched_nms float labels", lambda: D.batched_nms(BOXES, SCORES, np.array([0.5, 1.5]),
                                                       0.5), TypeError, "labels"),
    ("batched_nms threshold inf", lambda: D.batched_nms(BOXES, SCORES, np.array([1, 1]), INF),
     ValueError, "iou_threshold"),
    ("clip_boxes size -1", lambda: D.clip_boxes(BOXES, (-1, 10)), ValueError, "image_size"),
    ("clip_boxes size nan", lambda: D.clip_boxes(BOXES, (NAN, 10)), ValueError, "image_size"),
    ("encode weights 0", lambda: D.encode_boxes(BOXES, BOXES, weights=(0, 1, 1, 1)),
     ValueError, "weights"),
    ("decode weights nan", lambda: D.decode_boxes(np.zeros((2, 4)), BOXES,
                                                  weights=(NAN, 1, 1, 1)), ValueError, "weights"),
    ("decode deltas str", lambda: D.decode_boxes("deltas", BOXES), TypeError, "deltas"),
    ("sample_rois 0 rois", lambda: D.sample_rois(BOXES, BOXES, np.array([1, 2]),
                                                 rois_per_image=0, rng=gen()),
     ValueError, "rois_per_image"),
    ("sample_rois -1 rois", lambda: D.sample_rois(BOXES, BOXES, np.array([1, 2]),
                                                  rois_per_image=-1, rng=gen()),
     ValueError, "rois_per_image"),
    ("sample_rois fg_fraction nan", lambda: D.sample_rois(BOXES, BOXES, np.array([1, 2]),
                                                          fg_fraction=NAN, rng=gen()),
     ValueError, "fg_fraction"),
    ("sample_rois bg_iou reversed", lambda: D.sample_rois(BOXES, BOXES, np.array([1, 2]),
                                                          bg_iou=(0.5, 0.1), rng=gen()),
     ValueError, "bg_iou"),
    ("sample_rois label 0", lambda: D.sample_rois(BOXES, BOXES, np.array([0, 2]), rng=gen()),
     ValueError, "gt_labels"),
    ("sample_rois float labels", lambda: D.sample_rois(BOXES, BOXES, np.array([1.5, 2]),
                                                       rng=gen()), TypeError, "gt_labels"),
    ("sample_rois rng int", lambda: D.sample_rois(BOXES, BOXES, np.array([1, 2]), rng=3),
     TypeError, "rng"),
    ("selective_search max_boxes -1", lambda: D.selective_search(IMAGE, max_boxes=-1),
     ValueError, "max_boxes"),
    ("selective_search max_boxes 0", lambda: D.selective_search(IMAGE, max_boxes=0),
     ValueError, "max_boxes"),
    ("selective_search scale nan", lambda: D.selective_search(IMAGE, scale=NAN),
     ValueError, "scale"),
    ("selective_search sigma -1", lambda: D.selective_search(IMAGE, sigma=-1.0),
     ValueError, "sigma"),
    ("selective_search color", lambda: D.selective_search(IMAGE, color_spaces=("xyz",)),
     ValueError, "color_spaces"),
    ("dense_boxes stride nan", lambda: D.dense_boxes(32, stride=NAN), ValueError, "stride"),
    ("dense_boxes ratio 0", lambda: D.dense_boxes(32, aspect_ratios=(0,)), ValueError,
     "aspect_ratios"),
    ("dense_boxes size -1", lambda: D.dense_boxes(-1), ValueError, "image_size"),
    ("recall counts 0", lambda: D.recall_vs_proposals([BOXES, BOXES], DS, counts=(0,)),
     ValueError, "counts"),
    ("recall counts -3", lambda: D.recall_vs_proposals([BOXES, BOXES], DS, counts=(-3,)),
     ValueError, "counts"),
    ("recall threshold nan", lambda: D.recall_vs_proposals([BOXES, BOXES], DS,
                                                           iou_thresholds=(NAN,)),
     ValueError, "iou_thresholds"),
    ("evaluate threshold 1.5", lambda: D.evaluate([], [], iou_threshold=1.5), ValueError,
     "iou_threshold"),
    ("evaluate missing scores", lambda: D.evaluate([dict(boxes=BOXES, labels=[1, 2])], [DS[0]]),
     ValueError, "scores"),
    ("evaluate label 0", lambda: D.evaluate(
        [dict(boxes=BOXES, scores=SCORES, labels=np.array([0, 1]))], [DS[0]]),
     ValueError, "labels"),
    ("postprocess max_dets -1", lambda: D.postprocess(np.ones((2, 3)), np.zeros((2, 12)),
                                                      BOXES, (32, 32), max_dets=-1),
     ValueError, "max_dets"),
    ("postprocess nms nan", lambda: D.postprocess(np.ones((2, 3)), np.zeros((2, 12)), BOXES,
                                                  (32, 32), nms_thresh=NAN),
     ValueError, "nms_thresh"),
    ("postprocess deltas", lambda: D.postprocess(np.ones((2, 3)), np.zeros((2, 8)), BOXES,
                                                 (32, 32)), ValueError, "bbox_deltas"),
]


@pytest.mark.parametrize("label, call, error, words", BAD_CALLS, ids=[c[0] for c in BAD_CALLS])
def test_bad_detection_inputs_are_named(label, call, error, words):
    with pytest.raises(error, match=words):
        call()


def test_counts_are_not_wrapped_around():
    """max_dets=1 keeps one detection; max_boxes=1 keeps one box (never 'all but one')."""
    dets = D.postprocess(np.array([[0, 5, 5.0], [0, 4, 4.0]]), np.zeros((2, 12)),
                         np.array([[0, 0, 10, 10], [20, 20, 30, 30.0]]), (32, 32), max_dets=1)
    assert len(dets["scores"]) == 1
    assert len(D.selective_search(IMAGE, max_boxes=1)) == 1
    result = D.recall_vs_proposals([BOXES, BOXES], DS, counts=(1,))
    assert result["counts"].tolist() == [1]


def test_detect_and_evaluate_check_the_class_list():
    class Model:
        num_classes, classes = 5, ("a", "b", "c", "d", "e")

    with pytest.raises(ValueError, match=r"detects 5 classes .*dataset has 3 classes"):
        D.check_model_classes(Model(), DS.classes, source="checkpoint m.npz")
    Model.num_classes, Model.classes = 3, ("circle", "square", "star")
    with pytest.raises(ValueError, match="'star'"):
        D.check_model_classes(Model(), DS.classes)
    Model.classes = None                      # an older, unnamed model: the count decides
    D.check_model_classes(Model(), DS.classes)


# --- proposal caches ---------------------------------------------------------------------
def _cache(tmp_path, name, **arrays):
    path = tmp_path / name
    np.savez(path, **arrays)
    return str(path)


META = {"num_images": 1, "method": "dense"}


@pytest.mark.parametrize("name, arrays, words", [
    ("nometa.npz", dict(boxes=np.zeros((2, 4)), counts=np.array([2])), r"no \['meta'\]"),
    ("sum.npz", dict(boxes=np.zeros((2, 4)), counts=np.array([5]),
                     meta=np.array(json.dumps(META))), "summing to 5 for 2 boxes"),
    ("neg.npz", dict(boxes=np.zeros((2, 4)), counts=np.array([3, -1]),
                     meta=np.array(json.dumps(META))), "inconsistent"),
    ("cols.npz", dict(boxes=np.zeros((2, 3)), counts=np.array([2]),
                      meta=np.array(json.dumps(META))), "inconsistent"),
    ("json.npz", dict(boxes=np.zeros((2, 4)), counts=np.array([2]), meta=np.array("{bad")),
     "meta is unreadable"),
])
def test_an_inconsistent_proposal_cache_names_the_file(tmp_path, name, arrays, words):
    path = _cache(tmp_path, name, **arrays)
    with pytest.raises(ValueError, match=f"{name}.*{words}"):
        _load_cache(path, META)


def test_a_plain_npy_or_truncated_cache_names_the_file(tmp_path):
    np.save(tmp_path / "c.npy", np.ones(3))
    with pytest.raises(ValueError, match=r"c\.npy.*not a readable \.npz"):
        _load_cache(str(tmp_path / "c.npy"), META)
    good = _cache(tmp_path, "t.npz", boxes=np.zeros((200, 4)), counts=np.array([200]),
                  meta=np.array(json.dumps(META)))
    data = (tmp_path / "t.npz").read_bytes()
    (tmp_path / "t.npz").write_bytes(data[:len(data) // 2])
    with pytest.raises(ValueError, match=r"t\.npz.*not a readable \.npz"):
        _load_cache(good, META)
    good = _cache(tmp_path, "ok.npz", boxes=np.ones((3, 4), np.float32), counts=np.array([3]),
                  meta=np.array(json.dumps(META)))
    assert [p.shape for p in _load_cache(good, META)] == [(3, 4)]
