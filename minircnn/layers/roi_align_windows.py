"""RoIAlign's optimised tier: each RoI multiplies only the window of cells it reads.

The fast RoIAlign (roi_align.py) computes bin (ph, pw) of RoI r as
``A_r[ph] @ x[n] @ B_r[pw]^T / count_r``, with row matrices A (R, PH, H) and column
matrices B (R, PW, W). Written as two products over the whole map (``_pool`` there),
every RoI multiplies all H rows and W columns of every channel, although its samples
read only the cells under the RoI (plus one): on a 32 x 32 map a 10-cell RoI uses a
tenth of the rows and a tenth of the columns, so about 99 % of the first product's
multiply-adds are by zero weights.

Here every RoI first copies out its window, the Hc x Wc cells its weights touch, and
the same two products run on the window: the same nonzero terms in the same order, so
the same sums. The window weights are built on the window directly, from the samples'
cells (roi_align_matrices.axis_samples), never as whole-map matrices, and they hold the
average's 1 / count, so no pass over the output divides it. RoIs are grouped by window
height and width (one group per step of sqrt(2) in each), so a small RoI does not pay
for the largest one's window; a group whose windows cover most of the map takes the
whole-map products instead, where copying the windows would cost more than the zeros
it saves (``WINDOW_SHARE``).

Layout: the map is read channels-last, (N, H, W, C), so a window's row is one contiguous
run of Wc * C values (the copy is a few long runs, not many short ones), and the row
product ``a (PH, Hc) @ window (Hc, Wc * C)`` reads it as it lies. Its result is
channels-last too, (PH, Wc, C); the column product reads it transposed, (C, Wc), and
writes each (C, PW) block through a transposed view of the (C, PH, PW) output, so
neither product is followed by a transposing copy.

The backward pass runs the same products transposed and adds each RoI's window of
gradient back into its image: dx[n, window] += a^T dout b (a holds 1 / count).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from minircnn.backend import asnumpy, get_array_module
from minircnn.layers.roi_align_matrices import AxisSamples, axis_samples, scatter_weights

# A group whose windows hold more than this share of the map's cells uses the whole-map
# products: copying a window costs about as much as multiplying the map's zeros it skips
# once the window is a large part of the map.
WINDOW_SHARE = 0.5


class WindowGroup(NamedTuple):
    """RoIs that share one window size: their rows, windows and window weights."""

    rows: np.ndarray   # (G,) positions of the group's RoIs among all R
    batch: np.ndarray  # (G,) image of each RoI
    top: np.ndarray    # (G,) first window row
    left: np.ndarray   # (G,) first window column
    a: np.ndarray      # (G, PH, Hc) row weights on the window's rows, divided by count
    b: np.ndarray      # (G, PW, Wc) column weights on the window's columns


class WindowPlan(NamedTuple):
    """How the fast RoIAlign runs: windowed groups, and the RoIs left to the whole map."""

    groups: list       # [WindowGroup]
    whole: np.ndarray  # (R_whole,) positions of the RoIs that use the whole map
    whole_a: np.ndarray  # (R_whole, PH, H) their row weights on every row, divided by count
    whole_b: np.ndarray  # (R_whole, PW, W) their column weights on every column


def _extents(s: AxisSamples):
    """First cell and length of every RoI's nonzero weights along one axis (host arrays).

    A sample puts weight 1 - frac > 0 on its low cell and frac on its high cell, so the
    cells read are the used samples' low cells and, where frac > 0, their high cells. A
    RoI whose samples all fall outside the map gets the 1-cell window at 0.
    """
    used, low, high = asnumpy(s.used), asnumpy(s.low), asnumpy(s.high)
    last_read = np.where(asnumpy(s.frac) > 0, high, low)           # (R, P, G)
    first = np.where(used, low, np.iinfo(np.int64).max).min(axis=(1, 2))   # (R,)
    last = np.where(used, last_read, -1).max(axis=(1, 2))                   # (R,)
    reads = last >= 0
    return np.where(reads, first, 0), np.where(reads, last - first + 1, 1)


def _weights(s: AxisSamples, width: int, origin):
    """Every RoI's bilinear weights on ``width`` cells from ``origin`` (R,): (R, P, width)."""
    return scatter_weights(s, (1 - s.frac) * s.used, s.frac * s.used, width, origin)


def _group_rows(top, height, left, width, map_size: tuple):
    """Group the RoIs by window size: [(rows, Hc, Wc)] of the windowed groups and the rows
    of the RoIs left to the whole map; each window is moved inside the map (top, left
    are changed in place)."""
    H, W = map_size
    # one group per sqrt(2) step of the window's height and of its width: a tall and a
    # wide RoI do not share a window that holds both
    step_h = np.ceil(2 * np.log2(height)).astype(np.int64)      # (R,)
    step_w = np.ceil(2 * np.log2(width)).astype(np.int64)
    order = np.lexsort((step_w, step_h))          # (R,) by (step_h, step_w); stable
    changes = (np.diff(step_h[order]) != 0) | (np.diff(step_w[order]) != 0)   # (R-1,)
    groups, whole = [], []
    for rows in np.split(order, np.flatnonzero(changes) + 1):  # (G,) one group's RoIs
        if not len(rows):                                        # no RoI at all
            continue
        Hc, Wc = int(height[rows].max()), int(width[rows].max())
        if Hc * Wc > WINDOW_SHARE * H * W:                       # windows near the map's size
            whole.append(rows)
            top[rows], left[rows] = 0, 0                         # the whole map from (0, 0)
            continue
        top[rows] = np.minimum(top[rows], H - Hc)                # windows inside the map
        left[rows] = np.minimum(left[rows], W - Wc)
        groups.append((rows, Hc, Wc))
    return groups, np.concatenate(whole) if whole else np.zeros(0, np.int64)


