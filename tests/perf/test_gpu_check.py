"""minircnn.perf.gpu_check and scripts/gpu_check.sh, on the fake GPU (CI has no real one)."""

import shutil
import subprocess
from pathlib import Path

import pytest

from minircnn import backend
from minircnn.perf import gpu_check
from minircnn.testing import fake_cupy
from minircnn.training import TrainConfig

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "gpu_check.sh"
TINY = TrainConfig(image_size=32, channels=(4, 4, 4, 4), num_pools=2, output_size=2,
                   hidden=8, rois_per_batch=16, pretrained=False)  # tiny: no shipped weights


def test_devices_agree_and_the_table_shows_both(monkeypatch):
    monkeypatch.setattr(backend, "FAKE_GPU", True)
    monkeypatch.setattr(backend, "_cupy", fake_cupy.module)
    result = gpu_check.run_gpu_check(repeats=1, cpu_threads=1, config=TINY)
    assert result["fake"] and result["agree"]
    assert [row["what"] for row in result["rows"]] == ["train step", "inference"]
    assert all(row["cpu_s"] > 0 and row["gpu_s"] > 0 for row in result["rows"])
    # NumPy's arithmetic on both sides, in the same order: not one bit differs
    assert result["differences"] == {"scores": 0.0, "gradients": 0.0, "loss": 0.0}
    table = gpu_check.format_gpu_check({**result, "gpu_tests": "39 passed"}).splitlines()
    assert table[0].startswith("GPU: fake CuPy") and table[1] == "pytest -m gpu: 39 passed"
    assert table[3].startswith("train step") and table[4].startswith("inference")
    assert "timings are NumPy's" in table[5]
    assert [line.split()[-1] for line in table[-3:]] == ["ok", "ok", "ok"]


def test_without_a_gpu_it_says_how_to_get_one(monkeypatch, capsys):
    monkeypatch.setattr(backend, "FAKE_GPU", False)
    monkeypatch.setattr(backend, "_cupy", None)
    assert gpu_check.main(["--repeats", "1"]) == 2
    err = capsys.readouterr().err
    assert "needs CuPy and a CUDA GPU" in err and "MINIRCNN_FAKE_GPU=1" in err


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_script_parses_and_explains_itself():
    assert subprocess.run(["bash", "-n", str(SCRIPT)]).returncode == 0
    shown = subprocess.run(["bash", str(SCRIPT), "--help"], capture_output=True, text=True)
    assert shown.returncode == 0 and "--fake" in shown.stdout and "set -e" not in shown.stdout
    bad = subprocess.run(["bash", str(SCRIPT), "--bogus"], capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown option --bogus" in bad.stderr
