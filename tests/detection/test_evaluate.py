"""Tests for minircnn/detection/evaluate.py: hand-worked VOC AP, pycocotools agreement."""

import contextlib
import io

import numpy as np
import pytest

from minircnn.detection import evaluate, match_detections, recall_vs_proposals


class Dataset(list):
    classes = ("circle", "square", "triangle")


def item(boxes, labels, image_id=0):
    return dict(boxes=np.array(boxes, dtype=np.float32).reshape(-1, 4),
                labels=np.array(labels, dtype=np.int64), image_id=image_id)


def dets(boxes, scores, labels):
    return dict(boxes=np.array(boxes, dtype=np.float32).reshape(-1, 4),
                scores=np.array(scores, dtype=np.float32), labels=np.array(labels, dtype=np.int64))


def hand_example():
    """Two images; circles (label 1) detected, squares (2) missed, no triangle GT.

    image 0: GT circles A=[0,0,10,10], B=[20,20,30,30]
        .9 [0,0,10,10]    IoU(A)=1        -> TP
        .8 [1,0,11,10]    IoU(A)=90/110   -> FP (A already taken: a duplicate)
        .6 [50,50,60,60]  no overlap      -> FP
        .5 [20,20,25,30]  IoU(B)=50/100   -> FP: exactly 0.5 is not > 0.5
    image 1: GT circle C=[0,0,10,10], GT square [30,30,40,40] (never detected)
        .7 [0,0,10,10]    IoU(C)=1        -> TP
        .4 triangle [0,0,5,5]: a class without GT, left out of the mean
    Circle table (3 GT), by descending score:
        score  TP/FP  cum TP  cum FP  recall  precision
        .9     TP     1       0       1/3     1
        .8     FP     1       1       1/3     1/2
        .7     TP     2       1       2/3     2/3
        .6     FP     2       2       2/3     1/2
        .5     FP     2       3       2/3     2/5
    voc07: recall >= t for t = 0, .1, .2, .3 -> max precision 1; t = .4, .5, .6 -> 2/3;
           t = .7 ... 1 -> none, 0.  AP = (4 * 1 + 3 * 2/3) / 11 = 6/11.
    voc:   envelope 1 on recall (0, 1/3], 2/3 on (1/3, 2/3], 0 beyond:
           AP = 1/3 * 1 + 1/3 * 2/3 = 5/9.
    """
    data = Dataset([item([[0, 0, 10, 10], [20, 20, 30, 30]], [1, 1], 0),
                    item([[0, 0, 10, 10], [30, 30, 40, 40]], [1, 2], 1)])
    detections = [
        dets([[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60], [20, 20, 25, 30]],
             [0.9, 0.8, 0.6, 0.5], [1, 1, 1, 1]),
        dets([[0, 0, 10, 10], [0, 0, 5, 5]], [0.7, 0.4], [1, 3]),
    ]
    return detections, data


def test_voc07_hand_worked_example():
    detections, data = hand_example()
    res = evaluate(detections, data, metric="voc07")
    assert set(res["ap"]) == {"circle", "square"}  # no triangle GT: left out
    assert res["ap"]["circle"] == pytest.approx(6 / 11, abs=1e-12)
    assert res["ap"]["square"] == 0.0  # GT but no detections
    assert res["mAP"] == pytest.approx(3 / 11, abs=1e-12)
    precision, recall = res["pr"]["circle"]
    np.testing.assert_allclose(precision, [1, 1 / 2, 2 / 3, 1 / 2, 2 / 5])
    np.testing.assert_allclose(recall, [1 / 3, 1 / 3, 2 / 3, 2 / 3, 2 / 3])
    assert res["num_gt"] == {"circle": 3, "square": 1}


def test_voc_area_differs_from_voc07():
    detections, data = hand_example()
    res = evaluate(detections, data, metric="voc")
    assert res["ap"]["circle"] == pytest.approx(5 / 9, abs=1e-12)
    assert res["ap"]["circle"] != pytest.approx(6 / 11, abs=1e-3)


