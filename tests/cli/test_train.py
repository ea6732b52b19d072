"""`minircnn train / eval / detect` end to end on a tiny config, and on the shipped weights."""

import json
import os

import matplotlib.image
import numpy as np
import pytest

from minircnn.cli.main import main
from minircnn.data.shapes import ShapesDataset
from minircnn.models.pretrained import DETECTOR_FILE

TINY_ARGS = ["--num-train", "4", "--num-val", "2", "--epochs", "1", "--proposals", "dense",
             "--max-proposals", "60", "--cache-dir", "", "--hidden", "16"]


@pytest.fixture(autouse=True)
def _restore_blas_env(monkeypatch):
    """The CLI sets OPENBLAS_NUM_THREADS etc. by default; keep that out of other tests."""
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.setenv(var, os.environ.get(var, "1"))


def test_train_then_eval_and_detect(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *TINY_ARGS, "--out", str(out), "--seed", "1",
                 "--train-scales", "1,2"]) == 0
    printed = capsys.readouterr().out
    headline = printed.splitlines()[0]       # COCO AP first, VOC area AP beside it, VOC07 third
    assert headline.index("COCO AP@[.5:.95] =") < headline.index("VOC AP@0.5 (area) =") \
        < headline.index("VOC07 11-point =")
    assert "by object size: small" in printed and "time" in printed
    for name in ("checkpoint.npz", "model.npz", "metrics.json", "config.json",
                 "loss_curve.png", "detections.png"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["eval"]["voc07_mAP"] <= 1.0
    assert metrics["config"]["seed"] == 1 and len(metrics["epochs"]) == 1
    assert metrics["config"]["train_scales"] == [1.0, 2.0]

    assert main(["train", "--out", str(out), "--resume"]) == 0    # the run's own settings
    assert "on 2 held-out images" in capsys.readouterr().out

    assert main(["eval", str(out / "model.npz"), "--json"]) == 0
    ev = json.loads(capsys.readouterr().out)
    for key in ("coco_AP", "voc_mAP", "voc07_mAP"):
        assert ev[key] == pytest.approx(metrics["eval"][key])
    assert set(ev["coco_AP_by_size"]) == {"small", "medium", "large"}


def _write_png(path):
    image = ShapesDataset(1, seed=123)[0]["image"]                    # (3, H, W)
    matplotlib.image.imsave(path, np.transpose(image, (1, 2, 0)))
    return path


@pytest.mark.skipif(not os.path.isfile(DETECTOR_FILE), reason="shipped weights missing")
def test_detect_with_the_shipped_checkpoint(tmp_path, capsys):
    png = _write_png(tmp_path / "in.png")
    out = tmp_path / "out.png"
    assert main(["detect", DETECTOR_FILE, str(png), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert out.is_file() and "detections drawn" in printed
    assert any(name in printed for name in ("circle", "square", "triangle"))


def test_shipped_checkpoint_is_small_and_loads():
    from minircnn.models import FastRCNN, pretrained_detector

    assert os.path.getsize(DETECTOR_FILE) <= 5 * 2**20
    assert isinstance(pretrained_detector(), FastRCNN)


def test_train_help_lists_the_flags(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    for flag in ("--epochs", "--backbone", "--roi-op", "--out", "--seed", "--device", "--resume"):
        assert flag in text


def test_train_with_rpn_proposals_then_eval_and_detect(tmp_path, capsys):
    out = tmp_path / "rpn"
    args = ["--num-train", "4", "--num-val", "2", "--epochs", "1", "--cache-dir", "",
            "--hidden", "16", "--proposals", "rpn", "--max-proposals", "50"]
    assert main(["train", *args, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "RPN proposals: recall" in printed and "selective search: recall" in printed
    assert "ms without the shared backbone" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["proposal_method"] == "rpn"
    assert metrics["config"]["rpn_training"] == "joint"
    assert set(metrics["proposals"]) == {"rpn", "selective_search"}
    assert main(["eval", str(out / "model.npz"), "--json"]) == 0
    ev = json.loads(capsys.readouterr().out)
    assert ev["coco_AP"] == pytest.approx(metrics["eval"]["coco_AP"])
    png = _write_png(tmp_path / "in.png")
    assert main(["detect", str(out / "model.npz"), str(png), "-o",
                 str(tmp_path / "det.png")]) == 0
    assert (tmp_path / "det.png").is_file()
    assert main(["train", *args, "--out", str(tmp_path / "alt"), "--rpn-training",
                 "alternating"]) == 2        # 4 steps need 4 epochs: a usage error
    assert "use --epochs 4 or more" in capsys.readouterr().err


def test_the_rpn_recipe_runs_its_own_epochs_unless_given(tmp_path, capsys):
    """``--proposals rpn`` without --epochs runs RPN_EPOCHS; the selective-search recipe
    (and any --epochs given) keeps TrainConfig's."""
    from minircnn.cli.main import build_parser
    from minircnn.cli.train_commands import _train_config
    from minircnn.training.config import RPN_EPOCHS, TrainConfig

    assert RPN_EPOCHS != TrainConfig.epochs
    parser, out = build_parser(), str(tmp_path / "run")

    def epochs(*flags):
        return _train_config(parser.parse_args(["train", *flags]), out).epochs

    assert epochs("--proposals", "rpn") == RPN_EPOCHS
    assert epochs("--proposals", "rpn", "--epochs", "3") == 3
    assert epochs() == epochs("--proposals", "selective_search") == TrainConfig.epochs
    assert epochs("--proposals", "dense") == TrainConfig.epochs
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert f"with --proposals rpn, {RPN_EPOCHS}: the RPN recipe's" in help_text
