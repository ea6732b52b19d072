import io
import json
import os

import pytest

from minircnn.utils.fileio import atomic_write, write_json


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


def _dead_pid():
    import subprocess
    import sys

    done = subprocess.Popen([sys.executable, "-c", "pass"])
    done.wait()
    return done.pid


def test_stale_temp_files_of_dead_writers_are_removed(tmp_path):
    from minircnn.utils.fileio import remove_stale_temps

    dead = tmp_path / f".tmp-{_dead_pid()}-abc-checkpoint.npz"
    mine = tmp_path / f".tmp-{os.getpid()}-def-metrics.json"
    alive = tmp_path / f".tmp-{os.getppid()}-ghi-model.npz"
    other = tmp_path / "checkpoint.npz"
    for path in (dead, mine, alive, other):
        path.write_bytes(b"x")
    assert remove_stale_temps(tmp_path) == [str(dead)]
    assert sorted(os.listdir(tmp_path)) == sorted(p.name for p in (mine, alive, other))
    assert remove_stale_temps(tmp_path / "missing") == []


def test_the_temporary_file_is_named_by_the_writer_pid(tmp_path):
    with atomic_write(tmp_path / "a.bin") as f:
        (name,) = [n for n in os.listdir(tmp_path) if n.startswith(".tmp-")]
        assert name.startswith(f".tmp-{os.getpid()}-") and name.endswith("-a.bin")
        f.write(b"data")
    assert os.listdir(tmp_path) == ["a.bin"]


def test_json_is_strict_nan_and_infinity_become_null_numpy_values_plain(tmp_path):
    import numpy as np

    from minircnn.utils.fileio import dumps_json

    obj = {"large": float("nan"), "inf": np.float32("inf"), "ap": np.float64(0.5),
           "counts": np.arange(3), np.int64(2): (1.5, -float("inf"))}
    expected = {"large": None, "inf": None, "ap": 0.5, "counts": [0, 1, 2], "2": [1.5, None]}
    assert json.loads(dumps_json(obj)) == expected
    path = tmp_path / "m.json"
    write_json(path, obj)
    assert "NaN" not in path.read_text() and "Infinity" not in path.read_text()
    assert json.loads(path.read_text()) == expected


def test_a_failed_write_names_the_file_not_the_temporary(tmp_path, monkeypatch):
    """A full disk (ENOSPC while writing) or a refused replace: the error names path."""
    import errno

    path = tmp_path / "checkpoint.npz"
    with pytest.raises(OSError) as info:
        with atomic_write(path) as f:
            raise OSError(errno.ENOSPC, "No space left on device")
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(path)

    def refuse(src, dst):
        raise PermissionError(errno.EACCES, "Permission denied", src, None, dst)
    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(PermissionError) as info:
        with atomic_write(path) as f:
            f.write(b"x")
    assert info.value.filename == str(path) and ".tmp-" not in str(info.value)
    assert os.listdir(tmp_path) == []                 # and no temporary file left behind


def test_progress_is_a_bar_on_a_terminal_and_lines_in_a_log(monkeypatch, capsys):
    """Piped to a file: no carriage returns or cursor escapes, one summary line per call
    and one closing line; TQDM_DISABLE=1 silences it."""
    from minircnn.utils import progress

    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    monkeypatch.setattr(progress, "_on_terminal", lambda: False)
    with progress.progress_bar(100, "train") as bar:
        for _ in range(100):
            bar.update(1)
            bar.set_postfix(loss="0.5")
        progress.summary(bar, "epoch 1/1: loss 0.500")
    err = capsys.readouterr().err
    assert err == "train: epoch 1/1: loss 0.500\n" + err.splitlines()[1] + "\n"
    assert err.splitlines()[1].startswith("train: 100/100 done in ")
    assert "\r" not in err and "\x1b" not in err
    monkeypatch.setenv("TQDM_DISABLE", "1")
    with progress.progress_bar(10, "quiet") as bar:
        bar.update(10)
        progress.summary(bar, "never printed")
    assert capsys.readouterr().err == ""


def test_progress_bar_on_a_terminal_starts_no_thread(monkeypatch):
    """tqdm's class starts a monitor thread that lives as long as the process; with it,
    the evaluation after training would detect in one process, not in workers."""
    import threading

    from tqdm import tqdm

    from minircnn.utils import progress

    for cls in (tqdm, progress._bar_class()):     # monitors started earlier in this process
        if cls.monitor is not None:
            cls.monitor.exit()
            cls.monitor = None
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    monkeypatch.setattr(progress, "_on_terminal", lambda: True)
    before = set(threading.enumerate())
    with progress.progress_bar(5, "train", file=io.StringIO()) as bar:
        bar.update(5)
    assert set(threading.enumerate()) <= before
