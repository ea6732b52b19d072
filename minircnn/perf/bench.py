"""Time the layers (forward + backward) next to a plain NumPy matmul from the same run.

Absolute times depend on the machine; the percentage of the same-run float32 matmul
throughput does much less, so compare those across machines. ``minircnn bench`` prints
the table, ``minircnn bench --json`` the dict.

Everything runs with one BLAS thread (what training and detection use, see
minircnn/utils/blas.py) and is timed in CPU seconds of the calling thread, which is all
the work with one thread: other processes on a busy machine slow the wall clock, not
that. The entries that run several BLAS threads are timed by the wall clock
(``clock="wall"``).

Adding an entry is one line in ``BENCHMARKS``: a name and a ``setup(rng)`` that builds
the inputs once and returns ``(run, flops)``, where ``run()`` does one forward + backward
and ``flops`` is the counted work (None when GFLOP/s means little, e.g. ReLU). Give
``compare_to`` the name of another entry to report the speed-up over it.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from minircnn.layers.activations import relu_backward, relu_forward
from minircnn.layers.conv import (
    conv2d_backward,
    conv2d_backward_naive,
    conv2d_forward,
    conv2d_forward_naive,
)
from minircnn.layers.linear import linear_backward, linear_forward
from minircnn.layers.norm import batchnorm2d_backward, batchnorm2d_forward
from minircnn.layers.pool import max_pool2d_backward, max_pool2d_forward
from minircnn.layers.roi_align import roi_align_backward, roi_align_forward
from minircnn.layers.roi_pool import (
    roi_pool_backward,
    roi_pool_backward_naive,
    roi_pool_forward,
    roi_pool_forward_naive,
    roi_pool_forward_vectorized,
    spp_backward,
    spp_forward,
)
from minircnn.perf.conv_bench import (
    conv_flops,
    f32,
    setup_conv_stack,
    setup_conv_stack_elementwise,
    setup_conv_stack_products,
)
from minircnn.utils.blas import blas_threads
from minircnn.utils.memory import keep_freed_memory

Setup = Callable[[np.random.Generator], tuple[Callable[[], object], "float | None"]]


class Benchmark(NamedTuple):
    name: str
    setup: Setup                 # rng -> (run, flops)
    compare_to: str | None = None  # report speed-up = that entry's ms / this entry's ms
    part_of: str | None = None     # report this entry's ms as a % of that entry's ms
    clock: str = "cpu"             # "cpu": this thread's CPU time; "wall": several threads


# --- setups ----------------------------------------------------------------------------
def _setup_matmul(rng, n: int = 1024):
    a, b = f32(rng, n, n), f32(rng, n, n)
    return (lambda: a @ b), 2.0 * n**3


def _setup_conv_tiny(rng, naive: bool):
    x, w, b = f32(rng, 1, 4, 12, 12), f32(rng, 8, 4, 3, 3), f32(rng, 8)
    fwd, bwd = ((conv2d_forward_naive, conv2d_backward_naive) if naive
                else (conv2d_forward, conv2d_backward))

    def run():
        out, cache = fwd(x, w, b, stride=1, pad=1)
        return bwd(out, cache)

    return run, 3 * conv_flops(x.shape, w.shape, (12, 12))


def _setup_fwd_bwd(forward, backward, inputs, flops=None, **kwargs):
    """Generic: one forward on ``inputs`` then backward of an all-ones dout."""
    def run():
        out, cache = forward(*inputs, **kwargs)
        return backward(np.ones_like(out), cache)
    return run, flops


def _setup_linear(rng, n=256, d=3136, m=1024):
    x, w, b = f32(rng, n, d), f32(rng, m, d) * np.float32(0.02), f32(rng, m)
    return _setup_fwd_bwd(linear_forward, linear_backward, (x, w, b), 3 * 2.0 * n * d * m)


FEATURE_SHAPE = (2, 64, 64, 64)  # a mid-network feature map for the elementwise layers

# RoI pooling as in Fast R-CNN on 128x128 images: a stride-8 feature map, 256 RoIs.
ROI_FEATURES, ROI_COUNT, ROI_OUT, ROI_SCALE = (2, 64, 16, 16), 256, (7, 7), 1 / 8
ROI_TAG = "2x64x16x16 256 RoIs 7x7"

HEAD_ROIS, HEAD_RANK = 2000, 64  # Fast R-CNN section 3.1: fc6/fc7 at 2000 RoIs per image


def _setup_head(rng, rank: int | None = None):
    """fc6 (3136 -> 256) - ReLU - fc7 (256 -> 256) forward at HEAD_ROIS RoIs, the shipped
    detector's sizes; with ``rank``, both layers replaced by their truncated SVD."""
    from minircnn.layers.linear import Linear
    from minircnn.models.compress import compress_linear, layer_cost

    fc6, fc7 = Linear(3136, 256, rng=rng), Linear(256, 256, rng=rng)
    if rank is not None:
        fc6, fc7 = compress_linear(fc6, rank), compress_linear(fc7, rank)
    x = np.maximum(f32(rng, HEAD_ROIS, 3136), 0)  # (R, C*7*7) pooled features

    def run():
        return fc7.forward(np.maximum(fc6.forward(x), 0))  # (R, 256)
    return run, float(layer_cost(fc6, HEAD_ROIS)["flops"] + layer_cost(fc7, HEAD_ROIS)["flops"])


