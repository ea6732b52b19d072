"""Global average pooling: the op a ResNet's head adds to a VGG.

Global average pooling: the op a ResNet's head adds to a VGG (with the residual add,
residual_add.py).

Global average pooling (GAP) averages each channel over all spatial positions:

    out[n, c] = 1 / (H W) * sum_{i, j} x[n, c, i, j]

so every input position receives an equal share of the upstream gradient:

    dx[n, c, i, j] = dout[n, c] / (H W)

It matches ``torch.nn.AdaptiveAvgPool2d(1)`` followed by ``flatten(1)`` (the head of
torchvision's ResNet). Derivation: docs/layers/global_pool.md.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from minircnn.backend import get_array_module
from minircnn.layers.module import Module
from minircnn.utils.validate import check_array


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
    x = check_array("x", x, op="global_avg_pool_forward", ndim=4, kinds="fiu",
                    axes="(N, C, H, W)")
    if x.shape[2] * x.shape[3] == 0:
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
