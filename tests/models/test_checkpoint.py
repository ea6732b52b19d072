"""Checkpoints (minircnn/models/checkpoint.py): round trip, atomic write, clear errors."""

import json
import os

import numpy as np
import pytest

from minircnn.models import SmallVGG, load_checkpoint, read_checkpoint, save_checkpoint


def _model(seed=0, channels=(4, 8)):
    return SmallVGG(channels, rng=np.random.default_rng(seed))


def test_round_trip_rebuilds_the_same_model(tmp_path):
    model = _model(seed=3)
    path = save_checkpoint(model, tmp_path / "m.npz", {"note": "hi"},
                           extra={"step": 7, "buf": np.arange(3.0)})
    loaded = load_checkpoint(path)
    assert type(loaded) is SmallVGG and loaded.channels == (4, 8)
    a, b = model.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert np.array_equal(a[k], b[k]) and a[k].dtype == b[k].dtype
    ckpt = read_checkpoint(path)
    assert ckpt.config == {"note": "hi"} and ckpt.extra["step"] == 7
    np.testing.assert_array_equal(ckpt.extra["buf"], np.arange(3.0))
    x = np.random.default_rng(0).random((1, 3, 8, 8)).astype(np.float32)
    np.testing.assert_array_equal(model.forward(x), loaded.forward(x))


def test_atomic_write_leaves_no_temp_files(tmp_path):
    save_checkpoint(_model(), tmp_path / "sub" / "m.npz")
    save_checkpoint(_model(1), tmp_path / "sub" / "m.npz")  # overwrite in place
    assert os.listdir(tmp_path / "sub") == ["m.npz"]


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        load_checkpoint(tmp_path / "nope.npz")


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupt_file_names_the_file(tmp_path, damage):
    path = tmp_path / "m.npz"
    save_checkpoint(_model(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"not a zip" * 10)
    with pytest.raises(ValueError, match=r"m\.npz.*(corrupt|truncated)"):
        load_checkpoint(path)


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / "plain.npz"
    np.savez(path, a=np.zeros(2))
    with pytest.raises(ValueError, match="meta.json"):
        load_checkpoint(path)


def test_mismatched_shapes_and_names_are_listed(tmp_path):
    path = tmp_path / "m.npz"
    save_checkpoint(_model(), path)
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    meta = json.loads(str(arrays["meta.json"]))
    del meta["spec_sha256"]                                 # as written before the checksum
    meta["model"]["kwargs"]["channels"] = [4, 16]          # a different architecture
    arrays["meta.json"] = np.array(json.dumps(meta))
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=r"m\.npz.*layers\.3\.w: expected shape"):
        load_checkpoint(path)
    del arrays["param/layers.0.b"]
    arrays["meta.json"] = np.array(json.dumps({**meta, "model": {
        **meta["model"], "kwargs": {**meta["model"]["kwargs"], "channels": [4, 8]}}}))
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=r"missing keys: \['layers\.0\.b'\]"):
        load_checkpoint(path)


def test_model_without_get_config_needs_kwargs(tmp_path):
    from minircnn.layers.module import Module

    class Bare(Module):
        pass

    with pytest.raises(TypeError, match="get_config"):
        save_checkpoint(Bare(), tmp_path / "b.npz")
