"""A fully connected layer factored in two: the rank-t form of a truncated SVD.

Fast R-CNN (section 3.1) speeds up its fc layers at test time by replacing a (out, in)
weight matrix W with its rank-t truncated SVD,

    W ≈ U_t Σ_t V_tᵀ        U_t (out, t), Σ_t (t, t), V_t (in, t)

so ``y = x Wᵀ + b`` becomes two layers with no non-linearity between them (the paper's
split): the first has weights ``Σ_t V_tᵀ`` (t, in) and no bias, the second ``U_t``
(out, t) and the original bias. Parameters and multiply-adds per row drop from
``out·in`` to ``t·(in + out)``. By Eckart–Young the truncated SVD is the best rank-t
approximation in the Frobenius norm, and its squared error is the sum of the discarded
squared singular values, ``Σ_{i>t} σ_i²``.

    low_rank_linear_forward(x, w1, w2, b) -> (out, cache);  out = (x @ w1.T) @ w2.T + b
    low_rank_linear_backward(dout, cache) -> (dx, dw1, dw2, db)

Derivation of the backward pass: it is ``linear_backward`` twice (docs/layers/linear.md),
through the hidden rows ``h = x @ w1.T`` (N, t). Compressing a trained detector with it:
minircnn/models/compress.py.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from minircnn.backend import get_array_module
from minircnn.layers.module import Module, Parameter
from minircnn.utils.validate import check_array


class LowRankLinearCache(NamedTuple):
    x: np.ndarray   # (N, D) input rows
    h: np.ndarray   # (N, t) rows after the first factor, x @ w1.T
    w1: np.ndarray  # (t, D) first factor, Σ_t V_tᵀ
    w2: np.ndarray  # (M, t) second factor, U_t


def _check_rank(rank, shape: tuple, name: str = "rank") -> int:
    limit = min(shape)
    if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)):
        raise TypeError(f"{name}: expected an int in 1..{limit}, got {rank!r}")
    if not 1 <= int(rank) <= limit:
        raise ValueError(f"{name}: expected an int in 1..{limit} (min of the weight shape "
                         f"{tuple(shape)}), got {rank}")
    return int(rank)


def truncated_svd(w: np.ndarray, rank: int) -> tuple[np.ndarray, np.ndarray]:
    """Split a Linear weight W (M, D) into rank-t factors, ``W ≈ w2 @ w1``.

    Args:
        w: (M, D) weight (torch layout: one row per output unit).
        rank: t, 1 <= t <= min(M, D).
    Returns:
        w1 (t, D) = Σ_t V_tᵀ (the first layer, no bias) and w2 (M, t) = U_t (the
        second layer, which keeps the original bias), in w's dtype. The SVD itself is
        computed in float64 (``numpy.linalg.svd``, singular values descending).
    Raises:
        ValueError: w not 2-D or not finite, or rank outside 1..min(M, D).
        TypeError: rank not an int.
    """
    # a NaN or inf would send LAPACK's SVD into an endless loop: refused first
    w = check_array("w", w, op="truncated_svd", ndim=2, kinds="fiu", finite=True,
                    axes="(out, in)")
    t = _check_rank(rank, w.shape)
    xp = get_array_module(w)
    w64 = w.astype(xp.float64)
    if w.shape[0] < w.shape[1]:  # wide: LAPACK is faster on the tall transpose Wᵀ = V Σ Uᵀ
        v, s, ut = xp.linalg.svd(w64.T, full_matrices=False)  # (D,k) (k,) (k,M), k = min(M,D)
        u, vt = ut.T, v.T                                        # (M, k), (k, D)
    else:
        u, s, vt = xp.linalg.svd(w64, full_matrices=False)    # (M,k) (k,) (k,D)
    w1 = s[:t, None] * vt[:t]  # Σ_t V_tᵀ: (t, 1) * (t, D) -> (t, D)
    w2 = u[:, :t]              # U_t: (M, t)
    return w1.astype(w.dtype), w2.astype(w.dtype)


def low_rank_linear_forward(x, w1, w2, b):
    """Two chained fully connected layers, out = (x @ w1.T) @ w2.T + b.

    Args:
        x: (N, D) inputs.  w1: (t, D) first factor.  w2: (M, t) second factor.
        b: (M,) bias (the original layer's).
    Returns:
        out (N, M) and a LowRankLinearCache for low_rank_linear_backward.
    Raises:
        ValueError: shapes that do not chain.
    """
    x = check_array("x", x, op="low_rank_linear", ndim=2, axes="(N, D)")
    w1 = check_array("w1", w1, op="low_rank_linear", ndim=2, axes="(t, D)", like=x)
    w2 = check_array("w2", w2, op="low_rank_linear", ndim=2, axes="(M, t)", like=x)
    b = check_array("b", b, op="low_rank_linear", ndim=1, axes="(M,)", like=x)
    if w1.shape[1] != x.shape[1]:
        raise ValueError(f"low_rank_linear: x (N, D) and w1 (t, D) must match, got x "
                         f"{tuple(x.shape)} and w1 {tuple(w1.shape)}")
    if w2.ndim != 2 or w2.shape[1] != w1.shape[0] or b.shape != (w2.shape[0],):
        raise ValueError(f"low_rank_linear: w2 must be (M, {w1.shape[0]}) and b (M,), got "
                         f"w2 {tuple(w2.shape)} and b {tuple(b.shape)}")
    h = x @ w1.T        # (N, D) @ (D, t) -> (N, t)
    out = h @ w2.T + b  # (N, t) @ (t, M) -> (N, M), + (M,) broadcast over rows
    return out, LowRankLinearCache(x, h, w1, w2)


def low_rank_linear_backward(dout, cache: LowRankLinearCache):
    """dout (N, M) -> dx (N, D), dw1 (t, D), dw2 (M, t), db (M,)."""
    dh = dout @ cache.w2       # dL/dh = dout w2:     (N, M) @ (M, t) -> (N, t)
    dw2 = dout.T @ cache.h     # dL/dw2 = doutᵀ h:    (M, N) @ (N, t) -> (M, t)
    db = dout.sum(axis=0)      # b was broadcast over N rows: sum them -> (M,)
    dx = dh @ cache.w1         # dL/dx = dh w1:       (N, t) @ (t, D) -> (N, D)
    dw1 = dh.T @ cache.x       # dL/dw1 = dhᵀ x:      (t, N) @ (N, D) -> (t, D)
    return dx, dw1, dw2, db


class LowRankLinear(Module):
    """A Linear layer factored as ``y = (x @ w1.T) @ w2.T + b`` (rank t).

    Drop-in for ``Linear``: same ``in_features`` / ``out_features``, ``forward(x)``
    and ``backward(dout)``, so ``model.fc6 = LowRankLinear(...)`` just works. Build one
    from a trained layer with ``minircnn.models.compress.compress_linear``.

    Args:
        w1: (t, D) first factor.  w2: (M, t) second factor.  b: (M,) bias.
    """

    def __init__(self, w1, w2, b):
        if w1.ndim != 2 or w2.ndim != 2 or w2.shape[1] != w1.shape[0] or b.shape != (
                w2.shape[0],):
            raise ValueError(f"LowRankLinear: expected w1 (t, D), w2 (M, t), b (M,), got "
                             f"{tuple(w1.shape)}, {tuple(w2.shape)}, {tuple(b.shape)}")
        self.in_features = int(w1.shape[1])
        self.out_features = int(w2.shape[0])
        self.rank = int(w1.shape[0])
        self.w1 = Parameter(w1)
        self.w2 = Parameter(w2)
        self.b = Parameter(b, lr_mult=2.0, decay_mult=0.0)  # as Linear's bias
        self.cache: LowRankLinearCache | None = None

    def forward(self, x):
        if x.ndim != 2 or x.shape[1] != self.in_features:
            raise ValueError(f"LowRankLinear: x must have shape (N, {self.in_features}), "
                             f"got {tuple(x.shape)}")
        out, self.cache = low_rank_linear_forward(x, self.w1.data, self.w2.data, self.b.data)
        return out

    def backward(self, dout):
        dx, dw1, dw2, db = low_rank_linear_backward(dout, self.cache)
        self.w1.accumulate(dw1)
        self.w2.accumulate(dw2)
        self.b.accumulate(db)
        return dx

    def __repr__(self) -> str:
        return f"LowRankLinear({self.in_features}, {self.out_features}, rank={self.rank})"
