"""2-D convolution: naive loops, a fast im2col version, and the Conv2d module.

Semantics match ``torch.nn.functional.conv2d``: cross-correlation (the kernel is not
flipped), zero padding on all four sides, output size ``floor((H + 2 pad - KH) / stride)
+ 1``. The derivation of every gradient line is in docs/layers/conv.md.

The fast path views the zero-padded input as windows with stride tricks and copies
them into a contiguous column matrix, a block of output rows at a time (a buffer that
stays in cache), so one matmul per block does the layer; the backward unfolds the
input again the same way for dw, and col2im adds the KH*KW shifted slices back for dx
(no ``add.at``, no padded buffer). Everything stays NCHW; runs of OW pixels are copied
at a time, never one pixel.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from minircnn.backend import get_array_module
from minircnn.layers.module import OpModule, Parameter, no_forward_error
from minircnn.utils.validate import check_array, check_count, check_dout, check_pair


class ConvCache(NamedTuple):
    """What both conv2d backward passes need (naive and fast caches are the same): the
    inputs only. The fast backward unfolds x again, a block at a time, rather than keep
    the im2col columns (9x the input for a 3x3 kernel): writing them out to memory and
    reading them back costs more than unfolding again from an input that fits the cache."""

    x: np.ndarray            # (N, C, H, W) input
    w: np.ndarray            # (F, C, KH, KW) weights
    stride: int
    pad: int


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
    return out, ConvCache(x, w, stride, pad)


def conv2d_backward_naive(dout: np.ndarray, cache: ConvCache):
    """dout (N, F, OH, OW) -> dx (N, C, H, W), dw (F, C, KH, KW), db (F,), by loops."""
    x, w, stride, pad = cache
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
# Fast version: im2col + one matmul.
# --------------------------------------------------------------------------------------
def _valid_range(k: int, pad: int, stride: int, size: int, out: int) -> tuple[int, int]:
    """Outputs o in [lo, hi) whose kernel offset k reads inside the unpadded input:
    0 <= o * stride + k - pad < size. The others read the zero padding."""
    lo = min(out, max(0, -(-(pad - k) // stride)))      # ceil((pad - k) / stride), clipped
    hi = min(out, (size - 1 - k + pad) // stride + 1)
    return lo, max(lo, hi)


def _offset_slices(k: int, pad: int, stride: int, size: int, out: int):
    """For kernel offset k along one axis: the slice of outputs that read the input and
    the strided slice of input positions they read (same length)."""
    lo, hi = _valid_range(k, pad, stride, size, out)
    first = lo * stride + k - pad                       # input position read by output lo
    return slice(lo, hi), slice(first, first + (hi - lo - 1) * stride + 1 if hi > lo
                                else first, stride)


def _check_window(op: str, x_shape: tuple, KH, KW, stride, pad) -> tuple[int, ...]:
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


def im2col(x: np.ndarray, KH: int, KW: int, *, stride: int = 1, pad: int = 0) -> np.ndarray:
    """Unfold every KHxKW window of ``x`` into one column of a contiguous matrix per image.

    Args:
        x: (N, C, H, W) input.
        KH, KW: window size.  stride, pad: as in conv2d.
    Returns:
        cols: (N, C*KH*KW, OH*OW); ``cols[n, :, i*OW + j]`` is window (i, j) of image n
        flattened in (c, kh, kw) order, the order of ``w.reshape(F, -1)``, so the
        forward is one product ``w_mat @ cols`` with both operands contiguous.

    A strided view reads every window without copying: offset (kh, kw) of window (i, j)
    is x_pad[n, c, i*s + kh, j*s + kw], so stepping i moves s rows and stepping kh one
    row. Copying that view once into a contiguous array is the whole unfold (runs of OW
    values at a time, never one pixel).
    """
    x = check_array("x", x, op="im2col", ndim=4, kinds=None, axes="(N, C, H, W)")
    KH, KW, stride, pad, OH, OW = _check_window("im2col", x.shape, KH, KW, stride, pad)
    xp = get_array_module(x)
    N, C, H, W = x.shape
    cols = xp.empty((N, C, KH, KW, OH, OW), dtype=x.dtype)
    cols[...] = _windows(x, KH, KW, stride, pad, (OH, OW))  # the one copy
    return cols.reshape(N, C * KH * KW, OH * OW)  # (N, K, P), K = C*KH*KW, P = OH*OW


def _windows(x: np.ndarray, KH: int, KW: int, stride: int, pad: int, out_hw: tuple):
    """View (N, C, KH, KW, OH, OW) of every window of the zero-padded x, no copy:
    windows[n, c, kh, kw, i, j] = x_pad[n, c, i s + kh, j s + kw]."""
    xp = get_array_module(x)
    N, C = x.shape[:2]
    x_pad = _zero_pad(x, pad)                              # (N, C, H+2p, W+2p)
    sN, sC, sH, sW = x_pad.strides                         # bytes per step of each axis
    return xp.lib.stride_tricks.as_strided(                # stepping i moves s rows,
        x_pad, (N, C, KH, KW, *out_hw),                    # stepping kh one row
        (sN, sC, sH, sW, sH * stride, sW * stride))


def _zero_pad(x: np.ndarray, pad: int) -> np.ndarray:
    """x (N, C, H, W) with ``pad`` zeros on each side: (N, C, H+2p, W+2p); x if pad = 0."""
    if pad == 0:
        return x
    xp = get_array_module(x)
    N, C, H, W = x.shape
    x_pad = xp.zeros((N, C, H + 2 * pad, W + 2 * pad), dtype=x.dtype)
    x_pad[:, :, pad:pad + H, pad:pad + W] = x
    return x_pad


def col2im(dcols: np.ndarray, x_shape: tuple, KH: int, KW: int, *,
           stride: int = 1, pad: int = 0) -> np.ndarray:
    """Adjoint of im2col: add every column of ``dcols`` back onto its window.

    Args:
        dcols: (N, C*KH*KW, OH*OW) gradient of the column matrices, in im2col's order.
        x_shape: (N, C, H, W) of the original input.
    Returns:
        dx: (N, C, H, W); where windows overlap their contributions sum. One slice-add
        per kernel offset (kh, kw): that offset of every window lands on a strided grid
        of pixels, and within one offset no two windows share a pixel, so ``+=`` on a
        slice is exact (no ``add.at`` needed). Values that landed in the padding are
        never added (the padding is not an input).
    """
    if not (isinstance(x_shape, (tuple, list)) and len(x_shape) == 4):
        raise ValueError(f"col2im: x_shape must be the 4 sizes (N, C, H, W), got {x_shape!r}")
    N, C, H, W = (check_count("x_shape", n, op="col2im", minimum=0) for n in x_shape)
    KH, KW, stride, pad, OH, OW = _check_window("col2im", (N, C, H, W), KH, KW, stride, pad)
    dcols = check_array("dcols", dcols, op="col2im", shape=(N, C * KH * KW, OH * OW),
                        kinds="f")
    xp = get_array_module(dcols)
    d6 = dcols.reshape(N, C, KH, KW, OH, OW)  # view
    dx = xp.zeros((N, C, H, W), dtype=dcols.dtype)
    for kh in range(KH):
        out_rows, in_rows = _offset_slices(kh, pad, stride, H, OH)
        for kw in range(KW):
            out_cols, in_cols = _offset_slices(kw, pad, stride, W, OW)
            dx[:, :, in_rows, in_cols] += d6[:, :, kh, kw, out_rows, out_cols]  # (N, C, h', w')
    return dx


def conv2d_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray, *,
                   stride: int = 1, pad: int = 0) -> tuple[np.ndarray, ConvCache]:
    """2-D convolution (cross-correlation), as torch.nn.functional.conv2d.

    out[n, f, i, j] = b[f] + sum_{c, kh, kw} w[f, c, kh, kw] x_pad[n, c, i s + kh, j s + kw]

    Args:
        x: (N, C, H, W) float input.  w: (F, C, KH, KW) filters.  b: (F,) bias.
        stride: step between windows (>= 1).  pad: zeros added on each side (>= 0).
    Returns:
        out: (N, F, OH, OW) in x's dtype, OH = (H + 2 pad - KH) // stride + 1 (floor),
        and a ConvCache for conv2d_backward (x and w; no columns, see ConvCache).
    Raises:
        ValueError / TypeError: wrong ndim, channel or bias mismatch, kernel larger than
            the padded input, non-float dtype, stride < 1 or pad < 0.
    """
    x, w, b, stride, pad, _ = _check_conv_args(x, w, b, stride, pad)
    return _conv_by_blocks(x, w, b, stride, pad), ConvCache(x, w, stride, pad)


# Columns unfolded per matrix product on the CPU: a block that stays in the L2 cache
# between its copy and its product (the whole column matrix would not).
BLOCK_BYTES = 1 << 18


def _column_blocks(x, KH: int, KW: int, stride: int, pad: int):
    """Unfold x (N, C, H, W) a block of output rows at a time, into one buffer reused by
    every block. Yields (n, i0, i1, cols): cols (C*KH*KW, (i1-i0)*OW) are the im2col
    columns of image n's output rows i0 .. i1-1 (valid until the next block)."""
    xp = get_array_module(x)
    N, C, H, W = x.shape
    OH, OW = (H + 2 * pad - KH) // stride + 1, (W + 2 * pad - KW) // stride + 1
    K = C * KH * KW
    windows = _windows(x, KH, KW, stride, pad, (OH, OW))      # view (N, C, KH, KW, OH, OW)
    rows = max(1, BLOCK_BYTES // max(1, K * OW * x.itemsize)) if xp is np else OH
    buffer = xp.empty((C, KH, KW, min(rows, OH), OW), x.dtype)
    for n in range(N):
        for i0 in range(0, OH, rows):                         # output rows i0 .. i1-1
            i1 = min(OH, i0 + rows)
            block = buffer[:, :, :, :i1 - i0]                 # (C, KH, KW, i1-i0, OW)
            block[...] = windows[n, :, :, :, i0:i1]           # unfold these rows' windows
            yield n, i0, i1, block.reshape(K, (i1 - i0) * OW)


def _conv_by_blocks(x, w, b, stride: int, pad: int) -> np.ndarray:
    """out (N, F, OH, OW) = w_mat @ im2col(x) + b, a block of output rows at a time
    (_column_blocks). The same dot products as one big matmul, row by row of the
    output (a BLAS may order a small product's additions differently: the last bits of
    a value may then differ).

    One product of inner size K = C*KH*KW per block rather than an implicit GEMM (one
    product per kernel offset on shifted views of the padded image, no columns):
    matmul cannot add into its output, so each offset would cost an extra pass over it,
    and a product of inner size C (3 in a first layer) runs BLAS far below its peak."""
    xp = get_array_module(x)
    N, C, H, W = x.shape
    F, _, KH, KW = w.shape
    OH, OW = (H + 2 * pad - KH) // stride + 1, (W + 2 * pad - KW) // stride + 1
    w_mat = w.reshape(F, C * KH * KW).astype(x.dtype, copy=False)  # (F, K); F may be 0
    bias = b.astype(x.dtype, copy=False)[:, None]            # (F, 1)
    out = xp.empty((N, F, OH * OW), dtype=x.dtype)           # (N, F, P)
    for n, i0, i1, cols in _column_blocks(x, KH, KW, stride, pad):
        out_block = out[n, :, i0 * OW:i1 * OW]                # view (F, (i1-i0)*OW)
        xp.matmul(w_mat, cols, out=out_block)                 # (F, K) @ (K, rows*OW)
        out_block += bias                                     # (F, rows*OW) + (F, 1)
    return out.reshape(N, F, OH, OW)


def conv2d_param_grads(dout: np.ndarray, cache: ConvCache):
    """dout (N, F, OH, OW) -> dw (F, C, KH, KW), db (F,): conv2d_backward without dx.

    What the first trainable layer above frozen ones needs (nothing reads its dx).
    """
    x, w, stride, pad = cache
    _check_conv_dout(dout, x.shape, w, stride, pad, x.dtype, x)
    xp = get_array_module(dout)
    N, F, OH, OW = dout.shape
    K = w.shape[1] * w.shape[2] * w.shape[3]                 # rows of a column: C*KH*KW
    dout3 = dout.reshape(N, F, OH * OW).astype(x.dtype, copy=False)  # (N, F, P)
    db = dout3.sum(axis=(0, 2))  # b[f] was added at every n and pixel: sum them, (F,)
    # dL/dw_mat = sum_n dout[n] cols[n]^T, block by block of columns, computed transposed
    # (BLAS is faster this way): sum over blocks of cols (K, B) @ dout_block^T (B, F)
    dw_t = xp.zeros((K, F), dtype=x.dtype)                   # (K, F)
    for n, i0, i1, cols in _column_blocks(x, *w.shape[2:], stride, pad):
        dw_t += cols @ dout3[n, :, i0 * OW:i1 * OW].T         # (K, B) @ (B, F) -> (K, F)
    dw = xp.ascontiguousarray(dw_t.T).reshape(w.shape)      # (F, K) -> (F, C, KH, KW)
    return dw.astype(w.dtype, copy=False), db.astype(w.dtype, copy=False)


def conv2d_backward(dout: np.ndarray, cache: ConvCache):
    """dout (N, F, OH, OW) -> dx (N, C, H, W), dw (F, C, KH, KW), db (F,).

    With out[n] = w_mat @ cols[n] + b it is a linear layer's backward per image, then
    col2im. Derivation: docs/layers/conv.md.
    """
    dw, db = conv2d_param_grads(dout, cache)
    x, w, stride, pad = cache
    N, F, OH, OW = dout.shape
    KH, KW = w.shape[2:]
    dout3 = dout.reshape(N, F, OH * OW).astype(x.dtype, copy=False)  # (N, F, P)
    K = w.shape[1] * KH * KW                          # rows of a column: C * KH * KW
    w_mat = w.reshape(F, K).astype(x.dtype, copy=False)  # (F, K); explicit K also when F = 0
    dcols = w_mat.T @ dout3  # dL/dcols[n] = w_mat^T dout[n]: (K, F) @ (N, F, P) -> (N, K, P)
    dx = col2im(dcols, tuple(x.shape), KH, KW, stride=stride, pad=pad)  # (N, C, H, W)
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
        backward needs (x and w), nothing when frozen (no backward runs through)."""
        out, cache = self.op_forward(x, self.w.data, b, stride=self.stride, pad=self.pad)
        self._cache = None if self.is_frozen() else cache
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
