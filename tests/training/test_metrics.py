"""minircnn/training/metrics.py: the evaluation's detections in one or several processes."""

import dataclasses
import subprocess
import sys
import threading

from minircnn.detection.inference import DETECT_BATCH
from minircnn.training import TrainConfig
from minircnn.training import metrics as metrics_mod
from minircnn.training.config import make_detector

TINY = TrainConfig(image_size=64, max_objects=2, pretrained=False, channels=(4, 8),
                   num_pools=1, output_size=4, hidden=16, score_thresh=0.0)

# Run in a fresh interpreter: the workers are forks, which this project only makes from
# a process with no other thread (a test runner has some).
TWO_PROCESSES_DETECT_AS_ONE = f"""
import dataclasses, json
import numpy as np
from minircnn.data.shapes import ShapesDataset
from minircnn.detection.proposals import dense_boxes
from minircnn.training import TrainConfig
from minircnn.training import metrics as metrics_mod
from minircnn.training.config import make_detector

config = TrainConfig(image_size=64, max_objects=2, pretrained=False, channels=(4, 8),
                     num_pools=1, output_size=4, hidden=16, score_thresh=0.0)
n = 2 * {DETECT_BATCH} + 3                          # a last, partial batch too
ds = ShapesDataset(n, image_size=64, seed=3, max_objects=2)
props = [dense_boxes(64)[i::7] for i in range(n)]
model = make_detector(config)
one = dataclasses.replace(config, proposal_workers=1)
two = dataclasses.replace(config, proposal_workers=2)
batches = -(-n // {DETECT_BATCH})                   # 3
assert metrics_mod._eval_workers(model, one, batches) == 1
assert metrics_mod._eval_workers(model, two, batches) == 2
m1, d1 = metrics_mod.evaluate_detector(model, ds, props, one)
m2, d2 = metrics_mod.evaluate_detector(model, ds, props, two)
assert len(d1) == len(d2) == n and sum(len(d["boxes"]) for d in d1) > 0
for a, b in zip(d1, d2, strict=True):
    assert all(np.array_equal(a[k], b[k]) for k in ("boxes", "scores", "labels"))
assert json.dumps(m1) == json.dumps(m2)              # NaN (no object of a size) too
print("same detections")
"""


def test_workers_detect_what_one_process_detects():
    """Shares are whole detect_images batches, so two processes return the same
    detections, in the same order, bit for bit, as one."""
    done = subprocess.run([sys.executable, "-c", TWO_PROCESSES_DETECT_AS_ONE],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "same detections"


def test_one_process_where_workers_cannot_help_or_are_unsafe():
    """One batch of images, a BLAS with more threads, or another thread running in this
    process (a fork copies the locks it holds): one process."""
    model = make_detector(TINY)
    two = dataclasses.replace(TINY, proposal_workers=2)
    assert metrics_mod._eval_workers(model, two, 1) == 1
    assert metrics_mod._eval_workers(model, dataclasses.replace(two, blas_threads=2), 100) == 1
    assert metrics_mod._eval_workers(model, dataclasses.replace(two, blas_threads=None),
                                     100) == 1
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        assert metrics_mod._eval_workers(model, two, 100) == 1
    finally:
        stop.set()
        other.join()
