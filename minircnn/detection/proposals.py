"""Object proposals from outside the network: selective search and dense sliding windows.

Fast R-CNN scores a fixed set of class-agnostic boxes per image, computed once and
cached (about 2000 boxes per image, Fast R-CNN paper section 3: R-CNN's selective search
in "fast mode").
Ours is a small selective search written with NumPy/SciPy:

1. Felzenszwalb & Huttenlocher (IJCV 2004) graph segmentation of a Gaussian-smoothed
   image (segmentation.py: a readable loop over the sorted edges, ``felzenszwalb_naive``,
   and ``felzenszwalb``, which gives the same labels with most edges settled in arrays).
2. Uijlings et al. (IJCV 2013) hierarchical grouping: repeatedly merge the two most
   similar neighbouring regions (colour and texture histogram intersection, size, fill),
   recording every region's box. The regions' histograms (one count of (region,
   histogram column) pairs), their adjacency and the similarity terms of adjacent
   pairs are computed once per segmentation and shared by its strategies.
3. Diversification over colour spaces, scales and similarity strategies; each box is
   ranked ``(position in its hierarchy, 1 = the last merge) * U(0, 1)`` as the paper,
   with a seeded generator; duplicates are dropped and the list is truncated.

Proposals never see the ground truth.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from minircnn.detection.segmentation import felzenszwalb, felzenszwalb_naive, neighbour_pairs
from minircnn.utils.validate import check_count, check_pair, check_positive

COLOR_BINS, TEXTURE_BINS = 25, 10     # histogram bins per channel (as Uijlings et al.)
N_COLOR = 3 * COLOR_BINS              # a region's histogram: 75 colour columns, then texture




def _check_image(image) -> np.ndarray:
    if not isinstance(image, np.ndarray):
        raise TypeError(f"image: expected a NumPy array (3, H, W), got {type(image).__name__}")
    if image.ndim != 3 or image.shape[0] != 3 or min(image.shape[1:]) < 2:
        raise ValueError(f"image: expected shape (3, H, W) with H, W >= 2, got {image.shape}")
    if not np.issubdtype(image.dtype, np.floating):
        raise ValueError(f"image: expected a float array with values in [0, 1], got {image.dtype}")
    if not np.isfinite(image).all():
        raise ValueError("image: expected finite values, got NaN or inf")
    if image.min() < 0 or image.max() > 1:
        raise ValueError(f"image: expected values in [0, 1], got [{image.min()}, {image.max()}]")
    return image.astype(np.float64)


def convert_color(image: np.ndarray, space: str) -> np.ndarray:
    """(3, H, W) RGB in [0, 1] -> (3, H, W) in ``space`` ("rgb", "hsv", "opponent"), in [0, 1]."""
    if space == "rgb":
        return image
    r, g, b = image
    if space == "opponent":                       # decorrelated: (R-G, R+G-2B, R+G+B)
        return np.stack([(r - g + 1) / 2, (r + g - 2 * b + 2) / 4, (r + g + b) / 3])
    if space == "hsv":                            # matplotlib.colors.rgb_to_hsv, vectorized
        v, mn = image.max(axis=0), image.min(axis=0)
        delta = v - mn
        s = np.divide(delta, v, out=np.zeros_like(v), where=v > 0)
        safe = np.where(delta > 0, delta, 1.0)
        h = np.where(v == g, 2 + (b - r) / safe, (g - b) / safe)   # ties: b, then g wins
        h = np.where(v == b, 4 + (r - g) / safe, h)
        h = np.where(delta > 0, (h / 6.0) % 1.0, 0.0)
        return np.stack([h, s, v])
    raise ValueError(f"color space: expected 'rgb', 'hsv' or 'opponent', got {space!r}")


def _texture_features(image: np.ndarray) -> np.ndarray:
    """(3*4, H, W) texture codes: Gaussian derivatives (sigma 1) in 8 orientations.

    Map 4 c + t is channel c's derivative d along angle t * 45 degrees; the code of a
    pixel is ``10 * (d < 0) + bin(|d|)``, |d| in TEXTURE_BINS bins of 0.25 / TEXTURE_BINS
    (0.25 per unit ~ saturates). Uijlings et al. histogram the positive and the negative
    part of d apart (8 orientations = 4 angles x 2 signs); the part of the other sign is
    0, in bin 0: _region_features adds those counts back from the code's sign.
    """
    gy = ndimage.gaussian_filter(image, (0, 1.0, 1.0), order=(0, 1, 0))   # (3, H, W) d/drow
    gx = ndimage.gaussian_filter(image, (0, 1.0, 1.0), order=(0, 0, 1))   # d/dcol
    code = np.empty((3, 4, *image.shape[1:]), np.intp)    # (3, 4, H, W)
    d, size = np.empty_like(gx), np.empty_like(gx)        # (3, H, W) each, reused
    for t, angle in enumerate(np.arange(4) * np.pi / 4):
        np.multiply(gx, np.cos(angle), out=d)     # derivative along the angle:
        d += np.sin(angle) * gy                   #   d = cos * gx + sin * gy
        np.abs(d, out=size)                       # |d| in bins: |d| / 0.25 * TEXTURE_BINS,
        size *= TEXTURE_BINS / 0.25               # as |d| * 40 (/ 0.25 is exact: same floats)
        np.minimum(size, TEXTURE_BINS - 0.5, out=size)   # floors to the last bin at most
        code[:, t] = size                         # bin(|d|) = floor (the cast truncates)
        code[:, t] += (d < 0) * TEXTURE_BINS      # the negative part's bins follow
    return code.reshape(-1, *image.shape[1:])     # (12, H, W) in 0..19


def _histogram_codes(image: np.ndarray, texture: np.ndarray) -> np.ndarray:
    """(3 + 12, H, W) column of each pixel in a region's histogram row (75 + 240 columns):
    ``channel * 25 + colour bin``, then ``75 + map * 20 + texture code``; the same for
    every segmentation of one colour space."""
    maps = len(texture)                                                      # 12
    codes = np.empty((3 + maps, *image.shape[1:]), np.intp)                  # (15, H, W)
    color = codes[:3]
    color[:] = np.minimum(image * COLOR_BINS, COLOR_BINS - 0.5)   # floor: the colour bin
    color += np.arange(3)[:, None, None] * COLOR_BINS
    offsets = N_COLOR + np.arange(maps)[:, None, None] * 2 * TEXTURE_BINS    # (12, 1, 1)
    np.add(texture, offsets, out=codes[3:])
    return codes                                  # in 0..N_COLOR + 240


def _region_features(labels: np.ndarray, codes: np.ndarray) -> dict:
    """Sizes (R,), boxes (R, 4) and hists (R, 75 + 240): the L1-normalised colour
    histogram (its N_COLOR columns), then the L1-normalised texture histogram, from one
    count of (region, histogram column) pairs."""
    r = int(labels.max()) + 1
    sizes = np.bincount(labels.ravel(), minlength=r).astype(np.float64)
    slices = ndimage.find_objects(labels + 1)
    boxes = np.array([[s[1].start, s[0].start, s[1].stop, s[0].stop] for s in slices], float)
    width = N_COLOR + 24 * TEXTURE_BINS           # 315 columns
    idx = labels[None] * width + codes            # (15, H, W): region * 315 + column
    counts = np.bincount(idx.ravel(), minlength=r * width).reshape(r, width)
    color, texture = counts[:, :N_COLOR], counts[:, N_COLOR:].reshape(r, -1, 2, TEXTURE_BINS)
    positive, negative = texture.sum(axis=3).transpose(2, 0, 1)   # (R, 12) pixels per sign
    texture[:, :, 0, 0] += negative               # where d < 0 the positive part is 0: bin 0
    texture[:, :, 1, 0] += positive               # where d >= 0 the negative part is 0
    texture = texture.reshape(r, -1)              # (R, 240): 24 parts x 10 bins
    hist = np.concatenate([color / color.sum(axis=1, keepdims=True),
                           texture / texture.sum(axis=1, keepdims=True)], axis=1)
    return dict(sizes=sizes, boxes=boxes, hist=hist)   # hist: colour columns, then texture


def _adjacent_pairs(labels: np.ndarray) -> np.ndarray:
    """(P, 2) unique pairs (i < j) of regions that touch in the 8-neighbourhood."""
    a, b = neighbour_pairs(*labels.shape)
    la, lb = labels.ravel()[a], labels.ravel()[b]
    keep = np.flatnonzero(la != lb)
    la, lb = la[keep], lb[keep]
    r = int(labels.max()) + 1
    codes = np.unique(np.minimum(la, lb) * r + np.maximum(la, lb))   # i * R + j
    return np.stack([codes // r, codes % r], axis=1)


def _similarity(regions: tuple, t: int, ks: list, strategy: str, area: float) -> list:
    """Similarities of region t with each region of ks: the sum of the terms the strategy
    names, added in the order c, t, s, f (Uijlings et al. 2013, eqs. 2-5), each in [0, 1].

    ``regions`` = (sizes, boxes, hist): lists of sizes and boxes, the (R', 315) histograms.
    The histograms are compared in arrays; the size and fill terms, a few float operations
    per pair, in Python (a merged region has a few neighbours: arrays would cost more).
    """
    sizes, boxes, hist = regions
    color = texture = [0.0] * len(ks)             # a term the strategy leaves out adds 0
    if "c" in strategy or "t" in strategy:       # histogram intersection, sum of min
        common = hist.take(ks, axis=0)            # (K, 75 + 240) rows ks (= hist[ks])
        np.minimum(common, hist[t], out=common)   # min(hist[k], hist[t]) column by column
        if "c" in strategy:
            color = np.add.reduce(common[:, :N_COLOR], axis=1).tolist()   # (= .sum(axis=1))
        if "t" in strategy:
            texture = np.add.reduce(common[:, N_COLOR:], axis=1).tolist()
    small, fill = "s" in strategy, "f" in strategy
    box_t = boxes[t]
    similar = []
    for k, c, tx in zip(ks, color, texture, strict=True):
        s = 0.0 + c + tx                          # (adding 0 changes no value)
        size = sizes[t] + sizes[k]                # the merged region's size
        if small:                                 # merge small regions first
            s += 1.0 - size / area
        if fill:                                  # prefer regions that fill each other's box
            box_k = boxes[k]
            bw = max(box_t[2], box_k[2]) - min(box_t[0], box_k[0])   # the union's box
            bh = max(box_t[3], box_k[3]) - min(box_t[1], box_k[1])
            s += 1.0 - (bw * bh - size) / area
        similar.append(s)
    return similar


def hierarchical_grouping(labels: np.ndarray, image: np.ndarray, texture: np.ndarray,
                          strategy: str = "ctsf") -> np.ndarray:
    """Greedy grouping of a segmentation; returns the boxes (2R-1, 4) in creation order.

    A merge of i and j creates region t; the similarities of t with all its neighbours
    are computed at once, and pushed on the heap.
    """
    features = _region_features(labels, _histogram_codes(image, texture))
    pairs, area = _adjacent_pairs(labels), float(labels.size)
    return _grouping(features, pairs, _pair_terms(features, pairs, area), strategy, area)


def _pair_terms(f: dict, pairs: np.ndarray, area: float) -> dict:
    """The similarity terms, (P,) each, of the adjacent pairs (P, 2) of a segmentation:
    what _similarity adds for them, in arrays, once for all strategies."""
    i, j = pairs[:, 0], pairs[:, 1]
    common = np.minimum(f["hist"][i], f["hist"][j])           # (P, 75 + 240)
    size = f["sizes"][i] + f["sizes"][j]                      # (P,) merged sizes
    bi, bj = f["boxes"][i], f["boxes"][j]                     # (P, 4) each
    bw = np.maximum(bi[:, 2], bj[:, 2]) - np.minimum(bi[:, 0], bj[:, 0])   # the union's box
    bh = np.maximum(bi[:, 3], bj[:, 3]) - np.minimum(bi[:, 1], bj[:, 1])
    return dict(c=common[:, :N_COLOR].sum(axis=1), t=common[:, N_COLOR:].sum(axis=1),
                s=1.0 - size / area, f=1.0 - (bw * bh - size) / area)


def _grouping(f: dict, pairs: np.ndarray, terms: dict, strategy: str,
              area: float) -> np.ndarray:
    """hierarchical_grouping from the regions' features, adjacent pairs (P, 2) and their
    similarity terms (_pair_terms), which every strategy of one segmentation shares."""
    n = len(f["sizes"])
    sizes, boxes = f["sizes"].tolist(), f["boxes"].tolist()   # region t at index t
    hist = np.concatenate([f["hist"], np.zeros((n - 1, f["hist"].shape[1]))])  # row t
    regions = sizes, boxes, hist
    neighbours: list[set] = [set() for _ in range(n)]
    for i, j in pairs.tolist():
        neighbours[i].add(j)
        neighbours[j].add(i)
    similar = np.zeros(len(pairs))                # (P,) added in _similarity's order
    for letter in "ctsf":
        if letter in strategy:
            similar += terms[letter]
    heap = list(zip((-similar).tolist(), pairs[:, 0].tolist(), pairs[:, 1].tolist(),
                    strict=True))
    heapq.heapify(heap)                           # most similar first
    alive = [True] * n
    while heap:
        _, i, j = heapq.heappop(heap)
        if not (alive[i] and alive[j]):
            continue                              # a stale pair: one side was merged away
        t, si, sj = len(alive), sizes[i], sizes[j]
        sizes.append(si + sj)
        (ix1, iy1, ix2, iy2), (jx1, jy1, jx2, jy2) = boxes[i], boxes[j]
        boxes.append([min(ix1, jx1), min(iy1, jy1), max(ix2, jx2), max(iy2, jy2)])  # union
        mean = hist[t]                            # (315,) a view: filled in place with
        np.multiply(hist[i], si, out=mean)        # the size-weighted mean
        mean += sj * hist[j]                      # (si h_i + sj h_j) / (si + sj)
        mean /= si + sj
        alive[i] = alive[j] = False
        alive.append(True)
        neighbours.append((neighbours[i] | neighbours[j]) - {i, j})
        ks = list(neighbours[t])
        for k in ks:
            neighbours[k].discard(i)
            neighbours[k].discard(j)
            neighbours[k].add(t)
        similar = _similarity(regions, t, ks, strategy, area)
        for s_k, k in zip(similar, ks, strict=True):
            heapq.heappush(heap, (-s_k, t, k))
    return np.array(boxes, dtype=np.float64).reshape(-1, 4)


def _as_tuple(value) -> tuple:
    return tuple(value) if isinstance(value, (list, tuple)) else (value,)


def _check_diversification(color_spaces, strategies) -> None:
    """color_spaces and strategies: non-empty sequences of names (a bare string is refused:
    "ctsf" would be read as the four strategies "c", "t", "s", "f")."""
    for name, value in (("color_spaces", color_spaces), ("strategies", strategies)):
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or not value:
            raise ValueError(f"selective_search: {name} must be a non-empty list or tuple, "
                             f"e.g. {('rgb',) if name == 'color_spaces' else ('ctsf',)}, "
                             f"got {value!r}")
    for space in color_spaces:
        if space not in ("rgb", "hsv", "opponent"):
            raise ValueError(f"selective_search: color_spaces must hold 'rgb', 'hsv' or "
                             f"'opponent', got {space!r}")
    for s in strategies:
        if not isinstance(s, str) or not s or set(s) - set("ctsf"):
            raise ValueError(f"selective_search: strategies must hold strings of the letters "
                             f"c, t, s, f (colour, texture, size, fill), got {s!r}")


def selective_search(image: np.ndarray, *, scale: float | Sequence[float] = 100.0,
                     sigma: float = 0.8, min_size: int = 20, max_boxes: int | None = 300,
                     color_spaces: Sequence[str] = ("rgb", "hsv"),
                     strategies: Sequence[str] = ("ctsf", "tsf", "cs"),
                     seed: int = 0, impl: str = "fast") -> np.ndarray:
    """Selective search (Uijlings et al. 2013) proposals for one image.

    Args:
        image: (3, H, W) float RGB in [0, 1].
        scale: FH's k (0..255 intensity units); a sequence diversifies over scales.
        sigma: Gaussian smoothing before segmentation, in pixels.
        min_size: smallest segment, in pixels.
        max_boxes: keep the first max_boxes after ranking (None keeps all).
        color_spaces: any of "rgb", "hsv", "opponent"; one segmentation per
            (colour space, scale).
        strategies: similarity combinations, letters c(olour) t(exture) s(ize) f(ill).
        seed: seeds the randomised ranking (the same seed gives the same boxes).
        impl: "fast" (the default) or "naive": which felzenszwalb segments the image
            (segmentation.py); both give the same boxes.
    Returns:
        (P, 4) float32 boxes (x1, y1, x2, y2), tight around their regions, no duplicates.

    The defaults (2 segmentations x 3 strategies) give about 130 boxes per 128 px shapes
    image with recall ~1.0 at IoU 0.5; ``scale=(50, 150)`` gives about 250 boxes from
    twice the segmentations (one per scale and colour space). Its time per image is on
    docs/performance.md.
    """
    rgb = _check_image(image)
    for k in _as_tuple(scale):
        check_positive("scale", k, op="selective_search")
    check_positive("sigma", sigma, op="selective_search", allow_zero=True)
    check_count("min_size", min_size, op="selective_search", minimum=0)
    if max_boxes is not None:
        check_count("max_boxes", max_boxes, op="selective_search")
    _check_diversification(color_spaces, strategies)
    if impl not in ("fast", "naive"):
        raise ValueError(f"selective_search: impl must be 'fast' or 'naive', got {impl!r}")
    rng = np.random.default_rng(seed)
    boxes, ranks = [], []
    segment = felzenszwalb if impl == "fast" else felzenszwalb_naive
    for space in color_spaces:
        img = convert_color(rgb, space)
        codes = _histogram_codes(img, _texture_features(img))
        for k in _as_tuple(scale):
            labels = segment(img, scale=float(k), sigma=sigma, min_size=min_size)
            features, pairs = _region_features(labels, codes), _adjacent_pairs(labels)
            terms = _pair_terms(features, pairs, float(labels.size))
            for strategy in strategies:
                found = _grouping(features, pairs, terms, strategy, float(labels.size))
                position = np.arange(len(found), 0, -1)   # 1 = the whole-hierarchy root
                boxes.append(found)
                ranks.append(position * rng.random(len(found)))
    boxes = np.concatenate(boxes)[np.argsort(np.concatenate(ranks), kind="stable")]
    _, first = np.unique(boxes, axis=0, return_index=True)
    boxes = boxes[np.sort(first)]                 # drop duplicates, keep the ranking
    return boxes[:max_boxes].astype(np.float32)


def dense_boxes(image_size: int | tuple[int, int], *, scales: Sequence[float] = (16, 32, 64),
                aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0),
                stride: int = 8) -> np.ndarray:
    """Sliding windows: every box of area scale**2 and height/width = ratio whose top-left
    corner lies on the ``stride`` grid and that fits inside the image.

    The paper's "dense vs selective search" comparison (Fast R-CNN, Sec. 5.5).
    Returns (P, 4) float32, ordered by scale, then ratio, then row, then column.
    """
    h, w = check_pair("image_size", image_size, op="dense_boxes")
    stride = check_count("stride", stride, op="dense_boxes")
    for name, values in (("scales", scales), ("aspect_ratios", aspect_ratios)):
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
            raise ValueError(f"dense_boxes: {name} must be a non-empty list or tuple of "
                             f"numbers > 0, got {values!r}")
        for v in values:
            check_positive(name, v, op="dense_boxes")
    out = []
    for s in scales:
        for ratio in aspect_ratios:
            bw, bh = round(s / np.sqrt(ratio)), round(s * np.sqrt(ratio))
            if bw > w or bh > h:
                continue
            ys, xs = np.meshgrid(np.arange(0, h - bh + 1, stride),
                                 np.arange(0, w - bw + 1, stride), indexing="ij")
            x1, y1 = xs.ravel(), ys.ravel()
            out.append(np.stack([x1, y1, x1 + bw, y1 + bh], axis=1))   # (n, 4)
    return np.concatenate(out).astype(np.float32) if out else np.zeros((0, 4), np.float32)
