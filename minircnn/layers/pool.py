"""2-D max pooling: naive loops, a fast vectorized version, and the MaxPool2d module.

Semantics match ``torch.nn.functional.max_pool2d`` with no padding, dilation 1 and
``ceil_mode=False``: output size ``floor((H - KH) / stride) + 1``; within a window the
*first* maximum in row-major order wins (PyTorch's CPU kernel compares with ``>``), and
the gradient of each output goes to that one input. Windows may overlap (stride <
kernel): an input that is the max of several windows receives the sum of their
gradients. Derivation: docs/layers/pool.md.

NaN propagates, as in PyTorch's CPU kernel (``if (val > maxval || isnan(val))``): a
window holding a NaN outputs NaN, and its gradient goes to the *last* NaN of the window
in row-major order (each NaN takes over from what came before it). +-inf are ordinary
values (inf wins, -inf loses).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from minircnn.backend import get_array_module
from minircnn.layers.module import OpModule, no_forward_error
from minircnn.utils.validate import check_array, check_dout, check_pair


class PoolCache(NamedTuple):
    """What the max_pool2d backward passes need (naive and fast caches are interchangeable)."""

    x: np.ndarray           # (N, C, H, W) input
    arg: np.ndarray         # (N, C, OH, OW) winning offset kh*KW + kw of each window
    kernel: tuple           # (KH, KW)
    stride: tuple           # (SH, SW)


def _check_pool_args(x, kernel, stride):
    """Validate; return x (a list converted), (KH, KW), (SH, SW), (OH, OW)."""
    x = check_array("x", x, op="max_pool2d", ndim=4, axes="(N, C, H, W)")
    KH, KW = check_pair("kernel", kernel, op="max_pool2d")
    SH, SW = check_pair("stride", stride, op="max_pool2d")
    H, W = x.shape[2:]
    if KH > H or KW > W:
        raise ValueError(f"max_pool2d: kernel {KH}x{KW} is larger than the input "
                         f"{H}x{W} (x {tuple(x.shape)})")
    return x, (KH, KW), (SH, SW), ((H - KH) // SH + 1, (W - KW) // SW + 1)


def _check_pool_dout(dout, cache: PoolCache) -> None:
    N, C, H, W = cache.x.shape
    (KH, KW), (SH, SW) = cache.kernel, cache.stride
    shape = (N, C, (H - KH) // SH + 1, (W - KW) // SW + 1)
    check_dout(dout, shape, cache.x.dtype, cache.x, op="max_pool2d_backward")


def _window_argmax(window, xp) -> int:
    """Row-major index of the window's winner: the first max, or the last NaN if any."""
    nan = xp.flatnonzero(xp.isnan(window))
    return int(nan[-1]) if nan.size else int(xp.argmax(window))


# --------------------------------------------------------------------------------------
# Naive version: the specification, one loop per output index.
# --------------------------------------------------------------------------------------
def max_pool2d_forward_naive(x: np.ndarray, *, kernel=2, stride=2):
    """Max pooling with explicit loops (same arguments and result as max_pool2d_forward)."""
    x, (KH, KW), (SH, SW), (OH, OW) = _check_pool_args(x, kernel, stride)
    xp = get_array_module(x)
    N, C = x.shape[:2]
    out = xp.zeros((N, C, OH, OW), dtype=x.dtype)
    arg = xp.zeros((N, C, OH, OW), dtype=np.int64)
    for n in range(N):
        for c in range(C):
            for i in range(OH):
                for j in range(OW):
                    window = x[n, c, i * SH:i * SH + KH, j * SW:j * SW + KW]  # (KH, KW)
                    out[n, c, i, j] = window.max()
                    arg[n, c, i, j] = _window_argmax(window, xp)  # first max (or last NaN)
    return out, PoolCache(x, arg, (KH, KW), (SH, SW))


def max_pool2d_backward_naive(dout: np.ndarray, cache: PoolCache) -> np.ndarray:
    """dout (N, C, OH, OW) -> dx (N, C, H, W): each gradient goes to its window's argmax."""
    x, arg, (KH, KW), (SH, SW) = cache
    N, C, H, W = x.shape
    OH, OW = (H - KH) // SH + 1, (W - KW) // SW + 1
    check_dout(dout, (N, C, OH, OW), x.dtype, x, op="max_pool2d_backward")
    xp = get_array_module(dout)
    dx = xp.zeros(x.shape, dtype=x.dtype)
    for n in range(N):
        for c in range(C):
            for i in range(OH):
                for j in range(OW):
                    kh, kw = divmod(int(arg[n, c, i, j]), KW)   # the window's argmax offset
                    # d out / d x = 1 at the argmax, 0 elsewhere; overlapping windows add
                    dx[n, c, i * SH + kh, j * SW + kw] += dout[n, c, i, j]
    return dx


