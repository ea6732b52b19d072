"""FastRCNN and SmallVGG (minircnn/models/): shapes, whole-model gradcheck, impl switch."""

import numpy as np
import pytest

from minircnn.gradcheck import gradient_error, numeric_gradient_with_bound, rel_error
from minircnn.models import FastRCNN, SmallVGG


def _tiny(roi_op="pool", dtype=np.float64, impl="fast", batch_norm=False):
    rng = np.random.default_rng(0)
    backbone = SmallVGG((3, 4), rng=rng, dtype=dtype, impl=impl,       # stride 2
                        batch_norm=batch_norm)
    model = FastRCNN(2, backbone, roi_op=roi_op, output_size=(2, 2), hidden=5, dropout=0.0,
                     rng=rng, dtype=dtype, impl=impl)
    for p in model.parameters():  # move biases off zero so ReLUs are not all tied
        if p.data.ndim == 1:
            p.data[...] = rng.uniform(-0.1, 0.1, p.data.shape)
    images = rng.random((2, 3, 8, 8))
    rois = np.array([[0, 0.5, 1.0, 6.0, 7.5], [1, 2.0, 0.0, 8.0, 5.0],
                     [0, 3.0, 3.0, 7.0, 7.0], [1, 0.0, 0.0, 8.0, 8.0]])
    return model, images, rois


def test_shapes_and_init():
    model = FastRCNN(3, SmallVGG(), hidden=32)
    assert model.backbone.feature_stride == 8 and model.roi.spatial_scale == 1 / 8
    images = np.random.default_rng(0).random((2, 3, 64, 64), dtype=np.float32)
    rois = np.array([[0, 0, 0, 32, 32], [1, 8, 8, 60, 40], [1, 0, 0, 64, 64]], np.float32)
    cls, bbox = model.forward(images, rois)
    assert cls.shape == (3, 4) and bbox.shape == (3, 16) and cls.dtype == np.float32
    assert abs(model.cls_score.w.data.std() - 0.01) < 0.002      # the paper's init
    assert abs(model.bbox_pred.w.data.std() - 0.001) < 0.0002
    dimages = model.backward(np.ones_like(cls), np.ones_like(bbox))
    assert dimages.shape == images.shape
    assert all(np.any(p.grad != 0) for p in model.parameters() if p.data.ndim > 1)


@pytest.mark.parametrize("roi_op, batch_norm", [("pool", False), ("align", False),
                                                ("pool", True)])
def test_whole_model_gradcheck(roi_op, batch_norm):
    model, images, rois = _tiny(roi_op, batch_norm=batch_norm)
    rng = np.random.default_rng(1)
    cls, bbox = model.forward(images, rois)
    dcls, dbbox = rng.standard_normal(cls.shape), rng.standard_normal(bbox.shape)
    model.zero_grad()
    dimages = model.backward(dcls, dbbox)
    dout = np.concatenate([dcls.ravel(), dbbox.ravel()])

    def outputs():
        c, b = model.forward(images, rois)
        return np.concatenate([c.ravel(), b.ravel()])

    errors = {}
    for name, p in model.named_parameters():
        numeric = numeric_gradient_with_bound(outputs, p.data, dout)
        if batch_norm and np.abs(numeric.grad).max() < 1e-8:  # a conv bias right before BN:
            assert np.abs(p.grad).max() < 1e-8                # BN subtracts it, gradient 0
            continue
        errors[name] = gradient_error(p.grad, numeric, threshold=1e-5)
    errors["images"] = gradient_error(dimages, numeric_gradient_with_bound(outputs, images, dout),
                                      threshold=1e-5)
    worst = max(errors, key=errors.get)
    assert errors[worst] <= 1e-5, (worst, errors[worst])


def test_impl_switch_reaches_every_layer_and_matches():
    model, images, rois = _tiny()
    cls_f, bbox_f = model.forward(images, rois)
    model.zero_grad()
    dimg_f = model.backward(np.ones_like(cls_f), np.ones_like(bbox_f))
    grads_f = [p.grad.copy() for p in model.parameters()]
    model.impl = "naive"
    assert all(m.impl == "naive" for m in model.modules() if hasattr(m, "impl"))
    assert model.roi.impl == "naive" and model.backbone.layers[0].impl == "naive"
    cls_n, bbox_n = model.forward(images, rois)
    model.zero_grad()
    dimg_n = model.backward(np.ones_like(cls_n), np.ones_like(bbox_n))
    assert rel_error(cls_f, cls_n) <= 1e-9 and rel_error(bbox_f, bbox_n) <= 1e-9
    assert rel_error(dimg_f, dimg_n) <= 1e-9
    for gf, p in zip(grads_f, model.parameters(), strict=True):
        assert rel_error(gf, p.grad) <= 1e-9
    with pytest.raises(ValueError, match="impl"):
        model.impl = "slow"


