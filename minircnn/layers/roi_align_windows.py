"""RoIAlign's fast forward on large feature maps: each RoI reads its own window only.

The fast RoIAlign (roi_align.py) computes bin (ph, pw) of RoI r as
``A_r[ph] @ x[n] @ B_r[pw]^T / count_r``, with row matrices A (R, PH, H) and column
matrices B (R, PW, W). Its first product runs over the whole map: every RoI multiplies
all H rows of every channel and column, although each bin's samples read at most a few
rows and columns. On the 2x level of the test pyramid (a 64 x 64 map) that is most of
the detector's test time. Here each RoI first copies out the window of cells its
samples can read (Hc x Wc, the largest RoI's extent), and the same two products run on
that window: the same sums over the same nonzero weights, in far fewer operations when
the RoIs are small next to the map. ``use_windows`` says which way is cheaper.
"""

from __future__ import annotations

from minircnn.backend import get_array_module


def _extents(M):
    """First cell and window length of every RoI's nonzero weights along one axis.

    M: (R, P, S) interpolation matrices. Returns lo (R,) and the common length L: the
    window lo[r] .. lo[r] + L - 1 holds every cell row r's samples read, inside 0..S-1.
    """
    xp = get_array_module(M)
    S = M.shape[2]
    used = (M != 0).any(axis=1)                                  # (R, S) cells read
    lo = used.argmax(axis=1)                                     # first cell read
    hi = S - used[:, ::-1].argmax(axis=1)                        # one past the last
    length = int((hi - lo).max()) if M.shape[0] else 1
    return xp.minimum(lo, S - length), max(length, 1)            # windows inside the map


# A multiply-add of the windowed path costs about this many of the whole-map path's: it
# runs as a gather and one small matrix product per RoI, the whole map as one large one.
WINDOW_OVERHEAD = 4.0


def use_windows(A, B, channels: int) -> bool:
    """Whether the windowed products are cheaper than the whole-map ones (``_pool``).

    Multiply-adds of the whole map: R PH C W (H + PW); of the windows (copy included):
    R C Hc Wc (PH + 1) + R PH C Wc PW, times WINDOW_OVERHEAD.
    """
    R, PH, H = A.shape
    PW, W = B.shape[1:]
    _, Hc = _extents(A)
    _, Wc = _extents(B)
    whole = R * PH * channels * W * (H + PW)
    windowed = R * channels * Hc * Wc * (PH + 1) + R * PH * channels * Wc * PW
    return WINDOW_OVERHEAD * windowed < whole


def pool_windows(A, B, batch, features):
    """out[r, c] = A_r @ features[batch[r], c] @ B_r^T (R, C, PH, PW), via windows.

    Args:
        A: (R, PH, H) row weights.  B: (R, PW, W) column weights.  batch: (R,) image
        index.  features: (N, C, H, W), finite.
    """
    xp = get_array_module(features)
    N, C, H, W = features.shape
    R, PH, _ = A.shape
    PW = B.shape[1]
    top, Hc = _extents(A)                                        # (R,), window height
    left, Wc = _extents(B)                                       # (R,), window width
    rows = top[:, None] + xp.arange(Hc)                          # (R, Hc) cells of each window
    cols = left[:, None] + xp.arange(Wc)                         # (R, Wc)
    a = xp.take_along_axis(A, rows[:, None, :], axis=2)          # (R, PH, Hc) window's weights
    b = xp.take_along_axis(B, cols[:, None, :], axis=2)          # (R, PW, Wc)
    x = xp.ascontiguousarray(features.transpose(0, 2, 1, 3))     # (N, H, C, W)
    sN, sH, sC, sW = x.strides
    every = xp.lib.stride_tricks.as_strided(                     # view: the window at every
        x, shape=(N, H - Hc + 1, W - Wc + 1, Hc, C, Wc),         # (image, top, left)
        strides=(sN, sH, sW, sH, sC, sW))
    windows = every[batch, top, left]                            # (R, Hc, C, Wc) the one copy
    t = a @ windows.reshape(R, Hc, C * Wc)                       # (R, PH, Hc) @ (R, Hc, C*Wc)
    out = t.reshape(R, PH * C, Wc) @ b.transpose(0, 2, 1)        # (R, PH*C, Wc) @ (R, Wc, PW)
    return out.reshape(R, PH, C, PW).transpose(0, 2, 1, 3)       # -> (R, C, PH, PW)
