"""RoIAlign: naive loops, a fast version (two small matrix products), and its Module.

The fast version's pieces live beside it: the interpolation matrices and the products
over the whole map in roi_align_matrices.py, the same products on each RoI's window of
the map (what the fast forward and backward run) in roi_align_windows.py.

RoIAlign (Mask R-CNN) pools every region of interest (RoI) into a fixed PH x PW grid
like RoI max pooling, but without rounding: each bin averages bilinear samples on a grid
of sampling_ratio x sampling_ratio points (adaptive ceil(roi_h / PH) when <= 0).
Semantics match torchvision's CPU kernel exactly (``torchvision.ops.roi_align``).

Input checks and the Module plumbing are shared with RoI max pooling and come from
roi_pool.py, which also re-exports every public name here (docs/design.md places the RoI ops
there). Derivations and worked examples: docs/layers/roi_pool.md.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from minircnn.backend import get_array_module
from minircnn.layers.module import OpModule, no_forward_error
from minircnn.layers.roi_align_matrices import interp_matrix, pool_whole, unpool_whole
from minircnn.layers.roi_align_windows import (
    WindowPlan,
    channels_last,
    plan_windows,
    pool_group,
    unpool_group,
)
from minircnn.layers.roi_checks import (
    check_roi_dout,
    check_roi_inputs,
    pair,
)
from minircnn.utils.validate import check_count, check_dout, check_positive


# --------------------------------------------------------------------------------------
# RoIAlign: bilinear sampling instead of rounding (Mask R-CNN; torchvision.ops.roi_align).
# --------------------------------------------------------------------------------------
class RoIAlignCache(NamedTuple):
    """What roi_align backward needs (naive and fast caches are interchangeable)."""

    features_shape: tuple  # (N, C, H, W)
    rois: np.ndarray       # (R, 5) checked, in the features' dtype
    output_size: tuple     # (PH, PW)
    spatial_scale: float
    sampling_ratio: int
    aligned: bool
    dtype: object = None   # features' dtype, which dout must have (None: not checked)
    windows: WindowPlan | None = None  # the fast forward's windows and weights, for backward


class AlignGeometry(NamedTuple):
    """Per-RoI sampling grid of roi_align, all (R,) arrays in the features' dtype."""

    batch: np.ndarray    # image index (int)
    start_h: np.ndarray  # top edge of the RoI in feature cells
    start_w: np.ndarray  # left edge
    bin_h: np.ndarray    # bin height in cells
    bin_w: np.ndarray    # bin width
    grid_h: np.ndarray   # samples per bin vertically (int, may be <= 0: no samples)
    grid_w: np.ndarray   # samples per bin horizontally
    count: np.ndarray    # max(grid_h * grid_w, 1): the average's divisor


def roi_align_geometry(rois, output_size, spatial_scale, sampling_ratio: int,
                       aligned: bool) -> AlignGeometry:
    """RoI start, bin size and sampling grid as torchvision's roi_align computes them."""
    xp = get_array_module(rois)
    dt = rois.dtype.type
    PH, PW = output_size
    offset = dt(0.5) if aligned else dt(0.0)      # aligned: pixel centres at +0.5
    start_w, start_h, end_w, end_h = (rois[:, i] * dt(spatial_scale) - offset for i in (1, 2, 3, 4))
    roi_w, roi_h = end_w - start_w, end_h - start_h
    if not aligned:                              # legacy: force malformed RoIs to 1x1
        roi_w, roi_h = xp.maximum(roi_w, dt(1)), xp.maximum(roi_h, dt(1))
    bin_h, bin_w = roi_h / dt(PH), roi_w / dt(PW)
    if sampling_ratio > 0:
        grid_h = xp.full(rois.shape[0], sampling_ratio, dtype=np.int64)
        grid_w = grid_h
    else:                                        # adaptive: about one sample per cell
        grid_h = xp.ceil(roi_h / dt(PH)).astype(np.int64)
        grid_w = xp.ceil(roi_w / dt(PW)).astype(np.int64)
    count = xp.maximum(grid_h * grid_w, 1).astype(rois.dtype)
    return AlignGeometry(rois[:, 0].astype(np.int64), start_h, start_w, bin_h, bin_w,
                         grid_h, grid_w, count)


def _check_align_args(features, rois, output_size, spatial_scale, sampling_ratio):
    """Checked features, rois (features' dtype), (PH, PW) and sampling_ratio."""
    features, rois = check_roi_inputs("roi_align", features, rois, spatial_scale)
    if 0 in features.shape[2:]:
        raise ValueError(f"roi_align: features must have H, W >= 1 (bilinear samples need "
                         f"a cell to read), got shape {tuple(features.shape)}")
    sampling_ratio = check_count("sampling_ratio", sampling_ratio, op="roi_align",
                                 minimum=-2**31)
    return features, rois, pair(output_size, "roi_align: output_size"), sampling_ratio


