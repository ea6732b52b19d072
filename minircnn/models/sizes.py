"""How many values each model holds, from its constructor kwargs, without building it.

``load_checkpoint`` calls these before building a model from an untrusted file, so a
hand-edited ``hidden=100000`` is refused instead of allocating gigabytes. Counts
include buffers (BatchNorm running statistics) and may round up (a ResNet projection is
counted whenever it could exist); nested models (a backbone) are counted separately by
the caller, so each function counts only its own layers.
"""

from __future__ import annotations

from minircnn.utils.validate import check_count


def _ints(name: str, values) -> list[int]:
    if not isinstance(values, (list, tuple)) or not values:
        raise ValueError(f"{name} must be a non-empty list of ints, got {values!r}")
    return [check_count(name, v) for v in values]


def _conv(c_in: int, c_out: int, k: int, bias: bool = True) -> int:
    return c_in * c_out * k * k + (c_out if bias else 0)


def _norm(c: int) -> int:
    return 4 * c           # weight, bias, running mean, running var


def _head(in_features: int, hidden: int, num_classes: int) -> int:
    """fc6, fc7, cls_score (K+1) and bbox_pred (4(K+1)), weights and biases."""
    k1 = num_classes + 1
    return (in_features + 1) * hidden + (hidden + 1) * hidden + (hidden + 1) * 5 * k1


def small_vgg(kw: dict) -> int:
    channels = _ints("channels", kw.get("channels", (16, 32, 64, 64)))
    total, c_in = 0, 3
    for c in channels:
        total += _conv(c_in, c, 3) + (_norm(c) if kw.get("batch_norm") else 0)
        c_in = c
    return total


def vgg_classifier(kw: dict) -> int:
    channels = _ints("channels", kw.get("channels", (16, 32, 64, 64)))
    return small_vgg(kw) + (channels[-1] + 1) * check_count("num_classes",
                                                           kw.get("num_classes", 6))


def _trunk(kw: dict, widths: list[int]) -> int:
    blocks = kw.get("blocks")
    blocks = [1] * len(widths) if blocks is None else _ints("blocks", blocks)[:len(widths)]
    c = widths[0]
    total = _conv(check_count("in_channels", kw.get("in_channels", 3)), c, 3, bias=False)
    total += _norm(c)
    for width, count in zip(widths, blocks, strict=False):
        for j in range(count):
            c_in = c if j == 0 else width
            total += _conv(c_in, width, 3, False) + _conv(width, width, 3, False) + 2 * _norm(width)
            total += _conv(c_in, width, 1, False) + _norm(width)   # projection, if any
        c = width
    return total


def mini_resnet(kw: dict) -> int:
    widths = _ints("widths", kw.get("widths", (16, 32, 64, 128)))
    return _trunk(kw, widths) + (widths[-1] + 1) * check_count("num_classes",
                                                               kw.get("num_classes", 10))


def resnet_backbone(kw: dict) -> int:
    widths = _ints("widths", kw.get("widths", (16, 32, 64, 128)))
    stages = kw.get("num_stages")
    return _trunk(kw, widths[:check_count("num_stages", stages)] if stages else widths)


def out_channels(spec) -> int:
    """Channels of the features a backbone spec makes (1 when its class is not known)."""
    kw = spec.get("kwargs", {}) if isinstance(spec, dict) else {}
    if spec.get("class") == "SmallVGG":
        return _ints("channels", kw.get("channels", (16, 32, 64, 64)))[-1]
    if spec.get("class") in ("ResNetBackbone", "MiniResNet"):
        widths = _ints("widths", kw.get("widths", (16, 32, 64, 128)))
        stages = kw.get("num_stages")
        return widths[:check_count("num_stages", stages)][-1] if stages else widths[-1]
    return 1


def _output_area(kw: dict) -> int:
    size = kw.get("output_size", (7, 7))
    ph, pw = _ints("output_size", size if isinstance(size, (list, tuple)) else [size, size])
    return ph * pw


def fast_rcnn(kw: dict) -> int:
    in_features = out_channels(kw.get("backbone")) * _output_area(kw)
    return _head(in_features, check_count("hidden", kw.get("hidden", 256)),
                 check_count("num_classes", kw.get("num_classes")))


def rcnn(kw: dict) -> int:
    crop = check_count("crop_size", kw.get("crop_size", 32))
    in_features = out_channels(kw.get("backbone")) * crop * crop   # at most, stride 1
    return _head(in_features, check_count("hidden", kw.get("hidden", 256)),
                 check_count("num_classes", kw.get("num_classes")))


def spp_net(kw: dict) -> int:
    levels = _ints("levels", kw.get("levels", (6, 3, 2, 1)))
    in_features = out_channels(kw.get("backbone")) * sum(lv * lv for lv in levels)
    return _head(in_features, check_count("hidden", kw.get("hidden", 256)),
                 check_count("num_classes", kw.get("num_classes")))


def rpn(kw: dict) -> int:
    """RegionProposalNetwork: conv3x3 C -> C, 1x1 C -> k and C -> 4k (k anchors per cell)."""
    c = check_count("in_channels", kw.get("in_channels"))
    k = len(kw.get("scales", (1,) * 6)) * len(kw.get("aspect_ratios", (1,)))
    return _conv(c, c, 3) + _conv(c, k, 1) + _conv(c, 4 * k, 1)
