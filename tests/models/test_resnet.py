import numpy as np
import pytest

from minircnn.gradcheck import THRESHOLD, gradient_error, numeric_gradient_with_bound, rel_error
from minircnn.gradcheck.cases import basic_block_relu_margin
from minircnn.layers import (
    BatchNorm2d,
    FrozenBatchNorm2d,
    softmax_cross_entropy_backward,
    softmax_cross_entropy_forward,
)
from minircnn.models.checkpoint import load_checkpoint, save_checkpoint
from minircnn.models.resnet import (
    BasicBlock,
    MiniResNet,
    ResNetBackbone,
    convert_frozen_batchnorm,
    freeze_stages,
)
from minircnn.training.optim import SGD


def module_gradcheck(module, x, *, seed=0, threshold=THRESHOLD):
    """{name: gradient_error} of dx and of every parameter gradient of ``module``, float64."""
    out = module.forward(x)
    dout = np.random.default_rng([seed, 7]).standard_normal(out.shape)
    module.zero_grad()
    dx = module.backward(dout)
    targets = [("x", x, dx)] + [(name, p.data, p.grad.copy())
                                for name, p in module.named_parameters()]
    errors = {}
    for name, array, analytic in targets:
        numeric = numeric_gradient_with_bound(lambda: module.forward(x), array, dout)
        errors[name] = gradient_error(analytic, numeric, threshold=threshold)
    return errors


def randomize_bn(model, rng):
    """Non-trivial gamma, beta and running statistics in every BatchNorm2d."""
    for m in model.modules():
        if isinstance(m, BatchNorm2d):
            m.weight.data[...] = 1 + 0.3 * rng.standard_normal(m.num_features)
            m.bias.data[...] = 0.3 * rng.standard_normal(m.num_features)
            m.running_mean[...] = 0.2 * rng.standard_normal(m.num_features)
            m.running_var[...] = 0.5 + rng.random(m.num_features)


BLOCK_CONFIGS = {"identity": (3, 3, 1), "projection_stride2": (3, 4, 2),
                 "projection_channels": (2, 4, 1)}


def block_and_input(in_c, out_c, stride, seed, *, margin=1e-3):
    """A float64 BasicBlock (train-mode BN, random gamma/beta) and an x whose ReLU inputs
    all stay >= margin from 0, redrawn until they do (a finite difference across a kink
    measures the kink, not the backward pass)."""
    rng = np.random.default_rng(seed)
    block = BasicBlock(in_c, out_c, stride=stride, rng=rng, dtype=np.float64)
    randomize_bn(block, rng)
    while True:
        x = rng.standard_normal((2, in_c, 6, 6))
        if basic_block_relu_margin(block, x) >= margin:
            return block, x


@pytest.mark.parametrize("config", BLOCK_CONFIGS.values(), ids=BLOCK_CONFIGS.keys())
@pytest.mark.parametrize("seed", [1, 2])
def test_basic_block_gradcheck_float64_train_mode_bn(config, seed):
    block, x = block_and_input(*config, seed)
    assert (block.proj_conv is None) == (config[0] == config[1] and config[2] == 1)
    errors = module_gradcheck(block, x, seed=seed)
    assert max(errors.values()) <= THRESHOLD, errors  # margins: scripts/gradcheck_margins.py


def test_basic_block_residual_gradient_is_the_sum_of_both_branches():
    rng = np.random.default_rng(2)
    block = BasicBlock(3, 3, rng=rng, dtype=np.float64)
    x = rng.standard_normal((2, 3, 4, 4))
    out = block.forward(x)
    dout = rng.standard_normal(out.shape)
    dx = block.backward(dout)
    dsummed = dout * (out > 0)  # through the final ReLU
    residual_only = block.conv1.backward(block.bn1.backward(block.relu1.backward(
        block.conv2.backward(block.bn2.backward(dsummed)))))
    np.testing.assert_allclose(dx, residual_only + dsummed, rtol=1e-12, atol=1e-12)


def test_whole_mini_resnet_gradcheck_float64():
    rng = np.random.default_rng(3)
    model = MiniResNet(3, widths=(3, 4), blocks=(1, 1), rng=rng, dtype=np.float64)
    randomize_bn(model, rng)
    model.fc.w.data[...] = rng.standard_normal(model.fc.w.shape)  # not tiny: a real check
    x = rng.standard_normal((2, 3, 8, 8))
    labels = np.array([0, 2])

    class WithLoss:  # logits -> mean cross-entropy, the classifier's training objective
        def forward(self, x):
            loss, self.cache = softmax_cross_entropy_forward(model.forward(x), labels)
            return np.array(loss)

        def backward(self, dloss):
            return model.backward(softmax_cross_entropy_backward(float(dloss), self.cache))

        def zero_grad(self):
            model.zero_grad()

        def named_parameters(self):
            return model.named_parameters()

    errors = module_gradcheck(WithLoss(), x)
    assert len(errors) == 1 + len(model.parameters())
    assert max(errors.values()) <= THRESHOLD, errors


