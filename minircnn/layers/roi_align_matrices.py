"""RoIAlign as two small matrix products: the interpolation matrices, the whole-map products.

roi_align.py's fast tier builds on them.

Bilinear interpolation is separable: a sample's weight on cell (h, w) is (row weight of
h) * (column weight of w), and the out-of-map test is one test per axis. So bin
(ph, pw) of RoI r is  A_r[ph, :] @ x[n] @ B_r[pw, :]^T / count_r, where A_r (PH, H)
sums the row weights of the bin's samples and B_r (PW, W) the column weights: RoIAlign
is two small matrix products, and so is its backward. ``pool_whole`` runs the first
product image by image, so each RoI multiplies the rows of its own image only;
roi_align_windows.py runs the same products on each RoI's window of the map.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from minircnn.backend import asnumpy, get_array_module


class AxisSamples(NamedTuple):
    """Every bin's samples along one axis, (R, P, G) arrays (G: the largest grid)."""

    used: np.ndarray   # a real sample inside [-1, size] (bool)
    low: np.ndarray    # the cell at or before the sample (int)
    high: np.ndarray   # the cell after it (int; low itself on the last cell)
    frac: np.ndarray   # distance past low: weight hy = 1 - frac on low, ly = frac on high


def axis_samples(start, bin_size, grid, n_bins: int, size: int) -> AxisSamples:
    """The cells each sample of each bin reads along one axis, torchvision's bilinear rules."""
    xp = get_array_module(start)
    dt = start.dtype.type
    G = max(int(grid.max()), 1) if start.shape[0] else 1        # padded samples per bin
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
    frac = y - low.astype(start.dtype)                           # ly, in the features' dtype
    return AxisSamples(used, low, high, frac)


def scatter_weights(samples: AxisSamples, on_low, on_high, width: int, origin=0):
    """Sum of the samples' weights on each of ``width`` cells from ``origin``: (R, P, width).

    on_low, on_high: (R, P, G) what each sample puts on its low and high cell.
    origin: (R,) first cell of each RoI's window (0: the whole axis). The caller makes
    sure every cell with a nonzero weight lies inside the window; a zero weight is put
    on a cell inside it.
    """
    xp = get_array_module(on_low)
    R, P, _ = on_low.shape
    if not isinstance(origin, int):
        origin = xp.asarray(origin)[:, None, None]               # (R, 1, 1)
    low = xp.where(samples.used, samples.low - origin, 0)        # (R, P, G) window columns
    high = xp.where(samples.used, xp.minimum(samples.high - origin, width - 1), 0)
    # one bincount over the flat (R * P * width) matrix adds every sample's two weights,
    # repeated cells included (as add.at, in one pass): the low cells first, then the high
    row = xp.arange(R * P).reshape(R, P, 1) * width             # (R, P, 1) flat row starts
    cells = xp.concatenate([(row + low).ravel(), (row + high).ravel()])
    weights = xp.concatenate([on_low.ravel(), on_high.ravel()])
    m = xp.bincount(cells, weights=weights, minlength=R * P * width)   # sums in float64
    return m.reshape(R, P, width).astype(on_low.dtype)


def interp_matrix(start, bin_size, grid, n_bins: int, size: int, part: str = "weights"):
    """Sum over each bin's samples of their 1-D bilinear weights: (R, n_bins, size).

    ``part`` other than "weights" counts, instead of weights, the samples that read a row
    at all ("touched"), with a weight > 0 ("positive") or with a weight of exactly 0
    ("zero"): what NaN and inf cells do to an output depends on those (see
    ``_non_finite_outputs``).
    """
    s = axis_samples(start, bin_size, grid, n_bins, size)
    used, frac = s.used, s.frac
    on_low, on_high = {"weights": ((1 - frac) * used, frac * used),   # hy on low, ly on high
                       "touched": (used, used),
                       "positive": (used, used & (frac > 0)),         # hy > 0 always
                       "zero": (used & False, used & (frac == 0))}[part]
    dt = start.dtype
    return scatter_weights(s, on_low.astype(dt), on_high.astype(dt), size)


def image_groups(batch, n_images: int) -> list:
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


def pool_whole(A, B, batch, features):
    """out[r, c] = A_r @ features[batch[r], c] @ B_r^T for every RoI r: (R, C, PH, PW)."""
    xp = get_array_module(features)
    N, C, H, W = features.shape
    R, PH, _ = A.shape
    PW = B.shape[1]
    t = xp.empty((R, PH, C * W), dtype=features.dtype)   # every RoI's rows are written below
    for n, rows in image_groups(batch, N):      # the RoIs of image n read image n only
        x = features[n].transpose(1, 0, 2).reshape(H, C * W)   # (C, H, W) -> (H, C*W)
        a = A[rows].reshape(-1, H)                # (R_n*PH, H): one matrix product
        if isinstance(rows, slice):               # (R_n*PH, H) @ (H, C*W) -> (R_n*PH, C*W)
            xp.matmul(a, x, out=t[rows].reshape(-1, C * W))      # written in place
        else:
            t[rows] = (a @ x).reshape(-1, PH, C * W)
    out = t.reshape(R, PH * C, W) @ B.transpose(0, 2, 1)   # (R, PH*C, W) @ (R, W, PW)
    return out.reshape(R, PH, C, PW).transpose(0, 2, 1, 3)    # -> (R, C, PH, PW)


def unpool_whole(A, B, batch, d, n_images: int):
    """dx (N, C, H, W) = sum_r A_r^T d_r B_r over the whole map; d (R, C, PH, PW)."""
    xp = get_array_module(d)
    R, C, PH, PW = d.shape
    H, W = A.shape[2], B.shape[2]
    d = xp.ascontiguousarray(d.transpose(0, 2, 1, 3))  # (R, PH, C, PW)
    d = d.reshape(R, PH * C, PW) @ B              # (R, PH*C, PW) @ (R, PW, W) -> (R, PH*C, W)
    d = d.reshape(R, PH, C * W)
    dx = xp.zeros((n_images, H, C * W), dtype=d.dtype)
    for n, rows in image_groups(batch, n_images):   # image n gets its own RoIs' gradients
        a = A[rows].reshape(-1, H)                # (R_n*PH, H)
        dx[n] = a.T @ d[rows].reshape(-1, C * W)  # (H, R_n*PH) @ (R_n*PH, C*W) -> (H, C*W)
    return dx.reshape(n_images, H, C, W).transpose(0, 2, 1, 3)   # -> (N, C, H, W)
