"""Array-module dispatch: NumPy on the CPU, CuPy on a GPU.

This is the only file in minircnn that imports cupy. Every op asks
``xp = get_array_module(x)`` and then writes ``xp.zeros(...)``, ``xp.maximum(...)``,
so one implementation runs on both. CuPy missing, or installed without a working GPU,
is a normal state: everything falls back to NumPy.

``MINIRCNN_FAKE_GPU=1`` puts minircnn.testing.fake_cupy in CuPy's place: a NumPy-backed
module with only CuPy's names whose arrays refuse implicit copies to the host, so the
GPU code path (``--device gpu``, the tests marked ``gpu``) runs and is checked on a
machine without a GPU.
"""

from __future__ import annotations

import os

import numpy as np

FAKE_GPU = os.environ.get("MINIRCNN_FAKE_GPU", "") not in ("", "0")

if FAKE_GPU:
    from minircnn.testing.fake_cupy import module as _cupy
else:
    try:  # CuPy is the optional `gpu` extra.
        import cupy as _cupy
    except Exception:  # ImportError, or a CUDA library that fails to load
        _cupy = None


def gpu_available() -> bool:
    """True when CuPy imports and sees at least one CUDA device (or the fake GPU is on)."""
    if _cupy is None:
        return False
    if FAKE_GPU:
        return True
    try:
        return _cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # no driver, no device
        return False


def gpu_name() -> str:
    """What "gpu" means in this process: the CUDA device's name, "fake CuPy", or "none"."""
    if not gpu_available():
        return "none"
    if FAKE_GPU:
        return f"fake CuPy on the CPU (CuPy {'/'.join(_cupy.VERSIONS)} names)"
    props = _cupy.cuda.runtime.getDeviceProperties(_cupy.cuda.Device().id)
    return props["name"].decode()


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


def synchronize() -> None:
    """Wait for queued GPU work (CuPy runs kernels asynchronously); a no-op otherwise.

    Time GPU code only after this, or the clock stops before the work is done.
    """
    if gpu_available() and not FAKE_GPU:
        _cupy.cuda.Device().synchronize()


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
                "(cupy-cuda12x) on a machine with an NVIDIA GPU (MINIRCNN_FAKE_GPU=1 runs "
                "the GPU code path on NumPy, for testing without one)"
            )
        return _cupy.asarray(a)
    raise ValueError(f"device must be 'cpu' or 'gpu', got {device!r}")
