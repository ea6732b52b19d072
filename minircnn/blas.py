"""Run a block of code with a given number of BLAS threads (NumPy's OpenBLAS).

The detector's matrix products are small (at most 128 x 3136 x 256 per training
step). On a 2-core machine OpenBLAS's second thread buys little for them, and when
other processes compete for the cores it costs a lot. Measured on the shared 2-core
development machine, one default training step (``minircnn bench``): with the cores
mostly free, 66 ms median with one thread vs 56 ms with two; while other jobs were
busy, 61 ms with one thread vs 524 ms with two. So training defaults to one thread
(``TrainConfig.blas_threads``; None leaves OpenBLAS alone).

``blas_threads(n)`` finds the OpenBLAS libraries loaded in this process (Linux:
``/proc/self/maps``; NumPy's wheels ship ``libscipy_openblas``) and calls their
``set_num_threads``, restoring the previous count afterwards; it is what threadpoolctl
does, without the dependency. Where none is found (macOS, MKL builds) it does nothing;
the ``OPENBLAS_NUM_THREADS`` environment variable, set before NumPy is imported, works
everywhere.
"""

from __future__ import annotations

import contextlib
import ctypes
import re

_FUNCTIONS = (("scipy_openblas_set_num_threads64_", "scipy_openblas_get_num_threads64_"),
              ("openblas_set_num_threads64_", "openblas_get_num_threads64_"),
              ("openblas_set_num_threads", "openblas_get_num_threads"))


def _openblas_controls() -> list[tuple]:
    """(set, get) function pairs of every OpenBLAS loaded in this process."""
    try:
        with open("/proc/self/maps") as f:
            paths = sorted(set(re.findall(r"(/\S*openblas\S*\.so\S*)", f.read())))
    except OSError:
        return []
    controls = []
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for set_name, get_name in _FUNCTIONS:
            if hasattr(lib, set_name) and hasattr(lib, get_name):
                controls.append((getattr(lib, set_name), getattr(lib, get_name)))
                break
    return controls


@contextlib.contextmanager
def blas_threads(n: int | None):
    """Context manager: OpenBLAS uses ``n`` threads inside the block (None: unchanged).

    Example:
        >>> with blas_threads(1):
        ...     train_detector(config, "runs/shapes")
    """
    if n is None:
        yield
        return
    if int(n) < 1:
        raise ValueError(f"blas_threads: n must be >= 1 or None, got {n}")
    controls = _openblas_controls()
    previous = [get() for _, get in controls]
    for set_threads, _ in controls:
        set_threads(int(n))
    try:
        yield
    finally:
        for (set_threads, _), old in zip(controls, previous, strict=True):
            set_threads(old)