def plan_windows(geometry, output_size: tuple, map_size: tuple) -> WindowPlan:
    """Group the RoIs by window size and build their weights on their windows.

    Each RoI's average over its count samples is folded into its row weights (a / count),
    so the products give the average and no pass over the output divides it.

    Args:
        geometry: the RoIs' AlignGeometry (roi_align.py): (R,) start, bin, grid, count.
        output_size: (PH, PW).  map_size: (H, W) of the feature map.
    """
    g = geometry
    xp = get_array_module(g.start_h)
    (PH, PW), (H, W) = output_size, map_size
    rows_s = axis_samples(g.start_h, g.bin_h, g.grid_h, PH, H)   # (R, PH, grid) each
    cols_s = axis_samples(g.start_w, g.bin_w, g.grid_w, PW, W)
    top, height = _extents(rows_s)                               # (R,) each, on the host
    left, width = _extents(cols_s)
    sizes, whole = _group_rows(top, height, left, width, (H, W))
    # every RoI's weights from its window's first cell, on as many cells as the widest
    # window (the whole axis when some RoIs use the whole map): two scatters in all
    Hmax, Wmax = H, W
    if sizes and not len(whole):
        Hmax, Wmax = max(Hc for _, Hc, _ in sizes), max(Wc for _, _, Wc in sizes)
    a = _weights(rows_s, Hmax, top) / g.count[:, None, None]    # (R, PH, Hmax)
    b = _weights(cols_s, Wmax, left)                             # (R, PW, Wmax)
    groups = []
    for rows, Hc, Wc in sizes:
        r = xp.asarray(rows)                                     # (G,)
        groups.append(WindowGroup(r, g.batch[r], top[rows], left[rows],
                                  a[r, :, :Hc], b[r, :, :Wc]))   # (G, PH, Hc), (G, PW, Wc)
    w = xp.asarray(whole)
    return WindowPlan(groups, w, a[w], b[w])


def channels_last(features):
    """(N, C, H, W) -> (N, H, W, C), contiguous: a window's rows are contiguous runs."""
    xp = get_array_module(features)
    return xp.ascontiguousarray(features.transpose(0, 2, 3, 1))


def pool_group(g: WindowGroup, x_hwc):
    """The group's RoIs pooled: (G, C, PH, PW), C-contiguous.

    x_hwc: (N, H, W, C) the map, channels last (``channels_last``).
    """
    xp = get_array_module(x_hwc)
    N, H, W, C = x_hwc.shape
    G, PH, Hc = g.a.shape
    PW, Wc = g.b.shape[1:]
    sN, sH, sW, sC = x_hwc.strides
    every = xp.lib.stride_tricks.as_strided(                 # view: the Hc x Wc window at
        x_hwc, shape=(N, H - Hc + 1, W - Wc + 1, Hc, Wc, C),   # every (image, top, left)
        strides=(sN, sH, sW, sH, sW, sC))
    windows = every[g.batch, xp.asarray(g.top), xp.asarray(g.left)]   # (G, Hc, Wc, C) copy
    t = g.a @ windows.reshape(G, Hc, Wc * C)                 # (G, PH, Hc) @ (G, Hc, Wc*C)
    t = t.reshape(G, PH, Wc, C)
    out = xp.empty((G, C, PH, PW), dtype=x_hwc.dtype)
    # out[g, :, ph, :] = t[g, ph]^T (C, Wc) @ b[g]^T (Wc, PW), one product per (g, ph),
    # written through a transposed view of out: (G, C, PH, PW) with no transposing copy
    xp.matmul(t.transpose(0, 1, 3, 2), g.b.transpose(0, 2, 1)[:, None],
              out=out.transpose(0, 2, 1, 3))                 # (G, PH, C, Wc) @ (G, 1, Wc, PW)
    return out


def unpool_group(g: WindowGroup, d, dx_hwc) -> None:
    """Add the group's gradient into dx_hwc (N, H, W, C), in place.

    d: (G, C, PH, PW) the group's dout.
    """
    xp = get_array_module(d)
    G, PH, Hc = g.a.shape
    PW, Wc = g.b.shape[1:]
    C = d.shape[1]
    # t[g, ph] = b[g]^T (Wc, PW) @ d[g, :, ph, :]^T (PW, C): channels last, no transposing copy
    t = xp.matmul(g.b.transpose(0, 2, 1)[:, None], d.transpose(0, 2, 3, 1))  # (G, PH, Wc, C)
    dwin = g.a.transpose(0, 2, 1) @ t.reshape(G, PH, Wc * C)  # (G, Hc, PH) @ (G, PH, Wc*C)
    dwin = dwin.reshape(G, Hc, Wc, C)
    corners = zip(asnumpy(g.batch).tolist(), g.top.tolist(), g.left.tolist(), strict=True)
    for i, (n, t0, l0) in enumerate(corners):               # windows may overlap: add each
        dx_hwc[n, t0:t0 + Hc, l0:l0 + Wc] += dwin[i]
