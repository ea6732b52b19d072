"""Atomic file writing: nothing is lost if a run crashes mid-write.

Every file minircnn writes that a later run reads (checkpoints, proposal caches,
metrics, figures, COCO json) goes through ``atomic_write``: the bytes go to a temporary
file in the destination folder, and only a complete file is moved over the old one with
``os.replace`` (atomic on POSIX and Windows). A crash leaves the previous file intact.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def atomic_write(path, mode: str = "wb") -> Iterator:
    """Open a temporary file for writing; on success move it to ``path``.

    Example:
        >>> with atomic_write("run/metrics.json", "w") as f:
        ...     json.dump(metrics, f)

    The folder is created if needed. On an exception the temporary file is removed
    and ``path`` keeps its old content.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix="-" + os.path.basename(path))
    try:
        with os.fdopen(fd, mode) as f:
            yield f
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; use the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_json(path, obj, *, indent: int | None = 2) -> str:
    """``json.dump(obj)`` to ``path`` atomically; returns ``path`` as a string."""
    with atomic_write(path, "w") as f:
        json.dump(obj, f, indent=indent)
    return os.fspath(path)
