"""Wrong answers to lesson 10's graded exercises (anchor labelling, proposal decoding),
graded by the real judge in tests/classroom/test_exercises.py: grade_id -> {name: (the
points it keeps, its source)}. Each is appended to the teacher's solution cell, so the
lesson's imports (box_iou, decode_boxes, clip_boxes, nms) are there.
"""

LESSON = "10_region_proposal_network"
_LABELS = '''
def label_anchors_loops(anchors, gt_boxes, fg_iou=0.7, bg_iou=0.3):
    num = len(anchors)
    labels = np.zeros(num, dtype=np.int64)
    matched = np.zeros(num, dtype=np.int64)
    if len(gt_boxes) == 0:
        return labels, matched
    iou = box_iou(np.asarray(anchors, np.float64), np.asarray(gt_boxes, np.float64))
    for i in range(num):
        matched[i] = int(np.argmax(iou[i]))
        best = iou[i, matched[i]]
        labels[i] = 1 if best FG else (-1 if best BG else 0)
    LOW_QUALITY
    return labels, matched
'''
_TIES = '''for g in range(iou.shape[1]):
        highest = iou[:, g].max()
        for i in range(num):
            if iou[i, g] == highest:
                labels[i] = 1'''


def _labels(fg=">= fg_iou", bg=">= bg_iou", low_quality=_TIES):
    return _LABELS.replace("FG", fg).replace("BG", bg).replace("LOW_QUALITY", low_quality)


LABELS_WRONG = {
    "no low-quality rule (small objects left without a positive)": (0, _labels(low_quality="")),
    "each object's single best anchor (ties dropped)": (
        0, _labels(low_quality="labels[iou.argmax(axis=0)] = 1")),
    "> for >= at both thresholds": (3, _labels(fg="> fg_iou", bg="> bg_iou")),
    "no ignored band (negative below 0.7)": (1, _labels(bg="> 2")),
}

_DECODE = '''
def decode_proposals(objectness, deltas, anchors, image_size, pre_nms_top_n=1000,
                     post_nms_top_n=300, nms_thresh=0.7, min_size=1e-3):
    top = np.argsort(-objectness, kind="stable")[:pre_nms_top_n]
    boxes = decode_boxes(deltas[top], anchors[top], weights=(1.0, 1.0, 1.0, 1.0))
    scores = SCORES
    boxes = CLIP
    keep = ((boxes[:, 2] - boxes[:, 0]) >= min_size) & ((boxes[:, 3] - boxes[:, 1]) >= min_size)
    boxes, scores = boxes[keep], scores[keep]
    keep = nms(boxes, scores, nms_thresh)[:post_nms_top_n]
    return boxes[keep], scores[keep]
'''


def _decode(scores="1.0 / (1.0 + np.exp(-objectness[top]))", clip="clip_boxes(boxes, image_size)"):
    return _DECODE.replace("SCORES", scores).replace("CLIP", clip)


DECODE_WRONG = {
    "no clipping": (0, _decode(clip="boxes")),
    "logits as scores (no sigmoid)": (0, _decode(scores="objectness[top]")),
    "top-N before NMS": (2, _decode().replace("nms(boxes, scores, nms_thresh)[:post_nms_top_n]",
                                              "np.arange(min(len(boxes), post_nms_top_n))[nms("
                                              "boxes[:post_nms_top_n], scores[:post_nms_top_n], "
                                              "nms_thresh)]")),
}
CASES = {"label_anchors": LABELS_WRONG, "decode_proposals": DECODE_WRONG}
