"""MiniResNet: a small ResNet (He et al., 2016) for classification and as a detection backbone.

Layout, as torchvision's ``resnet18`` shrunk for 32- to 128-pixel images::

    stem:    conv3x3 (stride ``stem_stride``) - BN - ReLU
    stage i: ``blocks[i]`` BasicBlocks with ``widths[i]`` channels; the first block of
             every stage but the first halves H and W (stride 2)
    head:    global average pooling - fc          (classifier only)

A BasicBlock computes ``relu(F(x) + shortcut(x))`` with the residual branch
``F = conv3x3-BN-ReLU-conv3x3-BN`` and the identity as shortcut, or a 1x1-conv-BN
projection when the block changes the shape (torchvision's ``downsample``). Convolutions
followed by BN carry no bias (torchvision's ``bias=False``: BN's beta is the shift).

There is no autograd: every ``backward`` below lists the calls of its ``forward`` in
reverse order. The residual add hands its gradient to both branches
(``add_backward``) and, where the two branches left the same ``x``, their gradients are
summed: ``dx = dx_residual + dx_shortcut``.

Detection (Fast R-CNN) uses the stem and the first ``num_stages`` stages as a
``ResNetBackbone`` (features at ``feature_stride = stem_stride * 2 ** (num_stages - 1)``)
with FrozenBatchNorm2d: with 2 images per batch, batch statistics are too noisy, so
detectron2 freezes BN into an affine map (``convert_frozen_batchnorm``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from minircnn.backend import get_array_module
from minircnn.layers.activations import ReLU
from minircnn.layers.conv import Conv2d, conv2d_param_grads
from minircnn.layers.global_pool import GlobalAvgPool
from minircnn.layers.linear import Linear
from minircnn.layers.module import Module, Sequential, no_forward_error
from minircnn.layers.norm import BatchNorm2d, FrozenBatchNorm2d
from minircnn.layers.residual_add import add_backward, add_forward

NORMS = ("bn", "frozen")


class ConvNoBias(Conv2d):
    """Conv2d without a bias (torch ``bias=False``), for convolutions followed by BN.

    The inherited ``b`` attribute is removed, so no bias Parameter is saved or trained;
    the op gets a constant zero bias and its ``db`` is dropped.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        del self.b

    def forward(self, x):
        xp = get_array_module(x)
        zero_bias = xp.zeros(self.w.shape[0], dtype=self.w.data.dtype)  # (F,) on x's device
        return self.forward_with_bias(x, zero_bias)

    def backward(self, dout):
        if self._cache is None:
            raise no_forward_error(self)
        if self.needs_input_grad:
            dx, dw, _ = self.op_backward(dout, self._cache)  # no bias: db is not used
        else:   # nothing below reads dx (see Conv2d.backward)
            dx, (dw, _) = None, conv2d_param_grads(dout, self._cache)
        self.w.accumulate(dw)
        return dx

    def __repr__(self) -> str:
        return super().__repr__().replace("Conv2d(", "ConvNoBias(", 1)


def make_norm(norm: str, channels: int, *, dtype=np.float32) -> Module:
    """BatchNorm2d (``norm="bn"``) or FrozenBatchNorm2d (``norm="frozen"``)."""
    if norm == "bn":
        return BatchNorm2d(channels, dtype=dtype)
    if norm == "frozen":
        return FrozenBatchNorm2d(channels, dtype=dtype)
    raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")


