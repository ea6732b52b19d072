"""minircnn.classroom.codec: plain data both ways, and nothing else."""

import os
import struct

import numpy as np
import pytest

from minircnn.classroom.codec import (
    MAGIC,
    CodecError,
    Ref,
    decode,
    encode,
    read_frame,
    write_frame,
)


def test_plain_values_round_trip_with_their_exact_types():
    value = {"a": [1, -2**70, 2.5, 1 + 2j, True, None, "é"], "b": (np.arange(6).reshape(2, 3),),
             "c": np.array([[1.5, -0.0]], dtype=">f4"), "d": np.zeros((0, 4), bool)}
    back = decode(encode(value))
    assert back.keys() == value.keys() and back["a"] == value["a"]
    assert [type(v) for v in back["a"]] == [int, int, float, complex, bool, type(None), str]
    assert type(back["b"]) is tuple and np.array_equal(back["b"][0], value["b"][0])
    assert back["c"].dtype == np.float32 and back["c"].dtype.isnative
    assert np.array_equal(back["c"], value["c"]) and back["d"].shape == (0, 4)
    assert back["b"][0].flags.writeable and back["b"][0].flags.c_contiguous


def test_numpy_scalars_become_python_numbers_and_views_are_copied():
    back = decode(encode([np.float64(2.5), np.int64(3), np.bool_(True), np.arange(10)[::3]]))
    assert back[:3] == [2.5, 3, True] and [type(v) for v in back[:3]] == [float, int, bool]
    assert back[3].tolist() == [0, 3, 6, 9]


class LyingFloat(float):
    def __eq__(self, other):
        return True

    def __sub__(self, other):
        return 0.0


class LyingList(list):
    def __eq__(self, other):
        return True


@pytest.mark.parametrize("value, named", [
    (LyingFloat(1.0), "LyingFloat"), (LyingList([1]), "LyingList"),
    (np.ma.array([1.0]), "MaskedArray"), (np.array([object()]), "dtype object"),
    (np.zeros(2, dtype=[("x", "f8")]), "only bool"), ({1: 2}, "int key"),
    (lambda: 0, "function"), (np.arange(3).view(np.recarray), "recarray"), ({"k": {1.0}}, "set"),
])
def test_anything_else_is_refused_by_name(value, named):
    with pytest.raises(CodecError, match=named):
        encode(value)


def test_refs_only_where_asked_for():
    data = encode([Ref(("models",))["R-CNN"]])
    assert decode(data, refs=True)[0].path == ("models", "R-CNN")
    with pytest.raises(CodecError, match="unknown tag"):
        decode(data)


@pytest.mark.parametrize("data, why", [
    (b"", "truncated"), (b"Z", "unknown tag"), (b"s" + struct.pack(">Q", 2**40), "truncated"),
    (b"l" + struct.pack(">Q", 2**60), "cannot hold"), (b"N N", "stray bytes"),
    (b"i" + struct.pack(">Q", 3) + b"1x2", "malformed int"),
    (b"a" + struct.pack(">Q", 3) + b"|O8" + struct.pack(">Q", 0), "plain numeric"),
    (b"a" + struct.pack(">Q", 3) + b"<f8" + struct.pack(">QQ", 1, 2**40), "does not hold"),
    ((b"l" + struct.pack(">Q", 1)) * 100 + b"N", "nested"),
], ids=["empty", "tag", "long str", "huge list", "stray", "int", "object dtype", "big array",
        "deep"])
def test_malformed_bytes_raise_codec_error_only(data, why):
    with pytest.raises(CodecError, match=why):
        decode(data)


def test_a_flood_of_small_values_is_refused(monkeypatch):
    import minircnn.classroom.codec as codec

    monkeypatch.setattr(codec, "MAX_ITEMS", 1000)          # 2**22 in use: the same check
    assert decode(encode([[0] * 500, [0] * 498])) == [[0] * 500, [0] * 498]   # 1000 values
    with pytest.raises(CodecError, match="send arrays"):
        decode(encode([[0] * 500, [0] * 499]))


def test_frames_on_a_pipe_and_what_goes_wrong_there():
    read, write = os.pipe()
    try:
        write_frame(write, {"value": np.ones(3)})
        assert read_frame(read, deadline=None)["value"].tolist() == [1.0, 1.0, 1.0]
        os.write(write, b"garbage!GARB")                         # one header long
        with pytest.raises(CodecError, match="not a message"):
            read_frame(read)
        os.write(write, MAGIC + struct.pack(">Q", 2**40))
        with pytest.raises(CodecError, match="the limit is"):
            read_frame(read, max_bytes=2**20)
        import time
        with pytest.raises(TimeoutError):
            read_frame(read, deadline=time.monotonic() + 0.05)
    finally:
        os.close(write)
    with pytest.raises(EOFError):
        read_frame(read)
    os.close(read)


def test_a_reader_that_stops_reading_times_the_writer_out():
    import time

    read, write = os.pipe()
    os.set_blocking(write, False)
    try:
        with pytest.raises(TimeoutError, match="stopped reading"):   # 8 MB > a pipe's buffer
            write_frame(write, np.zeros(2**20), deadline=time.monotonic() + 0.2)
    finally:
        os.close(read)
        os.close(write)
