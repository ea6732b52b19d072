"""The residual add ``out = a + b`` of a ResNet block (He et al., 2016).

Its local derivative is 1 with respect to both inputs, so it hands the upstream
gradient unchanged to *both* branches; where the branches split again (at the block
input) the two gradients are summed, which is the whole trick that lets gradients flow
through deep ResNets. Derivation: docs/layers/global_pool.md.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from minircnn.utils.validate import check_array


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
    a = check_array("a", a, op="add_forward", kinds="fiu")
    b = check_array("b", b, op="add_forward", like=a, kinds="fiu")
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
