"""Backbones: the convolutional trunk that Fast R-CNN runs once on the whole image.

The backbone interface (any Module following it works in ``FastRCNN``):

- ``forward(images)``: images (N, 3, H, W) -> features (N, out_channels, H/s, W/s);
- ``backward(dfeatures)`` -> dimages (N, 3, H, W), accumulating the parameter grads;
- attributes ``out_channels`` (C of the features) and ``feature_stride`` (s: one feature
  cell covers s x s pixels; RoI pooling uses ``spatial_scale = 1 / s``);
- ``get_config()`` -> the constructor kwargs, so checkpoints can rebuild it.

``SmallVGG`` is a VGG-style stack (Simonyan & Zisserman 2015) shrunk for 128x128 shapes
images on a CPU: 3x3 convolutions with padding 1 and ReLU, a 2x2 max pool after every
block but the last. With the default four blocks it has three pools, so
``feature_stride = 8`` (VGG16's conv5_3 in the paper has stride 16; 8 keeps a 128-pixel
image's feature map at 16x16, so small shapes still cover a few cells). Like VGG16's
conv5_3 in Fast R-CNN, the last block has no pool: RoI pooling replaces pool5.
``num_pools=2`` gives stride 4 (a 32x32 map, finer for the small shapes but 1.5-2x the
training time): ``minircnn train`` uses it, with RoIAlign; see minircnn.training.TrainConfig.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from minircnn.backend import get_array_module
from minircnn.layers.activations import ReLU
from minircnn.layers.conv import Conv2d
from minircnn.layers.global_pool import GlobalAvgPool
from minircnn.layers.linear import Linear
from minircnn.layers.module import Module
from minircnn.layers.norm import BatchNorm2d
from minircnn.layers.pool import MaxPool2d
from minircnn.models.resnet import convert_frozen_batchnorm


class SmallVGG(Module):
    """VGG-style backbone: [conv3x3-relu-(maxpool2x2)] x len(channels), stride 2**num_pools.

    Args:
        channels: output channels of each block.
        num_pools: the first ``num_pools`` blocks end with a 2x2 max pool, so
            ``feature_stride = 2 ** num_pools``; default ``len(channels) - 1`` (every
            block but the last, as VGG16 up to conv5_3).
        batch_norm: put a BatchNorm2d between each conv and its ReLU (trains from
            scratch much faster; VGG16 in the paper has none, but it was pretrained).
        pixel_mean, pixel_std: per-channel constants the images are normalised with
            first, ``(images - mean) / std`` (detectron2's PIXEL_MEAN / PIXEL_STD; the
            defaults are the shapes dataset's statistics, measured on 100 images).
        impl: "fast" or "naive", for every conv and pool layer.
        rng: np.random.Generator for the He-normal weights (default seed 0).
        dtype: parameter dtype (float32 to train, float64 for gradient checks).

    Shapes: images (N, 3, H, W) -> features (N, channels[-1], H/stride, W/stride)
    (H and W divisible by the stride).
    """

    def __init__(self, channels: Sequence[int] = (16, 32, 64, 64), *,
                 num_pools: int | None = None, batch_norm: bool = False,
                 pixel_mean: Sequence[float] = (0.50, 0.49, 0.50),
                 pixel_std: Sequence[float] = (0.19, 0.20, 0.18), impl: str = "fast",
                 rng: np.random.Generator | None = None, dtype=np.float32):
        if len(channels) < 1 or any(int(c) <= 0 for c in channels):
            raise ValueError(f"SmallVGG: channels must be positive ints, got {tuple(channels)}")
        rng = np.random.default_rng(0) if rng is None else rng
        self.channels = tuple(int(c) for c in channels)
        self.dtype = np.dtype(dtype)
        self.batch_norm = bool(batch_norm)
        self.num_pools = len(self.channels) - 1 if num_pools is None else int(num_pools)
        if not 0 <= self.num_pools <= len(self.channels):
            raise ValueError(f"SmallVGG: num_pools must be in 0..{len(self.channels)}, "
                             f"got {num_pools}")
        self.pixel_mean = tuple(float(m) for m in pixel_mean)
        self.pixel_std = tuple(float(v) for v in pixel_std)
        self.layers = []
        in_c = 3
        for i, out_c in enumerate(self.channels):
            self.layers.append(Conv2d(in_c, out_c, 3, pad=1, rng=rng, dtype=dtype, impl=impl))
            if self.batch_norm:
                self.layers.append(BatchNorm2d(out_c, dtype=dtype))
            self.layers.append(ReLU())
            if i < self.num_pools:
                self.layers.append(MaxPool2d(2, 2, impl=impl))
            in_c = out_c
        self.out_channels = self.channels[-1]
        self.feature_stride = 2 ** self.num_pools
        self.impl = impl
        self.frozen_blocks = 0   # freeze_blocks(k): blocks 1..k stay fixed

    def freeze_blocks(self, k: int) -> SmallVGG:
        """Fix the first ``k`` blocks (conv, BN, ReLU, pool), in place; return self.

        Fast R-CNN (section 4.5, Table 5) fine-tunes VGG16 from conv3_1 up: the
        blocks conv1 and conv2 stay fixed, which saves their backward pass (the
        costliest, at full resolution) and loses nothing. ``freeze_blocks(2)`` is that
        choice here. Frozen parameters get ``requires_grad = False``, a frozen
        BatchNorm2d becomes a FrozenBatchNorm2d, and ``backward`` stops above them
        and returns None.
        """
        if not 0 <= int(k) <= len(self.channels):
            raise ValueError(f"SmallVGG: freeze_blocks needs 0..{len(self.channels)}, got {k!r}")
        self.frozen_blocks = int(k)
        first = self._first_trainable_layer()
        self.layers[:first] = [convert_frozen_batchnorm(layer.freeze()) for layer in
                               self.layers[:first]]
        for i, layer in enumerate(self.layers):   # dx only where a layer below reads it
            layer.needs_input_grad = first == 0 or i > first
        return self

    def _first_trainable_layer(self) -> int:
        """Index in ``self.layers`` of the first layer of block ``frozen_blocks + 1``."""
        convs = [i for i, layer in enumerate(self.layers) if isinstance(layer, Conv2d)]
        return len(self.layers) if self.frozen_blocks == len(convs) else convs[self.frozen_blocks]

    def get_config(self) -> dict:
        return {"channels": list(self.channels), "num_pools": self.num_pools,
                "batch_norm": self.batch_norm,
                "pixel_mean": list(self.pixel_mean), "pixel_std": list(self.pixel_std),
                "impl": self.impl, "dtype": self.dtype.name}

    def _norm_constants(self, images):
        xp = get_array_module(images)
        mean = xp.asarray(self.pixel_mean, dtype=images.dtype)[:, None, None]  # (3, 1, 1)
        std = xp.asarray(self.pixel_std, dtype=images.dtype)[:, None, None]    # (3, 1, 1)
        return mean, std

    def forward(self, images):
        """images (N, 3, H, W) -> features (N, out_channels, H/stride, W/stride)."""
        return self.forward_trainable(self.forward_frozen(images))

    def forward_frozen(self, images):
        """images (N, 3, H, W) -> the output of the frozen blocks (``freeze_blocks``), or
        the normalised images when none is frozen. For a given image it never changes
        while those blocks stay fixed, so training may compute it once per image."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"SmallVGG: images must have shape (N, 3, H, W), "
                             f"got {tuple(images.shape)}")
        s = self.feature_stride
        if images.shape[2] % s or images.shape[3] % s:
            raise ValueError(f"SmallVGG: H and W must be divisible by the stride {s}, "
                             f"got {tuple(images.shape[2:])}")
        mean, std = self._norm_constants(images)
        x = images - mean                             # (N, 3, H, W), broadcast over N, H, W
        x /= std                                      # in place: x is this method's own array
        for layer in _pool_before_relu(self.layers[:self._first_trainable_layer()]):
            x = layer.forward(x)
        return x

    def forward_trainable(self, x):
        """``forward_frozen``'s output -> features: the blocks that train."""
        for layer in _pool_before_relu(self.layers[self._first_trainable_layer():]):
            x = layer.forward(x)
        return x

    def backward(self, dfeatures):
        """dfeatures (N, C, h, w) -> dimages (N, 3, H, W); accumulates the conv grads.

        Returns None when the first blocks are frozen (nothing below needs a gradient).
        """
        dx = dfeatures
        first = self._first_trainable_layer()
        for layer in reversed(self.layers[first:]):
            dx = layer.backward(dx)
        if first > 0:
            return None
        _, std = self._norm_constants(dx)
        return dx / std                               # x = (images - mean) / std