def _setup_selective_search(rng, impl: str):
    """selective_search with its defaults (300 boxes) on one 128 x 128 shapes image, the
    default dataset's first; ``impl`` picks the segmentation's tier (the same boxes)."""
    from minircnn.data.shapes import ShapesDataset
    from minircnn.detection.proposals import selective_search

    image = ShapesDataset(1, image_size=128, seed=0)[0]["image"]
    return (lambda: selective_search(image, max_boxes=300, impl=impl)), None


def _setup_roi(rng, forward, backward, **kwargs):
    """Random RoIs (8..128 px, clipped to the 128x128 images) on ROI_FEATURES, image by
    image as the minibatch samplers and detect_images give them."""
    x = f32(rng, *ROI_FEATURES)
    x1y1 = rng.uniform(0, 120, (ROI_COUNT, 2))
    x2y2 = np.minimum(x1y1 + rng.uniform(8, 128, (ROI_COUNT, 2)), 127)
    batch = np.sort(rng.integers(0, ROI_FEATURES[0], (ROI_COUNT, 1)), axis=0)
    rois = np.concatenate([batch, x1y1, x2y2], axis=1).astype(np.float32)  # (R, 5)
    sizes = {} if "levels" in kwargs or "output_size" in kwargs else {"output_size": ROI_OUT}
    return _setup_fwd_bwd(forward, backward, (x, rois), spatial_scale=ROI_SCALE,
                          **sizes, **kwargs)


def _roi_table_benchmarks() -> list[Benchmark]:
    """Both tables forced, at 7x7 bins (box is cheaper) and 1x1 (sparse is cheaper)."""
    return [Benchmark(f"roi_pool {table} table fwd+bwd 2x64x16x16 256 RoIs {size}x{size}",
                      lambda rng, t=table, s=size: _setup_roi(
                          rng, roi_pool_forward, roi_pool_backward, output_size=(s, s), table=t))
            for size in (7, 1) for table in ("box", "sparse")]


def _with_blas_threads(setup: Setup, n: int) -> Setup:
    """The same benchmark run with ``n`` BLAS threads."""
    def threaded_setup(rng):
        run, flops = setup(rng)

        def threaded_run():
            with blas_threads(n):
                return run()
        return threaded_run, flops
    return threaded_setup


RPN = "faster r-cnn RPN proposals per image (backbone included)"
JOINT = "faster r-cnn joint train step, frozen blocks' output stored (2 images)"
# The steps as `minircnn train` runs them: one image per process (train_workers=2).
STORED_SLOTS = ("fast r-cnn train step, frozen blocks' output stored, one image per "
                "process (2 processes), wall clock")
