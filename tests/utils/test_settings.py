"""minircnn/utils/settings.py: one range table per config, checked where a setting enters."""

import argparse
import dataclasses

import pytest

from minircnn.cli.main import build_parser
from minircnn.training.config import TrainConfig
from minircnn.training.transfer import FinetuneConfig, PretrainConfig, finetune, pretrain
from minircnn.utils.errors import UsageError
from minircnn.utils.settings import (
    FINETUNE_RULES,
    PRETRAIN_RULES,
    TRAIN_RULES,
    check_settings,
    check_train_config,
)


def test_every_rule_names_a_setting_of_its_config():
    for config, rules in ((TrainConfig(), TRAIN_RULES), (PretrainConfig(), PRETRAIN_RULES),
                          (FinetuneConfig(), FINETUNE_RULES)):
        fields = {f.name for f in dataclasses.fields(config)}
        assert set(rules) <= fields, set(rules) - fields
        check_settings(config, rules)                   # the defaults are in range


@pytest.mark.parametrize("run, config, message", [
    (pretrain, PretrainConfig(epochs=0), "PretrainConfig: epochs must be an integer >= 1"),
    (pretrain, PretrainConfig(lr=-1.0), "lr must be a finite number in (0, inf)"),
    (finetune, FinetuneConfig(finetune_from=7), "finetune_from must be an integer in 1..4"),
])
def test_transfer_runs_refuse_out_of_range_settings_before_any_work(run, config, message,
                                                                    tmp_path):
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        run(config, str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def test_train_config_checks_bg_iou_and_freeze_at():
    with pytest.raises(UsageError, match="bg_iou must be a pair"):
        check_train_config(TrainConfig(bg_iou=(0.5, 0.1)))
    with pytest.raises(UsageError, match="freeze_at must be an integer in 1..5"):
        check_train_config(TrainConfig(freeze_at=0))


def test_every_numeric_command_line_option_is_checked_by_a_rule():
    """A typed option goes through arg_type and a settings Rule: one range table."""
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    typed = [(name, action) for name, parser in sub.choices.items()
             for action in parser._actions if action.type is not None]
    assert len(typed) > 20
    unchecked = [f"{name} {action.option_strings}" for name, action in typed
                 if not hasattr(action.type, "rule")]
    assert unchecked == []


@pytest.mark.parametrize("seeds", [(), (0, 0), (-1,), (0.5,)])
def test_reproduce_refuses_seeds_out_of_range_before_any_work(seeds, tmp_path):
    from minircnn.paper.reproduce import reproduce
    from minircnn.paper.variants import ReproduceConfig

    with pytest.raises(UsageError, match="seeds must be a non-empty tuple of distinct"):
        reproduce(ReproduceConfig(out_dir=str(tmp_path / "out"), quick=True, seeds=seeds))
    assert not (tmp_path / "out").exists()
