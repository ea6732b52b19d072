"""What the page says a reproduce run cost (minircnn/paper/budget.py), on made-up records."""

import json
import time

from minircnn.paper.budget import LoadSampler, detector_times, run_lines


def _run(**extra):
    return {"rows": ["all"], "seconds": 3600.0, "load_start": 1.0, "load_end": 2.0,
            "workers": 2, **extra}


def test_a_busy_machine_is_said_to_be_busy_with_its_load():
    text = "\n".join(run_lines([_run(load_mean=4.5, load_max=7.25, load_samples=120,
                                     load_interval_s=30.0, cpus=2)], {}, {}))
    assert "Wall clock of the whole run: **60 min**" in text
    assert "4.5 on average and 7.2 at most over 120 samples taken every 30 s" in text
    assert "**The machine was not idle**: it has 2 cores" in text
    assert "CPU time" not in text                 # no detector times: no estimate


def test_a_quiet_machine_is_said_to_be_close_to_idle():
    assert "close to idle" in "\n".join(run_lines([_run()], None, {}))


def test_the_idle_estimate_is_the_cpu_share_of_training():
    detectors = {"a_s0": {"wall_s": 1200.0, "cpu_s": 600.0, "evals_cpu_s": None},
                 "b_s0": {"wall_s": 1200.0, "cpu_s": 600.0, "evals_cpu_s": 60.0}}
    text = "\n".join(run_lines([_run(load_max=4.0)], detectors, {}))
    assert "Training the 2 detectors took 20 min of CPU time" in text
    assert "against 40 min of wall clock" in text and "50% of a core" in text
    assert "would take about 10 min" in text            # 20 min of CPU over 2 workers
    assert "whole run on an idle machine: about 30 min" in text     # 60 min x 50%


def test_the_idle_estimate_adds_the_tests_and_rows_cpu_time_when_recorded():
    detectors = {"a_s0": {"wall_s": 1200.0, "cpu_s": 600.0, "evals_cpu_s": 120.0},
                 "b_s0": {"wall_s": 1200.0, "cpu_s": 600.0, "evals_cpu_s": 0.0}}
    results = {"row": {"runs": [{"cpu_s": 60.0}, {"cpu_s": 60.0}]}}
    text = "\n".join(run_lines([_run(load_max=4.0)], detectors, results))
    assert "measuring the rows took 4 min of CPU time more" in text
    assert "would take about 12 min (24 min of CPU over 2 workers" in text
    results["row"]["runs"][1].pop("cpu_s")               # one not recorded: share estimate
    assert "about 30 min" in "\n".join(run_lines([_run(load_max=4.0)], detectors, results))


def test_invocations_that_measured_nothing_are_left_out():
    lines = run_lines([_run(), _run(seconds=1.0, measured=0)], None, {})
    assert "in 1 invocation(s)" in lines[0]
    assert run_lines([], None, {}) == [
        "Not recorded (the page was made from the results alone)."]


def test_detector_times_read_each_runs_metrics(tmp_path):
    (tmp_path / "x_s0").mkdir()
    (tmp_path / "x_s0" / "metrics.json").write_text(
        json.dumps({"times": {"total_s": 10.0, "cpu_s": 8.0}}))
    (tmp_path / "x_s0" / "evals").mkdir()
    for name, cpu in (("a.json", 1.5), ("b.json", 2.0)):
        (tmp_path / "x_s0" / "evals" / name).write_text(json.dumps({"cpu_s": cpu}))
    (tmp_path / "y_s0").mkdir()                               # not trained: left out
    assert detector_times([str(tmp_path / "x_s0"), str(tmp_path / "y_s0")]) == {
        "x_s0": {"wall_s": 10.0, "cpu_s": 8.0, "evals_cpu_s": 3.5}}
    (tmp_path / "x_s0" / "evals" / "c.json").write_text("{}")   # one without: unknown
    assert detector_times([str(tmp_path / "x_s0")])["x_s0"]["evals_cpu_s"] is None


def test_the_load_sampler_samples_while_the_block_runs():
    with LoadSampler(interval=0.05) as load:
        time.sleep(0.3)
    summary = load.summary()
    assert summary["load_samples"] >= 1 and summary["load_max"] >= summary["load_mean"] >= 0
    with LoadSampler(interval=60) as quick:
        pass
    assert quick.summary() == {}                             # stopped before one interval
