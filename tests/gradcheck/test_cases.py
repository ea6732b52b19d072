import dataclasses

import numpy as np
import pytest

from minircnn.backend import asnumpy, to_device
from minircnn.gradcheck.cases import (
    LAYER_CASES,
    THRESHOLD,
    format_gradcheck_table,
    run_case,
    run_gradchecks,
)


@pytest.mark.parametrize("case", LAYER_CASES, ids=[c.name for c in LAYER_CASES])
def test_every_layer_case_passes_its_gradcheck(case, gradcheck_command):
    """Each case's row of `minircnn gradcheck` (seed 0, run once for the session)."""
    row = gradcheck_command[2][case.name]
    assert row.passed, f"{case.name}: {row.errors}"
    assert max(row.errors.values()) <= THRESHOLD
    expected = list(case.wrt) if case.wrt is not None else list(case.make_inputs(
        np.random.default_rng(0)))
    assert list(row.errors) == expected


@pytest.mark.parametrize("name", ["linear", "batchnorm2d", "roi_align"])
def test_the_commands_rows_are_each_case_checked_with_seed_0(name, gradcheck_command):
    """What the test above reads is run_case(case, seed=0), recomputed here for a few."""
    case = next(c for c in LAYER_CASES if c.name == name)
    assert gradcheck_command[2][name] == run_case(case, seed=0)
    assert list(gradcheck_command[2]) == [c.name for c in LAYER_CASES]


def test_case_names_are_unique_and_cover_the_core_layers():
    names = [c.name for c in LAYER_CASES]
    assert len(names) == len(set(names))
    for required in ("conv2d", "conv2d_naive", "max_pool2d", "max_pool2d_overlap",
                     "max_pool2d_naive", "linear", "relu", "dropout", "batchnorm2d",
                     "softmax_cross_entropy", "smooth_l1", "fast_rcnn_loss"):
        assert required in names


def _scaled(backward, factor):
    def broken(dout, cache):
        grads = backward(dout, cache)
        if isinstance(grads, tuple):
            return tuple(g * factor for g in grads)
        return grads * factor
    return broken


@pytest.mark.parametrize("name", ["linear", "relu", "max_pool2d_overlap", "fast_rcnn_loss"])
def test_a_broken_backward_fails(name):
    case = next(c for c in LAYER_CASES if c.name == name)
    broken = dataclasses.replace(case, backward=_scaled(case.backward, 1.01))
    row = run_case(broken)
    assert not row.passed
    assert max(row.errors.values()) > 1e-3


def test_table_lists_every_row_and_marks_failures():
    cases = [c for c in LAYER_CASES if c.name in ("linear", "relu")]
    cases.append(dataclasses.replace(cases[0], name="linear_broken",
                                     backward=_scaled(cases[0].backward, 2.0)))
    rows = run_gradchecks(seed=0, cases=cases)
    assert [r.passed for r in rows] == [True, True, False]
    table = format_gradcheck_table(rows)
    lines = table.splitlines()
    assert len(lines) == 2 + 3
    assert lines[2].startswith("linear") and lines[2].endswith("pass")
    assert lines[4].startswith("linear_broken") and lines[4].endswith("FAIL")
    assert "x(4,5) w(3,5) b(3,)" in lines[2]
    assert "dx " in lines[3]


@pytest.mark.gpu
@pytest.mark.parametrize("case", LAYER_CASES, ids=[c.name for c in LAYER_CASES])
def test_numpy_and_cupy_agree(case):
    inputs = case.make_inputs(np.random.default_rng(0))
    out, cache = case.forward(*inputs.values(), **case.kwargs)
    gpu_inputs = {k: to_device(v, "gpu") for k, v in inputs.items()}
    gpu_out, gpu_cache = case.forward(*gpu_inputs.values(), **case.kwargs)
    np.testing.assert_allclose(asnumpy(gpu_out), out, rtol=1e-10, atol=1e-12)
    dout = np.random.default_rng(1).standard_normal(np.shape(out))
    grads = case.backward(dout if np.ndim(out) else 1.0, cache)
    gpu_grads = case.backward(to_device(dout, "gpu") if np.ndim(out) else 1.0, gpu_cache)
    grads = grads if isinstance(grads, tuple) else (grads,)
    gpu_grads = gpu_grads if isinstance(gpu_grads, tuple) else (gpu_grads,)
    for g, gg in zip(grads, gpu_grads, strict=True):
        np.testing.assert_allclose(asnumpy(gg), g, rtol=1e-10, atol=1e-12)
