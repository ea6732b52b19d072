"""What a `minircnn reproduce` run cost: wall clock, the machine's load, and CPU time.

The issue's budget is 60 minutes on an idle 2-core machine, but a run is often made on
a shared one, where its wall-clock time says as much about the other jobs as about the
run. So the run records, and the page states:

- each invocation's wall-clock time and phases, and the load average (1 min) at its
  start and end and sampled while it ran (``LoadSampler``): a load above the run's
  worker count means other processes competed for the cores;
- the CPU time of every trained detector's own process (``detector_times``, from the
  ``times`` of its metrics.json), which other jobs inflate least, and of its tests and
  the rows' measurements (``cpu_s`` in evals/*.json and in each row's runs, where the
  run recorded them). One worker on an idle core takes about its CPU time (one BLAS
  thread each), so CPU time / wall-clock time says how much of the cores the run got,
  and the CPU time over the workers estimates the run's time on an idle machine.
"""

from __future__ import annotations

import json
import multiprocessing
import os

import numpy as np


def _sample_load(conn, stop, interval: float) -> None:
    """In the sampler's process: the 1-minute load every ``interval`` s until ``stop``."""
    samples = []
    while not stop.wait(interval):                   # the first sample after one interval
        samples.append(os.getloadavg()[0])
    conn.send(samples)
    conn.close()


class LoadSampler:
    """Samples the 1-minute load average every ``interval`` seconds, in a process of its
    own (a thread would be running when the workers fork, which Python warns about).

    Use as ``with LoadSampler() as load: ...``; then ``load.summary()`` is
    {"load_mean", "load_max", "load_samples", "load_interval_s"} (no samples: {}).
    """

    def __init__(self, interval: float = 30.0):
        self.interval, self.samples = float(interval), []

    def __enter__(self) -> LoadSampler:
        self._conn, child = multiprocessing.Pipe(duplex=False)
        self._stop = multiprocessing.Event()
        self._process = multiprocessing.Process(target=_sample_load, daemon=True,
                                                args=(child, self._stop, self.interval))
        self._process.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self.samples = self._conn.recv() if self._conn.poll(10) else []
        self._process.join(10)

    def summary(self) -> dict:
        if not self.samples:
            return {}
        return {"load_mean": float(np.mean(self.samples)), "load_max": max(self.samples),
                "load_samples": len(self.samples), "load_interval_s": self.interval}


def detector_times(run_folders: list[str]) -> dict:
    """{run folder name: {"wall_s", "cpu_s", "evals_cpu_s"}} of every trained detector in
    ``run_folders`` whose metrics.json records its times (a resumed run counts its last
    part only). ``evals_cpu_s``: the CPU time of its tests (evals/*.json), None when one
    of them did not record it."""
    out = {}
    for folder in run_folders:
        path = os.path.join(folder, "metrics.json")
        if not os.path.isfile(path):
            continue
        with open(path) as f:
            times = json.load(f).get("times", {})
        if "cpu_s" in times and "total_s" in times:
            out[os.path.basename(folder)] = {"wall_s": times["total_s"], "cpu_s": times["cpu_s"],
                                             "evals_cpu_s": _evals_cpu(folder)}
    return out


def _evals_cpu(folder: str) -> float | None:
    """The CPU seconds of a detector's tests (its evals/ JSON), None if one lacks them."""
    evals = os.path.join(folder, "evals")
    total = 0.0
    for name in sorted(os.listdir(evals)) if os.path.isdir(evals) else ():
        with open(os.path.join(evals, name)) as f:
            cpu = json.load(f).get("cpu_s")
        if cpu is None:
            return None
        total += cpu
    return total


def _invocation_line(run: dict) -> str:
    """One invocation: its rows, wall clock, workers and load."""
    line = (f"- `--rows {','.join(run.get('rows', ['all']))}`: {run['seconds'] / 60:.0f} min "
            f"wall clock, {run.get('workers', 2)} worker process(es); load average (1 min) "
            f"{run['load_start']:.1f} at its start and {run['load_end']:.1f} at its end")
    if "load_mean" in run:
        line += (f", {run['load_mean']:.1f} on average and {run['load_max']:.1f} at most over "
                 f"{run['load_samples']} samples taken every {run['load_interval_s']:.0f} s "
                 f"by {run.get('load_sampled_by', 'the run itself')}")
    return line + "."


def _busy_line(runs: list) -> str:
    """Whether the machine was idle, judged from the loads the invocations recorded."""
    loads = [v for r in runs for v in (r["load_start"], r["load_end"], r.get("load_max", 0))]
    workers = max(r.get("workers", 2) for r in runs)
    cpus = max(r.get("cpus", 0) for r in runs)
    cores = f"it has {cpus} cores, " if cpus else ""
    if max(loads) > workers + 0.5:
        return (f"- **The machine was not idle**: {cores}the run kept at most {workers} "
                f"core(s) busy, and the load reached {max(loads):.1f}: other jobs ran beside "
                "it, so its wall-clock times (and the test times in the tables) are longer "
                "than on an idle machine.")
    return (f"- The load stayed within {max(loads):.1f}, about the run's own {workers} "
            "worker(s): the machine was close to idle.")


def _cpu_lines(runs: list, detectors: dict, results: dict) -> list[str]:
    """Training's CPU time against its wall clock, and the idle-machine estimate: from
    every part's CPU time where the run recorded it, else from training's share."""
    if not detectors:
        return []
    cpu = sum(d["cpu_s"] for d in detectors.values())
    wall = sum(d["wall_s"] for d in detectors.values())
    share = cpu / wall                           # of a core, per training process
    workers = max(r.get("workers", 2) for r in runs)
    total = sum(r["seconds"] for r in runs)
    lines = [
        f"- Training the {len(detectors)} detectors took {cpu / 60:.0f} min of CPU time in "
        f"their own processes, against {wall / 60:.0f} min of wall clock summed over them: "
        f"each got {100 * share:.0f}% of a core on average. On an idle machine, "
        f"{workers} at a time, their training would take about {cpu / workers / 60:.0f} "
        "min (their CPU time over the workers)."]
    evals = [d.get("evals_cpu_s") for d in detectors.values()]
    rows = [run.get("cpu_s") for row in results.values() for run in row["runs"]]
    if None not in evals and None not in rows:
        rest = sum(evals) + sum(rows)
        return lines + [
            f"- Testing the detectors and measuring the rows took {rest / 60:.0f} min of CPU "
            f"time more: on an idle machine the whole run would take about "
            f"{(cpu + rest) / workers / 60:.0f} min ({(cpu + rest) / 60:.0f} min of CPU over "
            f"{workers} workers; more where a worker waits for the other)."]
    return lines + [
        f"- Estimate for the whole run on an idle machine: about {share * total / 60:.0f} "
        f"min (its {total / 60:.0f} min of wall clock times the {100 * share:.0f}% share), "
        "assuming the tests and rows, whose CPU time this run did not record, met the "
        "same contention as training."]


def run_lines(runs: list | None, detectors: dict | None, results: dict) -> list[str]:
    """The page's section on the run: invocations, load, CPU time, idle estimate."""
    runs = [r for r in runs or () if r.get("measured", 1)]     # those that measured anything
    if not runs:
        return ["Not recorded (the page was made from the results alone)."]
    total = sum(r["seconds"] for r in runs)
    lines = [f"Wall clock of the whole run: **{total / 60:.0f} min**, in "
             f"{len(runs)} invocation(s) of `minircnn reproduce` that measured something:", ""]
    lines += [_invocation_line(r) for r in runs]
    return lines + [_busy_line(runs), *_cpu_lines(runs, detectors or {}, results)]
