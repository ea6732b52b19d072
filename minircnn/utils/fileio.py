"""Atomic file writing: nothing is lost if a run crashes mid-write.

Every file minircnn writes that a later run reads (checkpoints, proposal caches,
metrics, figures, COCO json) goes through ``atomic_write``: the bytes go to a temporary
file ``.tmp-<pid>-<random>-<name>`` in the destination folder, are flushed to the disk
(fsync), and only then is the complete file moved over the old one with ``os.replace``
(atomic on POSIX and Windows); the folder is synced after, so the new name survives a
power cut too. A crash leaves the previous file intact. A process killed mid-write
(kill -9) leaves its temporary file behind: ``remove_stale_temps`` deletes those whose
writer is no longer running, and runs call it on their folders at start.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

_TEMP_NAME = re.compile(r"^\.tmp-(\d+)-")   # .tmp-<pid>-...: the writer's process id


@contextmanager
def atomic_write(path, mode: str = "wb") -> Iterator:
    """Open a temporary file for writing; on success move it to ``path``.

    Example:
        >>> with atomic_write("run/metrics.json", "w") as f:
        ...     json.dump(metrics, f)

    The folder is created if needed. On an exception the temporary file is removed
    and ``path`` keeps its old content; an OSError (a full disk, a file that cannot be
    replaced) is raised again naming ``path``, never the temporary file.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".tmp-{os.getpid()}-",
                               suffix="-" + os.path.basename(path))
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())       # the bytes are on disk before the name points at them
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; use the usual permissions
        os.replace(tmp, path)
        _fsync_folder(folder)          # and the rename itself is on disk
    except BaseException as e:
        if os.path.exists(tmp):
            os.remove(tmp)
        if isinstance(e, OSError) and e.errno is not None:   # the user's file, not ours
            raise type(e)(e.errno, e.strerror, path) from e
        raise


def _fsync_folder(folder: str) -> None:
    """fsync a folder's entry list (POSIX); Windows cannot open folders, nothing to do."""
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def json_ready(obj):
    """``obj`` with NaN and infinities as None (JSON ``null``) and NumPy values as Python's.

    JSON has no NaN: Python's ``json`` writes a bare ``NaN`` that other readers (JavaScript,
    ``jq``, most JSON libraries) refuse. minircnn's undefined numbers are NaN (e.g. the AP
    of an object size the dataset has no object of) and become ``null``.
    """
    if isinstance(obj, dict):
        return {_json_key(k): json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_ready(v) for v in obj]
    if hasattr(obj, "tolist") and not isinstance(obj, (str, bytes)):   # NumPy array or scalar
        return json_ready(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _json_key(key):
    """A dict key as JSON allows it (str, int, float, bool, None); NumPy scalars unwrapped."""
    return key.item() if hasattr(key, "item") else key


def dumps_json(obj, *, indent: int | None = 2) -> str:
    """Strict JSON text of ``obj`` (``json_ready`` first, then ``allow_nan=False``)."""
    return json.dumps(json_ready(obj), indent=indent, allow_nan=False)


def write_json(path, obj, *, indent: int | None = 2) -> str:
    """Strict JSON (``dumps_json``) to ``path`` atomically; returns ``path`` as a string."""
    text = dumps_json(obj, indent=indent)    # fails before the file is touched
    with atomic_write(path, "w") as f:
        f.write(text + "\n")
    return os.fspath(path)


def pid_alive(pid: int) -> bool:
    """True when a process with this id runs (or exists but belongs to another user)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)              # signal 0: only checks that the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:                  # Windows: an invalid pid raises OSError
        return False
    return True


def remove_stale_temps(folder) -> list[str]:
    """Delete the ``.tmp-<pid>-*`` files in ``folder`` whose writer no longer runs.

    Returns:
        the paths removed (none when the folder does not exist).
    """
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        return []
    removed = []
    for name in os.listdir(folder):
        match = _TEMP_NAME.match(name)
        if match and int(match.group(1)) != os.getpid() and not pid_alive(int(match.group(1))):
            try:
                os.remove(os.path.join(folder, name))
                removed.append(os.path.join(folder, name))
            except FileNotFoundError:   # another process cleaned it first
                pass
    return removed
