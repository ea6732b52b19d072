"""Detector benchmark entries (minircnn/perf/detector_bench.py) and bench's ``part_of``."""

import numpy as np
import pytest

from minircnn.perf import bench
from minircnn.perf import detector_bench as d
from minircnn.perf import rpn_bench as r
from minircnn.perf.bench import BENCHMARKS, Benchmark, run_bench
from minircnn.perf.bench_table import format_bench_table


@pytest.mark.parametrize("setup", [d.setup_train_step, d.setup_train_step_stored,
                                   d.setup_train_backbone,
                                   d.setup_train_roi, d.setup_train_head,
                                   d.setup_train_update, d.setup_inference,
                                   d.setup_inference_one_scale, d.setup_inference_backbone,
                                   d.setup_inference_roi, d.setup_inference_head,
                                   d.setup_inference_postprocess,
                                   r.setup_rpn_proposals, r.setup_rpn_backbone,
                                   r.setup_rpn_head, r.setup_joint_step,
                                   r.setup_joint_backbone, r.setup_joint_rpn,
                                   r.setup_joint_proposals, r.setup_joint_detector,
                                   r.setup_joint_update])
def test_every_setup_runs(setup):
    run, flops = setup(np.random.default_rng(0))
    assert flops is None
    run()


def test_rpn_entries_time_the_proposals_of_the_shipped_rpn():
    """The whole gives the proposals ``rpn_dataset_proposals`` gives that image (the
    figure ``minircnn train --proposals rpn`` reports), and the two parts are its parts."""
    from minircnn.training.rpn_eval import rpn_dataset_proposals

    run, _ = r.setup_rpn_proposals(np.random.default_rng(0))
    model, _, image = r._setup()
    expected, _ = rpn_dataset_proposals(model, [{"image": image[0]}])
    np.testing.assert_array_equal(run()[0], expected[0])
    assert [b.name for b in BENCHMARKS if b.part_of == bench.RPN] == [
        "faster r-cnn RPN part: backbone", "faster r-cnn RPN part: head, decode, NMS"]


def test_joint_step_entry_is_the_loops_joint_iteration_from_the_store(monkeypatch):
    """The joint step trains the RPN and the detector at once (both losses), starting
    from the stored frozen output; five stages are timed beside it, the last the update."""
    from minircnn.models.backbones import SmallVGG

    run, _ = r.setup_joint_step(np.random.default_rng(0))
    monkeypatch.setattr(SmallVGG, "forward_frozen", lambda self, images: pytest.fail(
        "the frozen blocks ran again"))
    stats = run()
    assert stats["loss_rpn_objectness"] > 0 and stats["loss_cls"] > 0
    parts = [b.name for b in BENCHMARKS if b.part_of == bench.JOINT]
    assert len(parts) == 5 and parts[-1].endswith("SGD update")


def test_train_step_setup_really_trains():
    run, _ = d.setup_train_step(np.random.default_rng(0))
    stats = run()
    assert set(stats) == {"loss", "loss_cls", "loss_box", "accuracy"} and stats["loss"] > 0


def test_stored_step_reads_the_frozen_blocks_from_the_store(monkeypatch):
    """The steady-state entry computes the step the full one does (same minibatch, same
    weights: the same loss, exactly), without running the frozen blocks."""
    from minircnn.models.backbones import SmallVGG

    full, _ = d.setup_train_step(np.random.default_rng(0))
    expected = full()
    stored, _ = d.setup_train_step_stored(np.random.default_rng(0))

    def not_again(self, images):
        raise AssertionError("the frozen blocks ran again")
    monkeypatch.setattr(SmallVGG, "forward_frozen", not_again)
    assert stored() == expected


def test_detect_entry_times_what_users_run():
    """The pyramid of the default TrainConfig, and a backbone part for each of its levels;
    the levels hold every proposal once."""
    from minircnn.training import TrainConfig

    assert d.TEST_SCALES == tuple(TrainConfig().test_scales) and len(d.TEST_SCALES) > 1
    names = [b.name for b in BENCHMARKS]
    whole = next(n for n in names if n.startswith("fast r-cnn detect per image") and
                 d.PYRAMID in n)
    parts = [b for b in BENCHMARKS if b.part_of == whole]
    assert sum("backbone at" in b.name for b in parts) == len(d.TEST_SCALES)
    _, _, props, levels = d._inference_setup(np.random.default_rng(0))
    assert sum(len(r) for _, r in levels) == len(props) == d.NUM_TEST_PROPOSALS
    assert levels[1][0].shape[-1] == 2 * levels[0][0].shape[-1]      # the 2x image


def test_part_of_reports_percent_of_the_whole(monkeypatch):
    def sleepy(k):
        def setup(rng):
            a = rng.standard_normal((32 * k, 32 * k))
            return (lambda: a @ a), None
        return setup

    fake = [BENCHMARKS[0], Benchmark("whole", sleepy(4)),
            Benchmark("part", sleepy(1), part_of="whole")]
    monkeypatch.setattr(bench, "BENCHMARKS", fake)
    results = run_bench(repeats=2)
    part, whole = results["entries"]["part"], results["entries"]["whole"]
    assert part["pct_of_whole"] == pytest.approx(100 * part["ms"] / whole["ms"])
    assert "pct_of_whole" not in whole
    assert format_bench_table(results).splitlines()[-1].endswith("% of whole")
