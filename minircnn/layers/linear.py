"""Fully connected layer: ``out = x @ w.T + b`` (torch.nn.functional.linear).

Derivation of the backward pass: docs/layers/linear.md.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from minircnn.layers.module import Module, Parameter
from minircnn.utils.validate import as_array, check_array, check_count, check_dout, check_positive


class LinearCache(NamedTuple):
    x: np.ndarray  # (N, D) input rows
    w: np.ndarray  # (M, D) weights


def _check_linear_inputs(x, w, b):
    """Validate (lists become arrays); return x, w, b."""
    x = as_array("x", x, op="linear")
    w = check_array("w", w, op="linear", like=x)
    b = check_array("b", b, op="linear", like=x)
    if x.ndim != 2:
        raise ValueError(
            f"linear: x must be 2-D (N, in_features), got shape {tuple(x.shape)}; "
            "flatten (N, C, H, W) features first (layers.Flatten)"
        )
    if x.dtype.kind != "f":
        raise TypeError(f"linear: x must be a float array, got dtype {x.dtype}")
    if w.ndim != 2 or w.shape[1] != x.shape[1]:
        raise ValueError(
            f"linear: w must have shape (out_features, {x.shape[1]}) to match x "
            f"{tuple(x.shape)}, got {tuple(w.shape)}"
        )
    if b.shape != (w.shape[0],):
        raise ValueError(f"linear: b must have shape ({w.shape[0]},), got {tuple(b.shape)}")
    return x, w, b


def linear_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, LinearCache]:
    """Fully connected layer, out = x @ w.T + b (matches torch.nn.functional.linear).

    Args:
        x: (N, D) inputs.
        w: (M, D) weights, one row per output unit (torch's layout).
        b: (M,) bias.
    Returns:
        out: (N, M) and a LinearCache for linear_backward.
    Raises:
        ValueError: x not 2-D, or w / b shapes that do not match x.
        TypeError: x is not a float array.
    """
    x, w, b = _check_linear_inputs(x, w, b)
    out = x @ w.T + b  # (N, D) @ (D, M) -> (N, M), + (M,) broadcast over rows
    return out, LinearCache(x, w)


def linear_backward(dout: np.ndarray, cache: LinearCache) -> tuple[np.ndarray, ...]:
    """dout (N, M) -> dx (N, D), dw (M, D), db (M,). Derivation: docs/layers/linear.md."""
    shape = (cache.x.shape[0], cache.w.shape[0])
    check_dout(dout, shape, None, cache.x, op="linear_backward")
    dx = dout @ cache.w  # dL/dx = dout W:       (N, M) @ (M, D) -> (N, D)
    dw = dout.T @ cache.x  # dL/dW = dout^T x:   (M, N) @ (N, D) -> (M, D)
    db = dout.sum(axis=0)  # b was broadcast over N rows: sum them -> (M,)
    return dx, dw, db


class Linear(Module):
    """``y = x @ w.T + b`` with Parameters ``w`` (out, in) and ``b`` (out,).

    Initialisation: by default He (Kaiming) normal, ``w ~ N(0, 2 / in_features)``,
    suited to layers followed by ReLU; pass ``std`` for ``w ~ N(0, std²)`` instead
    (Fast R-CNN initialises cls_score with std 0.01 and bbox_pred with std 0.001).
    The bias starts at zero and trains like Caffe's Fast R-CNN: ``lr_mult=2``,
    ``decay_mult=0``.

    Args:
        in_features, out_features: D and M.
        rng: np.random.Generator for the weights; None means ``default_rng(0)``
            (deterministic; models pass their own generator so layers differ).
        dtype: parameter dtype (float32 for training, float64 for gradient checks).
        std: standard deviation of a plain normal init (overrides He init).
    """

    def __init__(self, in_features: int, out_features: int, *, rng=None,
                 dtype=np.float32, std: float | None = None):
        in_features = check_count("in_features", in_features, op="Linear")
        out_features = check_count("out_features", out_features, op="Linear")
        if std is not None:
            check_positive("std", std, op="Linear", allow_zero=True)
        rng = np.random.default_rng(0) if rng is None else rng
        scale = np.sqrt(2.0 / in_features) if std is None else std
        w = rng.standard_normal((out_features, in_features)) * scale  # (M, D)
        self.in_features = in_features
        self.out_features = out_features
        self.w = Parameter(w.astype(dtype))
        self.b = Parameter(np.zeros(out_features, dtype=dtype), lr_mult=2.0, decay_mult=0.0)
        self.cache: LinearCache | None = None

    def forward(self, x):
        x = as_array("x", x, op="Linear")
        if x.ndim != 2 or x.shape[1] != self.in_features:
            raise ValueError(
                f"Linear: x must have shape (N, {self.in_features}), got {tuple(x.shape)}"
            )
        out, self.cache = linear_forward(x, self.w.data, self.b.data)
        return out

    def backward(self, dout):
        dx, dw, db = linear_backward(dout, self.cache)
        self.w.accumulate(dw)
        self.b.accumulate(db)
        return dx

    def __repr__(self) -> str:
        return f"Linear({self.in_features}, {self.out_features})"
