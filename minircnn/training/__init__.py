"""Training the detector: settings (TrainConfig), one step, the loop, the metrics, SGD.

Everything public is importable from here: ``from minircnn.training import TrainConfig``.

- config.py: TrainConfig, make_detector, make_datasets
- step.py: sample_batch (one hierarchical minibatch), train_step (one SGD iteration)
- loop.py: train_detector (the whole run: proposals, epochs, checkpoints, evaluation)
- metrics.py: evaluate_detector, detection_metrics, format_metrics
- optim.py: SGD with momentum and weight decay, the step schedule with warm-up
- runs.py: run folders (lock, fresh / resume checks, checkpoints with optimizer and RNG state)
- transfer.py: classification pretraining and the freeze-vs-fine-tune comparison
"""

from minircnn.training.config import TrainConfig, make_datasets, make_detector
from minircnn.training.loop import train_detector
from minircnn.training.metrics import detection_metrics, evaluate_detector, format_metrics
from minircnn.training.optim import SGD, step_lr
from minircnn.training.step import flip_horizontal, sample_batch, train_step