def test_small_vgg_stride_normalisation_and_config():
    vgg = SmallVGG((4, 4, 8, 8), batch_norm=True)
    assert vgg.feature_stride == 8 and vgg.out_channels == 8
    assert sum(type(m).__name__ == "BatchNorm2d" for m in vgg.modules()) == 4
    images = np.full((1, 3, 16, 16), 0.5, np.float32)
    assert vgg.forward(images).shape == (1, 8, 2, 2)
    rebuilt = SmallVGG(**vgg.get_config())
    assert rebuilt.get_config() == vgg.get_config()
    plain = SmallVGG((2,), pixel_mean=(0.5, 0.5, 0.5), pixel_std=(0.25, 0.25, 0.25))
    plain.layers[0].w.data[...] = 0
    plain.layers[0].w.data[:, :, 1, 1] = 1.0                     # out = sum_c x_c + b
    plain.layers[0].b.data[...] = 0.1
    out = plain.forward(np.full((1, 3, 4, 4), 0.75, np.float32))
    np.testing.assert_allclose(out, 3 * (0.75 - 0.5) / 0.25 + 0.1, rtol=1e-6)


def test_dropout_only_in_training_mode():
    model = FastRCNN(3, SmallVGG((4, 4)), hidden=16, dropout=0.5)
    images = np.random.default_rng(0).random((1, 3, 16, 16), dtype=np.float32)
    rois = np.array([[0, 0, 0, 12, 12]], np.float32)
    model.eval()
    a, _ = model.forward(images, rois)
    b, _ = model.forward(images, rois)
    assert np.array_equal(a, b)
    model.train()
    c, _ = model.forward(images, rois)
    assert not np.array_equal(a, c)


def test_bad_inputs():
    model = FastRCNN(3, SmallVGG((4, 4)), hidden=8)
    with pytest.raises(ValueError, match="rois"):
        model.forward(np.zeros((1, 3, 16, 16), np.float32), np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match="divisible"):
        model.forward(np.zeros((1, 3, 15, 16), np.float32), np.zeros((2, 5), np.float32))
    with pytest.raises(ValueError, match="roi_op"):
        FastRCNN(3, SmallVGG((4,)), roi_op="warp")
    with pytest.raises(TypeError, match="out_channels"):
        FastRCNN(3, object())


