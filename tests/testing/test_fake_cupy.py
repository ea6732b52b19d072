"""The fake CuPy: it refuses what CuPy refuses, and the GPU code path runs on it.

CI has no GPU and no CuPy: these tests are what checks the ``--device gpu`` path there.
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from minircnn import backend
from minircnn.testing import fake_cupy
from minircnn.testing.fake_ndarray import HostDeviceError

cp = fake_cupy.module
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def fake_gpu(monkeypatch):
    """This process's backend hands out the fake CuPy, as MINIRCNN_FAKE_GPU=1 would."""
    monkeypatch.setattr(backend, "FAKE_GPU", True)
    monkeypatch.setattr(backend, "_cupy", fake_cupy.module)


def test_name_list_comes_from_cupy_13_and_14():
    majors = {v.split(".")[0] for v in fake_cupy.VERSIONS}
    assert majors == {"13", "14"}
    assert hasattr(cp, "maximum") and hasattr(cp.lib.stride_tricks, "as_strided")
    assert hasattr(fake_cupy.cupyx, "scatter_add")
    with pytest.raises(AttributeError, match="put_along_axis"):  # NumPy has it, CuPy 13 not
        cp.put_along_axis  # noqa: B018


def test_implicit_copies_to_the_host_are_refused():
    x = cp.asarray(np.arange(6.0).reshape(2, 3))
    with pytest.raises(HostDeviceError, match="implicit conversion"):
        np.asarray(x)
    with pytest.raises(TypeError):
        x + np.ones(3)                     # device + host array: CuPy raises
    with pytest.raises(TypeError):
        np.ones(3) * x
    with pytest.raises(TypeError):
        cp.concatenate([x, np.ones((1, 3))])
    with pytest.raises(TypeError):
        float(x)                           # six elements: no scalar
    with pytest.raises(TypeError):
        range(x.max())                     # a 0-d device array is no Python int
    with pytest.raises(AttributeError, match="cupy.ndarray"):
        x.setflags(write=False)            # NumPy's ndarray has it, CuPy's does not


def test_explicit_copies_and_device_results():
    host = np.arange(6.0).reshape(2, 3)
    x = cp.asarray(host)
    host[0, 0] = 100.0                     # asarray copied: the device array keeps 0
    assert float(x[0, 0]) == 0.0
    total = np.sum(x, axis=0)              # NumPy function -> the fake's (as CuPy's arrays do)
    assert isinstance(total, cp.ndarray)
    np.testing.assert_array_equal(total.get(), [3, 5, 7])
    assert isinstance(x.max(), cp.ndarray) and x.max().shape == ()   # 0-d, not np.float64
    assert all(isinstance(v, cp.ndarray) for v in x[0])
    assert x.tolist() == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]] and f"{x.sum():.1f}" == "15.0"


def test_ufunc_at_and_reduceat_as_cupy_limits_them():
    a = cp.zeros(3)
    cp.add.at(a, cp.asarray(np.array([0, 0, 2])), 1.5)     # repeated index: both adds land
    np.testing.assert_array_equal(a.get(), [3.0, 0.0, 1.5])
    with pytest.raises(TypeError, match="int64"):
        cp.add.at(cp.zeros(3, dtype=np.int64), np.array([0]), 1)
    with pytest.raises(NotImplementedError):
        cp.multiply.at(a, np.array([0]), 2.0)
    with pytest.raises(NotImplementedError):
        cp.maximum.reduceat(a, cp.asarray(np.array([0, 2])))
    with pytest.raises(TypeError, match="stable"):
        cp.argsort(a, stable=True)          # keywords CuPy 13's signatures do not have
    with pytest.raises(TypeError, match="initial"):
        a.max(initial=0.0)
    with pytest.raises(TypeError, match="min"):
        cp.clip(a, min=0.0)                # NumPy 2.1 spells it so; CuPy: a_min


