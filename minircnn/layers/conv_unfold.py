"""im2col and col2im: a convolution's windows as the columns of a matrix, and back.

Both work on the zero-padded input flattened per channel: pixel (r, q) of a padded
channel (height Hp = H + 2 pad, width Wp = W + 2 pad) sits at flat position r*Wp + q.
Offset (kh, kw) of window (i, j) is then x_flat[c, (i s + kh) Wp + j s + kw], so every
window is a strided view of x_flat, and the columns are laid out on a grid of OH rows of
``row_width`` positions:

- ``row_width = OW`` (any stride): column i*OW + j holds window (i, j). The public
  ``im2col`` / ``col2im`` use this grid; a copy moves runs of OW values.
- ``row_width = Wp`` (stride 1 only): column p = i*Wp + j reads x_flat[c, p + kh*Wp + kw],
  so row (c, kh, kw) of the column matrix is one contiguous run of OH*Wp values of x_flat,
  shifted by kh*Wp + kw. The unfold copies, and col2im adds, runs a whole image long
  instead of one output row long. The last Wp - OW columns of each grid row are junk
  (windows that wrap round into the next row): the forward drops their outputs, the
  backward gives them a zero gradient, so they change no result.

Derivation and pictures: docs/layers/conv.md.
"""

from __future__ import annotations

import numpy as np

from minircnn.backend import get_array_module
from minircnn.utils.validate import check_array, check_count


def check_window(op: str, x_shape: tuple, KH, KW, stride, pad) -> tuple[int, ...]:
    """Check im2col/col2im's window arguments against an (N, C, H, W) input; return them
    as ints with the output size: (KH, KW, stride, pad, OH, OW)."""
    KH, KW = check_count("KH", KH, op=op), check_count("KW", KW, op=op)
    stride = check_count("stride", stride, op=op)
    pad = check_count("pad", pad, op=op, minimum=0)
    _, _, H, W = x_shape
    if KH > H + 2 * pad or KW > W + 2 * pad:
        raise ValueError(f"{op}: kernel {KH}x{KW} must fit in the padded input "
                         f"{H + 2 * pad}x{W + 2 * pad} (input {tuple(x_shape)}, pad={pad})")
    OH, OW = (H + 2 * pad - KH) // stride + 1, (W + 2 * pad - KW) // stride + 1
    return KH, KW, stride, pad, OH, OW


def grid_row_width(W: int, KW: int, stride: int, pad: int) -> int:
    """Columns per output row in the fast tier's column matrix: the padded width for
    stride 1 (long contiguous runs, a few junk columns), else OW (no junk)."""
    return W + 2 * pad if stride == 1 else (W + 2 * pad - KW) // stride + 1


def flat_pad(x: np.ndarray, pad: int, KW: int) -> np.ndarray:
    """x (N, C, H, W) zero-padded by ``pad`` on each side, each channel flattened:
    (N, C, Hp*Wp + KW - 1). The KW - 1 extra zeros at the end are read only by the last
    junk windows of a stride-1 grid (they wrap round past the last padded row)."""
    xp = get_array_module(x)
    N, C, H, W = x.shape
    Hp, Wp = H + 2 * pad, W + 2 * pad
    x_flat = xp.zeros((N, C, Hp * Wp + KW - 1), dtype=x.dtype)
    x_pad = x_flat[:, :, :Hp * Wp].reshape(N, C, Hp, Wp)   # view
    x_pad[:, :, pad:pad + H, pad:pad + W] = x
    return x_flat


def windows(x_flat: np.ndarray, KH: int, KW: int, stride: int, Wp: int, out_rows: int,
            row_width: int) -> np.ndarray:
    """View (N, C, KH, KW, OH, row_width) of every window of ``x_flat`` (from flat_pad),
    no copy: windows[n, c, kh, kw, i, j] = x_flat[n, c, (i s + kh) Wp + j s + kw]."""
    xp = get_array_module(x_flat)
    N, C = x_flat.shape[:2]
    sN, sC, e = x_flat.strides                          # bytes per image, channel, value
    return xp.lib.stride_tricks.as_strided(             # stepping kh moves one padded row,
        x_flat, (N, C, KH, KW, out_rows, row_width),    # stepping i moves s of them
        (sN, sC, Wp * e, e, stride * Wp * e, stride * e))


def unfold(x: np.ndarray, KH: int, KW: int, stride: int, pad: int,
           row_width: int) -> np.ndarray:
    """Column matrices (N, C*KH*KW, OH*row_width) of x (N, C, H, W), rows in (c, kh, kw)
    order (that of ``w.reshape(F, -1)``): one copy of the window view."""
    xp = get_array_module(x)
    N, C, H, W = x.shape
    OH = (H + 2 * pad - KH) // stride + 1
    view = windows(flat_pad(x, pad, KW), KH, KW, stride, W + 2 * pad, OH, row_width)
    cols = xp.empty(view.shape, dtype=x.dtype)    # (N, C, KH, KW, OH, row_width)
    cols[...] = view                              # the one copy
    return cols.reshape(N, C * KH * KW, OH * row_width)