def test_threshold_is_strict_at_exactly_half():
    detections, data = hand_example()
    # at 0.49 the .5 detection becomes a TP: recall 1/3,1/3,2/3,2/3,1, precision
    # 1,1/2,2/3,1/2,3/5 -> voc07 = (4 * 1 + 3 * 2/3 + 4 * 3/5) / 11
    res = evaluate(detections, data, iou_threshold=0.49, metric="voc07")
    assert res["ap"]["circle"] == pytest.approx((4 + 2 + 2.4) / 11, abs=1e-12)
    box = np.array([[20.0, 20, 25, 30]])
    gt = np.array([[20.0, 20, 30, 30]])  # IoU exactly 0.5
    assert not match_detections(box, np.ones(1), gt, iou_threshold=0.5, rule="voc").tp[0]
    assert match_detections(box, np.ones(1), gt, iou_threshold=0.5, rule="coco").tp[0]


def test_keys_are_labels_without_classes_attribute():
    detections, data = hand_example()
    res = evaluate(detections, list(data), metric="voc07")
    assert set(res["ap"]) == {1, 2}


def test_empty_detections_and_image_without_gt():
    _, data = hand_example()
    data.append(item(np.zeros((0, 4)), [], 2))  # an image without GT
    empty = [dets(np.zeros((0, 4)), [], []) for _ in data]
    for metric in ("voc07", "voc", "coco"):
        res = evaluate(empty, data, metric=metric)
        assert res["ap"] == {"circle": 0.0, "square": 0.0} and res["mAP"] == 0.0
    # a false positive on the GT-free image lowers precision only
    detections, _ = hand_example()
    detections.append(dets([[0, 0, 10, 10]], [0.95], [1]))
    res = evaluate(detections, data, metric="voc07")
    assert res["ap"]["circle"] < 6 / 11
    nothing = evaluate([dets(np.zeros((0, 4)), [], [])], [item(np.zeros((0, 4)), [])])
    assert nothing["ap"] == {} and np.isnan(nothing["mAP"])


def test_match_detections_rules():
    gt = np.array([[0.0, 0, 10, 10], [0, 0, 10, 9]])  # det IoU 1 with gt0, 0.9 with gt1
    boxes = np.array([[0.0, 0, 10, 10], [0, 0, 10, 10]])
    voc = match_detections(boxes, np.array([0.9, 0.8]), gt, rule="voc")
    np.testing.assert_array_equal(voc.tp, [True, False])  # VOC: best GT is taken -> FP
    coco = match_detections(boxes, np.array([0.9, 0.8]), gt, rule="coco")
    np.testing.assert_array_equal(coco.tp, [True, True])  # COCO: next unmatched GT
    np.testing.assert_array_equal(coco.gt_index, [0, 1])
    np.testing.assert_array_equal(match_detections(boxes, np.array([0.1, 0.8]), gt).order, [1, 0])


def test_coco_tie_takes_the_later_gt_as_pycocotools():
    # det .9 has IoU 100/120 with both GTs; pycocotools' loop keeps the later one (b), so
    # det .8 gets a (IoU 90/140 = 0.643) and is a TP only for t <= 0.6; VOC takes the first.
    gt = [[0, 0, 10, 12], [0, -2, 10, 10]]
    data = Dataset([item(gt, [1, 1])])
    detections = [dets([[0, 0, 10, 10], [0, -2, 10, 9]], [0.9, 0.8], [1, 1])]
    coco = match_detections(detections[0]["boxes"], detections[0]["scores"],
                            np.array(gt, dtype=float), rule="coco", iou_threshold=0.6)
    np.testing.assert_array_equal(coco.gt_index, [1, 0])
    voc = match_detections(detections[0]["boxes"], detections[0]["scores"],
                           np.array(gt, dtype=float), rule="voc")
    np.testing.assert_array_equal(voc.gt_index, [0, 1])
    precision = pycocotools_eval(detections, data)
    res = evaluate(detections, data, metric="coco")
    assert res["ap"]["circle"] == pytest.approx(precision[:, :, 0].mean(), abs=1e-9)


def test_bad_input():
    detections, data = hand_example()
    with pytest.raises(ValueError, match="one dict per image"):
        evaluate(detections[:1], data)
    with pytest.raises(ValueError, match="metric must be one of"):
        evaluate(detections, data, metric="ap")
    detections[0]["boxes"][0] = [5, 0, 1, 1]
    with pytest.raises(ValueError, match=r"detections\[0\]\['boxes'\] must have x2 >= x1"):
        evaluate(detections, data)
    detections, _ = hand_example()
    detections[1]["scores"] = np.ones(5)
    with pytest.raises(ValueError, match=r"detections\[1\] boxes/scores/labels lengths"):
        evaluate(detections, data)


