"""`minircnn reproduce`: the Fast R-CNN paper's tables and figures, in toy form, from real runs.

Every number comes from detectors trained here (three seeds per row: the model init,
minibatch and dropout seeds; the data stay fixed) and evaluated on held-out shapes
images. The output folder holds:

- ``models/<variant>_s<seed>/``: one `minircnn train` run folder per trained detector
  (reused when present, so an interrupted run picks up where it stopped); the detectors
  the rows need are trained first, ``workers`` at a time (one core each), then tested
  once per test setting into each folder's ``evals/``, which several rows share;
- ``rows/<row>.json``: one result per table row, written as soon as it is done (a row
  whose JSON exists is not recomputed: the run is resumable row by row); the rows are
  measured ``workers`` at a time too;
- ``tables.md``, ``figure2_svd.png``, ``figure3_proposals.png``, ``data_grid.png``,
  ``results.json`` (minircnn/paper/report.py writes them), ``run.json`` (each
  invocation's rows, wall-clock time, phases and load) and ``detectors.json`` (each
  trained detector's wall-clock and CPU time: minircnn/paper/budget.py).

The trained detectors the rows share are in minircnn/paper/variants.py, the
experiments (minircnn/paper/rows.py) follow the paper's sections: Table 4
(R-CNN, SPP-net, Fast R-CNN, +SVD: train and test time, mAP), Table 5 (which layers to
fine-tune), Table 6 (multi-task training), Table 7 (one scale vs an image pyramid),
Table 8 (softmax vs SVMs), Figure 2 (SVD rank), Figure 3 (number of proposals),
section 5.3 (more training data: a grid of training-set sizes x pretraining).
``quick=True`` runs them all on a few tiny images to check the machinery (the numbers
mean nothing then).
"""

from __future__ import annotations

import json
import os
import time

from minircnn.paper.budget import LoadSampler, detector_times
from minircnn.paper.report import write_report
from minircnn.paper.rows import ROWS, measure_row, variants_of
from minircnn.paper.variants import (
    VARIANTS,
    ReproduceConfig,
    map_jobs,
    run_folder,
    train_variants,
)
from minircnn.utils.fileio import write_json
from minircnn.utils.settings import REPRODUCE_RULES, check_settings

# Rows that test a detector many times (R-CNN's and SPP-net's later stages, sweeps, SVM
# training) are measured first, for the same reason.
SLOW_ROWS = ("table4_rcnn", "table4_sppnet", "figure3", "figure2", "table8_svm",
             "table6_stagewise")


def _earlier_invocations(out_dir: str) -> list:
    """What run.json recorded of the earlier invocations into ``out_dir`` (a resumed run
    is measured in parts: each adds its rows, wall-clock time and load)."""
    path = os.path.join(out_dir, "run.json")
    if not os.path.isfile(path):
        return []
    with open(path) as f:
        saved = json.load(f)
    return saved if isinstance(saved, list) else [saved]


def _saved_rows(rows_dir: str, rows, seeds) -> dict:
    """{row id: result} of the ``rows`` whose JSON in ``rows_dir`` was measured with
    ``seeds`` (a row measured with other seeds is left out: it is measured again)."""
    saved = {}
    for row in rows:
        path = os.path.join(rows_dir, f"{row.id}.json")
        if os.path.isfile(path):
            with open(path) as f:
                result = json.load(f)
            if result["seeds"] == list(seeds):
                saved[row.id] = result
    return saved


def run_shared_evals(config: ReproduceConfig, rows, *, progress: bool = True) -> None:
    """Run each evaluation that ``rows`` share (one per detector and test setting, see
    rows.Eval) once, ``config.workers`` at a time, before the rows fan out: two rows
    never evaluate one detector twice, so they share one result and one timing."""
    from minircnn.paper.rows import evals_of, run_eval
    from minircnn.utils.progress import progress_bar

    shared = list(dict.fromkeys(evals_of(r) for r in rows if evals_of(r) is not None))
    jobs = [(config, ev, seed) for ev in shared for seed in config.seeds
            if not os.path.isfile(ev.path(config, seed))]
    with progress_bar(len(jobs), f"test detectors ({config.workers} at once)",
                      enabled=progress) as bar:
        map_jobs(run_eval, jobs, config.workers, lambda _: bar.update(1))


