"""Checkpoints are untrusted files: no code named by the file runs, sizes are checked
from the archive's headers before anything is unpacked or built."""

import io
import json
import sys
import zipfile

import numpy as np
import pytest

from minircnn.layers import Linear
from minircnn.layers.module import Module
from minircnn.models import (
    FastRCNN,
    SmallVGG,
    load_checkpoint,
    read_checkpoint,
    register_model,
    save_checkpoint,
)
from minircnn.models.checkpoint import MAX_PARAMETERS, _count_parameters, _model_spec


def _small_detector():
    return FastRCNN(3, SmallVGG(channels=(4, 4)), hidden=8)


def _arrays(path):
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def _rewrite_meta(path, edit):
    arrays = _arrays(path)
    meta = json.loads(str(arrays["meta.json"]))
    meta.pop("spec_sha256", None)          # as written before the checksum: the spec is read
    edit(meta)
    arrays["meta.json"] = np.array(json.dumps(meta))
    np.savez(path, **arrays)


def _npy_header(shape, dtype=np.float32) -> bytes:
    buffer = io.BytesIO()
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
              "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(buffer, header)
    return buffer.getvalue()


def test_a_module_named_by_the_file_is_never_imported(tmp_path, monkeypatch):
    sentinel = tmp_path / "payload_ran"
    package = tmp_path / "evil_i11"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "payload.py").write_text(
        f"open({str(sentinel)!r}, 'w').write('ran')\n"
        "from minircnn.models import FastRCNN, SmallVGG  # noqa\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    path = tmp_path / "c.npz"
    save_checkpoint(_small_detector(), path)
    for module in ("evil_i11.payload", "tests.payload"):
        _rewrite_meta(path, lambda m, module=module: m["model"].update(module=module))
        model = load_checkpoint(path)             # the class comes from the registry
        assert type(model) is FastRCNN
    _rewrite_meta(path, lambda m: m["model"].update({"class": "payload"}))
    with pytest.raises(ValueError, match="unknown model class 'payload'"):
        load_checkpoint(path)
    assert not sentinel.exists()
    assert "evil_i11.payload" not in sys.modules


def test_programs_register_their_own_models(tmp_path):
    class TinyHead(Module):
        def __init__(self, width: int = 3):
            self.fc = Linear(width, 2)
            self.width = width

        def get_config(self):
            return {"width": self.width}

    path = tmp_path / "tiny.npz"
    save_checkpoint(TinyHead(5), path)
    with pytest.raises(ValueError, match="unknown model class 'TinyHead'"):
        load_checkpoint(path)
    register_model(TinyHead, count_parameters=lambda kw: 3 * kw["width"])
    assert load_checkpoint(path).width == 5
    with pytest.raises(TypeError, match="Module subclass"):
        register_model(dict)


def test_a_huge_config_is_refused_before_building(tmp_path):
    path = tmp_path / "big.npz"
    save_checkpoint(_small_detector(), path)
    _rewrite_meta(path, lambda m: m["model"]["kwargs"].update(hidden=100000))
    with pytest.raises(ValueError, match=r"would hold [\d,]+ values, more than"):
        load_checkpoint(path)


def test_parameter_counts_match_the_built_models():
    for model in (_small_detector(), SmallVGG(channels=(4, 8), batch_norm=True),
                  FastRCNN(2, SmallVGG(channels=(3, 5)), output_size=(2, 3), hidden=4)):
        built = sum(int(np.prod(v.shape)) for v in model.state_dict().values())
        assert _count_parameters(_model_spec(model)) == built  # the size check's counter


def test_malformed_config_is_named(tmp_path):
    path = tmp_path / "bad.npz"
    save_checkpoint(_small_detector(), path)
    _rewrite_meta(path, lambda m: m["model"]["kwargs"].update(hidden="wide"))
    with pytest.raises(ValueError, match="hidden"):
        load_checkpoint(path)
    _rewrite_meta(path, lambda m: m["model"].update(kwargs=[1]))
    with pytest.raises(ValueError, match="model spec must be"):
        load_checkpoint(path)


def test_an_entry_that_unpacks_past_its_header_is_refused(tmp_path):
    """A zip bomb: 3 floats declared, 64 MiB of zeros stored compressed."""
    path = tmp_path / "bomb.npz"
    save_checkpoint(_small_detector(), path)
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("extra/zz.npy", _npy_header((3,)) + bytes(64 << 20))
    assert path.stat().st_size < 1 << 20
    for read in (load_checkpoint, read_checkpoint):
        with pytest.raises(ValueError, match=r"bomb\.npz.*extra/zz.*unpacks to"):
            read(path)


def test_headers_are_compared_before_reading_data(tmp_path):
    """An entry declaring 10**9 values is refused from its header: its data is absent."""
    path = tmp_path / "huge.npz"
    save_checkpoint(_small_detector(), path)
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("param/zz.npy", _npy_header((10**9,)))
    for read in (load_checkpoint, read_checkpoint):     # both judge the file by its headers
        with pytest.raises(ValueError, match=f"more than the {MAX_PARAMETERS:,}"):
            read(path)


def test_dtype_differences_are_listed(tmp_path):
    path = tmp_path / "dt.npz"
    save_checkpoint(_small_detector(), path)
    arrays = _arrays(path)
    arrays["param/fc7.b"] = arrays["param/fc7.b"].astype(np.float64)
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=r"fc7\.b: expected dtype float32, got float64"):
        load_checkpoint(path)


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 truncated", b"\x93NUMPY plain npy"])
def test_not_an_archive_names_the_file(tmp_path, content):
    path = tmp_path / "x.npz"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=r"x\.npz.*not a readable \.npz"):
        load_checkpoint(path)


