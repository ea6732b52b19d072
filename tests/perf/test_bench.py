import json

import numpy as np
import pytest

from minircnn.perf import bench, conv_bench
from minircnn.perf.bench import (
    BENCHMARKS,
    MATMUL,
    Benchmark,
    run_bench,
)
from minircnn.perf.bench_table import format_bench_table
from minircnn.perf.conv_bench import conv_flops

TINY_STACK = dict(batch=(1, 3, 8, 8), stack=((3, 4), "pool", (4, 2)))


def test_conv_flops_by_hand_and_stack_count():
    # 2 images, 4 filters, 3 channels, 3x3 kernel, 5x5 output: 2*2*4*3*9*25
    assert conv_flops((2, 3, 5, 5), (4, 3, 3, 3), (5, 5)) == 2 * 2 * 4 * 3 * 9 * 25
    _, flops = conv_bench.setup_conv_stack(np.random.default_rng(0), batch=(1, 3, 8, 8),
                                       stack=((3, 4), "pool", (4, 2)))
    # forward + backward = 3x forward, 2x for the first conv (no input gradient); the
    # second conv runs at 4x4 after the pool
    assert flops == 2 * (2 * 4 * 3 * 9 * 64) + 3 * (2 * 2 * 4 * 9 * 16)


def test_default_conv_stack_is_about_0p6_gflop():
    stack = [layer for layer in conv_bench.CONV_STACK if layer != "pool"]
    assert stack[0][0] == 3
    flops = 0.0
    h = 128
    for layer in conv_bench.CONV_STACK:
        if layer == "pool":
            h //= 2
        else:
            flops += 3 * conv_flops((2, layer[0], h, h), (layer[1], layer[0], 3, 3), (h, h))
    assert 0.5e9 < flops < 0.8e9
    first = conv_flops((2, 3, 128, 128), (stack[0][1], 3, 3, 3), (128, 128))
    _, counted = conv_bench.setup_conv_stack(np.random.default_rng(0))
    assert counted == flops - first                   # the first conv computes no dx


def test_conv_stack_run_ends_with_the_first_convs_weight_gradients(monkeypatch):
    """As in a network, the first conv's backward computes its weight gradients only."""
    from minircnn.layers import conv

    run, _ = conv_bench.setup_conv_stack(np.random.default_rng(0), **TINY_STACK)
    calls = []
    real = conv.col2im
    monkeypatch.setattr(conv, "col2im", lambda dcols, x_shape, *a, **k: (
        calls.append(x_shape), real(dcols, x_shape, *a, **k))[1])
    dw, db = run()
    assert dw.shape == (4, 3, 3, 3) and db.shape == (4,) and dw.dtype == np.float32
    assert np.isfinite(dw).all() and np.abs(dw).sum() > 0
    assert calls == [(1, 4, 4, 4)]                    # dx of the second conv only


def test_conv_stack_products_count_the_stacks_flops_and_run_its_products(monkeypatch):
    """The products-alone entry counts the stack's FLOPs and runs its products per conv
    and image, of the stack's shapes: (F, K) @ (K, P), (K, P) @ (P, F) and, but for the
    first conv, (K, F) @ (F, P)."""
    _, stack_flops = conv_bench.setup_conv_stack(np.random.default_rng(0), **TINY_STACK)
    run, flops = conv_bench.setup_conv_stack_products(np.random.default_rng(0), **TINY_STACK)
    assert flops == stack_flops
    shapes = []

    class Recording(np.ndarray):
        def __matmul__(self, other):
            shapes.append((self.shape, other.shape))
            return np.asarray(self) @ np.asarray(other)

    real_im2col = conv_bench.im2col
    monkeypatch.setattr(conv_bench, "im2col", lambda *a, **k: real_im2col(*a, **k).view(Recording))
    monkeypatch.setattr(conv_bench, "f32", lambda rng, *shape: rng.standard_normal(
        shape, dtype=np.float32).view(Recording))
    run, _ = conv_bench.setup_conv_stack_products(np.random.default_rng(0), **TINY_STACK)
    run()
    # conv 1: 3 -> 4 channels at 8x8 (K = 27, P = 64), no dcols; conv 2: 4 -> 2 at 4x4
    # (K = 36, P = 16)
    assert shapes == [((4, 27), (27, 64)), ((27, 64), (64, 4)),
                      ((2, 36), (36, 16)), ((36, 16), (16, 2)), ((36, 2), (2, 16))]


def test_conv_stack_elementwise_runs_each_relu_and_pool_of_the_stack(monkeypatch):
    calls = []
    for name in ("relu_forward", "relu_backward", "max_pool2d_forward", "max_pool2d_backward"):
        real = getattr(conv_bench, name)
        monkeypatch.setattr(conv_bench, name, lambda *a, _real=real, _name=name, **k: (
            calls.append((_name, a[0].shape)), _real(*a, **k))[1])
    run, flops = conv_bench.setup_conv_stack_elementwise(np.random.default_rng(0), **TINY_STACK)
    run()
    assert flops is None
    assert calls == [("relu_forward", (1, 4, 8, 8)), ("max_pool2d_forward", (1, 4, 8, 8)),
                     ("max_pool2d_backward", (1, 4, 4, 4)), ("relu_backward", (1, 4, 8, 8)),
                     ("relu_forward", (1, 2, 4, 4)), ("relu_backward", (1, 2, 4, 4))]


def test_registry_names_unique_and_matmul_first():
    names = [b.name for b in BENCHMARKS]
    assert len(names) == len(set(names)) and names[0] == MATMUL
    for b in BENCHMARKS:
        assert b.compare_to is None or b.compare_to in names


def test_run_bench_only_filters_and_always_keeps_the_matmul():
    results = run_bench(repeats=1, only="relu")
    assert list(results["entries"]) == [MATMUL, "relu fwd+bwd 2x64x64x64"]
    relu = results["entries"]["relu fwd+bwd 2x64x64x64"]
    assert relu["ms"] > 0 and relu["gflops"] is None and relu["pct_of_matmul"] is None
    assert results["entries"][MATMUL]["pct_of_matmul"] == pytest.approx(100.0)
    assert results["matmul_gflops"] > 0
    json.dumps(results)  # serialisable as is


def test_compare_to_gives_speedup_and_table_lists_entries(monkeypatch):
    def tiny(rng):
        a = rng.standard_normal((8, 8))
        return (lambda: a @ a), 2.0 * 8**3

    fake = [BENCHMARKS[0]._replace(setup=tiny), Benchmark("slow", tiny),
            Benchmark("fast", tiny, compare_to="slow"), Benchmark("no flops",
                                                                  lambda rng: (lambda: 0, None))]
    monkeypatch.setattr(bench, "BENCHMARKS", fake)
    results = run_bench(repeats=2)
    assert set(results["entries"]) == {MATMUL, "slow", "fast", "no flops"}
    fast = results["entries"]["fast"]
    assert fast["speedup"] == pytest.approx(results["entries"]["slow"]["ms"] / fast["ms"])
    assert "speedup" not in results["entries"]["slow"]
    table = format_bench_table(results)
    lines = table.splitlines()
    assert "float32 matmul" in lines[0] and "GFLOP/s" in lines[0]
    assert len(lines) == 3 + 4
    assert lines[5].startswith("fast") and lines[5].endswith("x")
    assert lines[6].startswith("no flops") and lines[6].split()[-3:] == ["-", "-", "-"]
