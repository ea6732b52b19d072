"""Plain data over a pipe, without pickle: what the judge and the student process exchange.

A message is a frame: ``MRCN`` + its length (8 bytes, big-endian) + one encoded value.
A value is a one-byte tag and its payload:

    N None        T True        F False       i int (decimal text, at most 4300 digits)
    f float (8 bytes)           c complex (16 bytes)           s str (UTF-8)
    l list        t tuple       d dict (str keys)              r Ref (judge -> student only)
    a ndarray: dtype text ("<f8"), ndim, shape, then the C-order bytes

Only exact types are encoded: a ``float`` subclass whose ``__eq__`` always agrees is
refused, not trusted (NumPy scalars such as ``np.float64`` become the Python number;
bool/int/uint/float/complex arrays are sent as C-contiguous, native-order copies).
Decoding builds fresh plain objects and checks every length against the bytes that
are left, so a malformed or hostile frame raises :class:`CodecError`, never more.
"""

from __future__ import annotations

import os
import select
import struct
import time

import numpy as np

MAGIC = b"MRCN"
MAX_DEPTH = 64
MAX_INT_DIGITS = 4300       # Python's own int <-> str limit
MAX_ITEMS = 2**22           # values in one message: a flood of tiny objects is refused
ARRAY_KINDS = "biufc"       # bool, int, uint, float, complex: the plain numeric dtypes

__all__ = ["CodecError", "Ref", "decode", "encode", "read_frame", "write_frame"]


class CodecError(ValueError):
    """A value that is not plain data, or bytes that are not a well-formed message."""


class Ref:
    """A name in the student's notebook (``student.ref("models")["R-CNN"]``), passed by
    name: the judge never receives the object, only what the student's function returns."""

    def __init__(self, path: tuple):
        self.path = path

    def __getitem__(self, key) -> Ref:
        return Ref((*self.path, key))

    def __repr__(self) -> str:
        return self.path[0] + "".join(f"[{k!r}]" for k in self.path[1:])


# --------------------------------------------------------------------------------------
# Encoding.
# --------------------------------------------------------------------------------------
def encode(value) -> bytes:
    """The bytes of a plain value. Raises CodecError naming what is not plain data."""
    out: list[bytes] = []
    _encode(value, out, 0, "the value")
    return b"".join(out)


def _encode(value, out: list, depth: int, where: str) -> None:
    if depth > MAX_DEPTH:
        raise CodecError(f"{where} is nested more than {MAX_DEPTH} levels deep")
    kind = type(value)
    if value is None or kind is bool:
        out.append({None: b"N", True: b"T", False: b"F"}[value])
    elif kind is int:
        digits = str(value).encode()
        out += [b"i", _size(len(digits)), digits]
    elif kind is float:
        out += [b"f", struct.pack(">d", value)]
    elif kind is complex:
        out += [b"c", struct.pack(">dd", value.real, value.imag)]
    elif kind is str:
        text = value.encode("utf-8", "surrogatepass")
        out += [b"s", _size(len(text)), text]
    elif kind in (list, tuple):
        out += [b"l" if kind is list else b"t", _size(len(value))]
        for i, item in enumerate(value):
            _encode(item, out, depth + 1, f"{where}[{i}]")
    elif kind is dict:
        out += [b"d", _size(len(value))]
        for key, item in value.items():
            if type(key) is not str:
                raise CodecError(f"{where} has a {type(key).__name__} key: only str keys")
            _encode(key, out, depth + 1, where)
            _encode(item, out, depth + 1, f"{where}[{key!r}]")
    elif kind is Ref:
        out.append(b"r")
        _encode(tuple(value.path), out, depth + 1, where)
    elif kind is np.ndarray:
        _encode_array(value, out, where)
    elif isinstance(value, np.generic) and value.dtype.kind in ARRAY_KINDS:
        _encode(value.item(), out, depth, where)          # np.float64(2.0) -> 2.0
    else:
        raise CodecError(f"{where} is a {kind.__module__}.{kind.__qualname__}: send plain "
                         "data (numpy arrays, int, float, bool, str, None, lists, tuples, "
                         "dicts with str keys)")


def _encode_array(array: np.ndarray, out: list, where: str) -> None:
    if array.dtype.kind not in ARRAY_KINDS or array.dtype.fields is not None:
        raise CodecError(f"{where} is an array of dtype {array.dtype}: only bool, int, "
                         "uint, float and complex arrays")
    plain = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("="))
    dtype = plain.dtype.str.encode()
    out += [b"a", _size(len(dtype)), dtype, _size(plain.ndim)]
    out += [_size(n) for n in plain.shape]
    out.append(plain.tobytes())


def _size(n: int) -> bytes:
    return struct.pack(">Q", n)


# --------------------------------------------------------------------------------------
# Decoding: every length is checked against the bytes left.
# --------------------------------------------------------------------------------------
class _Reader:
    def __init__(self, data: bytes, refs: bool):
        self.data, self.pos, self.refs, self.items = memoryview(data), 0, refs, 0

    def take(self, n: int) -> memoryview:
        if n > len(self.data) - self.pos:
            raise CodecError(f"truncated message: {n} bytes wanted at byte {self.pos}")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def size(self) -> int:
        return struct.unpack(">Q", self.take(8))[0]


def decode(data: bytes, *, refs: bool = False):
    """The value ``data`` encodes, as fresh plain objects. ``refs``: accept Ref (student side)."""
    reader = _Reader(data, refs)
    value = _decode(reader, 0)
    if reader.pos != len(data):
        raise CodecError(f"{len(data) - reader.pos} stray bytes after the value")
    return value