# --------------------------------------------------------------------------------------
# Fast version: loop over the KH*KW kernel offsets, never over pixels.
# --------------------------------------------------------------------------------------
def _offset_view(a, kh: int, kw: int, stride: tuple, out_hw: tuple):
    """View of ``a`` (N, C, H, W) picking offset (kh, kw) of every window: (N, C, OH, OW)."""
    (SH, SW), (OH, OW) = stride, out_hw
    return a[:, :, kh:kh + SH * (OH - 1) + 1:SH, kw:kw + SW * (OW - 1) + 1:SW]


def max_pool2d_forward(x: np.ndarray, *, kernel=2, stride=2):
    """Max pooling, as torch.nn.functional.max_pool2d (no padding, floor mode).

    Args:
        x: (N, C, H, W) float input.
        kernel: KH or (KH, KW).  stride: SH or (SH, SW); may be smaller than the kernel.
    Returns:
        out: (N, C, OH, OW) in x's dtype, OH = (H - KH) // SH + 1, and a PoolCache whose
        ``arg`` holds the winning offset kh*KW + kw of each window (first max in
        row-major order wins).
    Raises:
        ValueError / TypeError: x not 4-D or not float, bad kernel/stride, kernel larger
            than the input.
    """
    x, (KH, KW), (SH, SW), (OH, OW) = _check_pool_args(x, kernel, stride)
    xp = get_array_module(x)
    cols = _column_offsets(x, KW, SW, OW)         # KW arrays (N, C, H, OW)

    def offset(k):                                # offset k = kh*KW + kw of every window
        kh, kw = divmod(k, KW)
        return cols[kw][:, :, kh:kh + SH * (OH - 1) + 1:SH]   # (N, C, OH, OW), whole rows

    out = offset(0).copy()                        # (N, C, OH, OW)
    for k in range(1, KH * KW):
        xp.maximum(out, offset(k), out=out)
    # NaN propagates through maximum: out holds one iff a window does. Testing out,
    # not x, reads a quarter of the values (for 2x2); NaN needs the slower loop below.
    if bool(xp.isnan(out).any()):
        return _max_pool_with_nan(x, (KH, KW), (SH, SW), (OH, OW))
    # The first max's offset = how many offsets come before it, all below the max:
    # arg = sum over k of [offsets 0..k all miss the max] (the last offset needs no test).
    code = np.min_scalar_type(KH * KW - 1).type  # uint8 for kernels up to 16x16
    arg = xp.zeros(out.shape, dtype=code)        # (N, C, OH, OW)
    missed = xp.ones(out.shape, dtype=code)      # 1 while no offset so far held the max
    for k in range(KH * KW - 1):
        missed &= offset(k) != out
        arg += missed
    return out, PoolCache(x, arg, (KH, KW), (SH, SW))


def _column_offsets(x, KW: int, SW: int, OW: int) -> list:
    """x (N, C, H, W) at each kernel column offset kw: ``cols[kw][n, c, h, j] =
    x[n, c, h, j SW + kw]``, each (N, C, H, OW).

    With SW > 1 on the CPU each is a contiguous copy: NumPy cannot run its contiguous
    (SIMD) loops over a view that steps SW values along a row, and after these KW copies
    (for 2x2: each half of x, one pass over x in all) every offset of every window is
    whole contiguous rows, which the comparisons above read several times. With SW = 1,
    or on a GPU, the views serve as they are.
    """
    xp = get_array_module(x)
    views = [x[:, :, :, kw:kw + SW * (OW - 1) + 1:SW] for kw in range(KW)]
    if SW == 1 or xp is not np:
        return views
    return [xp.ascontiguousarray(view) for view in views]


