"""Box utilities: area, IoU, clipping, NMS and the Fast R-CNN box parameterization.

Boxes are (x1, y1, x2, y2) in continuous pixel coordinates, width = x2 - x1 (no +1),
exactly as torchvision.ops. Every function takes NumPy or CuPy arrays
(``xp = get_array_module(boxes)``) and validates its box arguments with
:func:`check_boxes`, so a wrong shape, a NaN or an inverted box raises a ValueError
that names the argument.
"""

from __future__ import annotations

import math

import numpy as np

from minircnn.backend import asnumpy, get_array_module
from minircnn.utils.validate import check_array, check_number, check_positive

BBOX_XFORM_CLIP = math.log(1000.0 / 16)  # torchvision BoxCoder: largest dw, dh when decoding


def check_boxes(boxes, name: str = "boxes"):
    """Validate an (N, 4) array of (x1, y1, x2, y2) boxes and return it as an array.

    Args:
        boxes: (N, 4) NumPy/CuPy array (or nested list) of boxes.
        name: the argument name used in error messages.
    Returns:
        boxes as an array of the same module (lists become NumPy arrays).
    Raises:
        TypeError: non-numeric dtype.
        ValueError: not 2-D with 4 columns, a non-finite value, or x2 < x1 / y2 < y1.
    """
    xp = get_array_module(boxes)
    boxes = xp.asarray(boxes)
    if not (np.issubdtype(boxes.dtype, np.floating) or np.issubdtype(boxes.dtype, np.integer)):
        raise TypeError(f"{name} must hold numbers (float or int), got dtype {boxes.dtype}")
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"{name} must have shape (N, 4) as (x1, y1, x2, y2), got {boxes.shape}")
    bad = ~xp.isfinite(boxes).all(axis=1)
    if bool(bad.any()):
        i = int(xp.flatnonzero(bad)[0])
        raise ValueError(f"{name} must be finite; row {i} is {asnumpy(boxes[i]).tolist()}")
    limit = _coordinate_limit(boxes.dtype)
    bad = (xp.abs(boxes) > limit).any(axis=1) if boxes.size else xp.zeros(0, dtype=bool)
    if bool(bad.any()):
        i = int(xp.flatnonzero(bad)[0])
        raise ValueError(f"{name} must have coordinates within +-{limit:.4g} for dtype "
                         f"{boxes.dtype} (larger ones overflow the areas and IoUs); row {i} "
                         f"is {asnumpy(boxes[i]).tolist()}")
    bad = (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])
    if bool(bad.any()):
        i = int(xp.flatnonzero(bad)[0])
        raise ValueError(
            f"{name} must have x2 >= x1 and y2 >= y1; row {i} is {asnumpy(boxes[i]).tolist()}"
        )
    return boxes


def _coordinate_limit(dtype) -> float:
    """The largest |coordinate| whose box areas and IoU unions fit in ``dtype``: widths
    reach 2 * limit, areas 4 * limit**2 = max / 4, a union of two areas max / 2."""
    info = np.finfo(dtype) if np.issubdtype(dtype, np.floating) else np.iinfo(dtype)
    return math.isqrt(int(info.max)) // 4 if info.dtype.kind in "iu" else \
        math.sqrt(float(info.max)) / 4


def _check_vector(values, name: str, length: int):
    """Return ``values`` as a 1-D array of ``length`` finite entries, else raise ValueError."""
    xp = get_array_module(values)
    values = xp.asarray(values)
    if values.ndim != 1 or values.shape[0] != length:
        raise ValueError(f"{name} must have shape ({length},), got {values.shape}")
    if values.dtype.kind not in "fiub":      # complex scores have no order; strings none
        raise TypeError(f"{name} must hold real numbers, got dtype {values.dtype}")
    if np.issubdtype(values.dtype, np.floating) and not bool(xp.isfinite(values).all()):
        raise ValueError(f"{name} must be finite")
    return values


