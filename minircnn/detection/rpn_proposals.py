"""From RPN outputs to proposals: decode, clip, drop tiny boxes, top-k, NMS at 0.7, top-N.

torchvision RegionProposalNetwork.filter_proposals, for one image and one feature map:

1. keep the ``pre_nms_top_n`` anchors of highest objectness logit (torch.topk);
2. decode their deltas (BoxCoder weights (1, 1, 1, 1), dw and dh clamped at
   log(1000/16)) and turn the logits into probabilities, sigmoid(z);
3. clip the boxes to the image; drop those narrower or shorter than ``min_size``
   (remove_small_boxes, 1e-3 px) and those scoring below ``score_thresh`` (0);
4. NMS at ``nms_thresh`` (0.7 in the Faster R-CNN paper, section 3.3), keep the first
   ``post_nms_top_n``.

torchvision decodes every anchor before step 1; decoding only the kept ones gives the
same boxes. The paper ignores cross-boundary anchors while training and clips
proposals at test time; torchvision (and this) clips in both.
"""

from __future__ import annotations

import numpy as np

from minircnn.backend import get_array_module
from minircnn.detection.anchors import RPN_WEIGHTS
from minircnn.detection.boxes import BBOX_XFORM_CLIP, clip_boxes, decode_boxes
from minircnn.utils.validate import check_array, check_count, check_number


def _check(objectness, deltas, anchors, image_size, pre_nms_top_n, post_nms_top_n,
           nms_thresh, min_size):
    op = "rpn_proposals"
    objectness = check_array("objectness", objectness, op=op, ndim=1)
    a = objectness.shape[0]
    deltas = check_array("deltas", deltas, op=op, shape=(a, 4), like=objectness)
    anchors = check_array("anchors", anchors, op=op, shape=(a, 4), kinds="fiu",
                          like=objectness)
    if len(image_size) != 2:
        raise ValueError(f"{op}: image_size must be (H, W), got {image_size!r}")
    check_count("pre_nms_top_n", pre_nms_top_n, op=op)
    check_count("post_nms_top_n", post_nms_top_n, op=op)
    check_number("nms_thresh", nms_thresh, op=op, low=0.0, high=1.0)
    check_number("min_size", min_size, op=op, low=0.0)
    return objectness, deltas, anchors


def rpn_proposals(objectness, deltas, anchors, image_size, *, pre_nms_top_n: int = 1000,
                  post_nms_top_n: int = 300, nms_thresh: float = 0.7, min_size: float = 1e-3,
                  score_thresh: float = 0.0):
    """One image's proposals, best first (see the module docstring for the steps).

    Args:
        objectness: (A,) logits.  deltas: (A, 4).  anchors: (A, 4) in the same order.
        image_size: (H, W) to clip to.
        pre_nms_top_n, post_nms_top_n, nms_thresh, min_size, score_thresh: as torchvision.
    Returns:
        boxes (P, 4) and scores (P,) (sigmoid probabilities, descending), P <= post_nms_top_n.
    """
    objectness, deltas, anchors = _check(objectness, deltas, anchors, image_size,
                                         pre_nms_top_n, post_nms_top_n, nms_thresh, min_size)
    xp = get_array_module(objectness)
    top = top_k(objectness, int(pre_nms_top_n))                  # (k,) best logits first
    boxes = decode_boxes(deltas[top], anchors[top].astype(deltas.dtype),
                         weights=RPN_WEIGHTS)                     # (k, 4)
    scores = 1.0 / (1.0 + xp.exp(-objectness[top].astype(xp.float64)))  # sigmoid, (k,)
    boxes = clip_boxes(boxes, image_size)
    widths, heights = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    keep = (widths >= min_size) & (heights >= min_size) & (scores >= score_thresh)
    boxes, scores = boxes[keep], scores[keep]
    keep = nms_first(boxes, scores, nms_thresh, int(post_nms_top_n))
    return boxes[keep], scores[keep]


