"""minircnn/training/config.py: TrainConfig round trip."""

import pytest

from minircnn.training import TrainConfig
from tests.training.test_loop import TINY


def test_config_round_trip():
    d = TINY.to_dict()
    assert TrainConfig.from_dict(d) == TINY
    with pytest.raises(ValueError, match="unknown"):
        TrainConfig.from_dict({**d, "bogus": 1})
