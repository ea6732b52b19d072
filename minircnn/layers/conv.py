"""2-D convolution: naive loops, a fast im2col version, and the Conv2d module.

Semantics match ``torch.nn.functional.conv2d``: cross-correlation (the kernel is not
flipped), zero padding on all four sides, output size ``floor((H + 2 pad - KH) / stride)
+ 1``. The derivation of every gradient line is in docs/layers/conv.md.

The fast path views the zero-padded input as windows with stride tricks and copies
them *once* into a contiguous column matrix, so one (batched) matmul does the whole
layer; col2im adds the KH*KW shifted slices back (no ``add.at``, no padded buffer).
Everything stays NCHW and contiguous; runs of OW pixels are copied at a time, never
one pixel.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from minircnn.backend import get_array_module
from minircnn.layers.conv_unfold import flat_pad, fold, grid_row_width, unfold, windows
from minircnn.layers.module import OpModule, Parameter, no_forward_error
from minircnn.utils.validate import check_array, check_count, check_dout, check_pair


class ConvCache(NamedTuple):
    """What both conv2d backward passes need (naive and fast caches are interchangeable)."""

    x: np.ndarray            # (N, C, H, W) input
    w: np.ndarray            # (F, C, KH, KW) weights
    stride: int
    pad: int
    cols: np.ndarray | None  # (N, C*KH*KW, OH*OW) im2col of the padded input; None: naive


def _check_conv_args(x, w, b, stride, pad):
    """Validate conv2d inputs (lists become arrays); return x, w, b, stride, pad and the
    output size (OH, OW)."""
    x = check_array("x", x, op="conv2d", ndim=4, axes="(N, C, H, W)")
    w = check_array("w", w, op="conv2d", ndim=4, axes="(F, C, KH, KW)", like=x)
    b = check_array("b", b, op="conv2d", ndim=1, axes="(F,)", like=x)
    if x.shape[1] != w.shape[1]:
        raise ValueError(f"conv2d: channels of x {tuple(x.shape)} and w {tuple(w.shape)} "
                         f"differ: x has C={x.shape[1]}, w expects C={w.shape[1]}")
    if b.shape != (w.shape[0],):
        raise ValueError(f"conv2d: b must have shape ({w.shape[0]},) for w {tuple(w.shape)}, "
                         f"got {tuple(b.shape)}")
    stride = check_count("stride", stride, op="conv2d")
    pad = check_count("pad", pad, op="conv2d", minimum=0)
    _, _, H, W = x.shape
    _, _, KH, KW = w.shape
    if KH > H + 2 * pad or KW > W + 2 * pad:
        raise ValueError(f"conv2d: kernel {KH}x{KW} (w {tuple(w.shape)}) is larger than the "
                         f"padded input {H + 2 * pad}x{W + 2 * pad} "
                         f"(x {tuple(x.shape)}, pad={pad})")
    return x, w, b, stride, pad, ((H + 2 * pad - KH) // stride + 1,
                                  (W + 2 * pad - KW) // stride + 1)


def _check_conv_dout(dout, x_shape: tuple, w, stride: int, pad: int, dtype, like) -> None:
    N, _, H, W = x_shape
    F, _, KH, KW = w.shape
    shape = (N, F, (H + 2 * pad - KH) // stride + 1, (W + 2 * pad - KW) // stride + 1)
    check_dout(dout, shape, dtype, like, op="conv2d_backward")


# --------------------------------------------------------------------------------------
# Naive version: the specification, one loop per output index.
# --------------------------------------------------------------------------------------
def conv2d_forward_naive(x: np.ndarray, w: np.ndarray, b: np.ndarray, *,
                         stride: int = 1, pad: int = 0) -> tuple[np.ndarray, ConvCache]:
    """Convolution with explicit loops (same arguments and result as conv2d_forward)."""
    x, w, b, stride, pad, (OH, OW) = _check_conv_args(x, w, b, stride, pad)
    xp = get_array_module(x)
    N, C, H, W = x.shape
    F, _, KH, KW = w.shape
    x_pad = xp.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))  # (N, C, H+2p, W+2p)
    out = xp.zeros((N, F, OH, OW), dtype=x.dtype)
    for n in range(N):
        for f in range(F):
            for i in range(OH):
                for j in range(OW):
                    top, left = i * stride, j * stride
                    window = x_pad[n, :, top:top + KH, left:left + KW]  # (C, KH, KW)
                    out[n, f, i, j] = xp.sum(window * w[f]) + b[f]
    return out, ConvCache(x, w, stride, pad, None)


def conv2d_backward_naive(dout: np.ndarray, cache: ConvCache):
    """dout (N, F, OH, OW) -> dx (N, C, H, W), dw (F, C, KH, KW), db (F,), by loops."""
    x, w, stride, pad, _ = cache
    N, C, H, W = x.shape
    F, _, KH, KW = w.shape
    OH, OW = (H + 2 * pad - KH) // stride + 1, (W + 2 * pad - KW) // stride + 1
    check_dout(dout, (N, F, OH, OW), x.dtype, x, op="conv2d_backward")
    xp = get_array_module(dout)
    x_pad = xp.zeros((N, C, H + 2 * pad, W + 2 * pad), dtype=x.dtype)
    x_pad[:, :, pad:pad + H, pad:pad + W] = x     # zero padding: (N, C, H+2p, W+2p)
    dx_pad = xp.zeros(x_pad.shape, dtype=x.dtype)
    dw = xp.zeros(w.shape, dtype=w.dtype)
    db = xp.zeros(F, dtype=w.dtype)
    for n in range(N):
        for f in range(F):
            for i in range(OH):
                for j in range(OW):
                    top, left = i * stride, j * stride
                    window = x_pad[n, :, top:top + KH, left:left + KW]  # (C, KH, KW)
                    g = dout[n, f, i, j]
                    dx_pad[n, :, top:top + KH, left:left + KW] += w[f] * g  # dL/dwindow = w[f] g
                    dw[f] += window * g  # dL/dw[f] = sum over outputs of window * g
                    db[f] += g           # b[f] is added to every output of filter f
    dx = dx_pad[:, :, pad:pad + H, pad:pad + W]  # crop the padding: (N, C, H, W)
    return dx, dw, db


# --------------------------------------------------------------------------------------
# Fast version: im2col + one matmul (the unfolds are in conv_unfold.py).
# --------------------------------------------------------------------------------------
def conv2d_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray, *,
                   stride: int = 1, pad: int = 0) -> tuple[np.ndarray, ConvCache]:
    """2-D convolution (cross-correlation), as torch.nn.functional.conv2d.

    out[n, f, i, j] = b[f] + sum_{c, kh, kw} w[f, c, kh, kw] x_pad[n, c, i s + kh, j s + kw]

    Args:
        x: (N, C, H, W) float input.  w: (F, C, KH, KW) filters.  b: (F,) bias.
        stride: step between windows (>= 1).  pad: zeros added on each side (>= 0).
    Returns:
        out: (N, F, OH, OW) in x's dtype, OH = (H + 2 pad - KH) // stride + 1 (floor),
        and a ConvCache for conv2d_backward (holding the im2col columns).
    Raises:
        ValueError / TypeError: wrong ndim, channel or bias mismatch, kernel larger than
            the padded input, non-float dtype, stride < 1 or pad < 0.
    """
    x, w, b, stride, pad, (OH, OW) = _check_conv_args(x, w, b, stride, pad)
    N, C, _, W = x.shape
    F, _, KH, KW = w.shape
    xp = get_array_module(x)
    RW = grid_row_width(W, KW, stride, pad)                     # columns per output row
    cols = xp.empty((N, C * KH * KW, OH * RW), dtype=x.dtype)  # (N, K, OH*RW), for backward
    out = _conv_by_blocks(x, w, b, stride, pad, cols)           # (N, F, OH, OW)
    return out, ConvCache(x, w, stride, pad, cols)


def conv2d_values(x: np.ndarray, w: np.ndarray, b: np.ndarray, *,
                  stride: int = 1, pad: int = 0) -> np.ndarray:
    """conv2d_forward's ``out`` only, keeping no columns: what a layer needs when no
    backward reads its cache (frozen, eval mode, no_grad). Each block of columns is
    unfolded into one small buffer, reused."""
    x, w, b, stride, pad, _ = _check_conv_args(x, w, b, stride, pad)
    return _conv_by_blocks(x, w, b, stride, pad, None)


# Columns unfolded per matrix product on the CPU: a block that stays in the L2 cache
# between its copy and its product (the whole column matrix would not).
BLOCK_BYTES = 1 << 20


def _conv_by_blocks(x, w, b, stride: int, pad: int, cols) -> np.ndarray:
    """out (N, F, OH, OW) = w_mat @ columns(x) + b, unfolding and multiplying a block of
    output rows at a time: into ``cols`` (N, K, OH*RW) when given (kept for backward),
    else into one buffer reused by every block.

    One product with K = C*KH*KW per block, not one per kernel offset (an implicit GEMM
    over shifted views of the flat image): matmul cannot add into its output, so KH*KW
    products of inner size C would each cost an extra pass over the output, and a
    product with a small inner size (C = 3 for the first layer) runs BLAS far below its
    peak. A BLAS may order a small product's additions differently from a large one's:
    the last bits of a value may differ between block sizes."""
    xp = get_array_module(x)
    N, C, H, W = x.shape
    F, _, KH, KW = w.shape
    OH, OW = (H + 2 * pad - KH) // stride + 1, (W + 2 * pad - KW) // stride + 1
    K, RW = C * KH * KW, grid_row_width(W, KW, stride, pad)
    view = windows(flat_pad(x, pad, KW), KH, KW, stride, W + 2 * pad, OH, RW)
    rows = max(1, BLOCK_BYTES // max(1, K * RW * x.itemsize)) if xp is np else OH
    R = min(rows, OH)                                        # rows in the largest block
    buffer = xp.empty((C, KH, KW, R, RW), x.dtype) if cols is None else None
    grid = xp.empty((F, R, RW), x.dtype) if RW != OW else None  # products, junk included
    w_mat = w.reshape(F, K).astype(x.dtype, copy=False)      # (F, K); F may be 0
    bias = b.astype(x.dtype, copy=False)[:, None, None]      # (F, 1, 1)
    out = xp.empty((N, F, OH, OW), dtype=x.dtype)
    for n in range(N):
        for i0 in range(0, OH, rows):                         # output rows i0 .. i1-1
            i1 = min(OH, i0 + rows)
            block = (buffer[:, :, :, :i1 - i0] if cols is None   # (C, KH, KW, i1-i0, RW)
                     else cols[n].reshape(C, KH, KW, OH, RW)[:, :, :, i0:i1])
            block[...] = view[n, :, :, :, i0:i1]              # unfold these rows' windows
            out_rows = out[n, :, i0:i1]                       # view (F, i1-i0, OW)
            if grid is None:   # no junk columns: multiply straight into the output
                xp.matmul(w_mat, block.reshape(K, -1), out=out_rows.reshape(F, -1))
                out_rows += bias                              # (F, rows, OW) + (F, 1, 1)
            else:              # drop each row's junk columns while adding the bias
                products = grid[:, :i1 - i0]                  # view (F, i1-i0, RW)
                xp.matmul(w_mat, block.reshape(K, -1), out=products.reshape(F, -1))
                xp.add(products[:, :, :OW], bias, out=out_rows)
    return out


def _dout_grid(dout: np.ndarray, row_width: int, dtype) -> np.ndarray:
    """dout (N, F, OH, OW) laid out on the columns' grid: (N, F, OH*row_width), zero in
    the junk columns (so they add nothing to dw or dx); dout itself when there are none."""
    xp = get_array_module(dout)
    N, F, OH, OW = dout.shape
    if row_width == OW:
        return dout.reshape(N, F, OH * OW).astype(dtype, copy=False)  # view
    grid = xp.empty((N, F, OH, row_width), dtype=dtype)
    grid[..., :OW] = dout
    grid[..., OW:] = 0
    return grid.reshape(N, F, OH * row_width)


def _param_grads(dout, dgrid, cols, w):
    """dw (F, C, KH, KW), db (F,) from dout (N, F, OH, OW), its grid dgrid (N, F, Q) and
    the columns cols (N, K, Q), Q = OH * row width."""
    xp = get_array_module(dgrid)
    db = dout.sum(axis=(0, 2, 3))  # b[f] was added at every n and pixel: sum them, (F,)
    # dL/dw_mat = sum_n dout[n] cols[n]^T, computed transposed (BLAS is faster this way):
    dw_t = (cols @ dgrid.transpose(0, 2, 1)).sum(axis=0)  # (N, K, Q) @ (N, Q, F) -> (K, F)
    dw = xp.ascontiguousarray(dw_t.T).reshape(w.shape)  # (F, K) -> (F, C, KH, KW)
    return dw.astype(w.dtype, copy=False), db.astype(w.dtype, copy=False)


def _columns(cache: ConvCache, row_width: int) -> np.ndarray:
    """The cache's columns (N, K, OH*row_width); a cache from conv2d_forward_naive or
    eval mode has none: unfold the input now."""
    x, w, stride, pad, cols = cache
    return unfold(x, *w.shape[2:], stride, pad, row_width) if cols is None else cols


def conv2d_param_grads(dout: np.ndarray, cache: ConvCache):
    """dout (N, F, OH, OW) -> dw (F, C, KH, KW), db (F,): conv2d_backward without dx.

    What the first trainable layer above frozen ones needs (nothing reads its dx).
    """
    x, w, stride, pad, _ = cache
    _check_conv_dout(dout, x.shape, w, stride, pad, x.dtype, x)
    cols = _columns(cache, grid_row_width(x.shape[3], w.shape[3], stride, pad))
    return _param_grads(dout, _dout_grid(dout, cols.shape[2] // dout.shape[2], cols.dtype),
                        cols, w)


def conv2d_backward(dout: np.ndarray, cache: ConvCache):
    """dout (N, F, OH, OW) -> dx (N, C, H, W), dw (F, C, KH, KW), db (F,).

    With out[n] = w_mat @ cols[n] + b it is a linear layer's backward per image, then
    col2im. Derivation: docs/layers/conv.md.
    """
    x, w, stride, pad, _ = cache
    _check_conv_dout(dout, x.shape, w, stride, pad, x.dtype, x)
    F, _, KH, KW = w.shape
    RW = grid_row_width(x.shape[3], KW, stride, pad)
    cols = _columns(cache, RW)                          # (N, K, Q), Q = OH * RW
    dgrid = _dout_grid(dout, RW, cols.dtype)            # (N, F, Q), junk columns 0
    dw, db = _param_grads(dout, dgrid, cols, w)
    w_mat = w.reshape(F, cols.shape[1]).astype(cols.dtype, copy=False)  # (F, K), also F = 0
    dcols = w_mat.T @ dgrid  # dL/dcols[n] = w_mat^T dout[n]: (K, F) @ (N, F, Q) -> (N, K, Q)
    dx = fold(dcols, tuple(x.shape), KH, KW, stride, pad, RW)  # col2im: (N, C, H, W)
    return dx, dw, db


class Conv2d(OpModule):
    """Convolution layer with parameters ``w`` (F, C, KH, KW) and ``b`` (F,).

    Weights: He / Kaiming normal with fan_in = C*KH*KW (std = sqrt(2 / fan_in)), as
    torch.nn.init.kaiming_normal_(mode="fan_in", nonlinearity="relu"); bias zeros, trained
    at 2x the learning rate without weight decay (Fast R-CNN's Caffe convention).

    Args:
        in_channels, out_channels: C and F.  kernel_size: int or (KH, KW).
        stride, pad: as conv2d_forward.  rng: np.random.Generator (default seed 0).
        dtype: parameter dtype.  impl: "fast" (im2col) or "naive" (loops).
    """

    IMPLS = {"fast": (conv2d_forward, conv2d_backward),
             "naive": (conv2d_forward_naive, conv2d_backward_naive)}

    def __init__(self, in_channels: int, out_channels: int, kernel_size, *, stride: int = 1,
                 pad: int = 0, rng: np.random.Generator | None = None, dtype=np.float32,
                 impl: str = "fast"):
        KH, KW = check_pair("kernel_size", kernel_size, op="Conv2d")
        in_channels = check_count("in_channels", in_channels, op="Conv2d")
        out_channels = check_count("out_channels", out_channels, op="Conv2d")
        check_count("stride", stride, op="Conv2d")
        check_count("pad", pad, op="Conv2d", minimum=0)
        rng = np.random.default_rng(0) if rng is None else rng
        fan_in = in_channels * KH * KW
        w = rng.standard_normal((out_channels, in_channels, KH, KW)) * np.sqrt(2.0 / fan_in)
        self.w = Parameter(w.astype(dtype))
        self.b = Parameter(np.zeros(out_channels, dtype=dtype), lr_mult=2.0, decay_mult=0.0)
        self.stride = stride
        self.pad = pad
        self.impl = impl                      # checked; picks op_forward, op_backward

    def forward(self, x):
        return self.forward_with_bias(x, self.b.data)

    def forward_with_bias(self, x, b):
        """forward with the bias ``b`` (F,) (ConvNoBias passes zeros). Keeps what
        backward needs: nothing when frozen (no backward runs through the layer), no
        im2col columns in eval mode (a rare backward unfolds x again)."""
        if self.impl == "fast" and (self.is_frozen() or not self.training):
            out = conv2d_values(x, self.w.data, b, stride=self.stride, pad=self.pad)
            self._cache = None if self.is_frozen() else ConvCache(
                x, self.w.data, self.stride, self.pad, None)
            return out
        out, cache = self.op_forward(x, self.w.data, b, stride=self.stride, pad=self.pad)
        self._cache = None if self.is_frozen() else cache   # (naive tier, frozen: none)
        return out

    def backward(self, dout):
        """dout -> dx, accumulating dw and db; dx is None when ``needs_input_grad`` is
        False (the layer above frozen ones: nothing reads it, so it is not computed)."""
        if self._cache is None:
            raise no_forward_error(self)
        if self.needs_input_grad:
            dx, dw, db = self.op_backward(dout, self._cache)
        else:   # naive and fast tiers agree (tests): the weight gradients of either cache
            dx, (dw, db) = None, conv2d_param_grads(dout, self._cache)
        self.w.accumulate(dw)
        self.b.accumulate(db)
        return dx

    def __repr__(self) -> str:
        F, C, KH, KW = self.w.shape
        return (f"Conv2d({C}, {F}, kernel_size=({KH}, {KW}), stride={self.stride}, "
                f"pad={self.pad}, impl={self.impl!r})")