def _pool_before_relu(layers: list) -> list:
    """``layers`` in the order to run them: a ReLU followed by a MaxPool2d swaps places
    with it where neither keeps a cache (frozen blocks, ``no_grad``: no backward comes).

    Max pooling commutes with ReLU, which is monotone: max(relu(a), relu(b)) =
    relu(max(a, b)). Pooling first gives the same values, and the ReLU then runs on the
    pooled map, a quarter of the values for a 2x2 pool. Layers that backward runs
    through keep the order of ``layers``: their caches (the ReLU's mask, the pool's
    argmax) are those of that order.
    """
    order = list(layers)
    for i in range(len(order) - 1):
        relu, pool = order[i], order[i + 1]
        if (isinstance(relu, ReLU) and isinstance(pool, MaxPool2d) and relu.is_frozen()
                and pool.is_frozen()):
            order[i], order[i + 1] = pool, relu
    return order


def fold_batchnorm(vgg: SmallVGG) -> SmallVGG:
    """The same network without BatchNorm: each BN (eval mode) folded into its conv.

    In eval mode BN is the affine map ``gamma * (y - mean) / sqrt(var + eps) + beta`` of
    the conv output ``y = w * x + b``, so per output channel f:
    ``w'[f] = w[f] * s[f]`` and ``b'[f] = (b[f] - mean[f]) * s[f] + beta[f]`` with
    ``s = gamma / sqrt(var + eps)`` (what deployment tools call conv-BN fusion). The
    pretrained VGG trains with BN (it converges several times faster from scratch);
    the detector's SmallVGG has none, as VGG16 in the paper.
    """
    if not vgg.batch_norm:
        return vgg
    config = {**vgg.get_config(), "batch_norm": False, "dtype": vgg.dtype}
    plain = SmallVGG(**{k: v for k, v in config.items() if k != "channels"},
                     channels=vgg.channels)
    convs = [m for m in plain.layers if isinstance(m, Conv2d)]
    for conv, (i, layer) in zip(convs, [(i, m) for i, m in enumerate(vgg.layers)
                                        if isinstance(m, Conv2d)], strict=True):
        bn = vgg.layers[i + 1]                     # conv, BN, ReLU(, pool) per block
        s = bn.weight.data / np.sqrt(bn.running_var + bn.eps)           # (F,)
        conv.w.data[...] = layer.w.data * s[:, None, None, None]       # (F, C, KH, KW)
        conv.b.data[...] = (layer.b.data - bn.running_mean) * s + bn.bias.data
    return plain


