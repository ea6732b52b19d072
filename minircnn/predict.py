"""Test-time commands on saved detectors: evaluate a checkpoint, detect shapes in a PNG.

What ``minircnn eval`` and ``minircnn detect`` call. Both rebuild the model from the
checkpoint and read the TrainConfig saved with it (dataset split, proposal settings).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from minircnn.blas import blas_threads
from minircnn.data.shapes import ShapesDataset
from minircnn.models import load_checkpoint, read_checkpoint
from minircnn.train import TrainConfig, evaluate_detector, load_proposals, make_datasets


def _checkpoint_config(path) -> TrainConfig:
    """The TrainConfig saved in a checkpoint (defaults when it holds none)."""
    saved = read_checkpoint(path).config
    return TrainConfig.from_dict(saved) if saved else TrainConfig()


def evaluate_checkpoint(path, *, num_val: int | None = None, cache_dir: str | None = None,
                        device: str = "cpu") -> dict:
    """Evaluate a saved detector on the held-out split it was trained with (``minircnn eval``).

    Args:
        path: a run checkpoint.npz / model.npz (or the shipped weights).
        num_val: number of val images (default: the run's).
        cache_dir: proposal cache folder (default: the run's; "" disables).
    Returns:
        the metrics of ``evaluate_detector``.
    """
    config = _checkpoint_config(path)
    changes = {"device": device}
    if num_val is not None:
        changes["num_val"] = num_val
    if cache_dir is not None:
        changes["cache_dir"] = cache_dir
    config = dataclasses.replace(config, **changes)
    model = load_checkpoint(path, device=device)
    _, val_ds = make_datasets(config)
    with blas_threads(config.blas_threads):
        metrics, _ = evaluate_detector(model, val_ds, load_proposals(val_ds, config), config)
    return metrics


def read_image(path) -> np.ndarray:
    """A PNG as float32 (3, H, W) in [0, 1] (alpha dropped, grayscale repeated)."""
    import matplotlib.image

    img = np.asarray(matplotlib.image.imread(path))
    if img.dtype == np.uint8:
        img = img / 255.0
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)                   # (H, W) -> (H, W, 3)
    if img.ndim != 3 or img.shape[2] not in (3, 4):
        raise ValueError(f"read_image: {path}: expected an RGB(A) or gray image, "
                         f"got shape {img.shape}")
    return np.ascontiguousarray(img[:, :, :3].transpose(2, 0, 1), dtype=np.float32)


def detect_image_file(checkpoint, image_path, out_path, *, score_thresh: float = 0.5) -> dict:
    """Detect shapes in a PNG with a saved model and draw them (``minircnn detect``).

    The image is zero-padded at the bottom/right to a multiple of the feature stride;
    proposals come from selective search, as in training.

    Returns:
        dict(boxes, scores, labels, names) of the detections drawn (score >= thresh).
    """
    from minircnn.detection.boxes import clip_boxes
    from minircnn.detection.proposals import selective_search
    from minircnn.viz import draw_boxes, save_figure

    config = _checkpoint_config(checkpoint)
    model = load_checkpoint(checkpoint)
    image = read_image(image_path)
    _, h, w = image.shape
    s = model.backbone.feature_stride
    padded = np.zeros((3, -(-h // s) * s, -(-w // s) * s), dtype=np.float32)
    padded[:, :h, :w] = image
    proposals = selective_search(image, max_boxes=config.max_proposals)
    dets = model.detect(padded, proposals, nms_thresh=config.nms_thresh,
                        max_dets=config.max_dets)
    keep = dets["scores"] >= score_thresh
    dets = {k: v[keep] for k, v in dets.items()}
    dets["boxes"] = clip_boxes(dets["boxes"], (h, w))
    classes = ShapesDataset.classes
    dets["names"] = [classes[k - 1] for k in dets["labels"]]
    ax = draw_boxes(image, dets["boxes"], dets["labels"], dets["scores"], class_names=classes)
    save_figure(ax, out_path)
    return dets
