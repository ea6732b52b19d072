"""blas_threads (minircnn/blas.py): sets OpenBLAS's thread count and restores it."""

import numpy as np
import pytest

from minircnn.blas import _openblas_controls, blas_threads


def test_sets_and_restores_the_thread_count():
    controls = _openblas_controls()
    if not controls:
        pytest.skip("no OpenBLAS found in this process (not Linux, or MKL)")
    before = [get() for _, get in controls]
    with blas_threads(1):
        assert [get() for _, get in controls] == [1] * len(controls)
        a = np.arange(6.0).reshape(2, 3)
        np.testing.assert_array_equal(a @ a.T, [[5.0, 14.0], [14.0, 50.0]])
    assert [get() for _, get in controls] == before


def test_none_leaves_it_alone_and_bad_counts_fail():
    with blas_threads(None):
        pass
    with pytest.raises(ValueError, match="n must be"):
        with blas_threads(0):
            pass