def test_recall_vs_proposals():
    data = [item([[0, 0, 10, 10], [20, 20, 30, 30]], [1, 1]), item([[0, 0, 4, 4]], [2])]
    proposals = [np.array([[50.0, 50, 60, 60], [0, 0, 10, 10], [20, 20, 25, 30]]),
                 np.zeros((0, 4))]
    out = recall_vs_proposals(proposals, data, counts=(1, 2, 3, 10))
    np.testing.assert_array_equal(out["counts"], [1, 2, 3, 10])
    np.testing.assert_allclose(out["recall"][0.5], [0, 1 / 3, 2 / 3, 2 / 3])  # 0.5 counts
    np.testing.assert_allclose(out["recall"][0.7], [0, 1 / 3, 1 / 3, 1 / 3])
    np.testing.assert_allclose(out["mean_best_iou"], [0, 1 / 3, 1.5 / 3, 1.5 / 3])
    assert out["num_gt"] == 3
    with pytest.raises(ValueError, match="proposals_list has 1 entries"):
        recall_vs_proposals(proposals[:1], data)


# ---------------------------------------------------------------- COCO vs pycocotools

def synthetic_set(seed=0):
    """Misses, duplicates, false positives, score ties, an image without GT, a class
    (3) with GT and no detections, a category (4) without GT, > 100 dets in one image,
    image ids not in dataset order."""
    rng = np.random.default_rng(seed)
    data, detections = Dataset(), []
    for i in range(12):
        g = 0 if i == 5 else int(rng.integers(1, 6))
        xy = rng.integers(0, 80, size=(g, 2))
        gt = np.concatenate([xy, xy + rng.integers(4, 40, size=(g, 2))], axis=1)
        labels = rng.integers(1, 3, size=g)
        if i == 2:
            labels[0] = 3
        data.append(item(gt, labels, image_id=100 + (7 * i) % 12))
        boxes, scores, dlabels = [], [], []
        for box, lab in zip(gt, labels, strict=True):
            if lab == 3 or rng.random() < 0.2:
                continue  # a miss
            for _ in range(int(rng.integers(1, 4))):  # a match and duplicates, jittered
                boxes.append(box + rng.integers(-3, 4, size=4) * np.array([1, 1, 1, 1]))
                scores.append(rng.choice([0.3, 0.5, 0.9]) if rng.random() < 0.3 else rng.random())
                dlabels.append(lab)
        n_fp = 130 if i == 7 else int(rng.integers(0, 4))
        for _ in range(n_fp):  # false positives (and near misses) anywhere, any class
            xy = rng.integers(0, 90, size=2)
            boxes.append(np.concatenate([xy, xy + rng.integers(3, 30, size=2)]))
            scores.append(rng.random())
            dlabels.append(1 if i == 7 else int(rng.choice([1, 2, 4])))
        boxes = np.array(boxes, dtype=np.float64).reshape(-1, 4)
        boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + 1)
        detections.append(dets(boxes, np.round(scores, 2), dlabels))
    return detections, data


def pycocotools_eval(detections, data, area_index=0):
    coco_mod = pytest.importorskip("pycocotools.coco")
    cocoeval = pytest.importorskip("pycocotools.cocoeval")
    images, anns, results = [], [], []
    for it, det in zip(data, detections, strict=True):
        images.append({"id": int(it["image_id"]), "width": 128, "height": 128})
        for box, lab in zip(it["boxes"].astype(float), it["labels"], strict=True):
            w, h = box[2] - box[0], box[3] - box[1]
            anns.append({"id": len(anns) + 1, "image_id": int(it["image_id"]),
                         "category_id": int(lab), "bbox": [box[0], box[1], w, h],
                         "area": w * h, "iscrowd": 0})
        for box, score, lab in zip(det["boxes"].astype(float), det["scores"], det["labels"],
                                          strict=True):
            results.append({"image_id": int(it["image_id"]), "category_id": int(lab),
                            "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]],
                            "score": float(score)})
    gt = coco_mod.COCO()
    gt.dataset = {"images": images, "annotations": anns,
                  "categories": [{"id": c} for c in (1, 2, 3, 4)]}
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        dt = gt.loadRes(results)
        ev = cocoeval.COCOeval(gt, dt, "bbox")
        ev.evaluate()
        ev.accumulate()
    return ev.eval["precision"][:, :, :, area_index, 2]  # (T, R, K): maxDets 100