def test_train_step_and_detect_on_the_fake_gpu_match_the_cpu(fake_gpu):
    from minircnn.detection.inference import detect
    from minircnn.models import FastRCNN, SmallVGG
    from minircnn.training import train_step
    from minircnn.training.optim import SGD

    rng = np.random.default_rng(0)
    images = rng.random((2, 3, 16, 16)).astype(np.float32)
    rois = np.array([[0, 1, 1, 12, 14], [1, 3, 2, 15, 9], [0, 0, 0, 16, 16]], np.float32)
    labels, targets = np.array([1, 0, 2]), rng.standard_normal((3, 4)).astype(np.float32)

    def run(device):
        model = FastRCNN(2, SmallVGG((4, 4), rng=np.random.default_rng(1)), hidden=8,
                         rng=np.random.default_rng(2)).to(device)
        opt = SGD(model.parameters(), 0.01, momentum=0.9)
        batch = (backend.to_device(a, device) for a in (images, rois, labels, targets))
        stats = train_step(model, opt, *batch)
        dets = detect(model, images[0], rois[:, 1:], score_thresh=0.0)
        pyramid = detect(model, images[0], rois[:, 1:], score_thresh=0.0, scales=(1.0, 2.0),
                         target=24)                         # the 16-px RoI at 1x, two at 2x
        return model, stats, {**dets, **{f"pyramid_{k}": v for k, v in pyramid.items()}}

    cpu_model, cpu_stats, cpu_dets = run("cpu")
    gpu_model, gpu_stats, gpu_dets = run("gpu")
    assert isinstance(next(iter(gpu_model.parameters())).data, cp.ndarray)
    assert gpu_stats["loss"] == pytest.approx(cpu_stats["loss"], rel=1e-6)
    for p_cpu, p_gpu in zip(cpu_model.parameters(), gpu_model.parameters(), strict=True):
        np.testing.assert_allclose(backend.asnumpy(p_gpu.data), p_cpu.data, rtol=1e-5, atol=1e-6)
    assert len(cpu_dets["pyramid_scores"]) > 0
    for key in cpu_dets:
        assert isinstance(gpu_dets[key], np.ndarray)      # results come back to the host
        np.testing.assert_allclose(gpu_dets[key], cpu_dets[key], rtol=1e-5, atol=1e-5)


def test_gpu_marked_tests_pass_on_the_fake_gpu():
    """A representative share of the `gpu` tests, run as `MINIRCNN_FAKE_GPU=1 pytest -m gpu`."""
    env = {**os.environ, "MINIRCNN_FAKE_GPU": "1"}
    files = ["tests/test_backend.py", "tests/layers/test_roi_pool.py",
             "tests/layers/test_roi_align.py", "tests/models/test_fast_rcnn.py"]
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "-n", "0", "-m", "gpu", "-x", *files], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and "skipped" not in done.stdout.splitlines()[-1]


def test_training_run_and_cli_detect_on_the_fake_gpu(fake_gpu, tmp_path, capsys, monkeypatch):
    import matplotlib.image

    from minircnn.cli.main import main
    from minircnn.data.shapes import ShapesDataset
    from minircnn.training import TrainConfig, train_detector

    config = TrainConfig(num_train=2, num_val=1, epochs=1, proposal_method="dense",
                         max_proposals=30, cache_dir="", hidden=8, device="gpu",
                         pictures=False)        # matplotlib would be most of the time
    metrics = train_detector(config, tmp_path / "run", progress=False)
    assert metrics["config"]["device"] == "gpu" and len(metrics["epochs"]) == 1
    assert metrics["train_processes"] == 1          # a GPU run never forks a worker
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.setenv(var, os.environ.get(var, "1"))   # the CLI sets these
    png = tmp_path / "in.png"
    matplotlib.image.imsave(png, ShapesDataset(1, seed=5)[0]["image"].transpose(1, 2, 0))
    out = tmp_path / "out.png"
    assert main(["detect", str(tmp_path / "run" / "model.npz"), str(png), "-o", str(out),
                 "--score-thresh", "0", "--device", "gpu"]) == 0
    assert out.is_file() and "detections drawn" in capsys.readouterr().out
