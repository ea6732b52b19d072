"""SmallVGG's frozen blocks and the VGGClassifier used to pretrain it."""

import numpy as np
import pytest

from minircnn.gradcheck import numeric_gradient, rel_error
from minircnn.models import SmallVGG, VGGClassifier


def _images(n=2, size=16, seed=0):
    return np.random.default_rng(seed).uniform(0, 1, (n, 3, size, size))


def test_vgg_classifier_backward_matches_numeric_gradient():
    model = VGGClassifier(3, (2, 3), num_pools=1, rng=np.random.default_rng(1),
                          dtype=np.float64)
    x = _images(size=8)
    dout = np.random.default_rng(2).normal(size=(2, 3))
    model.zero_grad()
    model.forward(x)
    dx = model.backward(dout)
    assert rel_error(dx, numeric_gradient(lambda: model.forward(x), x, dout)) < 1e-5


def test_frozen_blocks_get_no_gradient_and_backward_stops():
    vgg = SmallVGG((2, 3, 4), rng=np.random.default_rng(0), dtype=np.float64).freeze_blocks(2)
    frozen = [p for layer in vgg.layers[:6] for p in layer.parameters()]   # conv1, conv2
    assert frozen and not any(p.requires_grad for p in frozen)
    assert all(p.requires_grad for p in vgg.layers[6].parameters())     # conv3 trains
    vgg.zero_grad()
    features = vgg.forward(_images())
    assert vgg.backward(np.ones_like(features)) is None
    assert all(not p.grad.any() for p in frozen)
    assert vgg.layers[6].w.grad.any()
    # no work for what nothing reads: frozen layers keep no cache, conv3 computes no dx
    assert all(layer.is_frozen() for layer in vgg.layers[:6])
    assert not vgg.layers[6].needs_input_grad and vgg.layers[7].needs_input_grad
    assert vgg.layers[0]._cache is None and vgg.layers[1].cache is None


def test_frozen_blocks_give_the_gradients_of_the_unfrozen_network():
    """freeze_blocks changes which gradients are computed, not their values."""
    rng = np.random.default_rng(3)
    full = SmallVGG((2, 3, 4), rng=np.random.default_rng(0), dtype=np.float64)
    frozen = SmallVGG((2, 3, 4), rng=np.random.default_rng(0), dtype=np.float64)
    frozen.freeze_blocks(1)
    x = _images()
    dout = rng.standard_normal(full.forward(x).shape)
    full.backward(dout)
    frozen.forward(x)
    frozen.backward(dout)
    for (name, p), (_, q) in zip(full.named_parameters(), frozen.named_parameters(),
                                 strict=True):
        if q.requires_grad:
            assert rel_error(p.grad, q.grad) <= 1e-12, name


def _layer_by_layer(vgg, images):
    """SmallVGG's forward as its layer list reads: every ReLU before its pool."""
    mean, std = vgg._norm_constants(images)
    x = (images - mean) / std
    for layer in vgg.layers:
        x = layer.forward(x)
    return x


def _pools_before_relus(vgg) -> int:
    """How many MaxPool2d run right before a ReLU in the order SmallVGG runs its layers."""
    from minircnn.layers import MaxPool2d, ReLU
    from minircnn.models.backbones import _pool_before_relu

    order = _pool_before_relu(vgg.layers)
    return sum(isinstance(a, MaxPool2d) and isinstance(b, ReLU)
               for a, b in zip(order[:-1], order[1:], strict=True))


@pytest.mark.parametrize("frozen_blocks", [0, 1, 2, 3])
def test_value_path_pools_before_relu_and_gets_the_same_bits(frozen_blocks):
    """Where no backward comes (frozen blocks, no_grad), SmallVGG pools before the ReLU:
    max pooling commutes with ReLU, so the features are the same, bit for bit; the
    layers that train keep their order (and the caches of that order)."""
    from minircnn.layers.module import no_grad

    vgg = SmallVGG((4, 6, 8), rng=np.random.default_rng(0)).freeze_blocks(frozen_blocks)
    images = _images(size=32).astype(np.float32)
    assert _pools_before_relus(vgg) == min(frozen_blocks, vgg.num_pools)
    expected = _layer_by_layer(vgg, images)
    assert np.array_equal(vgg.forward(images), expected)
    with no_grad(vgg):
        assert _pools_before_relus(vgg) == vgg.num_pools
        assert np.array_equal(vgg.forward(images), expected)


def test_freeze_blocks_rejects_out_of_range():
    with pytest.raises(ValueError, match=r"freeze_blocks needs 0..2, got 3"):
        SmallVGG((2, 3)).freeze_blocks(3)


def test_with_pools_keeps_the_weights_and_changes_only_the_stride():
    """One pool fewer: the same convs on a twice finer map (checked against the layers
    applied by hand)."""
    from minircnn.layers.pool import max_pool2d_forward
    from minircnn.models.backbones import with_pools

    vgg = SmallVGG((4, 8, 8), num_pools=2, rng=np.random.default_rng(3), dtype=np.float64)
    finer = with_pools(vgg, 1)
    assert (finer.feature_stride, vgg.feature_stride) == (2, 4)
    assert with_pools(vgg, 2) is vgg
    x = _images(size=8)
    h = (x - np.array(vgg.pixel_mean)[:, None, None]) / np.array(vgg.pixel_std)[:, None, None]
    convs = [m for m in vgg.layers if hasattr(m, "w")]
    for i, conv in enumerate(convs):                 # conv, ReLU, pool after block 1 only
        h = np.maximum(conv.forward(h), 0)
        if i < 1:
            h = max_pool2d_forward(h, kernel=2, stride=2)[0]
    np.testing.assert_allclose(finer.forward(x), h, rtol=1e-12, atol=1e-12)
    for a, b in zip(finer.parameters(), vgg.parameters(), strict=True):
        assert np.array_equal(a.data, b.data) and a.data is not b.data   # copies


def test_fold_batchnorm_computes_what_conv_bn_computes_in_eval_mode():
    from minircnn.models.backbones import fold_batchnorm

    rng = np.random.default_rng(1)
    vgg = SmallVGG((4, 8), num_pools=1, batch_norm=True, rng=rng, dtype=np.float64)
    for bn in vgg.layers[1], vgg.layers[5]:          # statistics and affine away from 0, 1
        bn.running_mean[...] = rng.normal(size=bn.num_features)
        bn.running_var[...] = rng.uniform(0.5, 2.0, bn.num_features)
        bn.weight.data[...] = rng.normal(size=bn.num_features)
        bn.bias.data[...] = rng.normal(size=bn.num_features)
    x = _images(size=8)
    plain = fold_batchnorm(vgg.eval())
    assert not plain.batch_norm and len(plain.layers) == len(vgg.layers) - 2
    np.testing.assert_allclose(plain.forward(x), vgg.forward(x), rtol=1e-12, atol=1e-12)