JOINT_SLOTS = f"{JOINT}, one image per process (2 processes), wall clock"


def _detector_benchmarks() -> list[Benchmark]:
    """Fast R-CNN training step and detection as ``minircnn train`` / ``detect`` run them
    (the default TrainConfig: its test pyramid, RoI op and sizes), and the RPN's
    proposals as ``minircnn train --proposals rpn`` times them, each followed by its
    parts (% of the whole)."""
    from minircnn.perf import detector_bench as d
    from minircnn.perf import rpn_bench as r

    step = "fast r-cnn train step (2 images, 128 RoIs)"
    infer = f"fast r-cnn detect per image ({d.NUM_TEST_PROPOSALS} proposals, {d.PYRAMID})"
    one = f"fast r-cnn detect per image ({d.NUM_TEST_PROPOSALS} proposals, one scale)"
    wall = f"{step}, wall clock"
    stored = "fast r-cnn train step, frozen blocks' output stored (2 images, 128 RoIs)"
    return [
        Benchmark(step, d.setup_train_step),
        Benchmark("fast r-cnn train step part: backbone fwd+bwd", d.setup_train_backbone,
                  part_of=step),
        Benchmark(f"fast r-cnn train step part: {d.ROI_OP} fwd+bwd", d.setup_train_roi,
                  part_of=step),
        Benchmark("fast r-cnn train step part: head fwd+bwd + loss", d.setup_train_head,
                  part_of=step),
        Benchmark("fast r-cnn train step part: SGD update", d.setup_train_update, part_of=step),
        Benchmark(stored, d.setup_train_step_stored, compare_to=step),
        Benchmark(STORED_SLOTS, d.setup_train_step_slots, compare_to=stored, clock="wall"),
        Benchmark(f"{wall}, 1 BLAS thread", _with_blas_threads(d.setup_train_step, 1),
                  clock="wall"),
        Benchmark(f"{wall}, 2 BLAS threads", _with_blas_threads(d.setup_train_step, 2),
                  compare_to=f"{wall}, 1 BLAS thread", clock="wall"),
        Benchmark(infer, d.setup_inference),
        *[Benchmark(f"fast r-cnn detect part: backbone at {s:g}x",
                    lambda rng, j=j: d.setup_inference_backbone(rng, j), part_of=infer)
          for j, s in enumerate(d.TEST_SCALES)],
        Benchmark(f"fast r-cnn detect part: {d.ROI_OP} (all levels)", d.setup_inference_roi,
                  part_of=infer),
        Benchmark("fast r-cnn detect part: head (all levels)", d.setup_inference_head,
                  part_of=infer),
        Benchmark("fast r-cnn detect part: softmax, decode, NMS",
                  d.setup_inference_postprocess, part_of=infer),
        Benchmark(one, d.setup_inference_one_scale),
        Benchmark(RPN, r.setup_rpn_proposals),
        Benchmark("faster r-cnn RPN part: backbone", r.setup_rpn_backbone, part_of=RPN),
        Benchmark("faster r-cnn RPN part: head, decode, NMS", r.setup_rpn_head, part_of=RPN),
        Benchmark(JOINT, r.setup_joint_step),
        Benchmark(JOINT_SLOTS, r.setup_joint_step_slots, compare_to=JOINT, clock="wall"),
        *[Benchmark(f"faster r-cnn joint step part: {part}", setup, part_of=JOINT)
          for part, setup in (("backbone blocks 3-4 fwd+bwd", r.setup_joint_backbone),
                              ("RPN head, anchor labels, loss, fwd+bwd", r.setup_joint_rpn),
                              ("proposals: decode, top-k, NMS", r.setup_joint_proposals),
                              (f"RoI sampling, {d.ROI_OP}, head, loss, fwd+bwd",
                               r.setup_joint_detector),
                              ("SGD update", r.setup_joint_update))],
    ]


DETECTOR_BENCHMARKS = _detector_benchmarks()
SS_NAIVE = "selective search per 128x128 image, naive segmentation"

