"""A convolution's backward over the output pixels whose gradient is not zero.

The RPN's loss reads 256 sampled anchors per image (Faster R-CNN, section 3.1.3); every
other anchor's gradient is zero, so the gradient reaching the RPN's 3x3 convolution,
dout (N, F, OH, OW), is zero at most output pixels (about four in five on the toy's
32x32 map). ``conv2d_backward`` multiplies over every pixel; ``conv2d_backward_active``
only over the P' *active* pixels, those where some channel of dout is not zero. A zero
column adds nothing to either product, so these are the same gradients (the float sums
run in another order: round-off only):

    dw[f, k] = sum_p dout[f, p] cols[k, p]        the sum over active pixels p only
    dcols[k, p] = sum_f w_mat[f, k] dout[f, p]    zero at every other pixel: not computed

and col2im adds the active columns back onto their windows. ``conv2d_backward`` (and
its naive loops) stay the specification; tests check this one against them.
"""

from __future__ import annotations

import numpy as np

from minircnn.backend import get_array_module
from minircnn.layers.conv import Conv2d, ConvCache, conv2d_backward, conv2d_forward

# Above this fraction of active pixels, gathering their columns costs more than it
# saves: conv2d_backward runs instead.
DENSE_FRACTION = 0.5


def conv2d_backward_active(dout: np.ndarray, cache: ConvCache):
    """conv2d_backward, its products over the pixels where dout is not zero.

    The gathered columns are laid out channels-last, (KH, KW, C) per pixel, so each
    pixel's window and each kernel offset's scatter move whole rows of C channels.

    Args:
        dout: (N, F, OH, OW) gradient of conv2d_forward's output.
        cache: conv2d_forward's ConvCache.
    Returns:
        dx (N, C, H, W), dw (F, C, KH, KW), db (F,), as conv2d_backward.
    """
    x, w, stride, pad = cache
    xp = get_array_module(dout)
    N, F, OH, OW = dout.shape
    _, C, KH, KW = w.shape
    active = xp.any(dout != 0, axis=1)                       # (N, OH, OW)
    if int(active.sum()) > DENSE_FRACTION * active.size:
        return conv2d_backward(dout, cache)
    n, i, j = xp.nonzero(active)                             # (P',) each, image-major
    d = dout[n, :, i, j].astype(x.dtype, copy=False)        # (P', F): the active columns
    windows = _windows_last(x, KH, KW, stride, pad, (OH, OW))   # (N, OH, OW, KH, KW, C)
    cols = windows[n, i, j].reshape(-1, KH * KW * C)         # (P', K), K = KH*KW*C
    w_mat = w.transpose(0, 2, 3, 1).reshape(F, -1).astype(x.dtype, copy=False)   # (F, K)
    dw = (d.T @ cols).reshape(F, KH, KW, C)   # dL/dw_mat = dout cols^T: (F, P') @ (P', K)
    dw = xp.ascontiguousarray(dw.transpose(0, 3, 1, 2))      # (F, C, KH, KW)
    db = d.sum(axis=0)                        # b[f] was added at every pixel: (P', F) -> (F,)
    dcols = (d @ w_mat).reshape(-1, KH, KW, C)   # dL/dcols = w_mat^T dout: (P', KH, KW, C)
    dx = _add_windows(dcols, x.shape, (n, i, j), stride, pad)
    return dx, dw.astype(w.dtype, copy=False), db.astype(w.dtype, copy=False)


def _windows_last(x, KH: int, KW: int, stride: int, pad: int, out_hw: tuple):
    """View (N, OH, OW, KH, KW, C) of every window of x (N, C, H, W), zero-padded and
    copied channels-last once: windows[n, i, j, kh, kw, c] = x_pad[n, c, i s + kh, j s + kw]."""
    xp = get_array_module(x)
    N, C, H, W = x.shape
    x_last = xp.zeros((N, H + 2 * pad, W + 2 * pad, C), dtype=x.dtype)   # (N, H', W', C)
    x_last[:, pad:pad + H, pad:pad + W] = x.transpose(0, 2, 3, 1)
    sN, sH, sW, sC = x_last.strides                          # bytes per step of each axis
    return xp.lib.stride_tricks.as_strided(                  # stepping i moves s rows,
        x_last, (N, *out_hw, KH, KW, C),                     # stepping kh one row
        (sN, sH * stride, sW * stride, sH, sW, sC))


def _add_windows(dcols, x_shape, pixels, stride: int, pad: int):
    """col2im of the active columns: dcols (P', KH, KW, C) of output pixels (n, i, j)
    added back onto their windows -> dx (N, C, H, W).

    One add per kernel offset (kh, kw): that offset of pixel (n, i, j) is the input
    pixel (n, i s + kh, j s + kw), and distinct output pixels give distinct input pixels
    for one offset, so ``+=`` at those indices adds each value once (no repeated index;
    col2im's argument, with index arrays for its slices).
    """
    xp = get_array_module(dcols)
    N, C, H, W = x_shape
    n, i, j = pixels
    KH, KW = dcols.shape[1:3]
    dx_last = xp.zeros((N, H + 2 * pad, W + 2 * pad, C), dtype=dcols.dtype)  # channels-last
    for kh in range(KH):
        for kw in range(KW):
            dx_last[n, i * stride + kh, j * stride + kw] += dcols[:, kh, kw]   # (P', C) rows
    dx = dx_last[:, pad:pad + H, pad:pad + W].transpose(0, 3, 1, 2)   # drop the padding
    return xp.ascontiguousarray(dx)                          # (N, C, H, W)


class ActiveConv2d(Conv2d):
    """Conv2d whose fast backward multiplies over the active output pixels only
    (``conv2d_backward_active``): the RPN's 3x3 convolution, whose gradient comes from
    the few sampled anchors. Parameters, forward and naive tier are Conv2d's."""

    IMPLS = {"fast": (conv2d_forward, conv2d_backward_active),
             "naive": Conv2d.IMPLS["naive"]}
