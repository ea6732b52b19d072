"""minircnn/detection_transfer.py: Fast R-CNN from a pretrained vs a random backbone."""

import json
import os

import numpy as np
import pytest

from minircnn.detection_transfer import detection_transfer
from minircnn.models.resnet import WEIGHTS_FILE
from minircnn.train import TrainConfig


@pytest.mark.skipif(not os.path.isfile(WEIGHTS_FILE), reason="shipped weights not built yet")
def test_detection_transfer_smoke(tmp_path):
    cfg = TrainConfig(num_train=4, num_val=2, image_size=64, proposal_method="dense",
                      cache_dir="", max_proposals=50, rois_per_batch=16, hidden=16)
    result = detection_transfer(cfg, str(tmp_path), iterations=2)
    assert [r["init"] for r in result["rows"]] == ["scratch", "pretrained"]
    assert all(0 <= r["voc07_mAP"] <= 1 and np.isfinite(r["final_loss"]) for r in result["rows"])
    with open(tmp_path / "detection_transfer.json") as f:
        assert json.load(f)["rows"] == result["rows"]