def top_k(values, k: int):
    """Indices of the ``k`` largest values, largest first, ties by index: exactly
    ``argsort(-values, kind="stable")[:k]`` (torch.topk's choice up to ties).

    A partial sort: ``partition`` finds the k-th largest value v without ordering the
    rest; the values above v and the first ties at v make the k, and only those k are
    sorted (the RPN keeps 1000 of 6144 anchors).
    """
    xp = get_array_module(values)
    n = values.shape[0]
    if k >= n:
        return xp.argsort(-values, kind="stable")
    kth = xp.partition(values, n - k)[n - k]                 # the k-th largest value v
    above = xp.flatnonzero(values > kth)                     # (< k,) ascending indices
    ties = xp.flatnonzero(values == kth)[:k - above.shape[0]]   # first ties fill the k
    chosen = xp.concatenate([above, ties])                   # (k,) unless NaNs
    if chosen.shape[0] < k:                                  # NaN logits: sort them all
        return xp.argsort(-values, kind="stable")[:k]
    return chosen[xp.argsort(-values[chosen], kind="stable")]   # ties keep index order


def nms_first(boxes, scores, iou_threshold: float, top_n: int, *, chunk: int = 128):
    """``nms(boxes, scores, iou_threshold)[:top_n]``, a chunk of candidates at a time.

    The same greedy rule (by descending score, stable; drop IoU > threshold with a kept
    box). Candidates are taken ``chunk`` at a time: one vectorised IoU against the boxes
    kept so far removes the suppressed ones, then ``_greedy_in_block`` settles the IoUs
    among the chunk's survivors without a Python loop over them. It stops at ``top_n``
    kept, so it never computes the full (k, k) matrix: what keeps the RPN's proposals
    within milliseconds. Boxes are held as four contiguous coordinate rows (4, k), so
    each IoU plane is built from contiguous vectors.
    """
    xp = get_array_module(boxes)
    order = xp.argsort(-scores, kind="stable")               # best first
    ranked = xp.ascontiguousarray(boxes[order].T)            # (4, k): x1, y1, x2, y2 rows
    areas = (ranked[2] - ranked[0]) * (ranked[3] - ranked[1])   # (k,)
    kept_boxes = xp.empty((4, min(top_n, ranked.shape[1])), dtype=ranked.dtype)
    kept_areas = xp.empty(kept_boxes.shape[1], dtype=areas.dtype)
    keep, n = [], 0                                          # ranks of the kept; how many
    for start in range(0, ranked.shape[1], chunk):
        ranks = xp.arange(start, min(start + chunk, ranked.shape[1]))   # (B,)
        if n:                                                # drop what the kept suppress
            iou = _iou_block(ranked[:, ranks], areas[ranks], kept_boxes[:, :n],
                             kept_areas[:n])                 # (B, n)
            ranks = ranks[(iou <= iou_threshold).all(axis=1)]   # (b,) the survivors
        block, block_areas = ranked[:, ranks], areas[ranks]  # (4, b), (b,)
        over = _iou_block(block, block_areas, block, block_areas) > iou_threshold  # (b, b)
        chosen = xp.flatnonzero(_greedy_in_block(over))[:top_n - n]   # (c,)
        kept_boxes[:, n:n + chosen.shape[0]] = block[:, chosen]
        kept_areas[n:n + chosen.shape[0]] = block_areas[chosen]
        keep.append(ranks[chosen])
        n += chosen.shape[0]
        if n == top_n:
            break
    if not keep:
        return xp.zeros((0,), dtype=xp.int64)
    return order[xp.concatenate(keep).astype(xp.int64)]


