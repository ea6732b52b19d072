"""Argument checks shared by the RoI ops (roi_pool.py, roi_align.py).

Argument checks shared by the RoI ops (roi_pool.py, roi_align.py): output sizes,
features and RoIs on the way in, dout on the way back. The bin arithmetic itself is
``roi_pool_bins`` in roi_pool.py.
"""

from __future__ import annotations

import numpy as np

from minircnn.backend import asnumpy
from minircnn.utils.validate import check_array, check_dout, check_pair, check_positive

# Largest |coordinate * spatial_scale| accepted, in feature cells: 2**24 is where float32
# stops holding every integer, so rounded bins and bilinear samples lose their meaning
# beyond it (and past ~9.2e18 the int64 casts of the bin code overflow).
COORD_LIMIT = 2.0**24


def pair(value, name: str) -> tuple[int, int]:
    """An int >= 1 or a pair of them, returned as a pair."""
    op, _, arg = name.rpartition(": ")
    return check_pair(arg, value, op=op or None)


def check_roi_inputs(op: str, features, rois, spatial_scale):
    """Validate features (N, C, H, W) and rois (R, 5); return both, rois in the features' dtype.

    Lists are converted to arrays. RoIs must be finite, have integer batch indices in
    [0, N), x2 >= x1, y2 >= y1, and every coordinate times ``spatial_scale`` within
    +-COORD_LIMIT (2**24) feature cells. torchvision requires rois and features of one
    dtype, and does all coordinate arithmetic in it; casting here reproduces that for
    float32 and float64 alike.
    """
    features = check_array("features", features, op=op, ndim=4, kinds="f",
                           axes="(N, C, H, W)")
    rois = check_array("rois", rois, op=op, kinds="fiu", like=features)
    if rois.ndim != 2 or rois.shape[1] != 5:
        raise ValueError(f"{op}: rois must have shape (R, 5) as [batch_index, x1, y1, x2, y2],"
                         f" got shape {tuple(rois.shape)}")
    check_positive("spatial_scale", spatial_scale, op=op)
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
    bad = np.flatnonzero((np.abs(host[:, 1:]) * float(spatial_scale) > COORD_LIMIT).any(axis=1))
    if bad.size:
        raise ValueError(f"{op}: rois coordinates times spatial_scale must lie within "
                         f"+-2**24 feature cells (spatial_scale={spatial_scale}), "
                         f"row {bad[0]} is {host[bad[0]]}")
    bad = np.flatnonzero((host[:, 3] < host[:, 1]) | (host[:, 4] < host[:, 2]))
    if bad.size:
        raise ValueError(f"{op}: rois need x2 >= x1 and y2 >= y1, row {bad[0]} is {host[bad[0]]}")
    return features, rois.astype(features.dtype)


def check_roi_dout(op: str, dout, shape: tuple, dtype, like) -> None:
    """dout of an RoI op's backward: the forward output's shape (R, C, PH, PW) and dtype
    (None: any float), and the array module of ``like`` (an array of the cache)."""
    check_dout(dout, shape, dout.dtype if dtype is None and hasattr(dout, "dtype") else dtype,
               like, op=op)