def _bilinear_neighbours(y: float, x: float, H: int, W: int) -> list:
    """The (h, w, weight) cells a sample at (y, x) reads: torchvision's bilinear_interpolate."""
    if y < -1.0 or y > H or x < -1.0 or x > W:
        return []                                # outside the map: contributes 0
    y, x = max(y, 0.0), max(x, 0.0)
    y_low, x_low = int(y), int(x)
    if y_low >= H - 1:                           # on the last row: no row below
        y_low = y_high = H - 1
        y = float(y_low)
    else:
        y_high = y_low + 1
    if x_low >= W - 1:
        x_low = x_high = W - 1
        x = float(x_low)
    else:
        x_high = x_low + 1
    ly, lx = y - y_low, x - x_low
    hy, hx = 1.0 - ly, 1.0 - lx
    return [(y_low, x_low, hy * hx), (y_low, x_high, hy * lx),
            (y_high, x_low, ly * hx), (y_high, x_high, ly * lx)]


def _align_samples(g: AlignGeometry, r: int, ph: int, pw: int) -> list:
    """Sample points (y, x) of bin (ph, pw) of RoI r, in torchvision's order."""
    points = []
    for iy in range(int(g.grid_h[r])):
        y = g.start_h[r] + ph * g.bin_h[r] + (iy + 0.5) * g.bin_h[r] / g.grid_h[r]
        for ix in range(int(g.grid_w[r])):
            x = g.start_w[r] + pw * g.bin_w[r] + (ix + 0.5) * g.bin_w[r] / g.grid_w[r]
            points.append((float(y), float(x)))
    return points


def roi_align_forward_naive(features: np.ndarray, rois: np.ndarray, *, output_size,
                            spatial_scale: float, sampling_ratio: int = 2,
                            aligned: bool = False):
    """RoIAlign with explicit loops (same arguments and result as roi_align_forward)."""
    features, rois, (PH, PW), sampling_ratio = _check_align_args(
        features, rois, output_size, spatial_scale, sampling_ratio)
    xp = get_array_module(features)
    N, C, H, W = features.shape
    g = roi_align_geometry(rois, (PH, PW), spatial_scale, sampling_ratio, aligned)
    out = xp.zeros((rois.shape[0], C, PH, PW), dtype=features.dtype)
    for r in range(rois.shape[0]):
        n = int(g.batch[r])
        for c in range(C):
            for ph in range(PH):
                for pw in range(PW):
                    total = 0.0
                    for y, x in _align_samples(g, r, ph, pw):
                        for h, w, weight in _bilinear_neighbours(y, x, H, W):
                            total += weight * features[n, c, h, w]
                    out[r, c, ph, pw] = total / g.count[r]   # average over the samples
    cache = RoIAlignCache(tuple(features.shape), rois, (PH, PW), spatial_scale,
                          sampling_ratio, bool(aligned), features.dtype)
    return out, cache


def _check_align_dout(dout, cache: RoIAlignCache) -> None:
    shape = (cache.rois.shape[0], cache.features_shape[1], *cache.output_size)
    check_roi_dout("roi_align_backward", dout, shape, cache.dtype, cache.rois)


def roi_align_backward_naive(dout: np.ndarray, cache: RoIAlignCache) -> np.ndarray:
    """dout (R, C, PH, PW) -> dfeatures (N, C, H, W), one sample at a time."""
    N, C, H, W = cache.features_shape
    PH, PW = cache.output_size
    R = cache.rois.shape[0]
    check_dout(dout, (R, C, PH, PW), cache.dtype, cache.rois, op="roi_align_backward")
    xp = get_array_module(dout)
    g = roi_align_geometry(cache.rois, cache.output_size, cache.spatial_scale,
                           cache.sampling_ratio, cache.aligned)
    dfeatures = xp.zeros(cache.features_shape, dtype=dout.dtype)
    for r in range(R):
        n = int(g.batch[r])
        for c in range(C):
            for ph in range(PH):
                for pw in range(PW):
                    for y, x in _align_samples(g, r, ph, pw):
                        for h, w, weight in _bilinear_neighbours(y, x, H, W):
                            # out = sum(weight * x[h, w]) / count => dx[h, w] += weight/count * dout
                            dfeatures[n, c, h, w] += weight * dout[r, c, ph, pw] / g.count[r]
    return dfeatures