def test_shapes_strides_and_names():
    model = MiniResNet(5, widths=(8, 16, 32, 64), blocks=(1, 2, 1, 1))
    x = np.zeros((2, 3, 32, 32), dtype=np.float32)
    assert model.forward(x).shape == (2, 5)
    assert model.forward_features(x).shape == (2, 64, 2, 2)  # stem /2, stages 1, 2, 2, 2
    names = [n for n, _ in model.named_parameters()]
    assert names[:3] == ["conv1.w", "bn1.weight", "bn1.bias"]
    assert "stages.1.layers.1.conv2.w" in names and "stages.1.layers.0.proj_conv.w" in names
    assert "stages.0.layers.0.proj_conv.w" not in names  # 8 -> 8, stride 1: identity
    assert not any(n.endswith("conv1.b") for n in names)  # convs before BN have no bias
    backbone = model.as_backbone(3)
    assert (backbone.out_channels, backbone.feature_stride) == (32, 8)
    assert backbone.forward(np.zeros((2, 3, 64, 64), np.float32)).shape == (2, 32, 8, 8)
    assert model.as_backbone().feature_stride == 16
    with pytest.raises(ValueError, match="x must have shape"):
        model.forward(np.zeros((2, 1, 32, 32), np.float32))
    with pytest.raises(ValueError, match="num_stages must be in 1..4, got 5"):
        model.as_backbone(5)
    with pytest.raises(ValueError, match="norm must be one of"):
        MiniResNet(3, norm="group")


def test_convert_frozen_batchnorm_gives_identical_eval_outputs():
    rng = np.random.default_rng(4)
    model = MiniResNet(4, widths=(4, 8, 8), rng=rng, dtype=np.float64)
    randomize_bn(model, rng)
    x = rng.standard_normal((3, 3, 16, 16))
    expected = model.eval().forward(x)
    state = model.state_dict()
    convert_frozen_batchnorm(model)
    assert not any(isinstance(m, BatchNorm2d) for m in model.modules())
    assert sum(isinstance(m, FrozenBatchNorm2d) for m in model.modules()) == 1 + 2 * 3 + 2
    np.testing.assert_array_equal(model.eval().forward(x), expected)
    np.testing.assert_array_equal(model.train().forward(x), expected)  # frozen in train mode too
    assert set(model.state_dict()) == set(state)  # same names: checkpoints still load
    assert len(model.parameters()) == 3 + 2 * 3 + 2  # only conv weights and fc remain


def test_freezing_leaves_frozen_weights_bit_identical_after_sgd():
    rng = np.random.default_rng(5)
    model = MiniResNet(3, widths=(4, 8, 8), rng=rng)
    freeze_stages(model, 2)  # stem and stage 1 frozen; stages 2, 3 and fc train
    frozen = {n: p.data.copy() for n, p in model.named_parameters() if not p.requires_grad}
    trained = {n: p.data.copy() for n, p in model.named_parameters() if p.requires_grad}
    buffers = {n: np.array(b).copy() for n, b in model.named_buffers()
               if n.startswith(("bn1.", "stages.0."))}
    assert set(frozen) == {"conv1.w", "stages.0.layers.0.conv1.w", "stages.0.layers.0.conv2.w"}
    opt = SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    x = rng.random((4, 3, 16, 16)).astype(np.float32)
    labels = np.array([0, 1, 2, 1])
    for _ in range(3):
        opt.zero_grad()
        loss, cache = softmax_cross_entropy_forward(model.forward(x), labels)
        assert model.backward(softmax_cross_entropy_backward(1.0, cache)) is None  # stem frozen
        # frozen parameters: no gradient accumulated, no update, no momentum buffer
        opt.step()
    for n, p in model.named_parameters():
        if n in frozen:
            assert p.data.tobytes() == frozen[n].tobytes(), n
            assert not p.grad.any(), n
        else:
            assert not np.array_equal(p.data, trained[n]), n
    for n, b in model.named_buffers():
        if n in buffers:
            assert np.asarray(b).tobytes() == buffers[n].tobytes(), n
    frozen_buffers = [v for v, p in zip(opt.velocity, opt.params, strict=True)
                      if not p.requires_grad]
    assert len(frozen_buffers) == 3 and all(v is None for v in frozen_buffers)