def with_pools(vgg: SmallVGG, num_pools: int) -> SmallVGG:
    """The same weights with the first ``num_pools`` blocks pooled (stride 2**num_pools).

    Max pooling has no weights, so a SmallVGG pretrained at stride 8 (three pools) serves
    at stride 4 (two): the last blocks then run on a twice finer map, which the detector
    needs for its smallest shapes. Returns ``vgg`` itself when it has ``num_pools``
    already, else a new SmallVGG holding copies of its arrays.
    """
    if num_pools == vgg.num_pools:
        return vgg
    config = {**vgg.get_config(), "num_pools": num_pools, "dtype": vgg.dtype}
    out = SmallVGG(**{k: v for k, v in config.items() if k != "channels"},
                   channels=vgg.channels)
    weighted = [m for m in vgg.layers if not isinstance(m, MaxPool2d)]
    for target, source in zip([m for m in out.layers if not isinstance(m, MaxPool2d)],
                              weighted, strict=True):
        target.load_state_dict(source.state_dict())
    return out


class VGGClassifier(Module):
    """SmallVGG, global average pooling and one fc: pretraining on shapes classification.

    The toy's ImageNet step: ``minircnn pretrain --backbone vgg`` trains it on
    ShapesClassification, and ``minircnn train`` copies ``backbone`` into the detector
    (the paper initialises Fast R-CNN from an ImageNet-trained VGG16 and drops its
    classifier the same way). Args as SmallVGG, plus ``num_classes`` (K logits).

    Shapes: x (N, 3, H, W) -> logits (N, K); ``backward(dlogits)`` -> dx (or None).
    """

    def __init__(self, num_classes: int = 6, channels: Sequence[int] = (16, 32, 64, 64), *,
                 num_pools: int | None = None, batch_norm: bool = False,
                 pixel_mean: Sequence[float] = (0.50, 0.49, 0.50),
                 pixel_std: Sequence[float] = (0.19, 0.20, 0.18), impl: str = "fast",
                 rng: np.random.Generator | None = None, dtype=np.float32):
        if int(num_classes) < 1:
            raise ValueError(f"VGGClassifier: num_classes must be >= 1, got {num_classes!r}")
        rng = np.random.default_rng(0) if rng is None else rng
        self.num_classes = int(num_classes)
        self.backbone = SmallVGG(channels, num_pools=num_pools, batch_norm=batch_norm,
                                 pixel_mean=pixel_mean, pixel_std=pixel_std, impl=impl,
                                 rng=rng, dtype=dtype)
        self.pool = GlobalAvgPool()
        self.fc = Linear(self.backbone.out_channels, self.num_classes, rng=rng, dtype=dtype,
                         std=0.01)

    def get_config(self) -> dict:
        return {"num_classes": self.num_classes, **self.backbone.get_config()}

    def forward(self, x):
        """x (N, 3, H, W) -> logits (N, num_classes)."""
        features = self.backbone.forward(x)     # (N, C, H/s, W/s)
        return self.fc.forward(self.pool.forward(features))

    def backward(self, dlogits):
        """dlogits (N, K) -> dx (N, 3, H, W); accumulates the grads."""
        return self.backbone.backward(self.pool.backward(self.fc.backward(dlogits)))
