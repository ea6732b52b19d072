"""ReLU, inverted dropout and Flatten.

Derivations: docs/layers/activations.md.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from minircnn.backend import get_array_module
from minircnn.layers.module import Module
from minircnn.utils.validate import check_array, check_dout, check_number, check_rng


# --- ReLU ------------------------------------------------------------------------------
class ReluCache(NamedTuple):
    positive: np.ndarray  # bool, shape of x: where x > 0 (the gradient passes there)


def relu_forward(x: np.ndarray) -> tuple[np.ndarray, ReluCache]:
    """out = max(x, 0) elementwise (matches torch.nn.functional.relu).

    Args:
        x: any shape.
    Returns:
        out with the shape and dtype of x, and a ReluCache.
    """
    x = check_array("x", x, op="relu", kinds="fiu")
    xp = get_array_module(x)
    out = xp.maximum(x, 0)  # same dtype as x (0 is a weak Python scalar)
    return out, ReluCache(x > 0)


def relu_backward(dout: np.ndarray, cache: ReluCache) -> np.ndarray:
    """dout (shape of x) -> dx. The subgradient at x == 0 is taken as 0, as torch."""
    check_dout(dout, cache.positive.shape, None, cache.positive, op="relu_backward")
    dx = dout * cache.positive  # dL/dx = dout·[x > 0]
    return dx


class ReLU(Module):
    """Module wrapper of relu_forward / relu_backward (no parameters)."""

    cache: ReluCache | None = None

    def forward(self, x):
        if self.is_frozen():   # no backward comes: no mask, no cache
            self.cache = None
            return get_array_module(x).maximum(x, 0)
        out, self.cache = relu_forward(x)
        return out

    def backward(self, dout):
        if self.cache is None:
            raise RuntimeError("ReLU.backward called before forward (or after the forward "
                               "of a frozen layer, which keeps no cache)")
        return relu_backward(dout, self.cache)


# --- dropout ---------------------------------------------------------------------------
class DropoutCache(NamedTuple):
    mask: np.ndarray | None  # shape of x: 0 (dropped) or 1/(1-p) (kept); None = identity


def dropout_forward(x: np.ndarray, *, p: float, train: bool,
                    rng: np.random.Generator) -> tuple[np.ndarray, DropoutCache]:
    """Inverted dropout: zero each entry with probability p, scale survivors by 1/(1-p).

    The expected value of every entry is unchanged, so nothing needs rescaling at test
    time (matches torch.nn.functional.dropout). Identity when ``train`` is False or
    ``p == 0``; all zeros when ``p == 1``.

    Args:
        x: any shape.
        p: drop probability, 0 <= p <= 1.
        train: False in eval mode.
        rng: np.random.Generator; the mask is drawn on the host (so a seed gives the
            same mask on CPU and GPU) and moved to x's device.
    Returns:
        out (shape of x) and a DropoutCache.
    """
    x = check_array("x", x, op="dropout", kinds="f")   # an int array would truncate 1/(1-p)
    p = check_number("p", p, op="dropout", low=0.0, high=1.0)
    check_rng("rng", rng, op="dropout")
    if not train or p == 0.0:
        return x, DropoutCache(None)
    xp = get_array_module(x)
    keep = xp.asarray(rng.random(x.shape) >= p)  # drawn on the host, True w.p. 1 - p
    scale = 0.0 if p == 1.0 else 1.0 / (1.0 - p)
    mask = xp.multiply(keep, x.dtype.type(scale), dtype=x.dtype)  # 0 or 1/(1-p), x's dtype
    return x * mask, DropoutCache(mask)


def dropout_backward(dout: np.ndarray, cache: DropoutCache) -> np.ndarray:
    """dout (shape of x) -> dx = dout * mask (identity when the forward was)."""
    if cache.mask is None:
        return dout  # out = x: dL/dx = dout
    check_dout(dout, cache.mask.shape, cache.mask.dtype, cache.mask, op="dropout_backward")
    return dout * cache.mask  # out = x·mask: dL/dx = dout·mask


class Dropout(Module):
    """Inverted dropout that owns its random generator and follows ``self.training``.

    Args:
        p: drop probability (Fast R-CNN's fc6 / fc7 use 0.5).
        seed: seed of the module's own np.random.Generator (runs are reproducible).
    """

    def __init__(self, p: float = 0.5, seed: int = 0):
        self.p = check_number("p", p, op="Dropout", low=0.0, high=1.0)
        self.rng = np.random.default_rng(seed)

    def forward(self, x):
        out, self.cache = dropout_forward(x, p=self.p, train=self.training, rng=self.rng)
        return out

    def backward(self, dout):
        return dropout_backward(dout, self.cache)

    def __repr__(self) -> str:
        return f"Dropout(p={self.p})"


# --- flatten ---------------------------------------------------------------------------
class Flatten(Module):
    """(N, C, H, W) -> (N, C*H*W), channel-first order (torch.flatten(x, 1)).

    Backward reshapes the gradient back to the input's shape.
    """

    def forward(self, x):
        if x.ndim < 2:
            raise ValueError(f"Flatten: x must have a batch axis, got shape {tuple(x.shape)}")
        self.input_shape = x.shape
        return x.reshape(x.shape[0], -1)  # (N, C, H, W) -> (N, C*H*W)

    def backward(self, dout):
        return dout.reshape(self.input_shape)  # (N, C*H*W) -> (N, C, H, W)
