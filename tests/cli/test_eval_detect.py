"""minircnn/cli/eval_detect.py: reading images of every common kind, and eval's proposal cache."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from minircnn.cli.eval_detect import read_image
from minircnn.detection.proposal_cache import proposal_cache_dir
from minircnn.utils.errors import UserError

RGB = (np.arange(24 * 32 * 3).reshape(24, 32, 3) * 7 % 256).astype(np.uint8)   # (H, W, 3)
EXPECTED = RGB.transpose(2, 0, 1) / 255.0                                          # (3, H, W)


def _gray(rgb):  # Pillow's RGB -> L (ITU-R 601-2 luma), rounded as Pillow does
    return np.asarray(Image.fromarray(rgb).convert("L"))


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "P"])
def test_8_bit_color_images_scale_to_0_1(tmp_path, mode):
    path = tmp_path / f"{mode}.png"
    image = Image.fromarray(RGB).convert(mode)
    image.save(path)
    expected = np.asarray(image.convert("RGB")).transpose(2, 0, 1) / 255.0
    got = read_image(path)
    assert got.dtype == np.float32 and got.shape == (3, 24, 32)
    np.testing.assert_allclose(got, expected, atol=1e-7)
    if mode != "P":                                   # the palette quantises colours
        np.testing.assert_allclose(got, EXPECTED, atol=1e-7)


@pytest.mark.parametrize("mode", ["L", "LA"])
def test_8_bit_gray_repeats_to_three_channels(tmp_path, mode):
    path = tmp_path / "gray.png"
    Image.fromarray(RGB).convert(mode).save(path)
    got = read_image(path)
    np.testing.assert_allclose(got, np.stack([_gray(RGB) / 255.0] * 3), atol=1e-7)


def test_16_bit_gray_reads_like_its_8_bit_version(tmp_path):
    gray8 = _gray(RGB)
    path = tmp_path / "gray16.png"
    Image.fromarray(gray8.astype(np.uint16) * 257).save(path)   # 255 * 257 = 65535
    got = read_image(path)
    np.testing.assert_allclose(got, np.stack([gray8 / 255.0] * 3), atol=1e-6)
    assert got.max() > 0.5                       # not 1/256 of the value, as it once was


def test_1_bit_image_reads_as_0_and_1(tmp_path):
    path = tmp_path / "bits.png"
    Image.fromarray(RGB[:, :, 0] > 100).save(path)
    got = read_image(path)
    np.testing.assert_array_equal(got[0], (RGB[:, :, 0] > 100).astype(np.float32))


def test_jpeg_rgb_and_cmyk(tmp_path):
    smooth = np.repeat(np.linspace(0, 255, 32, dtype=np.uint8)[None, :, None], 24, 0)
    smooth = np.repeat(smooth, 3, axis=2)                                  # (24, 32, 3)
    for mode in ("RGB", "CMYK"):
        path = tmp_path / f"{mode}.jpg"
        Image.fromarray(smooth).convert(mode).save(path, quality=95)
        got = read_image(path)
        assert got.shape == (3, 24, 32)
        assert np.abs(got - smooth.transpose(2, 0, 1) / 255.0).mean() < 0.02   # lossy


def test_unreadable_files_name_the_file(tmp_path):
    fake = tmp_path / "fake.png"
    fake.write_text("hello")
    with pytest.raises(UserError, match="fake.png is not an image file"):
        read_image(fake)
    with pytest.raises(UserError, match="missing.png: no such file"):
        read_image(tmp_path / "missing.png")
    noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "full.png")
    (tmp_path / "cut.png").write_bytes((tmp_path / "full.png").read_bytes()[:3000])
    with pytest.raises(UserError, match="cut.png is not a readable image"):
        read_image(tmp_path / "cut.png")
    Image.fromarray(np.zeros((4, 4), np.float32)).save(tmp_path / "float.tiff")
    with pytest.raises(UserError, match="float.tiff: images of mode 'F'"):
        read_image(tmp_path / "float.tiff")


def test_cache_folder_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("MINIRCNN_CACHE", str(tmp_path / "mine"))
    assert proposal_cache_dir() == str(tmp_path / "mine" / "proposals")
    assert proposal_cache_dir(tmp_path / "flag") == str(tmp_path / "flag")
    assert proposal_cache_dir("") is None
    monkeypatch.delenv("MINIRCNN_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert proposal_cache_dir() == str(tmp_path / "xdg" / "minircnn" / "proposals")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert proposal_cache_dir() == str(tmp_path / "home" / ".cache" / "minircnn" / "proposals")


def strict_json(text: str):
    """json.loads that refuses NaN and Infinity (Python's json accepts them, JSON does not)."""
    def refuse(name):
        raise AssertionError(f"{name} in JSON output")
    return json.loads(text, parse_constant=refuse)


def test_eval_from_another_folder_reuses_the_cache_and_writes_nothing_there(
        tmp_path, monkeypatch, capsys):
    from minircnn.cli.main import main

    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.setenv(var, os.environ.get(var, "1"))   # the CLI sets them otherwise
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--num-train", "4", "--num-val", "2", "--epochs", "1",
                 "--proposals", "dense", "--max-proposals", "60", "--hidden", "16",
                 "--out", str(tmp_path / "run")]) == 0
    metrics = strict_json((tmp_path / "run" / "metrics.json").read_text())
    cache = proposal_cache_dir()
    files = {name: os.path.getmtime(os.path.join(cache, name)) for name in os.listdir(cache)}
    assert len(files) == 2                 # one per dataset (train, val), whatever the workers
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "run" / "model.npz"), "--json"]) == 0
    printed = strict_json(capsys.readouterr().out)
    assert printed["voc07_mAP"] == metrics["eval"]["voc07_mAP"]
    assert printed["coco_AP_by_size"]["large"] is None   # no large shape: undefined, null
    assert os.listdir(elsewhere) == []
    assert {n: os.path.getmtime(os.path.join(cache, n)) for n in os.listdir(cache)} == files
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("weights, drawn_by_index", [
    ("fast_rcnn_shapes.npz", {0: 2, 1: 1, 2: 1}),   # the proposal cache's check reads image 0
    ("faster_rcnn_shapes.npz", {0: 1, 1: 1, 2: 1}),  # the RPN's proposals: no cache
])
def test_eval_draws_each_held_out_image_once(tmp_path, monkeypatch, weights, drawn_by_index):
    """The proposals and detections read the images, the metrics their boxes: one
    drawing serves them all."""
    from collections import Counter

    from minircnn.cli.eval_detect import evaluate_checkpoint
    from minircnn.data.shapes import ShapesDataset
    from minircnn.models.pretrained import WEIGHTS_DIR

    weights = os.path.join(WEIGHTS_DIR, weights)
    evaluate_checkpoint(weights, num_val=3, cache_dir=str(tmp_path))     # fills the cache
    drawn = Counter()
    real = ShapesDataset._render

    def counting(self, i):
        drawn[i] += 1
        return real(self, i)
    monkeypatch.setattr(ShapesDataset, "_render", counting)
    evaluate_checkpoint(weights, num_val=3, cache_dir=str(tmp_path))
    assert drawn == drawn_by_index
