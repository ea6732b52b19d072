"""Test-time commands on saved detectors: evaluate a checkpoint, detect shapes in a PNG.

What ``minircnn eval`` and ``minircnn detect`` call. Both rebuild the model from the
checkpoint and read the TrainConfig saved with it (dataset split, proposal settings).
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from minircnn.data.shapes import Drawn, ShapesDataset
from minircnn.detection.inference import check_model_classes
from minircnn.models.checkpoint import load_checkpoint, read_checkpoint
from minircnn.training.config import TrainConfig, make_datasets
from minircnn.training.metrics import evaluate_detector
from minircnn.training.proposals import load_proposals
from minircnn.training.rpn_eval import rpn_dataset_proposals
from minircnn.utils.blas import blas_threads
from minircnn.utils.errors import UserError


def _checkpoint_config(path) -> TrainConfig:
    """The TrainConfig saved in a checkpoint (defaults when it holds none)."""
    saved = read_checkpoint(path, arrays=False).config
    return TrainConfig.from_dict(saved) if saved else TrainConfig()


def evaluate_checkpoint(path, *, num_val: int | None = None, cache_dir: str | None = None,
                        device: str = "cpu") -> dict:
    """Evaluate a saved detector on the held-out split it was trained with (``minircnn eval``).

    Args:
        path: a run checkpoint.npz / model.npz (or the shipped weights).
        num_val: number of val images (default: the run's).
        cache_dir: proposal cache folder (default: the per-user cache, see
            ``proposal_cache_dir``; "" disables).
    Returns:
        the metrics of ``evaluate_detector``.
    """
    config = _checkpoint_config(path)
    # The cache folder saved with a run is ignored (it may be relative to another working
    # folder, or someone else's): the per-user cache is shared by every run and folder.
    changes = {"device": device, "cache_dir": cache_dir}
    if num_val is not None:
        changes["num_val"] = num_val
    config = dataclasses.replace(config, **changes)
    model = load_checkpoint(path, device=device)
    _, val_ds = make_datasets(config)
    check_model_classes(model, val_ds.classes, source=f"checkpoint {path}")
    with blas_threads(config.blas_threads):
        # The images and boxes are read twice below (detections, metrics): drawn once.
        if config.proposal_method == "rpn":       # a Faster R-CNN: its own proposals
            val_ds = Drawn(val_ds)
            proposals, _ = rpn_dataset_proposals(model, val_ds)
        else:       # the proposal cache is named by the ShapesDataset's settings: first
            proposals = load_proposals(val_ds, config)
            val_ds = Drawn(val_ds)
        metrics, _ = evaluate_detector(model, val_ds, proposals, config)
    return metrics


# PIL mode -> the largest value of one channel (the scale to [0, 1]); "I" is how some
# Pillow versions open a 16-bit grayscale PNG (values 0..65535 in int32).
_MODE_MAX = {"1": 1, "L": 255, "LA": 255, "RGB": 255, "RGBA": 255, "I;16": 65535,
             "I;16B": 65535, "I;16L": 65535, "I": 65535}


def read_image(path) -> np.ndarray:
    """An image file as float32 (3, H, W) in [0, 1].

    PNG and JPEG, 8 or 16 bits per channel: gray (repeated to 3 channels), RGB, RGBA and
    gray+alpha (alpha dropped), palette (looked up), 1-bit (0 or 1), CMYK/YCbCr JPEGs
    (converted to RGB). Values are divided by the largest value the file's bit depth can
    hold (255 or 65535), so a 16-bit image reads the same as its 8-bit version.

    Raises:
        UserError: no such file, not an image Pillow can read (a text file renamed .png,
            a truncated file), or a kind of image listed above not being (e.g. 32-bit
            float TIFF); each names the file.
    """
    from PIL import Image, UnidentifiedImageError

    path = os.fspath(path)
    todo = "give a PNG or JPEG image (gray, RGB or RGBA, 8 or 16 bits)"
    if not os.path.isfile(path):
        raise UserError(f"image {path}: no such file", todo)
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode in ("P", "PA", "CMYK", "YCbCr", "LAB", "HSV"):
                img = img.convert("RGBA" if img.mode in ("P", "PA") else "RGB")
            mode, pixels = img.mode, np.asarray(img)
    except UnidentifiedImageError as e:
        raise UserError(f"{path} is not an image file Pillow can read", todo) from e
    except (OSError, SyntaxError, ValueError) as e:   # truncated or corrupt data
        raise UserError(f"{path} is not a readable image ({e})", todo) from e
    if mode not in _MODE_MAX:
        raise UserError(f"{path}: images of mode {mode!r} are not supported", todo)
    if pixels.ndim == 2:
        pixels = np.stack([pixels] * 3, axis=-1)            # (H, W) -> (H, W, 3)
    elif pixels.shape[2] == 2:                              # gray + alpha
        pixels = np.repeat(pixels[:, :, :1], 3, axis=2)
    if min(pixels.shape[:2]) < 2:
        raise UserError(f"{path} is {pixels.shape[1]}x{pixels.shape[0]} pixels",
                        "give an image at least 2 pixels on each side")
    rgb = pixels[:, :, :3].astype(np.float64) / _MODE_MAX[mode]   # (H, W, 3) in [0, 1]
    return np.ascontiguousarray(rgb.transpose(2, 0, 1), dtype=np.float32)


def detect_image_file(checkpoint, image_path, out_path, *, score_thresh: float = 0.5,
                      device: str = "cpu") -> dict:
    """Detect shapes in a PNG with a saved model and draw them (``minircnn detect``).

    The image is zero-padded at the bottom/right to a multiple of the feature stride;
    proposals come from selective search, as in training (a Faster R-CNN's from its RPN).

    Args:
        device: "cpu" or "gpu": where the network runs (proposals and drawing are host work).
    Returns:
        dict(boxes, scores, labels, names) of the detections drawn (score >= thresh).
    """
    from minircnn.detection.boxes import clip_boxes
    from minircnn.detection.proposals import selective_search
    from minircnn.viz import draw_boxes, save_figure

    config = _checkpoint_config(checkpoint)
    model = load_checkpoint(checkpoint, device=device)
    classes = getattr(model, "classes", None) or ShapesDataset.classes   # older: unnamed
    check_model_classes(model, classes, source=f"checkpoint {checkpoint}")
    image = read_image(image_path)
    _, h, w = image.shape
    s = model.backbone.feature_stride
    padded = np.zeros((3, -(-h // s) * s, -(-w // s) * s), dtype=np.float32)
    padded[:, :h, :w] = image
    if config.proposal_method == "rpn":           # a Faster R-CNN proposes its own
        proposals = clip_boxes(model.propose(padded[None])[0], (h, w))
    else:
        proposals = selective_search(image, max_boxes=config.max_proposals)
    dets = model.detect(padded, proposals, nms_thresh=config.nms_thresh,
                        max_dets=config.max_dets, scales=config.test_scales,
                        target=config.pyramid_target)
    keep = dets["scores"] >= score_thresh
    dets = {k: v[keep] for k, v in dets.items()}
    dets["boxes"] = clip_boxes(dets["boxes"], (h, w))
    dets["names"] = [classes[k - 1] for k in dets["labels"]]
    ax = draw_boxes(image, dets["boxes"], dets["labels"], dets["scores"], class_names=classes)
    save_figure(ax, out_path)
    return dets