def test_coco_matches_pycocotools():
    detections, data = synthetic_set()
    precision = pycocotools_eval(detections, data)
    res = evaluate(detections, data, metric="coco")
    assert set(res["ap"]) == {"circle", "square", "triangle"}
    assert res["ap"]["triangle"] == 0.0
    for k, name in enumerate(Dataset.classes):
        assert res["ap"][name] == pytest.approx(precision[:, :, k].mean(), abs=1e-6)
    assert np.all(precision[:, :, 3] == -1)  # category 4: no GT, left out by both
    assert res["mAP"] == pytest.approx(precision[precision > -1].mean(), abs=1e-6)
    p50 = precision[0]
    assert res["mAP50"] == pytest.approx(p50[p50 > -1].mean(), abs=1e-6)
    assert 0.1 < res["mAP"] < 0.9  # a non-trivial case


def test_coco_keeps_top_100_per_image_and_class():
    # 150 tied-low false positives after one true positive; ranks beyond 100 are dropped,
    # so adding a second TP at rank 120 must not change the AP.
    gt = [[0, 0, 10, 10], [50, 50, 60, 60]]
    data = Dataset([item(gt, [1, 1])])
    fps = [[20 + i % 5, 20, 30 + i % 5, 30] for i in range(150)]
    scores = [0.9] + list(np.linspace(0.8, 0.1, 150))
    base = dets([gt[0]] + fps, scores, [1] * 151)
    with_late = dets([gt[0]] + fps + [gt[1]], scores + [0.05], [1] * 152)
    a = evaluate([base], data, metric="coco")["ap"]["circle"]
    b = evaluate([with_late], data, metric="coco")["ap"]["circle"]
    assert a == b == pytest.approx(51 / 101)  # precision 1 at recall points 0, .01, ..., .5
    precision = pycocotools_eval([with_late], data)
    assert b == pytest.approx(precision[:, :, 0].mean(), abs=1e-9)


@pytest.mark.parametrize("area_index, area", [(1, "small"), (2, "medium")])
def test_coco_area_ranges_match_pycocotools(area_index, area):
    # Boxes of 4..40 px: GT on both sides of 32^2, detections matched across the border.
    detections, data = synthetic_set(1)
    precision = pycocotools_eval(detections, data, area_index)
    res = evaluate(detections, data, metric="coco", area=area)
    for k, name in enumerate(Dataset.classes):
        expected = precision[:, :, k]
        if np.all(expected == -1):  # no GT of the class in the range
            assert np.isnan(res["ap"][name])
        else:
            assert res["ap"][name] == pytest.approx(expected.mean(), abs=1e-6)
    assert res["mAP"] == pytest.approx(precision[precision > -1].mean(), abs=1e-6)


def test_area_range_needs_coco():
    detections, data = hand_example()
    with pytest.raises(ValueError, match="area must be one of"):
        evaluate(detections, data, metric="voc", area="small")


def test_ground_truth_read_once_gives_the_same_metrics():
    from minircnn.data import ShapesDataset
    from minircnn.detection import GroundTruth

    ds = ShapesDataset(6, image_size=64, seed=3)
    rng = np.random.default_rng(0)
    dets = []
    for i in range(len(ds)):
        boxes = ds[i]["boxes"] + rng.normal(0, 2, ds[i]["boxes"].shape).astype(np.float32)
        dets.append(dict(boxes=boxes, scores=rng.random(len(boxes)), labels=ds[i]["labels"]))
    truth = GroundTruth(ds)
    assert truth.classes == ds.classes and len(truth) == len(ds)
    for metric in ("voc07", "voc", "coco"):
        direct, once = evaluate(dets, ds, metric=metric), evaluate(dets, truth, metric=metric)
        assert direct["ap"] == once["ap"] and set(once["ap"]) <= set(ds.classes)


def test_a_perfect_detector_scores_exactly_1_not_the_11_point_round_off():
    """Eleven 1/11 add up to 1.0000000000000002 in floats: AP is clipped into [0, 1]."""
    from minircnn.detection.evaluate import voc_ap

    assert sum([1 / 11] * 11) > 1                          # the round-off being guarded
    recall, precision = np.array([0.5, 1.0]), np.array([1.0, 1.0])
    assert voc_ap(recall, precision, use_07_metric=True) == 1.0
    ds = Dataset([item([[0, 0, 10, 10]], [1])])
    res = evaluate([dets([[0, 0, 10, 10]], [0.9], [1])], ds, metric="voc07")
    assert res["ap"]["circle"] == 1.0 and res["mAP"] == 1.0