@pytest.mark.parametrize("freeze_at", [1, 2, 3])
def test_freezing_changes_which_gradients_are_computed_not_their_values(freeze_at):
    """Frozen layers keep no cache and the first trainable block computes no dx (it
    would be thrown away); the trainable gradients are those of the unfrozen network."""
    x = np.random.default_rng(8).random((2, 3, 16, 16))
    full = MiniResNet(3, widths=(4, 8, 8), norm="frozen", rng=np.random.default_rng(9),
                      dtype=np.float64)
    part = MiniResNet(3, widths=(4, 8, 8), norm="frozen", rng=np.random.default_rng(9),
                      dtype=np.float64)
    freeze_stages(part, freeze_at)
    dlogits = np.random.default_rng(10).standard_normal((2, 3))
    full.forward(x)
    full.backward(dlogits)
    part.forward(x)
    assert part.backward(dlogits) is None
    assert part.conv1._cache is None
    first = part.stages[freeze_at - 1][0]
    assert not first.needs_input_grad and not first.conv1.needs_input_grad
    for (name, p), (_, q) in zip(full.named_parameters(), part.named_parameters(),
                                 strict=True):
        if q.requires_grad:
            assert rel_error(p.grad, q.grad) <= 1e-12, name


def test_freeze_at_validates_and_zero_freezes_nothing():
    model = MiniResNet(3, widths=(4, 8))
    freeze_stages(model, 0)
    assert all(p.requires_grad for p in model.parameters())
    with pytest.raises(ValueError, match=r"freeze_at must be in 0..3, got 4"):
        freeze_stages(model, 4)
    freeze_stages(model, 3)
    assert [n for n, p in model.named_parameters() if p.requires_grad] == ["fc.w", "fc.b"]


def test_pretrained_weights_load_into_a_detector_backbone(tmp_path):
    rng = np.random.default_rng(6)
    model = MiniResNet(6, widths=(4, 8, 8, 16), rng=rng)
    randomize_bn(model, rng)
    path = save_checkpoint(model, tmp_path / "resnet.npz")
    loaded = load_checkpoint(path)
    assert isinstance(loaded, MiniResNet) and loaded.get_config() == model.get_config()
    backbone = loaded.as_backbone(3)
    left_out = set(loaded.state_dict()) - set(backbone.state_dict())
    assert "fc.w" in left_out and "stages.3.layers.0.conv1.w" in left_out
    assert not any(k.startswith(("stages.0", "stages.1", "stages.2", "conv1", "bn1"))
                   for k in left_out)
    for name, value in backbone.state_dict().items():
        np.testing.assert_array_equal(value, model.state_dict()[name], err_msg=name)
    x = rng.random((2, 3, 32, 32)).astype(np.float32)
    np.testing.assert_allclose(backbone.forward(x), model.eval().as_backbone(3).forward(x),
                               rtol=1e-6, atol=1e-6)

    wider = ResNetBackbone(widths=(4, 16, 8), num_stages=3)
    with pytest.raises(ValueError, match=r"stages.1.layers.0.conv1.w: "
                                         r"expected shape \(16, 4, 3, 3\), got \(8, 4, 3, 3\)"):
        wider.load_state_dict({k: model.state_dict()[k] for k in wider.state_dict()})
    partial = {k: v for k, v in backbone.state_dict().items() if k != "bn1.running_var"}
    with pytest.raises(ValueError, match=r"missing keys: \['bn1.running_var'\]"):
        backbone.load_state_dict(partial)


def test_backbone_in_fast_rcnn_and_checkpoint_round_trip(tmp_path):
    from minircnn.models.fast_rcnn import FastRCNN

    backbone = MiniResNet(3, widths=(4, 8, 8)).as_backbone(3)
    detector = FastRCNN(3, backbone, hidden=16)
    path = save_checkpoint(detector, tmp_path / "det.npz")
    again = load_checkpoint(path)
    assert isinstance(again.backbone, ResNetBackbone)
    assert again.backbone.feature_stride == 8 and again.backbone.norm == "frozen"
    images = np.random.default_rng(7).random((1, 3, 32, 32)).astype(np.float32)
    np.testing.assert_array_equal(again.backbone.forward(images), backbone.forward(images))


@pytest.mark.gpu
def test_mini_resnet_numpy_equals_cupy():
    from minircnn.backend import asnumpy, to_device

    rng = np.random.default_rng(8)
    cpu = MiniResNet(3, widths=(4, 8), rng=np.random.default_rng(0), dtype=np.float64)
    gpu = MiniResNet(3, widths=(4, 8), rng=np.random.default_rng(0), dtype=np.float64).to("gpu")
    x = rng.standard_normal((2, 3, 16, 16))
    dout = rng.standard_normal((2, 3))
    np.testing.assert_allclose(asnumpy(gpu.forward(to_device(x, "gpu"))), cpu.forward(x),
                               rtol=1e-10, atol=1e-12)
    dx_gpu = gpu.backward(to_device(dout, "gpu"))
    np.testing.assert_allclose(asnumpy(dx_gpu), cpu.backward(dout), rtol=1e-9, atol=1e-12)
    for (name, p_cpu), (_, p_gpu) in zip(cpu.named_parameters(), gpu.named_parameters(),
                                         strict=True):
        np.testing.assert_allclose(asnumpy(p_gpu.grad), p_cpu.grad, rtol=1e-9, atol=1e-12,
                                   err_msg=name)
