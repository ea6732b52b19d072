"""Multiply-adds (MACs) counted from the layer shapes: R-CNN vs SPP-net vs Fast R-CNN.

Table 4's times follow from how much each detector computes, and where: R-CNN runs the
backbone once per proposal (on a warped crop), SPP-net and Fast R-CNN once per image
(per pyramid scale). These counts put a number on it, next to the measured times:

- a convolution costs ``H_out * W_out * F * C * KH * KW`` MACs, an fc layer ``in * out``
  per row; pooling, ReLU, warps and NMS are not counted (no multiplications, or few);
- a training iteration costs its forward pass plus about twice the forward MACs of the
  layers that train (the backward pass computes dx and dw, each a product the size of
  the forward one); frozen layers below them cost their forward pass only.
"""

from __future__ import annotations

from minircnn.layers.conv import Conv2d
from minircnn.layers.pool import MaxPool2d
from minircnn.models.rcnn import RCNN


def _trains(layer) -> bool:
    return any(p.requires_grad for p in layer.parameters())


def _fc_macs(fc) -> int:
    """in * out for a Linear; (in + out) * rank for a truncated-SVD LowRankLinear."""
    rank = getattr(fc, "rank", None)
    if rank is not None:
        return (fc.in_features + fc.out_features) * rank    # x W1^T, then W2
    return fc.in_features * fc.out_features


def backbone_macs(backbone, height: int, width: int) -> tuple[int, int]:
    """(all, trainable) forward MACs of a SmallVGG-style backbone on one H x W image."""
    if not hasattr(backbone, "layers"):
        raise TypeError(f"backbone_macs: counts SmallVGG-style backbones (a .layers list), "
                        f"got {type(backbone).__name__}")
    total, trainable, h, w = 0, 0, int(height), int(width)
    for layer in backbone.layers:
        if isinstance(layer, Conv2d):
            f, c, kh, kw = layer.w.data.shape
            h = (h + 2 * layer.pad - kh) // layer.stride + 1
            w = (w + 2 * layer.pad - kw) // layer.stride + 1
            macs = h * w * f * c * kh * kw                   # each output: C * KH * KW MACs
            total += macs
            trainable += macs if _trains(layer) else 0
        elif isinstance(layer, MaxPool2d):
            h = (h - layer.kernel) // layer.stride + 1
            w = (w - layer.kernel) // layer.stride + 1
    return total, trainable


def head_macs(model) -> tuple[int, int]:
    """(all, trainable) MACs of the fc head per RoI: fc6, fc7, cls_score, bbox_pred."""
    head = getattr(model, "head", model)            # RCNN, SPPNet keep it in .head
    layers = (head.fc6, head.fc7, head.cls_score, head.bbox_pred)
    return (sum(_fc_macs(fc) for fc in layers),
            sum(_fc_macs(fc) for fc in layers if _trains(fc)))


def _padded(side: int, scale: float, stride: int) -> int:
    """A side resized by ``scale`` and padded to a multiple of the stride (rescale_batch)."""
    s = round(side * scale)
    return -(-s // stride) * stride


def inference_macs(model, image_size: int, num_rois: int, scales=(1.0,)) -> dict:
    """MACs to score ``num_rois`` proposals on one square image at test time.

    Returns dict(backbone, head, total, backbone_passes): R-CNN passes the backbone
    once per RoI (a ``crop_size`` crop), the others once per pyramid scale.
    """
    head, _ = head_macs(model)
    if isinstance(model, RCNN):
        per_crop, _ = backbone_macs(model.backbone, model.crop_size, model.crop_size)
        backbone, passes = num_rois * per_crop, num_rois
    else:
        stride = model.backbone.feature_stride
        sides = [_padded(image_size, s, stride) for s in scales]
        backbone, passes = sum(backbone_macs(model.backbone, s, s)[0] for s in sides), len(sides)
    return {"backbone": backbone, "head": num_rois * head, "total": backbone + num_rois * head,
            "backbone_passes": passes}


def train_macs_per_iteration(model, config) -> int:
    """MACs of one training iteration under a TrainConfig: forward + 2 x trainable.

    Fast R-CNN and SPP-net run the backbone on ``images_per_batch`` images (at the
    mean area of ``train_scales``), R-CNN on ``rois_per_batch`` crops.
    """
    head, head_trains = head_macs(model)
    rois = config.rois_per_batch
    if isinstance(model, RCNN):
        bb, bb_trains = backbone_macs(model.backbone, model.crop_size, model.crop_size)
        bb, bb_trains = rois * bb, rois * bb_trains
    else:
        stride = model.backbone.feature_stride
        per_scale = [backbone_macs(model.backbone, _padded(config.image_size, s, stride),
                                   _padded(config.image_size, s, stride))
                     for s in config.train_scales]
        n = config.images_per_batch / len(per_scale)          # images per scale, on average
        bb = n * sum(m[0] for m in per_scale)
        bb_trains = n * sum(m[1] for m in per_scale)
    return int(bb + 2 * bb_trains + rois * (head + 2 * head_trains))
