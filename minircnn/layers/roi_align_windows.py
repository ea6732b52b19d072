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
the same sums. RoIs are grouped by window size (one group per step of sqrt(2)), so a
small RoI does not pay for the largest one's window; a group whose windows cover most
of the map takes the whole-map products instead, where copying the windows would cost
more than the zeros it saves (``WINDOW_SHARE``).

Layout: the map is read channels-last, (N, H, W, C), so a window's row is one contiguous
run of Wc * C values (the copy is a few long runs, not many short ones), and the row
product ``a (PH, Hc) @ window (Hc, Wc * C)`` reads it as it lies.

The backward pass runs the same products transposed and adds each RoI's window of
gradient back into its image: dx[n, window] += a^T (dout / count) b.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from minircnn.backend import asnumpy, get_array_module

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
    a: np.ndarray      # (G, PH, Hc) row weights on the window's rows
    b: np.ndarray      # (G, PW, Wc) column weights on the window's columns


class WindowPlan(NamedTuple):
    """How the fast RoIAlign runs: windowed groups, and the RoIs left to the whole map."""

    groups: list       # [WindowGroup]
    whole: np.ndarray  # (R_whole,) positions of the RoIs that use the whole map


def _extents(M):
    """First cell and length of every RoI's nonzero weights along one axis (host arrays).

    M: (R, P, S) interpolation matrices. Returns lo (R,) and length (R,); a RoI whose
    samples all fall outside the map (no nonzero weight) gets the 1-cell window at 0.
    """
    used = asnumpy(M != 0).any(axis=1)                      # (R, S) cells read
    S = used.shape[1]
    lo = used.argmax(axis=1)                                 # first cell read
    hi = S - used[:, ::-1].argmax(axis=1)                    # one past the last
    reads = used.any(axis=1)
    return np.where(reads, lo, 0), np.where(reads, hi - lo, 1)


def plan_windows(A, B, batch) -> WindowPlan:
    """Group the RoIs by window size and cut their weights to their windows.

    Args:
        A: (R, PH, H) row weights.  B: (R, PW, W) column weights.  batch: (R,) image.
    """
    xp = get_array_module(A)
    H, W = A.shape[2], B.shape[2]
    top, height = _extents(A)                                # (R,) each, on the host
    left, width = _extents(B)
    size = np.maximum(height, width)                         # (R,) the window's longer side
    step = np.ceil(2 * np.log2(size)).astype(np.int64)       # groups of one sqrt(2) step
    groups, whole = [], []
    for s in np.unique(step):
        rows = np.flatnonzero(step == s)                     # (G,) this group's RoIs
        Hc, Wc = int(height[rows].max()), int(width[rows].max())
        if Hc * Wc > WINDOW_SHARE * H * W:                   # windows near the map's size
            whole.append(rows)
            continue
        t = np.minimum(top[rows], H - Hc)                    # windows inside the map
        lft = np.minimum(left[rows], W - Wc)
        r = xp.asarray(rows)
        t_dev, l_dev = xp.asarray(t), xp.asarray(lft)
        a = xp.take_along_axis(A[r], (t_dev[:, None] + xp.arange(Hc))[:, None, :], axis=2)
        b = xp.take_along_axis(B[r], (l_dev[:, None] + xp.arange(Wc))[:, None, :], axis=2)
        groups.append(WindowGroup(r, batch[r], t, lft, a, b))
    whole = np.concatenate(whole) if whole else np.zeros(0, np.int64)
    return WindowPlan(groups, xp.asarray(whole))


def channels_last(features):
    """(N, C, H, W) -> (N, H, W, C), contiguous: a window's rows are contiguous runs."""
    xp = get_array_module(features)
    return xp.ascontiguousarray(features.transpose(0, 2, 3, 1))


def pool_group(g: WindowGroup, x_hwc):
    """The group's RoIs pooled (not yet divided by count): (G, C, PH, PW), contiguous.

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
    t = xp.ascontiguousarray(t.reshape(G, PH, Wc, C).transpose(0, 3, 1, 2))  # (G, C, PH, Wc)
    out = t.reshape(G, C * PH, Wc) @ g.b.transpose(0, 2, 1)  # (G, C*PH, Wc) @ (G, Wc, PW)
    return out.reshape(G, C, PH, PW)


def unpool_group(g: WindowGroup, d, dx_hwc) -> None:
    """Add the group's gradient into dx_hwc (N, H, W, C), in place.

    d: (G, C, PH, PW) the group's dout divided by count, C-contiguous.
    """
    xp = get_array_module(d)
    G, PH, Hc = g.a.shape
    PW, Wc = g.b.shape[1:]
    C = d.shape[1]
    t = d.reshape(G, C * PH, PW) @ g.b                       # (G, C*PH, PW) @ (G, PW, Wc)
    t = xp.ascontiguousarray(t.reshape(G, C, PH, Wc).transpose(0, 2, 3, 1))  # (G, PH, Wc, C)
    dwin = g.a.transpose(0, 2, 1) @ t.reshape(G, PH, Wc * C)  # (G, Hc, PH) @ (G, PH, Wc*C)
    dwin = dwin.reshape(G, Hc, Wc, C)
    corners = zip(asnumpy(g.batch).tolist(), g.top.tolist(), g.left.tolist(), strict=True)
    for i, (n, t0, l0) in enumerate(corners):               # windows may overlap: add each
        dx_hwc[n, t0:t0 + Hc, l0:l0 + Wc] += dwin[i]
