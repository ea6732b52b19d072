"""Reading an untrusted ``.npz`` safely: its directory first, the data only after checks.

An ``.npz`` is a zip of ``.npy`` files. Each ``.npy`` starts with a small header that
states the array's shape and dtype, and the zip directory states each entry's size once
uncompressed. Both can be read without decompressing any data, so a checkpoint can be
checked against what the rebuilt model expects before a single byte of weights is
unpacked: a file of compressed zeros that would unpack to gigabytes is refused in
milliseconds, without allocating.
"""

from __future__ import annotations

import math
import zipfile
from typing import NamedTuple

import numpy as np

# Slack allowed between the size a zip entry declares once uncompressed and the size its
# .npy header implies (header padding, at most a few KiB in NumPy's own files).
HEADER_SLACK = 1 << 16


class Entry(NamedTuple):
    """One array of an .npz, as its headers describe it (nothing decompressed)."""

    shape: tuple       # from the .npy header
    dtype: np.dtype    # from the .npy header
    nbytes: int        # prod(shape) * itemsize: what reading it allocates
    stored: int        # size of the entry once uncompressed, from the zip directory


def _read_npy_header(stream) -> tuple[tuple, np.dtype]:
    version = np.lib.format.read_magic(stream)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(stream)
    elif version == (2, 0):
        shape, _, dtype = np.lib.format.read_array_header_2_0(stream)
    else:
        raise ValueError(f".npy format version {version} is not supported")
    return tuple(int(s) for s in shape), np.dtype(dtype)


def read_directory(path: str, what: str = "file") -> dict[str, Entry]:
    """Name -> Entry for every array of the .npz at ``path``, from headers only.

    Refuses (ValueError naming ``path``): not a zip archive (a plain .npy, a truncated
    file), an entry that is not an .npy, an object dtype (would need pickle), and an
    entry whose declared uncompressed size is larger than its .npy header implies (a
    decompression bomb, or a corrupt file).
    """
    entries = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if not info.filename.endswith(".npy"):
                    raise ValueError(f"entry {info.filename!r} is not an .npy array")
                with archive.open(info) as stream:
                    shape, dtype = _read_npy_header(stream)
                if dtype.hasobject:
                    raise ValueError(f"entry {info.filename!r} holds Python objects "
                                     "(dtype object), which are never loaded")
                nbytes = math.prod(shape) * dtype.itemsize
                if info.file_size > nbytes + HEADER_SLACK:
                    raise ValueError(f"entry {info.filename!r} unpacks to {info.file_size} "
                                     f"bytes but its header describes {nbytes} bytes of "
                                     f"{dtype} {shape}")
                entries[info.filename[:-len(".npy")]] = Entry(shape, dtype, nbytes,
                                                              info.file_size)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError,
            KeyError, SyntaxError, TypeError) as e:
        raise ValueError(f"{what} {path!r} is not a readable .npz archive (truncated, "
                         f"corrupt, a plain .npy or another format): {e}") from e
    return entries


def read_entries(path: str, names, what: str = "file") -> dict[str, np.ndarray]:
    """Read the arrays ``names`` of the .npz at ``path`` (after ``read_directory``)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return {name: data[name] for name in names}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as e:
        raise ValueError(f"{what} {path!r} is corrupt or truncated: {e}") from e