CONV_STACK_NAME = "conv2d stack fwd+bwd 2x3x128x128"
BENCHMARKS: list[Benchmark] = [
    Benchmark("matmul float32 1024^3", _setup_matmul),
    Benchmark(CONV_STACK_NAME, setup_conv_stack),
    Benchmark(f"{CONV_STACK_NAME}, matrix products alone", setup_conv_stack_products),
    Benchmark(f"{CONV_STACK_NAME}, ReLU and max pooling alone", setup_conv_stack_elementwise),
    Benchmark("conv2d naive fwd+bwd 1x4x12x12", lambda rng: _setup_conv_tiny(rng, True)),
    Benchmark("conv2d fast fwd+bwd 1x4x12x12", lambda rng: _setup_conv_tiny(rng, False),
              compare_to="conv2d naive fwd+bwd 1x4x12x12"),
    Benchmark("max_pool2d 2x2 fwd+bwd 2x64x64x64", lambda rng: _setup_fwd_bwd(
        max_pool2d_forward, max_pool2d_backward, (f32(rng, *FEATURE_SHAPE),),
        kernel=2, stride=2)),
    Benchmark("linear fwd+bwd 256x3136->1024", _setup_linear),
    Benchmark("batchnorm2d fwd+bwd 2x64x64x64", lambda rng: _setup_fwd_bwd(
        batchnorm2d_forward, batchnorm2d_backward,
        (f32(rng, *FEATURE_SHAPE), np.ones(64, np.float32), np.zeros(64, np.float32)))),
    Benchmark("relu fwd+bwd 2x64x64x64", lambda rng: _setup_fwd_bwd(
        relu_forward, relu_backward, (f32(rng, *FEATURE_SHAPE),))),
    Benchmark(f"roi_pool naive fwd+bwd {ROI_TAG}", lambda rng: _setup_roi(
        rng, roi_pool_forward_naive, roi_pool_backward_naive)),
    Benchmark(f"roi_pool vectorized fwd+bwd {ROI_TAG}", lambda rng: _setup_roi(
        rng, roi_pool_forward_vectorized, roi_pool_backward),
        compare_to=f"roi_pool naive fwd+bwd {ROI_TAG}"),
    Benchmark(f"roi_pool fast fwd+bwd {ROI_TAG}", lambda rng: _setup_roi(
        rng, roi_pool_forward, roi_pool_backward),
        compare_to=f"roi_pool naive fwd+bwd {ROI_TAG}"),
    Benchmark(f"roi_align fast fwd+bwd {ROI_TAG}", lambda rng: _setup_roi(
        rng, roi_align_forward, roi_align_backward, sampling_ratio=2)),
    *_roi_table_benchmarks(),
    Benchmark("spp fwd+bwd levels (4, 2, 1) 2x64x16x16 256 RoIs", lambda rng: _setup_roi(
        rng, spp_forward, spp_backward, levels=(4, 2, 1))),
    *DETECTOR_BENCHMARKS,
    Benchmark(f"fc6+fc7 fwd {HEAD_ROIS} RoIs", _setup_head),
    Benchmark(f"fc6+fc7 fwd {HEAD_ROIS} RoIs truncated SVD rank {HEAD_RANK}",
              lambda rng: _setup_head(rng, HEAD_RANK), compare_to=f"fc6+fc7 fwd {HEAD_ROIS} RoIs"),
    Benchmark(SS_NAIVE, lambda rng: _setup_selective_search(rng, "naive")),
    Benchmark("selective search per 128x128 image", lambda rng: _setup_selective_search(
        rng, "fast"), compare_to=SS_NAIVE),
]
MATMUL = BENCHMARKS[0].name


CLOCKS = {"wall": time.perf_counter, "cpu": time.thread_time}