def test_checkpoint_round_trip_of_the_detector(tmp_path):
    from minircnn.models import load_checkpoint, save_checkpoint

    model, images, rois = _tiny("align")
    loaded = load_checkpoint(save_checkpoint(model, tmp_path / "d.npz"))
    assert isinstance(loaded, FastRCNN) and loaded.roi_op == "align"
    for a, b in zip(model.forward(images, rois), loaded.forward(images, rois), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.gpu
def test_numpy_and_cupy_agree():
    from minircnn.backend import asnumpy, to_device

    model, images, rois = _tiny()
    cls, bbox = model.forward(images, rois)
    model.zero_grad()
    dimages = model.backward(np.ones_like(cls), np.ones_like(bbox))
    grads = [p.grad.copy() for p in model.parameters()]
    model.to("gpu")
    cls_g, bbox_g = model.forward(to_device(images, "gpu"), to_device(rois, "gpu"))
    model.zero_grad()
    dimages_g = model.backward(to_device(np.ones_like(cls), "gpu"),
                               to_device(np.ones_like(bbox), "gpu"))
    assert rel_error(cls, asnumpy(cls_g)) <= 1e-9 and rel_error(bbox, asnumpy(bbox_g)) <= 1e-9
    assert rel_error(dimages, asnumpy(dimages_g)) <= 1e-9
    for g, p in zip(grads, model.parameters(), strict=True):
        assert rel_error(g, asnumpy(p.grad)) <= 1e-9


def test_detect_with_no_proposals_returns_empty_arrays():
    model = FastRCNN(3, SmallVGG((4, 4)), hidden=8)
    dets = model.detect(np.zeros((3, 16, 16), np.float32), np.zeros((0, 4), np.float32))
    assert dets["boxes"].shape == (0, 4) and dets["scores"].shape == (0,)
    assert dets["labels"].dtype == np.int64 and model.training       # mode restored


def test_the_defaults_are_the_recipe():
    """FastRCNN with no options is the head `minircnn train` trains (make_detector)."""
    import dataclasses

    from minircnn.training.config import TrainConfig, make_detector

    recipe = dataclasses.replace(TrainConfig(), pretrained=False)
    trained = make_detector(recipe)
    model = FastRCNN(3, SmallVGG(num_pools=2))
    ours, theirs = model.get_config(), trained.get_config()
    for key in ("backbone", "classes"):
        del ours[key], theirs[key]
    assert ours == theirs
    assert model.backbone.get_config() == trained.backbone.get_config()
    assert model.backbone.feature_stride == trained.backbone.feature_stride == 4
    roi = ("output_size", "spatial_scale", "sampling_ratio", "aligned")
    assert type(model.roi) is type(trained.roi)
    assert [getattr(model.roi, a) for a in roi] == [getattr(trained.roi, a) for a in roi]


def test_backward_returns_dimages_unless_the_first_block_is_frozen():
    model, images, rois = _tiny()
    cls, bbox = model.forward(images, rois)
    assert model.backward(np.ones_like(cls), np.ones_like(bbox)).shape == images.shape
    model.backbone.freeze_blocks(1)                 # as make_detector's freeze_at >= 2
    cls, bbox = model.forward(images, rois)
    assert model.backward(np.ones_like(cls), np.ones_like(bbox)) is None
    assert all(np.any(p.grad != 0) for p in model.parameters() if p.requires_grad)


# --- the debugger path -------------------------------------------------------------------
# Files whose functions are plumbing, not the maths a student steps through to learn.
PLUMBING = ("layers/module.py", "layers/roi_checks.py", "utils/validate.py", "backend.py")


def _is_plumbing(code) -> bool:
    return code.co_filename.replace("\\", "/").endswith(PLUMBING)


def _step_into(model, images, rois, layer_backward, target):
    """Trace ``model.backward`` as pdb's ``s`` steps: from the call of ``layer_backward``
    (a Module's backward) to the first line of ``target``'s first loop.

    Returns (steps: the 'call' and 'line' events on the way, the frames the target's
    own lines did not produce; path: the functions between model.backward and the
    target at the loop; plumbing: the plumbing frames entered from the layer's backward
    or the target itself).
    """
    import inspect
    import sys

    cls, bbox = model.forward(images, rois)
    source, first = inspect.getsourcelines(target)
    loop = first + next(i for i, text in enumerate(source) if text.lstrip().startswith("for "))
    seen = {"started": False, "steps": 0, "plumbing": [], "path": None}
    stepping = {layer_backward.__code__, target.__code__}

    def trace(frame, event, arg):
        code = frame.f_code
        if seen["path"] is not None:
            return None
        if not seen["started"]:
            seen["started"] = event == "call" and code is layer_backward.__code__
            if not seen["started"]:
                return trace
        if code is target.__code__ and event == "line" and frame.f_lineno == loop:
            path, f = [], frame.f_back
            while f.f_code.co_name != "backward" or type(f.f_locals.get("self")) is not \
                    type(model):
                path.append(f.f_code)
                f = f.f_back
            seen["path"] = path
            return None
        if event == "call" and _is_plumbing(code) and frame.f_back.f_code in stepping:
            seen["plumbing"].append(code.co_name)
        if event in ("call", "line") and code is not target.__code__:
            seen["steps"] += 1
        return trace

    sys.settrace(trace)
    try:
        model.backward(np.ones_like(cls), np.ones_like(bbox))
    finally:
        sys.settrace(None)
    assert seen["path"] is not None, f"{target.__name__}'s loop was not reached"
    return seen["steps"], seen["path"], seen["plumbing"]


@pytest.mark.parametrize("roi_op, layer, target, max_steps", [
    ("align", "RoIAlign", "roi_align_backward_naive", 80),   # the geometry: ~50 of them
    ("pool", "RoIPool", "roi_pool_backward_naive", 30),
    ("align", "Conv2d", "conv2d_backward_naive", 30),
])
def test_s_from_model_backward_reaches_the_naive_loops_through_two_plumbing_frames(
        roi_op, layer, target, max_steps):
    """With impl="naive", ``s`` from a layer's backward enters the op's loop function
    directly (the function was chosen when ``impl`` was set); on the way to its first
    loop only the dout check and ``get_array_module`` are plumbing."""
    import minircnn.layers as layers

    model, images, rois = _tiny(roi_op=roi_op, impl="naive")
    steps, path, plumbing = _step_into(model, images, rois, getattr(layers, layer).backward,
                                       getattr(layers, target))
    assert [code.co_name for code in path if _is_plumbing(code)] == []
    assert [code.co_name for code in path][:1] == ["backward"]      # the layer's own
    assert len(plumbing) <= 2, plumbing
    assert steps <= max_steps


def test_forward_levels_equals_one_forward_per_level_and_keeps_no_cache():
    """The pyramid's head runs once over every level's RoIs: the same scores as one
    forward per level (fc6's rows are independent, so equal to float32 round-off), and,
    as a test-time pass, no cache for a backward."""
    rng = np.random.default_rng(3)
    model = FastRCNN(3, SmallVGG((4, 4)), hidden=16, dropout=0.5).eval()
    small = rng.random((2, 3, 16, 16), dtype=np.float32)
    large = rng.random((2, 3, 32, 32), dtype=np.float32)
    rois_small = np.array([[0, 0, 0, 12, 12], [1, 2, 4, 16, 16]], np.float32)
    rois_large = np.array([[1, 0, 0, 20, 30], [0, 8, 8, 31, 31], [1, 3, 5, 9, 7]], np.float32)
    cls, bbox = model.forward_levels([(small, rois_small), (large, rois_large)])
    expected = [model.forward(small, rois_small), model.forward(large, rois_large)]
    np.testing.assert_allclose(cls, np.concatenate([c for c, _ in expected]), atol=1e-5)
    np.testing.assert_allclose(bbox, np.concatenate([b for _, b in expected]), atol=1e-5)
    one, _ = model.forward_levels([(large, rois_large)])
    np.testing.assert_array_equal(one, expected[1][0])
    model.forward_levels([(small, rois_small)])
    with pytest.raises(RuntimeError, match="before forward"):
        model.roi.backward(np.ones((2, 4, 7, 7), np.float32))
