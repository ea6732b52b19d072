"""GPU next to CPU: timings and result differences, the table scripts/gpu_check.sh prints.

Two workloads of the default ``minircnn train`` detector, each run with NumPy on the CPU
(``cpu_threads`` BLAS threads) and with CuPy on the GPU:

- a training step: 2 images of 128x128, 128 RoIs sampled hierarchically, forward, loss,
  backward and the SGD update (the step ``minircnn train`` repeats);
- inference: the network's forward pass on one image with 300 proposals.

Each is timed as the best of ``repeats`` runs after a warm-up (CuPy compiles its kernels
on first use), the GPU's after ``synchronize()`` (CuPy returns before the kernels
finish). Both devices start from the same weights and data, so their loss, gradients
and scores must agree to float32 rounding (see TOLERANCE).

Run ``python -m minircnn.perf.gpu_check`` (``--json`` for the numbers). With
``MINIRCNN_FAKE_GPU=1`` the "GPU" is NumPy behind the fake CuPy: the agreement check is
meaningful (it exercises the GPU code path), the timings are not.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from minircnn import backend
from minircnn.data.shapes import ShapesDataset
from minircnn.detection.proposals import dense_boxes
from minircnn.detection.sampling import hierarchical_batch
from minircnn.perf.bench import best_time
from minircnn.training.config import TrainConfig, make_detector
from minircnn.training.optim import SGD
from minircnn.training.step import train_step
from minircnn.utils.blas import blas_threads
from minircnn.utils.fileio import dumps_json

# float32 sums of ~10^3-10^4 products (conv and fc layers) in a different order on the GPU
# differ by about sqrt(n) * 6e-8 relative, ~1e-5; a max-pool or RoI-pool argmax that rounding
# flips moves one gradient entry, so gradients get 100x that room.
TOLERANCE = 1e-3
SPEEDUP_GOAL = 10.0   # a training step on the GPU vs on 2 CPU cores
NUM_PROPOSALS = 300


def _workload(config: TrainConfig, seed: int = 0):
    """Fresh model, two images, a sampled RoI batch and 300 test RoIs (all host arrays)."""
    rng = np.random.default_rng(seed)
    model = make_detector(config)
    ds = ShapesDataset(2, image_size=config.image_size, seed=seed)
    images = np.stack([ds[i]["image"] for i in range(2)])                # (2, 3, H, W)
    props = dense_boxes(config.image_size)
    batch = hierarchical_batch([ds[0], ds[1]], [props, props],
                               rois_per_batch=config.rois_per_batch, rng=rng)
    test = props[rng.choice(len(props), min(NUM_PROPOSALS, len(props)), replace=False)]
    test_rois = np.concatenate([np.zeros((len(test), 1), np.float32), test], axis=1)  # (P, 5)
    return model, images, batch, test_rois


def _run_device(config: TrainConfig, device: str, repeats: int) -> dict:
    """Results of one step from the initial weights, then the two timings, on ``device``."""
    model, images, batch, test_rois = _workload(config)
    model.to(device)
    batch = [backend.to_device(a, device)
             for a in (images, batch.rois, batch.labels, batch.bbox_targets)]
    test_rois = backend.to_device(test_rois, device)
    optimizer = SGD(model.parameters(), config.lr, momentum=config.momentum)
    model.eval()
    scores, _ = model.forward(batch[0][:1], test_rois)
    model.train()
    loss = train_step(model, optimizer, *batch)["loss"]
    # copies: asnumpy returns a NumPy array itself, and the timed steps below overwrite grads
    out = {"loss": loss, "scores": backend.asnumpy(scores).copy(),
           "gradients": [backend.asnumpy(p.grad).copy() for p in model.parameters()]}

    def step():
        train_step(model, optimizer, *batch)
        backend.synchronize()

    def infer():
        model.forward(batch[0][:1], test_rois)
        backend.synchronize()

    out["train_s"] = best_time(step, repeats)
    model.eval()
    out["inference_s"] = best_time(infer, repeats)
    return out


def _difference(a, b) -> float:
    """max |a - b| / max |b| over arrays (or lists of arrays) of the same shapes."""
    a = np.concatenate([np.ravel(x) for x in (a if isinstance(a, list) else [a])])
    b = np.concatenate([np.ravel(x) for x in (b if isinstance(b, list) else [b])])
    return float(np.abs(a - b).max() / max(float(np.abs(b).max()), 1e-30))


def run_gpu_check(*, repeats: int = 5, cpu_threads: int = 2,
                  config: TrainConfig | None = None) -> dict:
    """Time both devices and compare their results (see the module docstring).

    Raises:
        RuntimeError: no GPU (install minircnn[gpu] on a CUDA machine, or set
            MINIRCNN_FAKE_GPU=1 to exercise the code path on the CPU).
    """
    if not backend.gpu_available():
        raise RuntimeError("gpu_check needs CuPy and a CUDA GPU: pip install -e '.[gpu]' on "
                           "a machine with an NVIDIA GPU (MINIRCNN_FAKE_GPU=1 runs it on the "
                           "CPU against the fake CuPy, timings then mean nothing)")
    config = config or TrainConfig()
    with blas_threads(cpu_threads):
        cpu = _run_device(config, "cpu", repeats)
    gpu = _run_device(config, "gpu", repeats)
    diffs = {key: _difference(gpu[key], cpu[key]) for key in ("scores", "gradients")}
    diffs["loss"] = abs(gpu["loss"] - cpu["loss"]) / max(abs(cpu["loss"]), 1e-30)
    rows = [{"what": what, "cpu_s": cpu[key], "gpu_s": gpu[key],
             "speedup": cpu[key] / gpu[key]}
            for what, key in (("train step", "train_s"), ("inference", "inference_s"))]
    return {"gpu": backend.gpu_name(), "fake": backend.FAKE_GPU, "cpu_threads": cpu_threads,
            "repeats": repeats, "rows": rows, "differences": diffs, "tolerance": TOLERANCE,
            "agree": all(d <= TOLERANCE for d in diffs.values()),
            "speedup_goal": SPEEDUP_GOAL,
            "speedup_goal_met": rows[0]["speedup"] >= SPEEDUP_GOAL}


def format_gpu_check(result: dict) -> str:
    """The result of run_gpu_check as one plain-text table."""
    lines = [f"GPU: {result['gpu']}   CPU: NumPy, {result['cpu_threads']} BLAS threads   "
             f"best of {result['repeats']}"]
    if result.get("gpu_tests"):
        lines.append(f"pytest -m gpu: {result['gpu_tests']}")
    lines.append(f"{'':14s}{'CPU ms':>10s}{'GPU ms':>10s}{'speedup':>10s}")
    for row in result["rows"]:
        lines.append(f"{row['what']:14s}{1e3 * row['cpu_s']:10.1f}{1e3 * row['gpu_s']:10.1f}"
                     f"{row['speedup']:9.1f}x")
    goal = "met" if result["speedup_goal_met"] else "NOT met"
    lines.append(f"train-step goal >= {result['speedup_goal']:.0f}x: {goal}"
                 + ("  (fake GPU: timings are NumPy's, not a GPU's)" if result["fake"] else ""))
    lines.append(f"NumPy vs CuPy, max |diff| / max |value| (tolerance {result['tolerance']:g}):")
    for key, value in result["differences"].items():
        verdict = "ok" if value <= result["tolerance"] else "DIFFER"
        lines.append(f"  {key:12s}{value:10.2e}  {verdict}")
    return "\n".join(lines)


def main(argv=None) -> int:
    """``python -m minircnn.perf.gpu_check``: exit 0 if the devices agree, 1 if not, 2 no GPU."""
    p = argparse.ArgumentParser(prog="python -m minircnn.perf.gpu_check", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=5, help="timed runs per row (best is kept)")
    p.add_argument("--cpu-threads", type=int, default=2, help="BLAS threads on the CPU side")
    p.add_argument("--json", action="store_true", help="print the numbers as JSON")
    p.add_argument("--tests", default=None,
                   help="pytest's summary line of the gpu tests, shown in the table")
    args = p.parse_args(argv)
    try:
        result = run_gpu_check(repeats=args.repeats, cpu_threads=args.cpu_threads)
    except RuntimeError as e:
        print(f"gpu_check: error: {e}", file=sys.stderr)
        return 2
    result["gpu_tests"] = args.tests
    print(dumps_json(result, indent=1) if args.json else format_gpu_check(result))
    return 0 if result["agree"] else 1


if __name__ == "__main__":
    sys.exit(main())