def _check_iou_threshold(value, op: str) -> float:
    return check_number("iou_threshold", value, op=op, low=0.0, high=1.0)


def _check_weights(weights, op: str) -> tuple[float, float, float, float]:
    """(wx, wy, ww, wh): four finite numbers > 0 (they divide the deltas)."""
    if isinstance(weights, (str, bytes)) or not hasattr(weights, "__len__") or len(weights) != 4:
        raise ValueError(f"{op}: weights must be four numbers (wx, wy, ww, wh), got {weights!r}")
    return tuple(check_positive("weights", w, op=op) for w in weights)


def box_area(boxes) -> np.ndarray:
    """Area of each box, (x2 - x1) * (y2 - y1), as torchvision.ops.box_area.

    Args:
        boxes: (N, 4) boxes.
    Returns:
        (N,) areas.
    """
    boxes = check_boxes(boxes, "boxes")
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def _pairwise_iou(a, b):
    """IoU of validated boxes a (Na, 4) and b (Nb, 4) -> (Na, Nb); 0 where the union is 0."""
    xp = get_array_module(a, b)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])  # (Na,)
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])  # (Nb,)
    lt = xp.maximum(a[:, None, :2], b[None, :, :2])  # (Na, 1, 2) vs (1, Nb, 2) -> (Na, Nb, 2)
    rb = xp.minimum(a[:, None, 2:], b[None, :, 2:])  # (Na, Nb, 2)
    wh = xp.clip(rb - lt, 0, None)  # (Na, Nb, 2): no overlap -> 0
    inter = wh[..., 0] * wh[..., 1]  # (Na, Nb)
    union = area_a[:, None] + area_b[None, :] - inter  # (Na, 1) + (1, Nb) -> (Na, Nb)
    positive = union > 0
    safe_union = xp.where(positive, union, 1)  # no 0/0: two degenerate boxes give IoU 0
    return xp.where(positive, inter / safe_union, 0.0)


def box_iou(a, b) -> np.ndarray:
    """Pairwise intersection over union, as torchvision.ops.box_iou (no +1).

    Unlike torchvision, a pair whose union is empty (two zero-area boxes) gives 0, not NaN.

    Args:
        a: (Na, 4) boxes.  b: (Nb, 4) boxes.
    Returns:
        (Na, Nb) IoU values in [0, 1].
    """
    a = check_boxes(a, "a")
    b = check_boxes(b, "b")
    return _pairwise_iou(a, b)


def check_image_size(image_size, op: str) -> tuple[float, float]:
    """(H, W): two finite numbers >= 0, as floats."""
    if isinstance(image_size, (str, bytes)) or not hasattr(image_size, "__len__") or \
            len(image_size) != 2:
        raise ValueError(f"{op}: image_size must be (H, W), got {image_size!r}")
    height, width = (check_positive("image_size", v, op=op, allow_zero=True)
                     for v in image_size)
    return height, width


def clip_boxes(boxes, image_size) -> np.ndarray:
    """Clamp x to [0, W] and y to [0, H], as torchvision.ops.clip_boxes_to_image.

    Args:
        boxes: (N, 4) boxes.
        image_size: (H, W) of the image.
    Returns:
        (N, 4) clipped copy.
    """
    boxes = check_boxes(boxes, "boxes")
    height, width = check_image_size(image_size, "clip_boxes")
    if boxes.dtype.kind in "iu" and not (height.is_integer() and width.is_integer()):
        raise ValueError(f"clip_boxes: integer boxes cannot hold the edge of a "
                         f"{image_size!r} image; pass float boxes or whole-pixel sizes")
    xp = get_array_module(boxes)
    out = boxes.copy()
    out[:, 0::2] = xp.clip(boxes[:, 0::2], 0, width)  # x1, x2
    out[:, 1::2] = xp.clip(boxes[:, 1::2], 0, height)  # y1, y2
    return out