def max_pool2d_values(x: np.ndarray, kernel: tuple, stride: tuple, out_hw: tuple) -> np.ndarray:
    """The pooled maxima only (N, C, OH, OW), no argmax: what a layer that no backward
    runs through needs (a frozen layer). NaN propagates, as in max_pool2d_forward.

    With stride >= kernel each value is read once here, so column copies
    (_column_offsets) would cost as much as the strided views."""
    xp = get_array_module(x)
    (KH, KW) = kernel
    out = _offset_view(x, 0, 0, stride, out_hw).copy()  # offset (0, 0) of every window
    for k in range(1, KH * KW):
        xp.maximum(out, _offset_view(x, *divmod(k, KW), stride, out_hw), out=out)
    return out


def _max_pool_with_nan(x, kernel: tuple, stride: tuple, out_hw: tuple):
    """max_pool2d_forward for an input holding NaN: a running max and argmax, where
    every NaN takes over from what came before it (as PyTorch: the last NaN wins)."""
    xp = get_array_module(x)
    (KH, KW) = kernel
    out = _offset_view(x, 0, 0, stride, out_hw).copy()  # offset (0, 0) of every window
    code = np.min_scalar_type(KH * KW - 1).type
    arg = xp.zeros(out.shape, dtype=code)  # (N, C, OH, OW) winning offset so far
    for k in range(1, KH * KW):
        candidate = _offset_view(x, *divmod(k, KW), stride, out_hw)  # (N, C, OH, OW)
        better = (candidate > out) | xp.isnan(candidate)  # strict: an equal value does not
        xp.maximum(out, candidate, out=out)                # take over; every NaN does
        arg *= ~better  # arg = k where better, else unchanged (arithmetic beats where())
        arg += better.astype(code) * k
    return out, PoolCache(x, arg, kernel, stride)


def max_pool2d_backward(dout: np.ndarray, cache: PoolCache) -> np.ndarray:
    """dout (N, C, OH, OW) -> dx (N, C, H, W).

    For each kernel offset k, the outputs whose max sat at offset k send their gradient
    to the strided grid of inputs under that offset: one masked slice-add per offset.
    Within one offset no two windows share an input, so ``+=`` on the slice is exact;
    overlapping windows meet across offsets, where the adds accumulate.
    """
    _check_pool_dout(dout, cache)
    x, arg, (KH, KW), (SH, SW) = cache
    xp = get_array_module(dout)
    OH, OW = dout.shape[2:]
    N, C, H, W = x.shape
    disjoint = SH >= KH and SW >= KW   # windows do not overlap: each input in one window
    tiled = SH == KH and SW == KW and OH * KH == H and OW * KW == W  # ...and cover x
    # A tiling's offsets store every input once: no zeros needed first (one pass less)
    dx = xp.empty_like(x) if tiled else xp.zeros_like(x)   # (N, C, H, W), x's dtype
    for k in range(KH * KW):
        dx_k = _offset_view(dx, *divmod(k, KW), (SH, SW), (OH, OW))  # view (N, C, OH, OW)
        if disjoint:   # no other offset writes dx_k: store dout where the max sat, else 0
            xp.multiply(dout, arg == k, out=dx_k)
        else:
            dx_k += dout * (arg == k)  # d out / d x = 1 where the max sat at offset k, else 0
    return dx


class MaxPool2d(OpModule):
    """Max pooling layer (no parameters); ``impl`` is "fast" or "naive"."""

    IMPLS = {"fast": (max_pool2d_forward, max_pool2d_backward),
             "naive": (max_pool2d_forward_naive, max_pool2d_backward_naive)}

    def __init__(self, kernel=2, stride=2, impl: str = "fast"):
        check_pair("kernel", kernel, op="MaxPool2d")
        check_pair("stride", stride, op="MaxPool2d")
        self.kernel = kernel
        self.stride = stride
        self.impl = impl                      # checked; picks op_forward, op_backward

    def forward(self, x):
        if self.is_frozen():   # no backward comes: the maxima only, no argmax, no cache
            x, kernel, stride, out_hw = _check_pool_args(x, self.kernel, self.stride)
            self._cache = None
            return max_pool2d_values(x, kernel, stride, out_hw)
        out, self._cache = self.op_forward(x, kernel=self.kernel, stride=self.stride)
        return out

    def backward(self, dout):
        if self._cache is None:
            raise no_forward_error(self)
        return self.op_backward(dout, self._cache)

    def __repr__(self) -> str:
        return f"MaxPool2d(kernel={self.kernel}, stride={self.stride}, impl={self.impl!r})"
