"""Test-time detection: scores and class-specific boxes for proposals, then per-class NMS.

Fast R-CNN at test time (paper section 3; torchvision RoIHeads.postprocess_detections):

1. one forward pass: class scores (P, K+1) and deltas (P, 4(K+1)) for the P proposals;
2. softmax over the K+1 classes;
3. decode each class's deltas against its proposal, clip to the image;
4. for every class k >= 1 independently: keep scores > score_thresh, drop boxes with
   zero width or height, non-maximum suppression at nms_thresh (``batched_nms``);
5. keep the max_dets highest-scoring detections of all classes.

With ``scales`` (an image pyramid, paper sections 2.4 and 3; Table 7), each proposal is
scored at the one scale that brings its area closest to ``target²`` pixels (the paper:
224², the size its network was pretrained at): the backbone runs once per scale on the
bilinearly resized images, and a model with ``forward_levels`` (FastRCNN) runs its head
once over the proposals of every scale (other models: one ``forward`` per scale). Box
deltas are relative to the box, so they need no rescaling; they are decoded against the
original proposal.

``detect`` takes any model with ``forward(images, rois) -> (cls_scores, bbox_deltas)``
and the ``train`` / ``eval`` / ``parameters`` of a Module, so detection never imports
the models package.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from minircnn.backend import asnumpy, get_array_module
from minircnn.detection.boxes import batched_nms, check_boxes, check_image_size, decode_boxes
from minircnn.layers.module import no_grad
from minircnn.utils.validate import check_array, check_count, check_number


def _softmax(logits):
    """Row-wise softmax, shifted by the row max so exp never overflows."""
    xp = get_array_module(logits)
    z = logits - logits.max(axis=1, keepdims=True)
    e = xp.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _model_xp_dtype(model):
    params = model.parameters()
    if not params:
        return np, np.float32
    data = params[0].data
    return get_array_module(data), data.dtype


def check_model_classes(model, classes, *, source="the model") -> None:
    """Refuse a model that does not detect ``classes`` (a dataset's class names).

    A detector knows how many classes it scores (``num_classes``) and, when it was saved
    with them, their names (``classes``); both must match, or its labels would index the
    wrong names (or none).

    Raises:
        ValueError: naming ``source`` and both class lists.
    """
    classes = tuple(classes)
    count = getattr(model, "num_classes", None)
    names = getattr(model, "classes", None)
    if count is not None and count != len(classes) or names is not None and \
            tuple(names) != classes:
        made = f"{count} classes" + (f" {list(names)}" if names is not None else "")
        raise ValueError(f"{source} detects {made}, but the dataset has {len(classes)} "
                         f"classes {list(classes)}: use a model trained on these classes")


def _check_thresholds(score_thresh, nms_thresh, max_dets, op: str) -> None:
    check_number("score_thresh", score_thresh, op=op, low=0.0, high=1.0)
    check_number("nms_thresh", nms_thresh, op=op, low=0.0, high=1.0)
    check_count("max_dets", max_dets, op=op)


def postprocess(cls_scores, bbox_deltas, proposals, image_size: tuple[int, int], *,
                score_thresh: float = 0.05, nms_thresh: float = 0.3,
                max_dets: int = 100) -> dict:
    """Turn one image's raw outputs into detections (steps 2-5 above).

    Args:
        cls_scores: (P, K+1) logits.  bbox_deltas: (P, 4(K+1)).
        proposals: (P, 4) the boxes they were computed for.
        image_size: (H, W) for clipping.
    Returns:
        dict(boxes (D, 4) float32, scores (D,) float32, labels (D,) int64 in 1..K),
        NumPy arrays sorted by descending score.
    """
    _check_thresholds(score_thresh, nms_thresh, max_dets, "postprocess")
    cls_scores = check_array("cls_scores", cls_scores, op="postprocess", ndim=2,
                             axes="(P, K+1)", finite=True)
    P, K1 = cls_scores.shape
    check_array("bbox_deltas", bbox_deltas, op="postprocess", shape=(P, 4 * K1), finite=True)
    proposals = check_boxes(proposals, "proposals")
    if len(proposals) != P:
        raise ValueError(f"postprocess: proposals must have {P} rows (one per row of "
                         f"cls_scores), got {len(proposals)}")
    cls_scores = np.asarray(asnumpy(cls_scores), dtype=np.float64)
    bbox_deltas = np.asarray(asnumpy(bbox_deltas), dtype=np.float64)
    proposals = np.asarray(asnumpy(proposals), dtype=np.float64)
    probs = _softmax(cls_scores)                                   # (P, K+1)
    height, width = check_image_size(image_size, "postprocess")
    boxes = decode_boxes(bbox_deltas, proposals)                   # (P, 4(K+1))
    # clipped to the image as clip_boxes does; np.clip also takes a box decoded however
    # far away (huge deltas), which clip_boxes would refuse as beyond any image
    edges = np.array([width, height, width, height])
    boxes = np.clip(boxes.reshape(P, K1, 4), 0, edges)[:, 1:]      # (P, K, 4): no background
    labels = np.broadcast_to(np.arange(1, K1), (P, K1 - 1))        # (P, K)
    boxes, scores, labels = boxes.reshape(-1, 4), probs[:, 1:].reshape(-1), labels.reshape(-1)
    keep = (scores > score_thresh) & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
    keep = batched_nms(boxes, scores, labels, nms_thresh)[:max_dets]
    return dict(boxes=boxes[keep].astype(np.float32), scores=scores[keep].astype(np.float32),
                labels=labels[keep].astype(np.int64))


def resize_bilinear(images, height: int, width: int):
    """Images (N, C, H, W) resized to (N, C, height, width) by bilinear interpolation.

    Pixel centres are aligned (torch's ``align_corners=False``): output pixel i samples
    the input at ``(i + 0.5) * H / height - 0.5``, clamped to the image, so a box
    (x1, y1, x2, y2) in pixel edges maps to (x1 * width / W, ..., y2 * height / H).
    Written as two small matrix products, out = A_h @ image @ A_w^T, on NumPy or CuPy.
    """
    images = check_array("images", images, op="resize_bilinear", ndim=4,
                         axes="(N, C, H, W)")
    height = check_count("height", height, op="resize_bilinear")
    width = check_count("width", width, op="resize_bilinear")
    xp = get_array_module(images)
    _, _, h, w = images.shape
    a_h = xp.asarray(_interpolation_matrix(height, h), dtype=images.dtype)   # (height, H)
    a_w = xp.asarray(_interpolation_matrix(width, w), dtype=images.dtype)    # (width, W)
    return xp.matmul(xp.matmul(a_h, images), a_w.T)                         # (N, C, height, width)


def _interpolation_matrix(out_size: int, in_size: int) -> np.ndarray:
    """(out_size, in_size): row i holds the two weights of output pixel i's neighbours."""
    src = (np.arange(out_size) + 0.5) * in_size / out_size - 0.5           # (out,)
    src = np.clip(src, 0, in_size - 1)
    lo = np.floor(src).astype(int)
    hi = np.minimum(lo + 1, in_size - 1)
    frac = src - lo
    matrix = np.zeros((out_size, in_size))
    np.add.at(matrix, (np.arange(out_size), lo), 1 - frac)
    np.add.at(matrix, (np.arange(out_size), hi), frac)                      # hi == lo: adds 0
    return matrix


def rescale_batch(images, rois, scale: float, stride: int = 1):
    """Images (N, C, H, W) resized by ``scale`` and their RoIs (R, 5) moved with them.

    The resized images are zero-padded at the bottom and right to a multiple of
    ``stride``, so the feature map has a whole cell for every ``stride`` pixels. A box
    edge x maps to x * width / W (``resize_bilinear``), with width = round(W * scale).
    Scale 1 returns the inputs themselves (no copy). Used by the test-time pyramid and
    by multi-scale training.
    """
    images = check_array("images", images, op="rescale_batch", ndim=4, axes="(N, C, H, W)")
    rois = check_array("rois", rois, op="rescale_batch", ndim=2, shape=(None, 5),
                       like=images)
    scale = check_number("scale", scale, op="rescale_batch", low=0.1, high=10.0)
    stride = check_count("stride", stride, op="rescale_batch")
    xp = get_array_module(images)
    _, _, h, w = images.shape
    height, width = max(1, round(h * scale)), max(1, round(w * scale))
    if (height, width) == (h, w):
        return images, rois
    scaled = resize_bilinear(images, height, width)
    moved = rois.copy()
    moved[:, 1:] *= xp.asarray([width / w, height / h, width / w, height / h], rois.dtype)
    if height % stride == 0 and width % stride == 0:
        return scaled, moved                                   # a whole cell already: no pad
    padded = xp.zeros(scaled.shape[:2] + (-(-height // stride) * stride,
                                          -(-width // stride) * stride), images.dtype)
    padded[:, :, :height, :width] = scaled                     # bottom/right zeros
    return padded, moved


# Images per backbone pass in detect_images: the batch the network sees, which a parallel
# evaluation keeps (training/metrics.py), so its detections are those of one process.
DETECT_BATCH = 8


def pyramid_levels(rois, scales: Sequence[float], target: float) -> np.ndarray:
    """For each RoI (R, 5) (or box (R, 4)), the index of the scale that brings its area
    closest to ``target`` squared: argmin_s |area * s² - target²| (paper section 3)."""
    rois = np.asarray(asnumpy(check_array("rois", rois, op="pyramid_levels", ndim=2,
                                          kinds="fiu")))
    if rois.shape[1] not in (4, 5):
        raise ValueError(f"pyramid_levels: rois must be (R, 5) RoIs or (R, 4) boxes, got "
                         f"shape {rois.shape}")
    scales, target = _check_scales(scales, target, op="pyramid_levels")
    boxes = rois[:, -4:]
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])        # (R,)
    scaled = area[:, None] * np.asarray(scales, dtype=np.float64)[None, :] ** 2   # (R, S)
    return np.abs(scaled - float(target) ** 2).argmin(axis=1)               # (R,)


def _forward_pyramid(model, images, rois, scales, target):
    """Scores and deltas of every RoI, each from its pyramid level (module docstring)."""
    xp = get_array_module(images)
    if len(scales) == 1 and scales[0] == 1:
        return model.forward(images, rois)
    stride = getattr(getattr(model, "backbone", None), "feature_stride", 1)
    level = pyramid_levels(asnumpy(rois), scales, target)                     # (R,)
    order = np.argsort(level, kind="stable")      # (R,) the RoIs level after level
    levels = []
    for j, s in enumerate(scales):
        pick = order[level[order] == j]           # (R_j,) level j's RoIs, in order
        if len(pick):
            levels.append(rescale_batch(images, rois[xp.asarray(pick)], s, stride))
    if hasattr(model, "forward_levels"):          # the head once over every level's RoIs
        cls_scores, deltas = model.forward_levels(levels)
    else:                                         # any model: one forward per level
        outputs = [model.forward(padded, r) for padded, r in levels]
        cls_scores = xp.concatenate([c for c, _ in outputs])
        deltas = xp.concatenate([d for _, d in outputs])
    back = xp.asarray(np.argsort(order))          # (R,) each RoI's row in level order
    return cls_scores[back], deltas[back]


def detect(model, image, proposals, *, score_thresh: float = 0.05, nms_thresh: float = 0.3,
           max_dets: int = 100, scales: Sequence[float] = (1.0,),
           target: float = 48.0) -> dict:
    """Detect objects in one image.

    The model is switched to eval mode (dropout off) for the forward pass and put back
    in the mode it was in.

    Args:
        model: a Fast R-CNN-like Module (``forward(images, rois)``).
        image: (3, H, W) float image (or (1, 3, H, W)).
        proposals: (P, 4) candidate boxes (x1, y1, x2, y2) in pixels.
        score_thresh: per-class score threshold (torchvision's box_score_thresh 0.05).
        nms_thresh: per-class NMS IoU threshold (Fast R-CNN uses 0.3).
        max_dets: detections kept per image (100).
        scales: image pyramid (1.0,: one scale); each proposal is scored at the scale
            that brings its area closest to ``target²`` pixels.
    Returns:
        dict(boxes (D, 4), scores (D,), labels (D,) in 1..K) as NumPy arrays.
    """
    return detect_images(model, [image], [proposals], score_thresh=score_thresh,
                         nms_thresh=nms_thresh, max_dets=max_dets, scales=scales,
                         target=target)[0]


def detect_images(model, images: Sequence, proposals: Sequence, *,
                  batch_size: int = DETECT_BATCH,
                  scales: Sequence[float] = (1.0,), target: float = 48.0,
                  **kwargs) -> list[dict]:
    """``detect`` on many images, running the backbone on ``batch_size`` images at once.

    Args:
        images: sequence of (3, H, W) images of equal size.
        proposals: one (P_i, 4) array per image.
        scales, target: the image pyramid, as ``detect``.
        **kwargs: score_thresh, nms_thresh, max_dets as ``detect``.
    Returns:
        one detections dict per image, in order.
    """
    if len(images) != len(proposals):
        raise ValueError(f"detect_images: {len(images)} images but {len(proposals)} "
                         "proposal arrays")
    batch_size = check_count("batch_size", batch_size, op="detect_images")
    scales, target = _check_scales(scales, target)
    _check_thresholds(kwargs.get("score_thresh", 0.05), kwargs.get("nms_thresh", 0.3),
                      kwargs.get("max_dets", 100), "detect")
    for i, p in enumerate(proposals):
        check_boxes(p, f"proposals[{i}]")
    was_training = model.training
    model.eval()
    try:
        with no_grad(model):   # no backward follows: no layer keeps a cache
            return _detect_chunks(model, images, proposals, batch_size, scales, target, kwargs)
    finally:
        model.train(was_training)


def _detect_chunks(model, images, proposals, batch_size, scales, target, kwargs) -> list:
    """detect_images' work, ``batch_size`` images per backbone pass."""
    xp, dtype = _model_xp_dtype(model)
    results = []
    for start in range(0, len(images), batch_size):
        chunk = range(start, min(start + batch_size, len(images)))
        batch = np.stack([_as_chw(images[i], i) for i in chunk])       # (n, 3, H, W)
        props = [np.asarray(asnumpy(check_boxes(proposals[i])), np.float64) for i in chunk]
        index = np.concatenate([np.full(len(p), j) for j, p in enumerate(props)])
        rois = np.concatenate([index[:, None], np.concatenate(props)], axis=1)  # (R, 5)
        if len(rois) == 0:  # no proposals at all: nothing to score
            results.extend(_empty_detections() for _ in props)
            continue
        cls_scores, deltas = _forward_pyramid(model, xp.asarray(batch, dtype=dtype),
                                              xp.asarray(rois, dtype=dtype), scales, target)
        cls_scores, deltas = asnumpy(cls_scores), asnumpy(deltas)
        size = batch.shape[2:]
        for j, p in enumerate(props):
            rows = index == j
            results.append(postprocess(cls_scores[rows], deltas[rows], p, size, **kwargs))
    return results


def _check_scales(scales, target, op: str = "detect_images") -> tuple:
    """(scales as a tuple of floats in [0.1, 10], target as a float >= 1)."""
    scales = tuple(scales) if isinstance(scales, (list, tuple)) else scales
    if not isinstance(scales, tuple) or not scales:
        raise ValueError(f"{op}: scales must be a non-empty tuple of numbers, "
                         f"got {scales!r}")
    for s in scales:
        check_number("scales", s, op=op, low=0.1, high=10.0)
    target = check_number("target", target, op=op, low=1.0, high=1e6)   # a side in pixels
    return tuple(float(s) for s in scales), target


def _empty_detections() -> dict:
    return dict(boxes=np.zeros((0, 4), np.float32), scores=np.zeros(0, np.float32),
                labels=np.zeros(0, np.int64))


def _as_chw(image, i: int = 0) -> np.ndarray:
    """images[i] as a (3, H, W) float array in [0, 1] (the range the detector was
    trained on: a 0..255 image would give no detections, so it is refused)."""
    name = f"images[{i}]"
    image = np.asarray(asnumpy(check_array(name, image, op="detect", kinds=None)))
    if image.ndim == 4 and image.shape[0] == 1:
        image = image[0]
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"detect: {name} must have shape (3, H, W), got {image.shape}")
    if image.dtype.kind != "f":
        raise TypeError(f"detect: {name} must be a float RGB image in [0, 1], got dtype "
                        f"{image.dtype} (for 8-bit pixels pass image / 255)")
    low, high = (float(image.min()), float(image.max())) if image.size else (0.0, 0.0)
    if not (0.0 <= low and high <= 1.0):            # also refuses NaN (comparisons false)
        raise ValueError(f"detect: {name} must hold values in [0, 1], got [{low:g}, {high:g}]"
                         + (" (for 0..255 pixels pass image / 255)" if high > 1 else ""))
    return image
