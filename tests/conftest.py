"""Shared test configuration: the `gpu` marker skips itself without CuPy and a GPU."""

import os

import pytest

# One BLAS thread unless the caller chose otherwise: the test matrices are small, and on a
# busy 2-core machine a second OpenBLAS thread made some tests 5x slower (see
# minircnn/blas.py). Set before NumPy is imported; the lesson kernels inherit it.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")


def pytest_collection_modifyitems(config, items):
    from minircnn.backend import gpu_available

    if gpu_available():
        return
    skip = pytest.mark.skip(reason="needs CuPy and a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
