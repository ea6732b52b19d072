"""minircnn/paper/misses.py: the objects a detector misses."""

import numpy as np


def test_find_misses_lists_objects_without_a_detection_of_their_class():
    from minircnn.paper.misses import find_misses

    data = [{"boxes": np.array([[0, 0, 10, 10], [20, 20, 40, 40]], np.float32),
             "labels": np.array([1, 2])}]
    dets = [{"boxes": np.array([[0, 0, 10, 10], [20, 20, 40, 40]], np.float32),
             "scores": np.array([0.9, 0.8]), "labels": np.array([1, 1])}]   # 2nd: wrong class
    misses = find_misses(dets, data)
    assert [(m["label"], m["side"], m["best_iou"]) for m in misses] == [(2, 20.0, 0.0)]