def test_a_plain_npy_names_the_file(tmp_path):
    path = tmp_path / "a.npy"
    np.save(path, np.ones(3))
    with pytest.raises(ValueError, match=r"a\.npy.*not a readable \.npz"):
        load_checkpoint(path)


def test_the_class_list_travels_with_the_model(tmp_path):
    model = FastRCNN(2, SmallVGG(channels=(4, 4)), hidden=8, classes=("cat", "dog"))
    path = tmp_path / "pets.npz"
    save_checkpoint(model, path)
    assert load_checkpoint(path).classes == ("cat", "dog")
    with pytest.raises(ValueError, match="2 distinct names"):
        FastRCNN(2, SmallVGG(channels=(4, 4)), classes=("cat",))


def test_an_edited_model_spec_is_refused(tmp_path):
    """RoIAlign edited to RoI pooling by hand: the same weight shapes, another model."""
    path = tmp_path / "m.npz"
    save_checkpoint(_small_detector(), path)
    arrays = _arrays(path)
    meta = json.loads(str(arrays["meta.json"]))
    assert meta["model"]["kwargs"]["roi_op"] == "align"
    meta["model"]["kwargs"]["roi_op"] = "pool"
    arrays["meta.json"] = np.array(json.dumps(meta))
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=r"m\.npz.*model spec was edited after saving"):
        load_checkpoint(path)


def test_a_huge_string_entry_is_refused_from_its_header(tmp_path):
    """1.5 M strings of 1,000 bytes compress to ~2 MiB but unpack to 1.5 GB: refused
    before any entry is read, by read_checkpoint as by load_checkpoint."""
    path = tmp_path / "m.npz"
    save_checkpoint(_small_detector(), path)
    arrays = _arrays(path)
    arrays["param/junk"] = np.zeros(4, dtype="S1000")
    np.savez(path, **arrays)
    for read in (read_checkpoint, load_checkpoint):
        with pytest.raises(ValueError, match=r"entry 'param/junk' holds \|S1000 values"):
            read(path)
    arrays.pop("param/junk")
    arrays["stray"] = np.zeros(3)
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match="unexpected entry 'stray'"):
        read_checkpoint(path)


def test_nan_weights_name_the_checkpoint_and_the_weight(tmp_path):
    path = tmp_path / "diverged.npz"
    model = _small_detector()
    model.fc6.w.data[0, 0] = np.nan
    save_checkpoint(model, path)
    with pytest.raises(ValueError, match=r"diverged\.npz.*weight 'fc6\.w' holds NaN or inf"):
        load_checkpoint(path)
