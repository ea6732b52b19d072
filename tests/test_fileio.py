import json
import os

import pytest

from minircnn.fileio import atomic_write, write_json


def test_write_json_round_trip_and_usual_permissions(tmp_path):
    path = tmp_path / "sub" / "m.json"
    write_json(path, {"a": [1, 2]})
    assert json.loads(path.read_text()) == {"a": [1, 2]}
    umask = os.umask(0)
    os.umask(umask)
    assert (path.stat().st_mode & 0o777) == (0o666 & ~umask)
    assert os.listdir(path.parent) == ["m.json"]  # no temporary file left behind


def test_a_crash_mid_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "ckpt.bin"
    path.write_bytes(b"good")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_write(path, "wb") as f:
            f.write(b"half")
            raise RuntimeError("boom")
    assert path.read_bytes() == b"good"
    assert os.listdir(tmp_path) == ["ckpt.bin"]