def nms(boxes, scores, iou_threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression, as torchvision.ops.nms.

    Boxes are visited by descending score (a stable sort, so ties keep index order);
    each kept box removes every remaining box whose IoU with it is > iou_threshold.

    Args:
        boxes: (N, 4) boxes.  scores: (N,) scores.
        iou_threshold: boxes overlapping a kept box by more than this are dropped.
    Returns:
        (M,) int64 indices of the kept boxes, by descending score.
    """
    boxes = check_boxes(boxes, "boxes")
    scores = _check_vector(scores, "scores", boxes.shape[0])
    iou_threshold = _check_iou_threshold(iou_threshold, "nms")
    xp = get_array_module(boxes)
    order = xp.argsort(-scores, kind="stable")  # best first; ties in index order
    keep = []
    while order.size > 0:
        best = order[0]
        keep.append(best)
        rest = order[1:]
        ious = _pairwise_iou(boxes[best][None, :], boxes[rest])[0]  # (1, 4) vs (M, 4) -> (M,)
        order = rest[ious <= iou_threshold]
    if not keep:
        return xp.zeros((0,), dtype=xp.int64)
    return xp.stack(keep).astype(xp.int64)


def batched_nms(boxes, scores, labels, iou_threshold: float) -> np.ndarray:
    """NMS run separately for each label, as torchvision.ops.batched_nms.

    Uses a loop over classes (torchvision's ``_batched_nms_vanilla``) rather than the
    coordinate-offset trick, so IoUs are computed exactly and boxes of different labels
    never suppress each other.

    Args:
        boxes: (N, 4) boxes.  scores: (N,) scores.  labels: (N,) integer class of each box.
        iou_threshold: as in :func:`nms`.
    Returns:
        (M,) int64 indices of the kept boxes, by descending score (ties by index).
    """
    boxes = check_boxes(boxes, "boxes")
    scores = _check_vector(scores, "scores", boxes.shape[0])
    labels = _check_vector(labels, "labels", boxes.shape[0])
    if labels.dtype.kind not in "iub":
        raise TypeError(f"batched_nms: labels must be an integer array, got dtype {labels.dtype}")
    _check_iou_threshold(iou_threshold, "batched_nms")
    xp = get_array_module(boxes)
    keep_mask = xp.zeros(boxes.shape[0], dtype=bool)
    for label in xp.unique(labels):
        idx = xp.flatnonzero(labels == label)  # boxes of this class
        keep_mask[idx[nms(boxes[idx], scores[idx], iou_threshold)]] = True
    keep = xp.flatnonzero(keep_mask)  # ascending index
    return keep[xp.argsort(-scores[keep], kind="stable")].astype(xp.int64)


def _centers_sizes(boxes):
    """(N, 4) boxes -> widths, heights, ctr_x, ctr_y, each (N,) (torchvision BoxCoder)."""
    widths = boxes[:, 2] - boxes[:, 0]
    heights = boxes[:, 3] - boxes[:, 1]
    return widths, heights, boxes[:, 0] + 0.5 * widths, boxes[:, 1] + 0.5 * heights


def _require_positive_size(boxes, name: str) -> None:
    xp = get_array_module(boxes)
    bad = (boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])
    if bool(bad.any()):
        i = int(xp.flatnonzero(bad)[0])
        raise ValueError(
            f"{name} must have positive width and height to encode; "
            f"row {i} is {asnumpy(boxes[i]).tolist()}"
        )


def encode_boxes(reference, gt, weights=(10.0, 10.0, 5.0, 5.0)) -> np.ndarray:
    """Regression targets of ``gt`` relative to ``reference``: torchvision BoxCoder.encode_single.

    dx = wx (gt_ctr_x - ref_ctr_x) / ref_w,  dw = ww log(gt_w / ref_w)  (same for y, h),
    with ctr_x = x1 + 0.5 w and w = x2 - x1. (torchvision calls ``reference`` the
    proposals and ``gt`` the reference boxes.)

    Args:
        reference: (R, 4) proposals / RoIs, positive width and height.
        gt: (R, 4) matched ground-truth boxes, positive width and height.
        weights: (wx, wy, ww, wh).
    Returns:
        (R, 4) deltas (dx, dy, dw, dh).
    """
    reference = check_boxes(reference, "reference")
    gt = check_boxes(gt, "gt")
    if gt.shape != reference.shape:
        raise ValueError(f"gt must have the shape of reference {reference.shape}, got {gt.shape}")
    _require_positive_size(reference, "reference")
    _require_positive_size(gt, "gt")
    xp = get_array_module(reference, gt)
    wx, wy, ww, wh = _check_weights(weights, "encode_boxes")
    ref_w, ref_h, ref_cx, ref_cy = _centers_sizes(reference)
    gt_w, gt_h, gt_cx, gt_cy = _centers_sizes(gt)
    dx = wx * (gt_cx - ref_cx) / ref_w
    dy = wy * (gt_cy - ref_cy) / ref_h
    dw = ww * xp.log(gt_w / ref_w)
    dh = wh * xp.log(gt_h / ref_h)
    return xp.stack([dx, dy, dw, dh], axis=1)  # 4 x (R,) -> (R, 4)


def decode_boxes(deltas, reference, weights=(10.0, 10.0, 5.0, 5.0)) -> np.ndarray:
    """Apply deltas to reference boxes: torchvision BoxCoder.decode_single.

    dw, dh are clamped at log(1000/16) before exp. Per-class deltas (R, 4 (K+1)) decode
    every class's 4 columns against the same RoI (dx = deltas[:, 0::4], ...).

    Args:
        deltas: (R, 4 k) deltas (dx, dy, dw, dh) per group of 4 columns.
        reference: (R, 4) proposals / RoIs; converted to the deltas' dtype.
        weights: (wx, wy, ww, wh).
    Returns:
        (R, 4 k) boxes (x1, y1, x2, y2), laid out like ``deltas``.
    """
    reference = check_boxes(reference, "reference")
    xp = get_array_module(deltas, reference)
    deltas = check_array("deltas", deltas, op="decode_boxes", kinds="fiu", like=reference)
    if deltas.ndim != 2 or deltas.shape[1] % 4 != 0 or deltas.shape[0] != reference.shape[0]:
        raise ValueError(
            f"deltas must have shape ({reference.shape[0]}, 4*k) to match reference, "
            f"got {deltas.shape}"
        )
    if not bool(xp.isfinite(deltas).all()):
        raise ValueError("deltas must be finite")
    if not np.issubdtype(deltas.dtype, np.floating):
        deltas = deltas.astype(xp.float64)
    reference = reference.astype(deltas.dtype)
    wx, wy, ww, wh = _check_weights(weights, "decode_boxes")
    widths, heights, ctr_x, ctr_y = _centers_sizes(reference)
    dx = deltas[:, 0::4] / wx  # (R, k)
    dy = deltas[:, 1::4] / wy
    dw = xp.minimum(deltas[:, 2::4] / ww, BBOX_XFORM_CLIP)  # clamp before exp
    dh = xp.minimum(deltas[:, 3::4] / wh, BBOX_XFORM_CLIP)
    pred_cx = dx * widths[:, None] + ctr_x[:, None]  # (R, k) * (R, 1) -> (R, k)
    pred_cy = dy * heights[:, None] + ctr_y[:, None]
    half_w = 0.5 * (xp.exp(dw) * widths[:, None])  # center-to-corner distance
    half_h = 0.5 * (xp.exp(dh) * heights[:, None])
    out = xp.stack([pred_cx - half_w, pred_cy - half_h, pred_cx + half_w, pred_cy + half_h], 2)
    return out.reshape(deltas.shape).astype(deltas.dtype, copy=False)  # (R, k, 4) -> (R, 4 k)