def reproduce(config: ReproduceConfig, *, progress: bool = True) -> dict:
    """Run every row not yet done (one JSON each), then write tables.md and the figures.

    First the detectors the rows need are trained (``train_variants``) and tested once
    per test setting (``run_shared_evals``); then the rows' (row, seed) measurements
    run ``config.workers`` at a time, each on one core, and a
    row's JSON is written as soon as its seeds are in. The load average is sampled
    meanwhile; run.json and detectors.json record what the run cost (budget.py).

    Returns:
        {"rows": {row id: result}, "tables": path of tables.md, "seconds": float}.
    """
    check_settings(config, REPRODUCE_RULES)
    start, load_start = time.time(), os.getloadavg()[0]
    wanted = [r for r in ROWS if config.rows is None or r.id.startswith(tuple(config.rows))]
    if not wanted:
        raise ValueError(f"reproduce: no row matches {config.rows}; row ids: "
                         f"{', '.join(r.id for r in ROWS)}")
    with LoadSampler() as load:
        results, phases = _measure(config, wanted, progress)
    seconds = time.time() - start
    run = {"rows": list(config.rows or ["all"]), "seeds": list(config.seeds),
           "seconds": seconds, "load_start": load_start, "load_end": os.getloadavg()[0],
           "workers": config.workers, "cpus": os.cpu_count(), **phases, **load.summary()}
    runs = _earlier_invocations(config.out_dir) + [run]
    write_json(os.path.join(config.out_dir, "run.json"), runs)
    # the report shows every row saved here, so a run of a few rows completes a full one's
    saved = _saved_rows(os.path.join(config.out_dir, "rows"), ROWS, config.seeds)
    folders = [run_folder(config, v, s) for v in VARIANTS
               if v in {v for r in ROWS if r.id in saved for v in variants_of(r)}
               for s in config.seeds]
    detectors = detector_times(folders)
    write_json(os.path.join(config.out_dir, "detectors.json"), detectors)
    tables = write_report(config, saved, runs, detectors)
    return {"rows": results, "tables": tables, "seconds": seconds}


def _measure(config: ReproduceConfig, wanted: list, progress: bool) -> tuple[dict, dict]:
    """Train, test and measure what ``wanted`` lacks: ({row id: result} in the table
    order, {"train_s", "evals_s", "rows_s": each phase's wall clock, "measured": jobs})."""
    from minircnn.utils.progress import progress_bar

    rows_dir = os.path.join(config.out_dir, "rows")
    os.makedirs(rows_dir, exist_ok=True)
    results = _saved_rows(rows_dir, wanted, config.seeds)   # done: read back, not recomputed
    todo = [r for r in wanted if r.id not in results]
    needed = {v for r in todo for v in variants_of(r)}
    pairs = [(v, s) for v in VARIANTS if v in needed for s in config.seeds]
    untrained = [p for p in pairs
                 if not os.path.isfile(os.path.join(run_folder(config, *p), "model.npz"))]
    t0 = time.time()
    train_variants(config, pairs, progress=progress)
    t1 = time.time()
    run_shared_evals(config, todo, progress=progress)
    t2 = time.time()
    slow_first = sorted(todo, key=lambda r: not r.id.startswith(SLOW_ROWS))
    jobs = [(config, row.id, seed) for row in slow_first for seed in config.seeds]
    runs = {row.id: {} for row in todo}

    def collect(result) -> None:             # in job order: a row is done with its last seed
        row_id, seed, measured = result
        runs[row_id][seed] = measured
        bar.update(1)
        if len(runs[row_id]) == len(config.seeds):
            results[row_id] = {"id": row_id, "seeds": list(config.seeds),
                               "runs": [runs[row_id][s] for s in config.seeds]}
            write_json(os.path.join(rows_dir, f"{row_id}.json"), results[row_id])

    with progress_bar(len(jobs), f"measure rows ({config.workers} at once)",
                      enabled=progress) as bar:
        map_jobs(measure_row, jobs, config.workers, collect)
    phases = {"train_s": t1 - t0, "evals_s": t2 - t1, "rows_s": time.time() - t2,
              "measured": len(untrained) + len(jobs)}
    return {r.id: results[r.id] for r in wanted}, phases
