"""Keep freed memory inside the process, so fresh NumPy arrays reuse warm pages.

A training step or a detection allocates and frees tens of megabytes of arrays
(im2col columns, gradients, pooled RoIs) every iteration. glibc's malloc serves large
blocks straight from the kernel (mmap) and hands the free top of its heap back (trim);
either way the next array of that size is new memory, and the kernel must fault in and
zero every one of its pages again: system time that grows with the array sizes, paid on
every iteration, although the process needs the same memory each time.

``keep_freed_memory()`` raises both glibc thresholds (``mallopt``), so freed blocks stay
in the heap and the next iteration reuses them. The ``minircnn`` command calls it for
every command (training, detection, ``bench``); it is a process-wide setting, so a
library import never calls it. Elsewhere (macOS, Windows, musl) it does nothing.
docs/performance.md says what it changes, measured.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_TRIM_THRESHOLD = -1           # glibc's mallopt parameter numbers (malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 2**20     # glibc's largest allowed value on 64-bit: blocks up to this
TRIM_THRESHOLD = 512 * 2**20    # keep up to this much free memory before giving it back

_applied: bool | None = None     # the outcome of the first call (a process-wide setting)


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed blocks (up to 32 MiB each, 512 MiB in all).

    Returns:
        True when the setting is in force (glibc accepted both values), False where there
        is no glibc. Idempotent: later calls return the first call's outcome.
    """
    global _applied
    if _applied is None:
        _applied = _mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) and _mallopt(
            M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    return _applied


def _mallopt(param: int, value: int) -> bool:
    """glibc's ``mallopt(param, value)``; False where libc is not glibc or refuses."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        is_glibc = hasattr(libc, "gnu_get_libc_version")   # musl has no such function
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    if not is_glibc:
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return mallopt(param, value) == 1                # glibc returns 1 on success
