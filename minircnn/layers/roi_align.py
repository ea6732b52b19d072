"""RoIAlign: naive loops, a fast version (two small matrix products), and its Module.

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

from minircnn.backend import asnumpy, get_array_module
from minircnn.layers.module import OpModule, no_forward_error
from minircnn.layers.roi_align_windows import pool_windows, use_windows
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
    matrices: tuple | None = None  # the fast forward's (A, B, count, batch), reused by backward


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


# Fast RoIAlign. Bilinear interpolation is separable: a sample's weight on cell (h, w)
# is (row weight of h) * (column weight of w), and the out-of-map test is one test per
# axis. So bin (ph, pw) of RoI r is  A_r[ph, :] @ x[n] @ B_r[pw, :]^T / count_r, where
# A_r (PH, H) sums the row weights of the bin's samples and B_r (PW, W) the column
# weights: RoIAlign is two small matrix products, and so is its backward. The first
# product runs image by image, so each RoI multiplies the rows of its own image only.
def _interp_matrix(start, bin_size, grid, n_bins: int, size: int, part: str = "weights"):
    """Sum over each bin's samples of their 1-D bilinear weights: (R, n_bins, size).

    ``part`` other than "weights" counts, instead of weights, the samples that read a row
    at all ("touched"), with a weight > 0 ("positive") or with a weight of exactly 0
    ("zero"): what NaN and inf cells do to an output depends on those (see
    ``_non_finite_outputs``).
    """
    xp = get_array_module(start)
    R, dt = start.shape[0], start.dtype.type
    G = max(int(grid.max()), 1) if R else 1                     # padded samples per bin
    p = xp.arange(n_bins, dtype=start.dtype)[None, :, None]     # (1, P, 1)
    i = xp.arange(G, dtype=start.dtype)[None, None, :]          # (1, 1, G)
    s, b = start[:, None, None], bin_size[:, None, None]        # (R, 1, 1)
    g = xp.maximum(grid, 1).astype(start.dtype)[:, None, None]  # no 0-division for empty grids
    y = s + p * b + (i + dt(0.5)) * b / g                        # (R, P, G) sample coordinates
    used = (i < grid[:, None, None]) & (y >= -1) & (y <= size)   # real samples, inside the map
    y = xp.where(used, xp.maximum(y, dt(0)), dt(0))              # unused: any row, weight 0
    low = xp.minimum(y.astype(np.int64), size - 1)               # int() truncates: y >= 0
    high = xp.minimum(low + 1, size - 1)
    y = xp.where(low >= size - 1, low.astype(start.dtype), y)    # last row: all weight on it
    frac = y - low                                               # ly: distance past row low
    on_low, on_high = {"weights": ((1 - frac) * used, frac * used),   # hy on low, ly on high
                       "touched": (used, used),
                       "positive": (used, used & (frac > 0)),         # hy > 0 always
                       "zero": (used & False, used & (frac == 0))}[part]
    m = xp.zeros((R, n_bins, size), dtype=start.dtype)
    r_idx, p_idx = xp.arange(R)[:, None, None], xp.arange(n_bins)[None, :, None]
    xp.add.at(m, (r_idx, p_idx, low), on_low.astype(m.dtype))
    xp.add.at(m, (r_idx, p_idx, high), on_high.astype(m.dtype))
    return m


def _align_matrices(cache: RoIAlignCache, part: str = "weights"):
    """Row matrices A (R, PH, H), column matrices B (R, PW, W), divisor count (R,), and
    the image of each RoI (R,)."""
    N, C, H, W = cache.features_shape
    PH, PW = cache.output_size
    g = roi_align_geometry(cache.rois, cache.output_size, cache.spatial_scale,
                           cache.sampling_ratio, cache.aligned)
    A = _interp_matrix(g.start_h, g.bin_h, g.grid_h, PH, H, part)     # (R, PH, H)
    B = _interp_matrix(g.start_w, g.bin_w, g.grid_w, PW, W, part)     # (R, PW, W)
    return A, B, g.count, g.batch


def _image_groups(batch, n_images: int) -> list:
    """[(n, rows of image n's RoIs)] for every image that has RoIs.

    The samplers and ``detect_images`` give RoIs image by image; then ``rows`` are
    slices, and the products below read and write views, without copies. Other orders
    get boolean masks.
    """
    xp = get_array_module(batch)
    b = asnumpy(batch)                                                  # (R,) on the host
    if (np.diff(b) >= 0).all():
        bounds = np.searchsorted(b, np.arange(n_images + 1))            # (N+1,)
        return [(n, slice(int(lo), int(hi))) for n, (lo, hi) in
                enumerate(zip(bounds[:-1], bounds[1:], strict=True)) if hi > lo]
    return [(n, xp.asarray(b == n)) for n in range(n_images) if (b == n).any()]


def _pool(A, B, batch, features):
    """out[r, c] = A_r @ features[batch[r], c] @ B_r^T for every RoI r: (R, C, PH, PW)."""
    xp = get_array_module(features)
    N, C, H, W = features.shape
    R, PH, _ = A.shape
    PW = B.shape[1]
    t = xp.empty((R, PH, C * W), dtype=features.dtype)   # every RoI's rows are written below
    for n, rows in _image_groups(batch, N):      # the RoIs of image n read image n only
        x = features[n].transpose(1, 0, 2).reshape(H, C * W)   # (C, H, W) -> (H, C*W)
        a = A[rows].reshape(-1, H)                # (R_n*PH, H): one matrix product
        if isinstance(rows, slice):               # (R_n*PH, H) @ (H, C*W) -> (R_n*PH, C*W)
            xp.matmul(a, x, out=t[rows].reshape(-1, C * W))      # written in place
        else:
            t[rows] = (a @ x).reshape(-1, PH, C * W)
    out = t.reshape(R, PH * C, W) @ B.transpose(0, 2, 1)   # (R, PH*C, W) @ (R, W, PW)
    return out.reshape(R, PH, C, PW).transpose(0, 2, 1, 3)    # -> (R, C, PH, PW)


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
    to_nan = (_pool(At, Bt, batch, nan) + _pool(Az, Bt, batch, inf)
              + _pool(At, Bz, batch, inf)) > 0
    to_pos = _pool(Ap, Bp, batch, pos_inf) > 0
    to_neg = _pool(Ap, Bp, batch, neg_inf) > 0
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
    A, B, count, batch = _align_matrices(cache)
    cache = cache._replace(matrices=(A, B, count, batch))   # backward reads them, unbuilt
    finite = xp.isfinite(features)
    all_finite = bool(finite.all())
    if all_finite and use_windows(A, B, features.shape[1]):   # small RoIs, large map
        out = pool_windows(A, B, batch, features)
    else:
        out = _pool(A, B, batch, features if all_finite else xp.where(finite, features, 0))
    # average over the samples, written C-contiguous (R, C, PH, PW): flattening it for
    # fc6 is then a view, not a copy
    out = xp.divide(out, count[:, None, None, None], out=xp.empty(out.shape, out.dtype))
    if not all_finite:
        out = _non_finite_outputs(out, features, cache)
    return out, cache


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
    # the forward's matrices; a naive forward's cache has none: build them here
    A, B, count, batch = _align_matrices(cache) if cache.matrices is None else cache.matrices
    d = xp.empty((R, PH, C, PW), dtype=dout.dtype)  # dout / count, laid out (R, PH, C, PW)
    xp.divide(dout.transpose(0, 2, 1, 3), count[:, None, None, None], out=d)
    d = d.reshape(R, PH * C, PW) @ B              # (R, PH*C, PW) @ (R, PW, W) -> (R, PH*C, W)
    d = d.reshape(R, PH, C * W)
    dx = xp.zeros((N, H, C * W), dtype=dout.dtype)
    for n, rows in _image_groups(batch, N):      # image n gets its own RoIs' gradients
        a = A[rows].reshape(-1, H)                # (R_n*PH, H)
        dx[n] = a.T @ d[rows].reshape(-1, C * W)  # (H, R_n*PH) @ (R_n*PH, C*W) -> (H, C*W)
    return dx.reshape(N, H, C, W).transpose(0, 2, 1, 3)       # -> (N, C, H, W)


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
        out, self._cache = self.op_forward(features, rois, output_size=self.output_size,
                                           spatial_scale=self.spatial_scale,
                                           sampling_ratio=self.sampling_ratio,
                                           aligned=self.aligned)
        return out

    def backward(self, dout):
        if self._cache is None:
            raise no_forward_error(self)
        return self.op_backward(dout, self._cache)

    def __repr__(self) -> str:
        return (f"RoIAlign(output_size={self.output_size}, spatial_scale={self.spatial_scale}, "
                f"sampling_ratio={self.sampling_ratio}, aligned={self.aligned}, "
                f"impl={self.impl!r})")