def _greedy_in_block(over):
    """Which boxes of a block greedy NMS keeps, best first, without a loop over them.

    Box i is kept iff no *kept* box j < i overlaps it (``over[j, i]``). Each kept[i]
    depends only on kept[j] for j < i, so that rule has exactly one solution, the greedy
    one; the loop below applies the rule to its own last answer until nothing changes
    (a fixed point is that solution). Each pass settles at least the next box, usually
    many: a few passes.

    Args:
        over: (B, B) bool, IoU > threshold between the block's boxes (symmetric).
    Returns:
        (B,) bool, the kept boxes.
    """
    xp = get_array_module(over)
    later = xp.triu(over, k=1)                               # over[j, i] for j < i only
    kept = xp.ones(over.shape[0], dtype=bool)
    while True:
        again = ~(later & kept[:, None]).any(axis=0)         # (B, B) -> (B,): no kept j < i
        if bool((again == kept).all()):
            return kept
        kept = again


def _iou_block(a, area_a, b, area_b):
    """IoU of boxes a (4, B) and b (4, K), given as coordinate rows with their areas ->
    (B, K); 0 where the union is 0 (two empty boxes). Four (B, K) planes instead of
    box_iou's (B, K, 2), each updated in place (NMS's hot loop)."""
    xp = get_array_module(a)
    iw = xp.minimum(a[2][:, None], b[2][None, :])            # (B, K) right edge of the overlap
    iw -= xp.maximum(a[0][:, None], b[0][None, :])           # minus its left edge
    ih = xp.minimum(a[3][:, None], b[3][None, :])
    ih -= xp.maximum(a[1][:, None], b[1][None, :])
    inter = xp.maximum(iw, 0, out=iw)                        # no overlap: 0
    inter *= xp.maximum(ih, 0, out=ih)                       # (B, K)
    union = area_a[:, None] + area_b[None, :]                # (B, 1) + (1, K) -> (B, K)
    union -= inter
    inter /= xp.maximum(union, xp.finfo(union.dtype).tiny, out=union)
    return inter


def rpn_proposals_naive(objectness, deltas, anchors, image_size, *, pre_nms_top_n: int = 1000,
                        post_nms_top_n: int = 300, nms_thresh: float = 0.7,
                        min_size: float = 1e-3, score_thresh: float = 0.0):
    """``rpn_proposals`` one box at a time, with plain Python loops (the specification)."""
    import math

    objectness, deltas, anchors = _check(objectness, deltas, anchors, image_size,
                                         pre_nms_top_n, post_nms_top_n, nms_thresh, min_size)
    height, width = image_size
    order = sorted(range(len(objectness)), key=lambda i: -float(objectness[i]))
    candidates = []                                     # (score, box)
    for i in order[:pre_nms_top_n]:
        x1, y1, x2, y2 = (float(v) for v in anchors[i])
        w, h = x2 - x1, y2 - y1
        cx, cy = x1 + 0.5 * w, y1 + 0.5 * h
        dx, dy, dw, dh = (float(v) for v in deltas[i])
        dw, dh = min(dw, BBOX_XFORM_CLIP), min(dh, BBOX_XFORM_CLIP)
        pcx, pcy = dx * w + cx, dy * h + cy               # move the centre
        pw, ph = math.exp(dw) * w, math.exp(dh) * h       # scale the size
        box = [min(max(pcx - 0.5 * pw, 0), width), min(max(pcy - 0.5 * ph, 0), height),
               min(max(pcx + 0.5 * pw, 0), width), min(max(pcy + 0.5 * ph, 0), height)]
        z = float(objectness[i])
        score = 1 / (1 + math.exp(-z)) if z >= 0 else math.exp(z) / (1 + math.exp(z))
        if box[2] - box[0] >= min_size and box[3] - box[1] >= min_size and score >= score_thresh:
            candidates.append((score, box))
    kept = []
    for score, box in candidates:                       # already by descending score
        if all(_iou(box, other) <= nms_thresh for _, other in kept):
            kept.append((score, box))
        if len(kept) == post_nms_top_n:
            break
    boxes = np.array([b for _, b in kept], dtype=np.float64).reshape(-1, 4)
    return boxes, np.array([s for s, _ in kept], dtype=np.float64)


def _iou(a, b) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0
