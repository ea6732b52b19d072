"""blas_threads (minircnn/utils/blas.py): sets the BLAS thread count and restores it."""

import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

from minircnn.utils.blas import blas_threads


def _blas_threads() -> list[int]:
    return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]


def test_sets_and_restores_the_thread_count():
    if not _blas_threads():
        pytest.skip("threadpoolctl finds no BLAS in this process")
    with threadpool_limits(limits=2, user_api="blas"):   # a known count to restore
        before = _blas_threads()
        with blas_threads(1):
            assert _blas_threads() == [1] * len(before)
            a = np.arange(6.0).reshape(2, 3)
            np.testing.assert_array_equal(a @ a.T, [[5.0, 14.0], [14.0, 50.0]])
        assert _blas_threads() == before


def test_none_leaves_it_alone_and_bad_counts_fail():
    before = _blas_threads()
    with blas_threads(None):
        assert _blas_threads() == before
    with pytest.raises(ValueError, match="n must be"):
        with blas_threads(0):
            pass