# Fast RoIAlign: two small matrix products per RoI (roi_align_matrices.py derives them).
def _align_matrices(cache: RoIAlignCache, part: str = "weights"):
    """Row matrices A (R, PH, H), column matrices B (R, PW, W), divisor count (R,), and
    the image of each RoI (R,)."""
    N, C, H, W = cache.features_shape
    PH, PW = cache.output_size
    g = roi_align_geometry(cache.rois, cache.output_size, cache.spatial_scale,
                           cache.sampling_ratio, cache.aligned)
    A = interp_matrix(g.start_h, g.bin_h, g.grid_h, PH, H, part)     # (R, PH, H)
    B = interp_matrix(g.start_w, g.bin_w, g.grid_w, PW, W, part)     # (R, PW, W)
    return A, B, g.count, g.batch


def _geometry(cache: RoIAlignCache) -> AlignGeometry:
    return roi_align_geometry(cache.rois, cache.output_size, cache.spatial_scale,
                              cache.sampling_ratio, cache.aligned)


def _plan(cache: RoIAlignCache) -> WindowPlan:
    """The windows and their weights (roi_align_windows.py) for the cache's RoIs."""
    return plan_windows(_geometry(cache), cache.output_size, cache.features_shape[2:])


def _pool_planned(plan: WindowPlan, batch, features):
    """The average of every RoI's samples, (R, C, PH, PW) C-contiguous (so flattening it
    for fc6 is a view): each window group by its window, the rest by the whole map."""
    xp = get_array_module(features)
    R, C = len(batch), features.shape[1]
    PH, PW = plan.whole_a.shape[1], plan.whole_b.shape[1]
    w = plan.whole
    if len(w) == R:                                      # every RoI on the whole map
        return xp.ascontiguousarray(pool_whole(plan.whole_a, plan.whole_b, batch, features))
    x_hwc = channels_last(features)                      # (N, H, W, C)
    if len(plan.groups) == 1 and not len(w):             # one group: its output is all
        return pool_group(plan.groups[0], x_hwc)         # (rows are 0..R-1 in order)
    out = xp.empty((R, C, PH, PW), dtype=features.dtype)
    for g in plan.groups:
        out[g.rows] = pool_group(g, x_hwc)               # (G, C, PH, PW)
    if len(w):
        out[w] = pool_whole(plan.whole_a, plan.whole_b, batch[w], features)
    return out


def _non_finite_outputs(out, features, cache: RoIAlignCache):
    """Set the outputs that read a NaN or inf cell as the loops (and torchvision) would.

    A matrix product would spread one NaN to every output (0 * NaN = NaN), so the fast
    forward pools the finite cells only and this sets the rest: an output is NaN when a
    sample reads a NaN cell (even with weight 0), reads an inf cell with weight exactly 0
    (0 * inf), or reads both +inf and -inf with weights > 0; else +-inf when it reads
    that infinity with a weight > 0; else it keeps its finite value.
    """
    xp = get_array_module(features)
    (At, Bt, _, batch), (Ap, Bp, _, _), (Az, Bz, _, _) = (
        _align_matrices(cache, part) for part in ("touched", "positive", "zero"))
    as_float = features.dtype.type
    nan, inf = xp.isnan(features).astype(as_float), xp.isinf(features).astype(as_float)
    pos_inf = (features == np.inf).astype(as_float)
    neg_inf = (features == -np.inf).astype(as_float)
    to_nan = (pool_whole(At, Bt, batch, nan) + pool_whole(Az, Bt, batch, inf)
              + pool_whole(At, Bz, batch, inf)) > 0
    to_pos = pool_whole(Ap, Bp, batch, pos_inf) > 0
    to_neg = pool_whole(Ap, Bp, batch, neg_inf) > 0
    out = xp.where(to_pos, as_float(np.inf), out)
    out = xp.where(to_neg, as_float(-np.inf), out)
    return xp.where(to_nan | (to_pos & to_neg), as_float(np.nan), out)


