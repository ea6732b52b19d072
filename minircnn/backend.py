"""Array-module dispatch: NumPy on the CPU, CuPy on a GPU.

This is the only file in minircnn that imports cupy. Every op asks
``xp = get_array_module(x)`` and then writes ``xp.zeros(...)``, ``xp.maximum(...)``,
so one implementation runs on both. CuPy missing, or installed without a working GPU,
is a normal state: everything falls back to NumPy.
"""

from __future__ import annotations

import numpy as np

try:  # CuPy is the optional `gpu` extra.
    import cupy as _cupy
except Exception:  # ImportError, or a CUDA library that fails to load
    _cupy = None


def gpu_available() -> bool:
    """True when CuPy imports and sees at least one CUDA device."""
    if _cupy is None:
        return False
    try:
        return _cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # no driver, no device
        return False


def get_array_module(*arrays):
    """Return ``cupy`` if any argument is a CuPy array, else ``numpy``.

    Non-array arguments (None, Python numbers) are ignored, so
    ``get_array_module(x, None)`` works.
    """
    if _cupy is not None:
        for a in arrays:
            if isinstance(a, _cupy.ndarray):
                return _cupy
    return np


def asnumpy(a) -> np.ndarray:
    """Copy ``a`` to host memory as a NumPy array (a NumPy array is returned as is)."""
    if _cupy is not None and isinstance(a, _cupy.ndarray):
        return _cupy.asnumpy(a)
    return np.asarray(a)


def to_device(a, device: str):
    """Move ``a`` to ``"cpu"`` (NumPy) or ``"gpu"`` (CuPy).

    Raises:
        ValueError: ``device`` is neither "cpu" nor "gpu".
        RuntimeError: "gpu" was asked for but CuPy or a GPU is missing.
    """
    if device == "cpu":
        return asnumpy(a)
    if device == "gpu":
        if not gpu_available():
            raise RuntimeError(
                "device='gpu' needs CuPy and a CUDA GPU; install minircnn[gpu] "
                "(cupy-cuda12x) on a machine with an NVIDIA GPU"
            )
        return _cupy.asarray(a)
    raise ValueError(f"device must be 'cpu' or 'gpu', got {device!r}")