def best_time(run: Callable[[], object], repeats: int, clock: str = "wall") -> float:
    """Best time of ``repeats`` calls (after one warm-up call), in seconds, on the wall
    clock or in CPU time of the calling thread (``clock="cpu"``)."""
    now = CLOCKS[clock]
    run()
    best = float("inf")
    for _ in range(max(1, repeats)):
        start = now()
        run()
        best = min(best, now() - start)
    return best


def run_bench(repeats: int = 5, only: str | None = None, seed: int = 0,
              threads: int = 1) -> dict:
    """Time every entry of ``BENCHMARKS`` (those whose name contains ``only``).

    Runs with ``threads`` BLAS threads (entries that set their own keep theirs). Timing
    is only as good as the machine is idle: ``load_avg`` is recorded so a run on a busy
    machine can be recognised; the CPU-time entries suffer least from it. The matmul
    is always timed (first, and again last; its best time is kept): it is the
    yardstick for ``pct_of_matmul``. Each entry's time is the best of ``repeats`` runs
    after a warm-up run.
    Returns:
        {"numpy": version, "repeats": repeats, "blas_threads": threads, "cpu_count": int,
         "malloc_keeps_freed": bool (utils/memory.py), "load_avg": float,
         "machine": {"platform", "cpu", "blas"} (strings),
         "matmul_gflops": float, "entries": {name: {"ms", "clock", "flops", "gflops",
         "pct_of_matmul", ["speedup"], ["pct_of_whole"]}}}; flops / gflops /
        pct_of_matmul are None for entries without a FLOP count.
    """
    kept = keep_freed_memory()         # as the minircnn command runs (utils/memory.py)
    rng = np.random.default_rng(seed)
    chosen = [b for b in BENCHMARKS if b.name == MATMUL or only is None or only in b.name]
    entries: dict[str, dict] = {}
    with blas_threads(threads):
        for bench in chosen:
            run, flops = bench.setup(rng)
            seconds = best_time(run, repeats, bench.clock)
            if bench.name == MATMUL:
                matmul_run, matmul_clock = run, bench.clock
            entries[bench.name] = {"ms": 1e3 * seconds, "clock": bench.clock, "flops": flops,
                                   "gflops": None if flops is None else flops / seconds / 1e9}
        if len(chosen) > 1:  # time the yardstick again at the end; keep its best (less noise)
            matmul = entries[MATMUL]
            matmul["ms"] = min(matmul["ms"], 1e3 * best_time(matmul_run, repeats, matmul_clock))
            matmul["gflops"] = matmul["flops"] / matmul["ms"] / 1e6
        ran_on = machine()                 # inside: the BLAS thread count the entries had
    matmul_gflops = entries[MATMUL]["gflops"]
    for bench in chosen:
        entry = entries[bench.name]
        entry["pct_of_matmul"] = (None if entry["gflops"] is None
                                  else 100.0 * entry["gflops"] / matmul_gflops)
        if bench.compare_to in entries:
            entry["speedup"] = entries[bench.compare_to]["ms"] / entry["ms"]
        if bench.part_of in entries:
            entry["pct_of_whole"] = 100.0 * entry["ms"] / entries[bench.part_of]["ms"]
    return {"numpy": np.__version__, "repeats": repeats, "blas_threads": threads,
            "cpu_count": os.cpu_count(), "malloc_keeps_freed": kept,
            "load_avg": _load_average(), "machine": ran_on, "matmul_gflops": matmul_gflops,
            "entries": entries}


def machine() -> dict:
    """What the timings ran on: OS, CPU model and the BLAS library NumPy calls."""
    from threadpoolctl import threadpool_info

    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:   # Linux: the model name; elsewhere processor()
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    blas = [f"{p['internal_api']} {p['version']} ({p['num_threads']} threads)"
            for p in threadpool_info() if p["user_api"] == "blas"]
    return {"platform": platform.platform(), "cpu": cpu or "unknown",
            "blas": ", ".join(blas) or "unknown"}


def _load_average() -> float | None:
    """1-minute load average (None where the OS has none): a busy machine times badly,
    and with more runnable processes than cores, multi-threaded BLAS calls suffer most."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None