def roi_align_forward(features: np.ndarray, rois: np.ndarray, *, output_size,
                      spatial_scale: float, sampling_ratio: int = 2, aligned: bool = False):
    """RoIAlign, exactly as torchvision.ops.roi_align.

    Each bin averages grid_h x grid_w bilinear samples at the centres of a regular grid
    over the bin (grid = sampling_ratio, or ceil(roi_h / PH) when sampling_ratio <= 0).
    ``aligned=True`` shifts the RoI by -0.5 cell so samples sit on pixel centres; with
    ``aligned=False`` RoIs are at least 1x1 cell. Samples with y < -1 or y > H (x alike)
    contribute 0; samples in [-1, 0] read row 0.

    NaN and inf in ``features`` reach only the outputs whose samples read those cells,
    as in the loops and torchvision: a NaN read (even with bilinear weight 0) gives NaN,
    an inf read with weight > 0 gives inf (0 * inf and inf - inf give NaN). Other
    outputs stay finite.

    Args:
        features: (N, C, H, W) float32 or float64, H, W >= 1.
        rois: (R, 5) [batch_index, x1, y1, x2, y2] in image pixels; finite, with every
            coordinate times spatial_scale within +-2**24 feature cells.
        output_size: PH x PW, an int or a pair.  spatial_scale: cells per image pixel.
    Returns:
        out: (R, C, PH, PW) and a RoIAlignCache for roi_align_backward.
    """
    features, rois, (PH, PW), sampling_ratio = _check_align_args(
        features, rois, output_size, spatial_scale, sampling_ratio)
    xp = get_array_module(features)
    cache = RoIAlignCache(tuple(features.shape), rois, (PH, PW), spatial_scale,
                          sampling_ratio, bool(aligned), features.dtype)
    if features.shape[1] == 0:                  # no channels: nothing to pool
        return xp.zeros((len(rois), 0, PH, PW), dtype=features.dtype), cache
    finite = xp.isfinite(features)
    if bool(finite.all()):                       # each RoI's window (roi_align_windows.py)
        plan = _plan(cache)
        out = _pool_planned(plan, cache.rois[:, 0].astype(np.int64), features)
        # the backward pass reads the windows and weights instead of building them again
        return out, cache._replace(windows=plan)
    # whole map, the non-finite cells set below
    A, B, count, batch = _align_matrices(cache)
    out = pool_whole(A, B, batch, xp.where(finite, features, 0))
    # average over the samples, written C-contiguous (R, C, PH, PW): flattening it
    # for fc6 is then a view, not a copy
    out = xp.divide(out, count[:, None, None, None], out=xp.empty(out.shape, out.dtype))
    return _non_finite_outputs(out, features, cache), cache


def roi_align_backward(dout: np.ndarray, cache: RoIAlignCache) -> np.ndarray:
    """dout (R, C, PH, PW) -> dfeatures (N, C, H, W).

    out_r = A_r x B_r^T / count_r is linear in x, so dx = sum_r A_r^T dout_r B_r / count_r:
    every sample hands its four neighbours the share of dout its bilinear weights took.
    """
    _check_align_dout(dout, cache)
    xp = get_array_module(dout)
    N, C, H, W = cache.features_shape
    PH, PW = cache.output_size
    R = dout.shape[0]
    if C == 0:                                   # no channels: an empty gradient
        return xp.zeros((N, C, H, W), dtype=dout.dtype)
    # the forward's windows and weights; a naive or non-finite forward's cache has none
    plan = _plan(cache) if cache.windows is None else cache.windows
    batch = cache.rois[:, 0].astype(np.int64)
    w = plan.whole
    if len(w) == R:                               # every RoI on the whole map
        return unpool_whole(plan.whole_a, plan.whole_b, batch, dout, N)
    dx_hwc = xp.zeros((N, H, W, C), dtype=dout.dtype)    # channels last, as the windows
    for g in plan.groups:
        unpool_group(g, dout[g.rows], dx_hwc)     # the weights hold 1 / count
    dx = xp.ascontiguousarray(dx_hwc.transpose(0, 3, 1, 2))  # -> (N, C, H, W)
    if len(w):
        dx += unpool_whole(plan.whole_a, plan.whole_b, batch[w], dout[w], N)
    return dx


# --------------------------------------------------------------------------------------
# Module.
# --------------------------------------------------------------------------------------
class RoIAlign(OpModule):
    """Module form of roi_align_forward / roi_align_backward (``impl`` "fast" or "naive")."""

    IMPLS = {"fast": (roi_align_forward, roi_align_backward),
             "naive": (roi_align_forward_naive, roi_align_backward_naive)}

    def __init__(self, output_size, spatial_scale: float, sampling_ratio: int = 2,
                 aligned: bool = False, impl: str = "fast"):
        self.output_size = pair(output_size, "RoIAlign: output_size")
        self.spatial_scale = check_positive("spatial_scale", spatial_scale, op="RoIAlign")
        self.sampling_ratio = check_count("sampling_ratio", sampling_ratio, op="RoIAlign",
                                          minimum=-2**31)
        self.aligned = aligned
        self.impl = impl                      # checked; picks op_forward, op_backward

    def forward(self, features, rois):
        out, cache = self.op_forward(features, rois, output_size=self.output_size,
                                     spatial_scale=self.spatial_scale,
                                     sampling_ratio=self.sampling_ratio, aligned=self.aligned)
        self._cache = None if self.is_frozen() else cache   # no_grad: no backward comes
        return out

    def backward(self, dout):
        if self._cache is None:
            raise no_forward_error(self)
        return self.op_backward(dout, self._cache)

    def __repr__(self) -> str:
        return (f"RoIAlign(output_size={self.output_size}, spatial_scale={self.spatial_scale}, "
                f"sampling_ratio={self.sampling_ratio}, aligned={self.aligned}, "
                f"impl={self.impl!r})")
