"""RoI max pooling and SPP on RoIs: three tiers of RoI max pooling, SPP, Modules.

Fast R-CNN pools every region of interest (RoI) of a shared feature map into a fixed
PH x PW grid, so RoIs of any size feed the same fully connected layers. Semantics match
torchvision's CPU kernel exactly (``torchvision.ops.roi_pool``):

- roi_pool: RoI corners are scaled and rounded half away from zero (C ``round``),
  the end is inclusive (width = x2 - x1 + 1, at least 1), bin ``ph`` covers rows
  ``floor(ph * bin_h) .. ceil((ph + 1) * bin_h)`` past the RoI start, clipped to the
  map; an empty bin outputs 0 and gets no gradient; the first maximum in row-major
  order wins; a bin's max starts at -FLT_MAX and a cell must be ``>`` it, so NaN, -inf
  and values <= -FLT_MAX never win, and a bin without any other cell outputs -FLT_MAX
  and gets no gradient; backward sends each output gradient to its argmax cell, summed
  over all bins and RoIs that share it.
- spp: roi_pool at each pyramid level, flattened channel-first and concatenated.

Three tiers of roi_pool forward, bit-identical (ties included) with one cache type:

- ``roi_pool_forward_naive``: loops over RoIs, channels, bins and cells, the specification;
- ``roi_pool_forward_vectorized``: one loop over the offsets inside the largest bin,
  every bin of every RoI and channel at once (the idea of ``max_pool2d_forward``);
- ``roi_pool_forward``: the fastest, used for training; it answers the bins from max
  tables (roi_max_tables.py, the advanced path).

Every version (naive, vectorized, tables, SPP) takes its bins from one helper,
:func:`roi_pool_bins`. RoIAlign lives in roi_align.py (it shares the input checks and
Module plumbing defined here) and is re-exported at the bottom of this file.
Derivations and worked examples: docs/layers/roi_pool.md.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from minircnn.backend import get_array_module
from minircnn.layers.module import Module, OpModule, no_forward_error
from minircnn.layers.roi_checks import (
    check_roi_dout,
    check_roi_inputs,
    pair,
)
from minircnn.layers.roi_max_tables import bin_start, roi_max_pool_tables
from minircnn.utils.validate import check_count, check_dout, check_positive


# --------------------------------------------------------------------------------------
# Input checks and the shared bin arithmetic.
# --------------------------------------------------------------------------------------
def c_round(v):
    """Round half away from zero, as C's ``round`` (2.5 -> 3, -2.5 -> -3, 0.5 -> 1).

    Not ``np.round``, which rounds half to even (2.5 -> 2). Written as floor plus a
    test on the exact fractional part: ``floor(|v| + 0.5)`` would be wrong in float32
    for v = 0.49999997 (the sum rounds up to 1.0).
    """
    xp = get_array_module(v)
    a = xp.abs(v)
    whole = xp.floor(a)
    return xp.copysign(whole + (a - whole >= 0.5), v).astype(np.int64)


class RoIBins(NamedTuple):
    """Integer bins of every RoI: bin (ph, pw) is rows hstart..hend-1, cols wstart..wend-1."""

    batch: np.ndarray   # (R,) image index of each RoI
    hstart: np.ndarray  # (R, PH) first row of each bin row, clipped to [0, H]
    hend: np.ndarray    # (R, PH) one past the last row, clipped to [0, H]
    wstart: np.ndarray  # (R, PW) first column, clipped to [0, W]
    wend: np.ndarray    # (R, PW) one past the last column, clipped to [0, W]


def roi_pool_bins(rois, output_size, spatial_scale, height: int, width: int) -> RoIBins:
    """Bin boundaries of torchvision's roi_pool; shared by the naive, fast and SPP code.

    Args:
        rois: (R, 5) [batch_index, x1, y1, x2, y2] in image pixels, already checked and
            in the features' dtype (the arithmetic runs in that dtype, as torchvision's).
        output_size: (PH, PW).  spatial_scale: feature-map cells per image pixel.
        height, width: H, W of the feature map.
    Returns:
        RoIBins. A bin with hend <= hstart or wend <= wstart is empty.
    """
    xp = get_array_module(rois)
    if not np.issubdtype(rois.dtype, np.floating):
        rois = rois.astype(np.float64)
    PH, PW = output_size
    scale = rois.dtype.type(spatial_scale)
    start_w, start_h, end_w, end_h = (c_round(rois[:, i] * scale) for i in (1, 2, 3, 4))
    roi_w = xp.maximum(end_w - start_w + 1, 1)    # inclusive end; malformed RoIs -> 1 cell
    roi_h = xp.maximum(end_h - start_h + 1, 1)
    hstart, hend = _axis_bins(start_h, roi_h, PH, height, rois.dtype)
    wstart, wend = _axis_bins(start_w, roi_w, PW, width, rois.dtype)
    return RoIBins(rois[:, 0].astype(np.int64), hstart, hend, wstart, wend)


def checked_bins(features, rois, output_size, spatial_scale):
    """Check roi_pool's inputs and compute every RoI's bins (the first step of every tier).

    Returns:
        features (as an array) and the RoIBins of every RoI.
    """
    features, rois = check_roi_inputs("roi_pool", features, rois, spatial_scale)
    output_size = pair(output_size, "roi_pool: output_size")
    return features, roi_pool_bins(rois, output_size, spatial_scale, *features.shape[2:])


def _axis_bins(start, length, n_bins: int, size: int, dtype):
    """Bins along one axis: floor(p * bin) .. ceil((p + 1) * bin), offset and clipped."""
    xp = get_array_module(start)
    bin_size = length.astype(dtype) / dtype.type(n_bins)   # (R,) float, as torchvision
    p = xp.arange(n_bins, dtype=dtype)[None, :]              # (1, P)
    lo = xp.floor(p * bin_size[:, None]).astype(np.int64) + start[:, None]      # (R, P)
    hi = xp.ceil((p + 1) * bin_size[:, None]).astype(np.int64) + start[:, None]  # (R, P)
    return xp.clip(lo, 0, size), xp.clip(hi, 0, size)


# --------------------------------------------------------------------------------------
# RoI max pooling: naive loops (the specification).
# --------------------------------------------------------------------------------------
class RoIPoolCache(NamedTuple):
    """What roi_pool backward needs (naive and fast caches are interchangeable)."""

    features_shape: tuple  # (N, C, H, W)
    batch: np.ndarray      # (R,) image index of each RoI
    argmax: np.ndarray     # (R, C, PH, PW) index of the winner in features.ravel(), -1: empty bin
    dtype: object = None   # features' dtype, which dout must have (None: not checked)


def roi_pool_forward_naive(features: np.ndarray, rois: np.ndarray, *, output_size=(7, 7),
                           spatial_scale: float = 1 / 16):
    """RoI max pooling with explicit loops (same arguments and result as roi_pool_forward)."""
    features, bins = checked_bins(features, rois, output_size, spatial_scale)
    xp = get_array_module(features)
    N, C, H, W = features.shape
    (R, PH), PW = bins.hstart.shape, bins.wstart.shape[1]
    lowest = bin_start(features.dtype)               # -FLT_MAX, as torchvision
    out = xp.zeros((R, C, PH, PW), dtype=features.dtype)
    argmax = xp.full((R, C, PH, PW), -1, dtype=np.int64)
    for r in range(R):
        n = int(bins.batch[r])
        for c in range(C):
            for ph in range(PH):
                for pw in range(PW):
                    empty = bins.hend[r, ph] <= bins.hstart[r, ph] or \
                        bins.wend[r, pw] <= bins.wstart[r, pw]
                    # torchvision: an empty bin is 0, any other starts at -FLT_MAX; argmax
                    # -1 until a cell wins (NaN, -inf, <= -FLT_MAX never do: no gradient)
                    best, best_idx = (0 if empty else lowest), -1
                    for h in range(int(bins.hstart[r, ph]), int(bins.hend[r, ph])):
                        for w in range(int(bins.wstart[r, pw]), int(bins.wend[r, pw])):
                            if features[n, c, h, w] > best:   # strict >: first max wins
                                best = features[n, c, h, w]
                                best_idx = ((n * C + c) * H + h) * W + w   # into x.ravel()
                    out[r, c, ph, pw] = best
                    argmax[r, c, ph, pw] = best_idx
    return out, RoIPoolCache(tuple(features.shape), bins.batch, argmax, features.dtype)


def roi_pool_backward_naive(dout: np.ndarray, cache: RoIPoolCache) -> np.ndarray:
    """dout (R, C, PH, PW) -> dfeatures (N, C, H, W), one output at a time."""
    check_dout(dout, cache.argmax.shape, cache.dtype, cache.argmax, op="roi_pool_backward")
    xp = get_array_module(dout)
    N, C, H, W = cache.features_shape
    dfeatures = xp.zeros(cache.features_shape, dtype=dout.dtype)
    R, _, PH, PW = cache.argmax.shape
    for r in range(R):
        for c in range(C):
            for ph in range(PH):
                for pw in range(PW):
                    idx = int(cache.argmax[r, c, ph, pw])
                    if idx < 0:
                        continue                      # empty bin: no gradient
                    n, c_, h, w = np.unravel_index(idx, (N, C, H, W))   # c_ == c
                    # d out[r,c,ph,pw] / d x[n,c,h,w] = 1 at the argmax: add dout there
                    dfeatures[n, c, h, w] += dout[r, c, ph, pw]
    return dfeatures


# --------------------------------------------------------------------------------------
# RoI max pooling, vectorized: loop over the offsets inside the largest bin, never over
# RoIs, channels or bins.
# --------------------------------------------------------------------------------------
def roi_pool_forward_vectorized(features: np.ndarray, rois: np.ndarray, *,
                                output_size=(7, 7), spatial_scale: float = 1 / 16):
    """RoI max pooling, one step per cell offset (kh, kw) of the largest bin (KH x KW).

    Step (kh, kw) reads cell (hstart + kh, wstart + kw) of every bin at once and keeps it
    where it lies inside its bin and is larger than the max so far. Offsets run in
    row-major order and the test is a strict ``>``, so the first max wins, as the loops;
    the max so far starts at -FLT_MAX, as theirs. Same arguments, result and cache as
    roi_pool_forward_naive.
    """
    features, bins = checked_bins(features, rois, output_size, spatial_scale)
    xp = get_array_module(features)
    N, C, H, W = features.shape
    (R, PH), PW = bins.hstart.shape, bins.wstart.shape[1]
    KH = int((bins.hend - bins.hstart).max()) if R else 0  # largest bin: KH x KW cells
    KW = int((bins.wend - bins.wstart).max()) if R else 0
    x = features.transpose(0, 2, 3, 1)                     # (N, C, H, W) -> (N, H, W, C)
    n = bins.batch[:, None, None]                          # (R, 1, 1)
    channel = xp.arange(C) * (H * W)                       # (C,) offset of channel c in x.ravel()
    best = xp.full((R, PH, PW, C), bin_start(features.dtype), dtype=features.dtype)
    argmax = xp.full((R, PH, PW, C), -1, dtype=np.int64)   # -1 until a cell wins: empty bin
    for kh in range(KH):
        h = bins.hstart + kh                               # (R, PH) row of this offset
        for kw in range(KW):
            w = bins.wstart + kw                           # (R, PW) column of this offset
            inside = (h < bins.hend)[:, :, None] & (w < bins.wend)[:, None, :]  # (R, PH, PW)
            hh = xp.minimum(h, H - 1)[:, :, None]          # (R, PH, 1), clipped to read safely
            ww = xp.minimum(w, W - 1)[:, None, :]          # (R, 1, PW)
            value = x[n, hh, ww]                           # (R, PH, PW, C) gather
            better = inside[..., None] & (value > best)    # strict >: first max wins
            best = xp.where(better, value, best)
            cell = (n * C * H + hh) * W + ww               # (R, PH, PW) index of channel 0
            argmax = xp.where(better, cell[..., None] + channel, argmax)
    empty = (bins.hend <= bins.hstart)[:, :, None] | (bins.wend <= bins.wstart)[:, None, :]
    out = xp.where(empty[..., None], 0, best).astype(features.dtype)   # empty bin -> 0
    out = out.transpose(0, 3, 1, 2)                        # (R, PH, PW, C) -> (R, C, PH, PW)
    argmax = argmax.transpose(0, 3, 1, 2)
    return out, RoIPoolCache(tuple(features.shape), bins.batch, argmax, features.dtype)


# --------------------------------------------------------------------------------------
# RoI max pooling, fastest: bins answered from max tables (roi_max_tables.py).
# --------------------------------------------------------------------------------------
def roi_pool_forward(features: np.ndarray, rois: np.ndarray, *, output_size=(7, 7),
                     spatial_scale: float = 1 / 16, table: str | None = None):
    """RoI max pooling, exactly as torchvision.ops.roi_pool (see the module docstring).

    The result equals roi_pool_forward_vectorized's bit for bit; the work is done by
    roi_max_tables.roi_max_pool_tables, which reads each bin's max from a precomputed
    table of rectangle maxima instead of visiting its cells.

    Args:
        features: (N, C, H, W) feature maps, float32 or float64.
        rois: (R, 5) [batch_index, x1, y1, x2, y2] in image pixels, x2 >= x1, y2 >= y1.
        output_size: PH x PW, an int or a pair.
        spatial_scale: feature cells per image pixel (1/16 for VGG16 conv5).
        table: None picks the cheaper max table; "box" or "sparse" forces one (tests
            and benchmarks compare them).
    Returns:
        out: (R, C, PH, PW) and a RoIPoolCache for roi_pool_backward.
    """
    features, bins = checked_bins(features, rois, output_size, spatial_scale)
    out, argmax = roi_max_pool_tables(features, bins, table=table)   # (R, C, PH, PW) each
    return out, RoIPoolCache(tuple(features.shape), bins.batch, argmax, features.dtype)


def roi_pool_backward(dout: np.ndarray, cache: RoIPoolCache) -> np.ndarray:
    """dout (R, C, PH, PW) -> dfeatures (N, C, H, W).

    Each output is a copy of its argmax cell, so its gradient goes there; xp.add.at sums
    the contributions of all bins and RoIs that picked the same cell. The backward of
    every forward tier. Both arrays are read channel-last, the faster forwards' memory
    order (no copies): all contributions to one cell share its channel, so they are still
    added in (r, ph, pw) order, as the loops.
    """
    check_roi_dout("roi_pool_backward", dout, cache.argmax.shape, cache.dtype, cache.argmax)
    xp = get_array_module(dout)
    N, C, H, W = cache.features_shape
    index = cache.argmax.transpose(0, 2, 3, 1).ravel()      # (R, C, PH, PW) -> (R*PH*PW*C,)
    dout = dout.transpose(0, 2, 3, 1).ravel()               # (R, C, PH, PW) -> (R*PH*PW*C,)
    dflat = xp.zeros(N * C * H * W + 1, dtype=dout.dtype)   # features.ravel() + 1 spare
    xp.add.at(dflat, index, dout)   # dx[argmax] += dout; an empty bin's -1 adds to the spare
    return dflat[:-1].reshape(N, C, H, W)


# --------------------------------------------------------------------------------------
# Spatial pyramid pooling on RoIs (SPP-net): roi_pool at several grid sizes.
# --------------------------------------------------------------------------------------
class SPPCache(NamedTuple):
    """One RoIPoolCache per pyramid level, and the levels."""

    levels: tuple         # grid sizes l, in output order
    level_caches: tuple   # RoIPoolCache of each level


def spp_forward(features: np.ndarray, rois: np.ndarray, *, levels=(4, 2, 1), spatial_scale):
    """SPP-net's spatial pyramid pooling of each RoI: a fixed-length vector per RoI.

    For each level l, RoI max pooling to an l x l grid (roi_pool_forward, so the bins
    follow torchvision.ops.roi_pool), flattened channel-first; levels concatenated in
    the given order: out[:, :C*l0*l0] is level l0's (C, l0, l0) block, and so on.

    Args:
        features: (N, C, H, W).  rois: (R, 5) [batch_index, x1, y1, x2, y2].
        levels: grid sizes, e.g. (4, 2, 1) -> 21 bins per channel.
        spatial_scale: feature cells per image pixel.
    Returns:
        out: (R, C * sum(l*l)) and an SPPCache for spp_backward.
    """
    levels = _check_levels(levels, "spp")
    xp = get_array_module(features)
    outs, caches = [], []
    for lv in levels:
        out, cache = roi_pool_forward(features, rois, output_size=(int(lv), int(lv)),
                                      spatial_scale=spatial_scale)
        R, C = out.shape[:2]                          # R or C may be 0: no -1 in reshape
        outs.append(out.reshape(R, C * lv * lv))      # (R, C, l, l) -> (R, C*l*l)
        caches.append(cache)
    return xp.concatenate(outs, axis=1), SPPCache(levels, tuple(caches))


def _check_levels(levels, op: str) -> tuple:
    """SPP pyramid levels: a non-empty sequence of ints >= 1."""
    if isinstance(levels, (str, bytes)) or not hasattr(levels, "__len__") or len(levels) == 0:
        raise ValueError(f"{op}: levels must be a non-empty sequence of ints >= 1, "
                         f"got {levels!r}")
    return tuple(check_count("levels", lv, op=op) for lv in levels)


def spp_backward(dout: np.ndarray, cache: SPPCache) -> np.ndarray:
    """dout (R, C * sum(l*l)) -> dfeatures (N, C, H, W): sum of each level's roi_pool backward."""
    first = cache.level_caches[0]
    R, C = first.argmax.shape[:2]
    width = C * sum(lv * lv for lv in cache.levels)
    check_roi_dout("spp_backward", dout, (R, width), first.dtype, first.argmax)
    dfeatures, col = None, 0
    for lv, level_cache in zip(cache.levels, cache.level_caches, strict=True):
        block = dout[:, col:col + C * lv * lv].reshape(R, C, lv, lv)   # (R, C*l*l) -> (R, C, l, l)
        col += C * lv * lv
        d = roi_pool_backward(block, level_cache)
        dfeatures = d if dfeatures is None else dfeatures + d   # x fans out to every level
    return dfeatures