def fold(dcols: np.ndarray, x_shape: tuple, KH: int, KW: int, stride: int, pad: int,
         row_width: int) -> np.ndarray:
    """Adjoint of ``unfold``: dcols (N, C*KH*KW, OH*row_width) -> dx (N, C, H, W).

    One add per kernel offset (kh, kw) into the flat padded buffer: that offset of every
    window lands on distinct positions (a strided grid), so ``+=`` on the view is exact
    (no ``add.at``); the offsets together sum the overlaps, in (kh, kw) order. The
    padding's share is cropped off at the end (the padding is not an input).
    """
    xp = get_array_module(dcols)
    N, C, H, W = x_shape
    Hp, Wp = H + 2 * pad, W + 2 * pad
    OH = (Hp - KH) // stride + 1
    d6 = dcols.reshape(N, C, KH, KW, OH, row_width)             # view
    dx_flat = xp.empty((N, C, Hp * Wp + KW - 1), dtype=dcols.dtype)
    targets = windows(dx_flat, KH, KW, stride, Wp, OH, row_width)  # view, writes dx_flat
    first = OH * Wp if stride == 1 and row_width == Wp else 0   # offset (0, 0) covers
    dx_flat[:, :, first:] = 0                                   # [0, OH*Wp) on this grid:
    if first:                                                   # stored, not added to zeros
        targets[:, :, 0, 0] = d6[:, :, 0, 0]
    for k in range(1 if first else 0, KH * KW):
        kh, kw = divmod(k, KW)
        targets[:, :, kh, kw] += d6[:, :, kh, kw]               # (N, C, OH, row_width)
    dx_pad = dx_flat[:, :, :Hp * Wp].reshape(N, C, Hp, Wp)      # view
    return xp.ascontiguousarray(dx_pad[:, :, pad:pad + H, pad:pad + W])  # crop: (N, C, H, W)


def im2col(x: np.ndarray, KH: int, KW: int, *, stride: int = 1, pad: int = 0) -> np.ndarray:
    """Unfold every KHxKW window of ``x`` into one column of a contiguous matrix per image.

    Args:
        x: (N, C, H, W) input.
        KH, KW: window size.  stride, pad: as in conv2d.
    Returns:
        cols: (N, C*KH*KW, OH*OW); ``cols[n, :, i*OW + j]`` is window (i, j) of image n
        flattened in (c, kh, kw) order, the order of ``w.reshape(F, -1)``, so the
        forward is one product ``w_mat @ cols`` with both operands contiguous.

    A strided view reads every window without copying (``windows``); copying it once
    into a contiguous array is the whole unfold (runs of OW values, never one pixel).
    conv2d's fast tier uses the same unfold on a wider grid for stride 1 (module
    docstring).
    """
    x = check_array("x", x, op="im2col", ndim=4, kinds=None, axes="(N, C, H, W)")
    KH, KW, stride, pad, OH, OW = check_window("im2col", x.shape, KH, KW, stride, pad)
    return unfold(x, KH, KW, stride, pad, OW)           # (N, K, P), K = C*KH*KW, P = OH*OW


def col2im(dcols: np.ndarray, x_shape: tuple, KH: int, KW: int, *,
           stride: int = 1, pad: int = 0) -> np.ndarray:
    """Adjoint of im2col: add every column of ``dcols`` back onto its window.

    Args:
        dcols: (N, C*KH*KW, OH*OW) gradient of the column matrices, in im2col's order.
        x_shape: (N, C, H, W) of the original input.
    Returns:
        dx: (N, C, H, W); where windows overlap their contributions sum (``fold``).
        Values that landed in the padding are dropped (the padding is not an input).
    """
    if not (isinstance(x_shape, (tuple, list)) and len(x_shape) == 4):
        raise ValueError(f"col2im: x_shape must be the 4 sizes (N, C, H, W), got {x_shape!r}")
    N, C, H, W = (check_count("x_shape", n, op="col2im", minimum=0) for n in x_shape)
    KH, KW, stride, pad, OH, OW = check_window("col2im", (N, C, H, W), KH, KW, stride, pad)
    dcols = check_array("dcols", dcols, op="col2im", shape=(N, C * KH * KW, OH * OW),
                        kinds="f")
    return fold(dcols, (N, C, H, W), KH, KW, stride, pad, OW)
