"""keep_freed_memory: glibc keeps freed blocks, so a second array of a size reuses pages."""

import sys

import numpy as np
import pytest

from minircnn.utils import memory


def _is_glibc() -> bool:
    import ctypes
    try:
        return sys.platform.startswith("linux") and hasattr(ctypes.CDLL(None),
                                                            "gnu_get_libc_version")
    except OSError:
        return False


def test_idempotent_and_boolean():
    first = memory.keep_freed_memory()
    assert isinstance(first, bool)
    assert memory.keep_freed_memory() is first
    assert first is _is_glibc()


def test_other_platforms_do_nothing(monkeypatch):
    monkeypatch.setattr(memory.sys, "platform", "darwin")
    assert memory._mallopt(memory.M_TRIM_THRESHOLD, memory.TRIM_THRESHOLD) is False


@pytest.mark.skipif(not _is_glibc(), reason="glibc's malloc only")
def test_freed_array_pages_are_reused():
    """With the setting, a freed 16 MiB array's pages serve the next one: almost no new
    page faults (without it glibc maps fresh memory, one fault per touched page)."""
    import resource

    assert memory.keep_freed_memory()
    size = 16 * 2**20 // 8                                   # 16 MiB of float64
    np.ones(size)                                            # allocated, touched, freed
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    np.ones(size)                                            # the same size again
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    assert faults < 0.05 * size * 8 / 4096                   # pages of 4 KiB