class BasicBlock(Module):
    """ResNet basic block: ``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``.

    Matches torchvision.models.resnet.BasicBlock: conv1 is 3x3 with ``stride``, conv2
    3x3 with stride 1; the shortcut is the identity when the shape is kept, else
    ``proj_bn(proj_conv(x))`` with a 1x1 conv of the same stride (option B of the paper).

    Args:
        in_channels, out_channels: C and F.  stride: 1 or 2 (2 halves H and W).
        norm: "bn" or "frozen".  impl: "fast" or "naive" convolutions.
        rng: np.random.Generator for the He-normal conv weights.  dtype: parameter dtype.

    Shapes: x (N, C, H, W) -> (N, F, H/stride, W/stride).
    """

    expansion = 1

    def __init__(self, in_channels: int, out_channels: int, *, stride: int = 1,
                 norm: str = "bn", impl: str = "fast", rng: np.random.Generator | None = None,
                 dtype=np.float32):
        rng = np.random.default_rng(0) if rng is None else rng
        conv = {"rng": rng, "dtype": dtype, "impl": impl}
        self.conv1 = ConvNoBias(in_channels, out_channels, 3, stride=stride, pad=1, **conv)
        self.bn1 = make_norm(norm, out_channels, dtype=dtype)
        self.relu1 = ReLU()
        self.conv2 = ConvNoBias(out_channels, out_channels, 3, stride=1, pad=1, **conv)
        self.bn2 = make_norm(norm, out_channels, dtype=dtype)
        self.proj_conv = None
        self.proj_bn = None
        if stride != 1 or in_channels != out_channels:
            self.proj_conv = ConvNoBias(in_channels, out_channels, 1, stride=stride, **conv)
            self.proj_bn = make_norm(norm, out_channels, dtype=dtype)
        self.relu_out = ReLU()
        self.add_cache = None

    def forward(self, x):
        out = self.conv1.forward(x)
        out = self.bn1.forward(out)
        out = self.relu1.forward(out)
        out = self.conv2.forward(out)
        residual = self.bn2.forward(out)
        if self.proj_conv is None:
            shortcut = x
        else:
            shortcut = self.proj_bn.forward(self.proj_conv.forward(x))
        summed, self.add_cache = add_forward(residual, shortcut)
        return self.relu_out.forward(summed)

    def backward(self, dout):
        dsummed = self.relu_out.backward(dout)
        dresidual, dshortcut = add_backward(dsummed, self.add_cache)  # both get dsummed
        # residual branch, the forward calls in reverse order
        d = self.bn2.backward(dresidual)
        d = self.conv2.backward(d)
        d = self.relu1.backward(d)
        d = self.bn1.backward(d)
        dx_residual = self.conv1.backward(d)
        # shortcut branch
        if self.proj_conv is None:
            dx_shortcut = dshortcut  # identity: d x / d x = 1
        else:
            dx_shortcut = self.proj_conv.backward(self.proj_bn.backward(dshortcut))
        if not self.needs_input_grad:   # the first trainable block: nothing reads dx
            return None
        dx = dx_residual + dx_shortcut  # x fed both branches: their gradients add
        return dx


