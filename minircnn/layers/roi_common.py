"""Helpers shared by the RoI ops (roi_pool.py, roi_align.py): argument checks and
the Module plumbing. The bin arithmetic itself is ``roi_pool_bins`` in roi_pool.py.
"""

from __future__ import annotations

import numpy as np

from minircnn.backend import asnumpy, get_array_module
from minircnn.layers.module import Module


def pair(value, name: str) -> tuple[int, int]:
    """An int >= 1 or a pair of them, returned as a pair."""
    both = (value, value) if np.isscalar(value) else tuple(value)
    if len(both) != 2 or any(int(v) != v or v < 1 for v in both):
        raise ValueError(f"{name} must be an int >= 1 or a pair of them, got {value!r}")
    return int(both[0]), int(both[1])


def check_roi_inputs(op: str, features, rois, spatial_scale) -> np.ndarray:
    """Validate features (N, C, H, W) and rois (R, 5); return rois in the features' dtype.

    torchvision requires rois and features of one dtype, and does all coordinate
    arithmetic in it; casting here reproduces that for float32 and float64 alike.
    """
    xp = get_array_module(features)
    if features.ndim != 4:
        raise ValueError(f"{op}: features must be 4-D (N, C, H, W), got shape "
                         f"{tuple(features.shape)}")
    if not np.issubdtype(features.dtype, np.floating):
        raise TypeError(f"{op}: features must be a float array, got dtype {features.dtype}")
    rois = xp.asarray(rois)
    if rois.ndim != 2 or rois.shape[1] != 5:
        raise ValueError(f"{op}: rois must have shape (R, 5) as [batch_index, x1, y1, x2, y2],"
                         f" got shape {tuple(rois.shape)}")
    if not (np.isscalar(spatial_scale) and np.isfinite(spatial_scale) and spatial_scale > 0):
        raise ValueError(f"{op}: spatial_scale must be a finite number > 0, got {spatial_scale!r}")
    host = asnumpy(rois).astype(np.float64)      # (R, 5), small: check on the host
    bad = np.flatnonzero(~np.isfinite(host).all(axis=1))
    if bad.size:
        raise ValueError(f"{op}: rois must be finite, row {bad[0]} is {host[bad[0]]}")
    b = host[:, 0]
    bad = np.flatnonzero((b != np.floor(b)) | (b < 0) | (b >= features.shape[0]))
    if bad.size:
        raise ValueError(f"{op}: rois[:, 0] must be integer batch indices in [0, "
                         f"{features.shape[0]}) (features has N={features.shape[0]}), "
                         f"row {bad[0]} has {b[bad[0]]}")
    bad = np.flatnonzero((host[:, 3] < host[:, 1]) | (host[:, 4] < host[:, 2]))
    if bad.size:
        raise ValueError(f"{op}: rois need x2 >= x1 and y2 >= y1, row {bad[0]} is {host[bad[0]]}")
    return rois.astype(features.dtype)


def pick_impl(impl: str, fast, naive):
    if impl not in ("fast", "naive"):
        raise ValueError(f"impl must be 'fast' or 'naive', got {impl!r}")
    return fast if impl == "fast" else naive


class RoIModule(Module):
    """Shared forward/backward plumbing: keep the cache, no parameters."""

    _cache = None

    def _backward(self, dout, backward):
        if self._cache is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward")
        return backward(dout, self._cache)