# --------------------------------------------------------------------------------------
# Modules.
# --------------------------------------------------------------------------------------
class RoIPool(OpModule):
    """Module form of roi_pool (``impl`` "fast", "vectorized" or "naive")."""

    IMPLS = {"fast": (roi_pool_forward, roi_pool_backward),
             "vectorized": (roi_pool_forward_vectorized, roi_pool_backward),
             "naive": (roi_pool_forward_naive, roi_pool_backward_naive)}

    def __init__(self, output_size=(7, 7), spatial_scale: float = 1 / 16, impl: str = "fast"):
        self.output_size = pair(output_size, "RoIPool: output_size")
        self.spatial_scale = check_positive("spatial_scale", spatial_scale, op="RoIPool")
        self.impl = impl                      # checked; picks op_forward, op_backward

    def forward(self, features, rois):
        out, self._cache = self.op_forward(features, rois, output_size=self.output_size,
                                           spatial_scale=self.spatial_scale)
        return out

    def backward(self, dout):
        if self._cache is None:
            raise no_forward_error(self)
        return self.op_backward(dout, self._cache)

    def __repr__(self) -> str:
        return (f"RoIPool(output_size={self.output_size}, spatial_scale={self.spatial_scale}, "
                f"impl={self.impl!r})")


class SpatialPyramidPool(Module):
    """Module form of spp_forward / spp_backward: (R, C * sum(l*l)) per forward."""

    def __init__(self, levels=(4, 2, 1), spatial_scale: float = 1 / 16):
        self.levels = _check_levels(levels, "SpatialPyramidPool")
        self.spatial_scale = check_positive("spatial_scale", spatial_scale, op="SpatialPyramidPool")

    def forward(self, features, rois):
        out, self._cache = spp_forward(features, rois, levels=self.levels,
                                       spatial_scale=self.spatial_scale)
        return out

    def backward(self, dout):
        if self._cache is None:
            raise no_forward_error(self)
        return spp_backward(dout, self._cache)

    def __repr__(self) -> str:
        return f"SpatialPyramidPool(levels={self.levels}, spatial_scale={self.spatial_scale})"
