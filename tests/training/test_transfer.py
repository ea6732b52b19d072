import json
import os

import numpy as np
import pytest

from minircnn.data.shapes import ShapesClassification
from minircnn.models.checkpoint import load_checkpoint
from minircnn.models.pretrained import RESNET_FILE, pretrained_backbone
from minircnn.models.resnet import MiniResNet, ResNetBackbone
from minircnn.training.transfer import (
    SOURCE_CLASSES,
    FinetuneConfig,
    PretrainConfig,
    accuracy,
    build_strategy_model,
    finetune,
    pretrain,
)

TINY = dict(widths=(4, 8), blocks=(1, 1), image_size=16)


def test_pretrain_then_finetune_smoke(tmp_path):
    cfg = PretrainConfig(classes=("circle", "square", "triangle"), num_train=48, num_val=24,
                         epochs=2, batch_size=16, warmup_iters=2, **TINY)
    metrics = pretrain(cfg, str(tmp_path / "pre"))
    for name in ("checkpoint.npz", "metrics.json", "accuracy.png"):
        assert os.path.getsize(tmp_path / "pre" / name) > 0, name
    with open(tmp_path / "pre" / "metrics.json") as f:
        saved = json.load(f)
    assert [r["epoch"] for r in saved["history"]] == [1, 2]
    assert saved["val_acc"] == metrics["val_acc"] and 0 <= metrics["val_acc"] <= 1
    model = load_checkpoint(tmp_path / "pre" / "checkpoint.npz")
    assert isinstance(model, MiniResNet) and model.widths == (4, 8)
    x, y = ShapesClassification(24, seed=10_000, classes=cfg.classes, image_size=16).arrays()
    assert accuracy(model, x, y) == pytest.approx(metrics["val_acc"])  # the same val split

    ft = FinetuneConfig(pretrained=str(tmp_path / "pre" / "checkpoint.npz"),
                        classes=("star", "ring"), train_per_class=8, num_test=20,
                        image_size=16, epochs=2, batch_size=8, finetune_from=2)
    result = finetune(ft, str(tmp_path / "ft"))
    rows = {r["strategy"]: r for r in result["rows"]}
    assert list(rows) == ["scratch", "frozen", "from_stage", "full"]
    fc_params = 8 * 2 + 2
    assert rows["frozen"]["trainable_params"] == fc_params
    assert fc_params < rows["from_stage"]["trainable_params"] < rows["full"]["trainable_params"]
    assert rows["full"]["trainable_params"] == rows["scratch"]["trainable_params"]
    assert all(0 <= r["test_acc"] <= 1 and r["seconds"] >= 0 for r in rows.values())
    text = (tmp_path / "ft" / "comparison.txt").read_text()
    assert "(b) frozen pretrained backbone, new fc only" in text and "test acc" in text
    with open(tmp_path / "ft" / "comparison.json") as f:
        assert json.load(f)["rows"] == result["rows"]


def test_strategies_start_from_the_pretrained_weights_and_freeze_what_they_say():
    source = MiniResNet(3, widths=(4, 8, 8), rng=np.random.default_rng(0))
    cfg = FinetuneConfig(finetune_from=3, backbone_lr_mult=0.1)
    state = source.state_dict()
    for strategy in ("frozen", "from_stage", "full"):
        model, lr = build_strategy_model(strategy, source, 5, cfg)
        assert lr == cfg.lr and model.fc.w.shape == (5, 8)
        for name, value in model.state_dict().items():
            if not name.startswith("fc."):
                np.testing.assert_array_equal(value, state[name], err_msg=f"{strategy} {name}")
    frozen, _ = build_strategy_model("frozen", source, 5, cfg)
    assert [n for n, p in frozen.named_parameters() if p.requires_grad] == ["fc.w", "fc.b"]
    staged, _ = build_strategy_model("from_stage", source, 5, cfg)
    trainable = [n for n, p in staged.named_parameters() if p.requires_grad]
    assert trainable[0].startswith("stages.2.") and not any(n.startswith("stages.1") for n in
                                                            trainable)
    full, _ = build_strategy_model("full", source, 5, cfg)
    mults = {n: p.lr_mult for n, p in full.named_parameters()}
    assert mults["conv1.w"] == pytest.approx(0.1) and mults["fc.w"] == 1.0
    scratch, lr = build_strategy_model("scratch", source, 5, cfg)
    assert lr == cfg.scratch_lr
    assert not np.array_equal(scratch.conv1.w.data, source.conv1.w.data)
    with pytest.raises(ValueError, match="strategy must be one of"):
        build_strategy_model("linear_probe", source, 5, cfg)


@pytest.mark.skipif(not os.path.isfile(RESNET_FILE), reason="shipped weights not built yet")
def test_shipped_pretrained_weights_load_and_classify_the_source_task():
    assert os.path.getsize(RESNET_FILE) <= 5 * 2**20
    model = pretrained_backbone()
    assert isinstance(model, MiniResNet) and model.num_classes == len(SOURCE_CLASSES)
    x, y = ShapesClassification(120, seed=99_999, classes=SOURCE_CLASSES).arrays()
    assert accuracy(model, x, y) >= 0.8
    backbone = pretrained_backbone(3)
    assert isinstance(backbone, ResNetBackbone)
    assert (backbone.feature_stride, backbone.norm) == (8, "frozen")
    np.testing.assert_array_equal(backbone.stages[2].layers[0].conv1.w.data,
                                  model.stages[2].layers[0].conv1.w.data)


@pytest.mark.skipif(not os.path.isfile(RESNET_FILE), reason="shipped weights not built yet")
def test_finetune_cli_prints_and_saves_the_table(tmp_path, capsys):
    from minircnn.cli.main import main

    assert main(["finetune", "--out", str(tmp_path), "--epochs", "1", "--train-per-class", "2",
                 "--strategies", "frozen,full"]) == 0
    printed = capsys.readouterr().out
    assert "(b) frozen pretrained backbone" in printed
    assert "(d) pretrained, fine-tune all" in printed
    with open(tmp_path / "comparison.json") as f:
        assert [r["strategy"] for r in json.load(f)["rows"]] == ["frozen", "full"]


def test_pretrain_cli_writes_a_loadable_checkpoint(tmp_path, capsys):
    from minircnn.cli.main import main

    assert main(["pretrain", "--out", str(tmp_path), "--epochs", "1", "--num-train", "12"]) == 0
    printed = capsys.readouterr().out
    assert "epoch 1: train loss" in printed and "val accuracy" in printed
    model = pretrained_backbone(path=str(tmp_path / "checkpoint.npz"))
    assert model.widths == PretrainConfig().widths and model.num_classes == len(SOURCE_CLASSES)


def test_pretrained_backbone_errors_name_the_file_and_the_fix(tmp_path):
    from minircnn.models.checkpoint import save_checkpoint

    with pytest.raises(FileNotFoundError, match=r"nope\.npz is missing.*minircnn pretrain"):
        pretrained_backbone(path=str(tmp_path / "nope.npz"))
    path = save_checkpoint(ResNetBackbone(widths=(4, 8)), tmp_path / "backbone.npz")
    with pytest.raises(ValueError, match="holds a ResNetBackbone, expected a MiniResNet"):
        pretrained_backbone(path=path)
