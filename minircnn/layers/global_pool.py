"""Global average pooling and the residual add: the two ops a ResNet adds to a VGG.

Global average pooling (GAP) averages each channel over all spatial positions:

    out[n, c] = 1 / (H W) * sum_{i, j} x[n, c, i, j]

so every input position receives an equal share of the upstream gradient:

    dx[n, c, i, j] = dout[n, c] / (H W)

It matches ``torch.nn.AdaptiveAvgPool2d(1)`` followed by ``flatten(1)`` (the head of
torchvision's ResNet). The residual add ``out = a + b`` (He et al., 2016) is the other
new op: its local derivative is 1 with respect to both inputs, so it hands the upstream
gradient unchanged to *both* branches; where the branches split again (at the block
input) the two gradients are summed, which is the whole trick that lets gradients flow
through deep ResNets. Derivations: docs/layers/global_pool.md.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from minircnn.backend import get_array_module
from minircnn.layers.module import Module


class GlobalAvgPoolCache(NamedTuple):
    x_shape: tuple  # (N, C, H, W) shape of the input


def global_avg_pool_forward(x: np.ndarray) -> tuple[np.ndarray, GlobalAvgPoolCache]:
    """Average each channel over all positions (torch AdaptiveAvgPool2d(1) + flatten).

    Args:
        x: (N, C, H, W) feature maps.
    Returns:
        out: (N, C) per-channel means, and a GlobalAvgPoolCache for the backward.
    Raises:
        ValueError: ``x`` is not 4-D or has an empty spatial extent.
    """
    if x.ndim != 4 or x.shape[2] * x.shape[3] == 0:
        raise ValueError(f"global_avg_pool_forward: x must be (N, C, H, W) with H, W > 0, "
                         f"got shape {tuple(x.shape)}")
    out = x.mean(axis=(2, 3))  # (N, C, H, W) -> (N, C)
    return out, GlobalAvgPoolCache(tuple(x.shape))


def global_avg_pool_backward(dout: np.ndarray, cache: GlobalAvgPoolCache) -> np.ndarray:
    """dout (N, C) -> dx (N, C, H, W): each position gets dout / (H W)."""
    n, c, h, w = cache.x_shape
    if tuple(dout.shape) != (n, c):
        raise ValueError(f"global_avg_pool_backward: dout must have shape {(n, c)}, "
                         f"got {tuple(dout.shape)}")
    xp = get_array_module(dout)
    share = dout / (h * w)  # dL/dx[n,c,i,j] = dout[n,c] / (H W), the same for every i, j
    dx = xp.broadcast_to(share[:, :, None, None], cache.x_shape)  # (N, C, 1, 1) -> (N, C, H, W)
    return xp.ascontiguousarray(dx)


class AddCache(NamedTuple):
    shape: tuple  # the common shape of both summands


def add_forward(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, AddCache]:
    """Residual add ``out = a + b`` of two same-shaped arrays (no broadcasting).

    Args:
        a: residual branch output, any shape, e.g. (N, C, H, W).
        b: shortcut output, the same shape as ``a``.
    Returns:
        out: a + b, and an AddCache.
    Raises:
        ValueError: the shapes differ (a ResNet then needs a projection shortcut).
    """
    if tuple(a.shape) != tuple(b.shape):
        raise ValueError(f"add_forward: a and b must have the same shape, got a {tuple(a.shape)} "
                         f"and b {tuple(b.shape)} (use a projection shortcut)")
    return a + b, AddCache(tuple(a.shape))


def add_backward(dout: np.ndarray, cache: AddCache) -> tuple[np.ndarray, np.ndarray]:
    """dout -> (da, db): the add copies the gradient to both branches."""
    if tuple(dout.shape) != cache.shape:
        raise ValueError(f"add_backward: dout must have shape {cache.shape}, "
                         f"got {tuple(dout.shape)}")
    da = dout  # d(a + b)/da = 1
    db = dout  # d(a + b)/db = 1
    return da, db


class GlobalAvgPool(Module):
    """Module wrapper of global_avg_pool_forward: (N, C, H, W) -> (N, C)."""

    def __init__(self):
        self.cache = None

    def forward(self, x):
        out, self.cache = global_avg_pool_forward(x)
        return out

    def backward(self, dout):
        return global_avg_pool_backward(dout, self.cache)

    def __repr__(self) -> str:
        return "GlobalAvgPool()"
