"""scripts/step_through.py: one naive training step that stops in pdb before backward."""

import dataclasses
import importlib.util
import inspect
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("step_through",
                                                  ROOT / "scripts" / "step_through.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_stops_right_before_model_backward_and_trains_one_step(monkeypatch):
    script = _script()
    monkeypatch.setattr(script, "CONFIG", dataclasses.replace(   # smaller: a quick test
        script.CONFIG, image_size=32, rois_per_batch=4, hidden=8))
    stops = []

    def breakpointhook(*args, **kwargs):            # what pdb would be handed
        frame = sys._getframe(1)
        lines, first = inspect.getsourcelines(frame.f_code)
        stops.append((lines[frame.f_lineno - first + 1].strip(), frame.f_locals["model"]))

    monkeypatch.setattr(sys, "breakpointhook", breakpointhook)
    monkeypatch.delenv("PYTHONBREAKPOINT", raising=False)
    result = script.main()
    assert len(stops) == 1
    next_line, model = stops[0]
    assert next_line.startswith("model.backward(dcls, dbbox)")
    assert model.impl == "naive" and model.roi.impl == "naive"
    assert type(model.roi).__name__ == "RoIAlign"                 # the recipe's detector
    assert np.isfinite(result["loss"])
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert sorted(result["grad_norms"]) == sorted(trainable)
    assert result["grad_norms"]["cls_score.w"] > 0 and result["grad_norms"]["fc6.w"] > 0