def _decode(r: _Reader, depth: int):
    if depth > MAX_DEPTH:
        raise CodecError(f"value nested more than {MAX_DEPTH} levels deep")
    tag = bytes(r.take(1))
    fixed = {b"N": None, b"T": True, b"F": False}
    if tag in fixed:
        return fixed[tag]
    if tag == b"i":
        n = r.size()
        if n > MAX_INT_DIGITS:
            raise CodecError(f"an int of {n} digits")
        try:
            return int(bytes(r.take(n)).decode("ascii"))
        except (UnicodeDecodeError, ValueError) as err:
            raise CodecError("a malformed int") from err
    if tag == b"f":
        return struct.unpack(">d", r.take(8))[0]
    if tag == b"c":
        return complex(*struct.unpack(">dd", r.take(16)))
    if tag == b"s":
        try:
            return bytes(r.take(r.size())).decode("utf-8", "surrogatepass")
        except UnicodeDecodeError as err:
            raise CodecError("a str that is not UTF-8") from err
    if tag in (b"l", b"t"):
        items = [_decode(r, depth + 1) for _ in range(_count(r))]
        return items if tag == b"l" else tuple(items)
    if tag == b"d":
        return _decode_dict(r, depth)
    if tag == b"a":
        return _decode_array(r)
    if tag == b"r" and r.refs:
        path = _decode(r, depth + 1)
        if type(path) is not tuple or not path or type(path[0]) is not str:
            raise CodecError("a malformed Ref")
        return Ref(path)
    raise CodecError(f"unknown tag {tag!r} at byte {r.pos - 1}")


def _count(r: _Reader) -> int:
    n = r.size()
    if n > len(r.data) - r.pos:   # every item takes at least one byte
        raise CodecError(f"a container of {n} items in a message that cannot hold them")
    r.items += n
    if r.items > MAX_ITEMS:
        raise CodecError(f"more than {MAX_ITEMS} values in one message: send arrays")
    return n


def _decode_dict(r: _Reader, depth: int) -> dict:
    result = {}
    for _ in range(_count(r)):
        key = _decode(r, depth + 1)
        if type(key) is not str:
            raise CodecError(f"a dict key of type {type(key).__name__}")
        result[key] = _decode(r, depth + 1)
    return result


def _decode_array(r: _Reader) -> np.ndarray:
    text = bytes(r.take(r.size()))
    try:
        dtype = np.dtype(text.decode("ascii"))
    except (UnicodeDecodeError, TypeError, ValueError) as err:
        raise CodecError(f"an array of unknown dtype {text[:20]!r}") from err
    if dtype.kind not in ARRAY_KINDS or dtype.fields is not None or dtype.subdtype:
        raise CodecError(f"an array of dtype {dtype}: only plain numeric dtypes")
    ndim = r.size()
    if ndim > 32:
        raise CodecError(f"an array of {ndim} dimensions")
    shape = tuple(r.size() for _ in range(ndim))
    count = 1
    for n in shape:
        count *= n
    nbytes = count * dtype.itemsize
    if nbytes > len(r.data) - r.pos:
        raise CodecError(f"an array of shape {shape} that the message does not hold")
    return np.frombuffer(r.take(nbytes), dtype=dtype).reshape(shape).copy()


# --------------------------------------------------------------------------------------
# Frames on a file descriptor.
# --------------------------------------------------------------------------------------
def write_frame(fd: int, value, *, deadline: float | None = None) -> None:
    """Encode ``value`` and write it to ``fd`` as one frame.

    With a ``deadline`` (time.monotonic()) ``fd`` must be non-blocking: a reader that
    stops reading raises TimeoutError instead of blocking the writer for ever.
    """
    payload = encode(value)
    data = memoryview(MAGIC + _size(len(payload)) + payload)
    while data:
        if deadline is not None:
            wait = deadline - time.monotonic()
            if wait <= 0 or not select.select([], [fd], [], wait)[1]:
                raise TimeoutError("the other end stopped reading")
        try:
            data = data[os.write(fd, data):]
        except BlockingIOError:
            continue


def read_frame(fd: int, *, deadline: float | None = None, max_bytes: int = 2**30,
               refs: bool = False):
    """Read one frame from ``fd`` and decode it.

    Raises:
        TimeoutError: ``deadline`` (time.monotonic()) passed first.
        EOFError: the other end closed the pipe.
        CodecError: a malformed frame, or one longer than ``max_bytes``.
    """
    header = _read_exactly(fd, len(MAGIC) + 8, deadline)
    if header[:len(MAGIC)] != MAGIC:
        raise CodecError(f"not a message: it starts with {header[:12]!r}")
    length = struct.unpack(">Q", header[len(MAGIC):])[0]
    if length > max_bytes:
        raise CodecError(f"a message of {length} bytes (the limit is {max_bytes})")
    return decode(_read_exactly(fd, length, deadline), refs=refs)


def _read_exactly(fd: int, n: int, deadline: float | None) -> bytes:
    chunks, left = [], n
    while left:
        if deadline is not None:
            wait = deadline - time.monotonic()
            if wait <= 0 or not select.select([fd], [], [], wait)[0]:
                raise TimeoutError("no answer before the time limit")
        chunk = os.read(fd, min(left, 2**20))
        if not chunk:
            raise EOFError("the other end closed the pipe")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)
