"""Run a block of code with a given number of BLAS threads.

The detector's matrix products are small (at most 128 x 3136 x 256 per training
step). On a 2-core machine a second BLAS thread buys little for them, and when other
processes compete for the cores it costs a lot (figures: docs/performance.md). So
training, evaluation and detection default to one thread (``TrainConfig.blas_threads``;
None leaves the BLAS alone).

``blas_threads(n)`` is threadpoolctl's ``threadpool_limits`` on the BLAS libraries
loaded in this process (OpenBLAS, MKL or BLIS, on every OS), restoring the previous
counts afterwards.
"""

from __future__ import annotations

import contextlib

from threadpoolctl import threadpool_limits


@contextlib.contextmanager
def blas_threads(n: int | None):
    """Context manager: the BLAS uses ``n`` threads inside the block (None: unchanged).

    Example:
        >>> with blas_threads(1):
        ...     train_detector(config, "runs/shapes")
    """
    if n is None:
        yield
        return
    if int(n) < 1:
        raise ValueError(f"blas_threads: n must be >= 1 or None, got {n}")
    with threadpool_limits(limits=int(n), user_api="blas"):
        yield