class ResNetTrunk(Module):
    """Stem + stages, shared by MiniResNet (classifier) and ResNetBackbone (detection).

    Parameter names (``conv1.w``, ``bn1.weight``, ``stages.0.layers.0.conv1.w``, ...) are
    the same in both, so a classifier's state_dict loads into a backbone.
    """

    def _build_trunk(self, widths, blocks, in_channels, stem_stride, norm, impl, rng, dtype):
        widths = tuple(int(w) for w in widths)
        blocks = (1,) * len(widths) if blocks is None else tuple(int(b) for b in blocks)
        if not 1 <= len(widths) <= 4 or len(widths) != len(blocks):
            raise ValueError(f"widths and blocks: expected 1 to 4 stages, one block count "
                             f"per width, got widths={widths}, blocks={blocks}")
        if min(widths) <= 0 or min(blocks) <= 0:
            raise ValueError(f"widths and blocks must be positive, got {widths}, {blocks}")
        if stem_stride not in (1, 2):
            raise ValueError(f"stem_stride must be 1 or 2, got {stem_stride!r}")
        rng = np.random.default_rng(0) if rng is None else rng
        self.widths, self.blocks = widths, blocks
        self.in_channels, self.stem_stride = int(in_channels), int(stem_stride)
        self.norm, self.impl, self.dtype = norm, impl, np.dtype(dtype)
        self.freeze_at = 0  # see freeze_stages: backward stops below the frozen layers
        self.conv1 = ConvNoBias(in_channels, widths[0], 3, stride=stem_stride, pad=1,
                                rng=rng, dtype=dtype, impl=impl)
        self.bn1 = make_norm(norm, widths[0], dtype=dtype)
        self.relu = ReLU()
        self.stages = []
        c = widths[0]
        for i, (width, count) in enumerate(zip(widths, blocks, strict=True)):
            first_stride = 1 if i == 0 else 2
            stage = [BasicBlock(c if j == 0 else width, width, stride=first_stride if j == 0 else 1,
                                norm=norm, impl=impl, rng=rng, dtype=dtype) for j in range(count)]
            self.stages.append(Sequential(*stage))
            c = width

    def trunk_config(self) -> dict:
        return {"widths": list(self.widths), "blocks": list(self.blocks),
                "in_channels": self.in_channels, "stem_stride": self.stem_stride,
                "norm": self.norm, "impl": self.impl, "dtype": self.dtype.name}

    def forward_features(self, x):
        """x (N, in_channels, H, W) -> (N, widths[-1], H / stride, W / stride)."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"{type(self).__name__}: x must have shape "
                             f"(N, {self.in_channels}, H, W), got {tuple(x.shape)}")
        out = self.relu.forward(self.bn1.forward(self.conv1.forward(x)))
        for stage in self.stages:
            out = stage.forward(out)
        return out

    def backward_features(self, dfeatures):
        """dfeatures -> dx; returns None once only frozen layers (``freeze_at``) remain,
        as autograd skips them: their gradients would be thrown away."""
        d = dfeatures
        for i in reversed(range(len(self.stages))):
            if i + 2 <= self.freeze_at:  # stage i (0-based) is frozen, and all below it
                return None
            d = self.stages[i].backward(d)
        if self.freeze_at >= 1:
            return None
        d = self.relu.backward(d)
        return self.conv1.backward(self.bn1.backward(d))


class MiniResNet(ResNetTrunk):
    """A small ResNet classifier: stem, ``len(widths)`` stages of BasicBlocks, GAP, fc.

    Args:
        num_classes: K, the number of logits.
        widths: channels of each stage (1 to 4 stages; 3 or 4 as torchvision's ResNets).
        blocks: BasicBlocks per stage (default one each).
        in_channels: channels of the input images.
        stem_stride: stride of the stem conv (2 by default: torchvision's stem downsamples
            by 4 with a 7x7/2 conv and a max pool; one 3x3/2 conv suits small images).
        norm: "bn" (BatchNorm2d) or "frozen" (FrozenBatchNorm2d).
        impl: "fast" or "naive" convolutions.  rng: np.random.Generator (default seed 0).
        dtype: parameter dtype (float32 to train, float64 for gradient checks).

    Shapes: x (N, in_channels, H, W) -> logits (N, K). ``backward(dlogits)`` -> dx.
    """

    def __init__(self, num_classes: int = 10, *, widths: Sequence[int] = (16, 32, 64, 128),
                 blocks: Sequence[int] | None = None, in_channels: int = 3, stem_stride: int = 2,
                 norm: str = "bn", impl: str = "fast", rng: np.random.Generator | None = None,
                 dtype=np.float32):
        if int(num_classes) < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes!r}")
        rng = np.random.default_rng(0) if rng is None else rng
        self._build_trunk(widths, blocks, in_channels, stem_stride, norm, impl, rng, dtype)
        self.num_classes = int(num_classes)
        self.pool = GlobalAvgPool()
        self.fc = Linear(self.widths[-1], self.num_classes, rng=rng, dtype=dtype, std=0.01)

    def get_config(self) -> dict:
        return {"num_classes": self.num_classes, **self.trunk_config()}

    def forward(self, x):
        """x (N, C, H, W) -> logits (N, num_classes)."""
        features = self.forward_features(x)  # (N, widths[-1], h, w)
        pooled = self.pool.forward(features)  # (N, widths[-1])
        return self.fc.forward(pooled)  # (N, K)

    def backward(self, dlogits):
        """dlogits (N, K) -> dx (N, C, H, W) (None when ``freeze_at`` froze the trunk)."""
        dpooled = self.fc.backward(dlogits)
        dfeatures = self.pool.backward(dpooled)
        return self.backward_features(dfeatures)

    def replace_head(self, num_classes: int, *, rng: np.random.Generator | None = None) -> None:
        """A fresh fc layer for a new task with ``num_classes`` classes (fine-tuning)."""
        rng = np.random.default_rng(0) if rng is None else rng
        self.num_classes = int(num_classes)
        self.fc = Linear(self.widths[-1], self.num_classes, rng=rng, dtype=self.dtype, std=0.01)

    def as_backbone(self, num_stages: int | None = None, *, norm: str = "frozen") -> ResNetBackbone:
        """A ResNetBackbone with this network's stem and first ``num_stages`` stages
        (weights copied; default all stages), FrozenBatchNorm2d by default."""
        num_stages = len(self.widths) if num_stages is None else num_stages
        backbone = ResNetBackbone(num_stages=num_stages, norm=norm,
                                  **{k: v for k, v in self.trunk_config().items() if k != "norm"})
        state = self.state_dict()
        # the backbone has the stem and the first stages; the rest (later stages, fc) is left out
        backbone.load_state_dict({name: state[name] for name in backbone.state_dict()})
        return backbone


class ResNetBackbone(ResNetTrunk):
    """The MiniResNet trunk as a Fast R-CNN backbone (no pooling, no fc).

    Follows the backbone interface of minircnn.models.backbones: ``forward(images)`` ->
    features (N, out_channels, H / feature_stride, W / feature_stride), ``backward``,
    ``out_channels``, ``feature_stride``, ``get_config``.

    Args:
        num_stages: how many of the ``widths`` stages to keep (like detectron2's
            ``res4`` / ``res5`` output choice); ``feature_stride = stem_stride *
            2 ** (num_stages - 1)``, e.g. 8 with stem_stride 2 and 3 stages.
        norm: "bn" for a randomly initialised backbone (its statistics must be learned);
            "frozen" for pretrained weights fine-tuned with 2-image batches (detectron2):
            ``MiniResNet.as_backbone`` and ``pretrained_backbone`` use "frozen".
        Other args as MiniResNet.

    Example (Fast R-CNN on the pretrained trunk, stride 8)::

        detector = FastRCNN(3, pretrained_backbone(num_stages=3))
    """

    def __init__(self, *, widths: Sequence[int] = (16, 32, 64, 128),
                 blocks: Sequence[int] | None = None, num_stages: int | None = None,
                 in_channels: int = 3, stem_stride: int = 2,
                 norm: str = "bn", impl: str = "fast",
                 rng: np.random.Generator | None = None, dtype=np.float32):
        num_stages = len(widths) if num_stages is None else int(num_stages)
        if not 1 <= num_stages <= len(widths):
            raise ValueError(f"num_stages must be in 1..{len(widths)}, got {num_stages}")
        blocks = (1,) * len(widths) if blocks is None else tuple(blocks)
        self._build_trunk(tuple(widths)[:num_stages], blocks[:num_stages], in_channels,
                          stem_stride, norm, impl, rng, dtype)
        self.out_channels = self.widths[-1]
        self.feature_stride = self.stem_stride * 2 ** (num_stages - 1)

    def get_config(self) -> dict:
        return {"num_stages": len(self.widths), **self.trunk_config()}

    def forward(self, images):
        """images (N, 3, H, W) -> features (N, out_channels, H/stride, W/stride)."""
        s = self.feature_stride
        if images.ndim == 4 and (images.shape[2] % s or images.shape[3] % s):
            raise ValueError(f"ResNetBackbone: H and W must be divisible by the stride {s}, "
                             f"got {tuple(images.shape[2:])}")
        return self.forward_features(images)

    def backward(self, dfeatures):
        """dfeatures -> dimages (None when every layer below is frozen)."""
        return self.backward_features(dfeatures)


# --- BN freezing, stage freezing, loading pretrained weights ------------------------------
def convert_frozen_batchnorm(module: Module) -> Module:
    """Replace every BatchNorm2d in ``module`` by a FrozenBatchNorm2d with its statistics.

    detectron2's ``FrozenBatchNorm2d.convert_frozen_batchnorm``: the new layer computes
    what the BatchNorm2d computes in eval mode, ``weight * (x - running_mean) /
    sqrt(running_var + eps) + bias``, in train and eval mode alike, and has no
    Parameters. Sub-modules are replaced in place (attributes and list items); the
    return value is ``module``, or the new layer when ``module`` itself is a BatchNorm2d.
    """
    if isinstance(module, BatchNorm2d):
        frozen = FrozenBatchNorm2d(module.num_features, eps=module.eps)
        frozen.weight = module.weight.data.copy()  # buffers keep dtype and device
        frozen.bias = module.bias.data.copy()
        frozen.running_mean = module.running_mean.copy()
        frozen.running_var = module.running_var.copy()
        frozen.training = module.training
        return frozen
    for name, value in list(vars(module).items()):
        if isinstance(value, Module):
            setattr(module, name, convert_frozen_batchnorm(value))
        elif isinstance(value, list):
            value[:] = [convert_frozen_batchnorm(v) if isinstance(v, Module) else v for v in value]
    return module


def freeze_stages(model: ResNetTrunk, freeze_at: int) -> ResNetTrunk:
    """Freeze the stem and the first stages (detectron2's ``FREEZE_AT``), in place.

    ``freeze_at = 0`` freezes nothing, 1 the stem, k >= 2 the stem and stages 1..k-1
    (so fine-tuning starts at stage k); ``len(model.stages) + 1`` the whole trunk
    (only the head trains). Frozen parts get ``requires_grad = False`` (SGD skips them)
    and FrozenBatchNorm2d (their statistics stop moving), and ``backward`` stops
    above them.
    """
    n = len(model.stages)
    if not 0 <= freeze_at <= n + 1:
        raise ValueError(f"freeze_at must be in 0..{n + 1}, got {freeze_at!r}")
    if freeze_at >= 1:
        model.conv1.freeze()
        model.bn1 = convert_frozen_batchnorm(model.bn1)
    for i in range(freeze_at - 1):
        model.stages[i] = convert_frozen_batchnorm(model.stages[i].freeze())
    model.freeze_at = freeze_at
    _skip_unread_gradients(model, freeze_at)
    return model


def _skip_unread_gradients(model: ResNetTrunk, freeze_at: int) -> None:
    """Frozen layers keep no caches, and the first trainable block computes no input
    gradient (its convs' dx would be thrown away: backward stops below it)."""
    frozen = [model.conv1, model.bn1, model.relu] if freeze_at >= 1 else []
    frozen += model.stages[:max(freeze_at - 1, 0)]
    for part in frozen:
        for m in part.modules():
            m.needs_input_grad = False
    if 1 <= freeze_at <= len(model.stages):
        first = model.stages[freeze_at - 1][0]            # the first trainable block
        for m in (first, first.conv1, first.proj_conv):
            if m is not None:
                m.needs_input_grad = False
