"""`minircnn reproduce`: the Fast R-CNN paper's tables and figures, in toy form, from real runs.

Every number comes from detectors trained here (three seeds per row: the model init,
minibatch and dropout seeds; the data stay fixed) and evaluated on held-out shapes
images. The output folder holds:

- ``models/<variant>_s<seed>/``: one `minircnn train` run folder per trained detector
  (reused when present, so an interrupted run picks up where it stopped); the detectors
  the rows need are trained first, ``workers`` at a time (one core each); each folder's
  ``evals/`` keeps the test results that several rows share;
- ``rows/<row>.json``: one result per table row, written as soon as it is done (a row
  whose JSON exists is not recomputed: the run is resumable row by row); the rows are
  measured ``workers`` at a time too;
- ``tables.md``, ``figure2_svd.png``, ``figure3_proposals.png`` and ``results.json``
  (minircnn/paper/report.py writes them).

The experiments (minircnn/paper/rows.py) follow the paper's sections: Table 4
(R-CNN, SPP-net, Fast R-CNN, +SVD: train and test time, mAP), Table 5 (which layers to
fine-tune), Table 6 (multi-task training), Table 7 (one scale vs an image pyramid),
Table 8 (softmax vs SVMs), Figure 2 (SVD rank), Figure 3 (number of proposals),
section 5.2 (more training data). ``quick=True`` runs them all on a few tiny images to
check the machinery (the numbers mean nothing then).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass

from minircnn.training.config import TrainConfig
from minircnn.training.loop import train_detector
from minircnn.utils.fileio import write_json

# The toy's base recipe for every row: the shipped one (`minircnn train` defaults, so the
# proposal cache of a `minircnn train` run is reused), with two changes. It tests at one
# scale, as the paper does in every table but Table 7 (its s = 600). It trains for 5
# epochs (2,000 iterations) instead of 9, so that the 30 detectors of the rows fit in 45
# minutes on two cores; every row trains the same number of iterations.
FULL_BASE = {"pictures": False, "epochs": 5, "test_scales": (1.0,)}
# --quick: tiny images and dense proposals, one epoch; checks the code paths only.
QUICK_BASE = {"num_train": 6, "num_val": 3, "image_size": 64, "max_objects": 2, "epochs": 1,
              "proposal_method": "dense", "max_proposals": 40, "cache_dir": "", "hidden": 16,
              "rois_per_batch": 16, "warmup_iters": 1, "pictures": False}

# The learning rate of layers that train on fixed features: the fc layers of "fc only"
# and SPP-net (every conv fixed) and stage 2 of stage-wise training (the box layer
# alone). The recipe's 0.02 suits a detector whose convs adapt with its head; with the
# features fixed it stalls those layers (what it measured: the report's "Learning rate").
FIXED_FEATURES_LR = 0.005

# Trained detectors the rows share: name -> TrainConfig changes from the base. Listed
# slowest first, so that the workers, taking them in this order, finish together.
VARIANTS = {
    "multiscale": {"train_scales": (1.0, 2.0), "test_scales": (1.0, 2.0)},   # Table 7
    "sppnet": {"model": "sppnet", "freeze_at": 5,     # Table 4: SPP-net fine-tunes fc only
               "lr": FIXED_FEATURES_LR},
    "ft_all": {"freeze_at": 1},                       # Table 5: fine-tune every conv block
    "scratch": {"pretrained": False},                 # Table 5: no pretraining
    "cls_only": {"box_loss_weight": 0.0},             # Table 6: stage 1 of stage-wise
    "fast_rcnn": {},                                  # the recipe: fine-tune from block 3
    "data_half": {"data_fraction": 0.5},              # section 5.2: less data, same iters
    "data_quarter": {"data_fraction": 0.25},
    "rcnn": {"model": "rcnn"},                        # Table 4
    "ft_head": {"freeze_at": 5, "lr": FIXED_FEATURES_LR},   # Table 5: fc layers only
}
# Rows that test a detector many times (sweeps, SVM training) are measured first, for
# the same reason.
SLOW_ROWS = ("figure3", "figure2", "table8_svm", "table7_pyramid", "table6_stagewise")


@dataclass
class ReproduceConfig:
    """What ``reproduce`` runs: seeds, the rows (None: all) and the base settings."""

    out_dir: str = "runs/reproduce"
    seeds: tuple = (0, 1, 2)
    quick: bool = False
    rows: tuple | None = None                 # e.g. ("table5", "table6"): prefixes of row ids
    cache_dir: str | None = None              # proposal cache (None: the per-user one)
    workers: int = 2                          # processes at once (one core each)

    def base(self) -> TrainConfig:
        """The TrainConfig every variant starts from."""
        changes = dict(QUICK_BASE if self.quick else FULL_BASE)
        if not self.quick:
            changes["cache_dir"] = self.cache_dir
        return dataclasses.replace(TrainConfig(), **changes)


def variant_config(config: ReproduceConfig, variant: str, seed: int) -> TrainConfig:
    """The TrainConfig of a trained-detector variant for one seed.

    It computes missing proposals in one process: its detectors train and its rows run
    in worker processes already, one core each (``train_variants`` caches the proposals
    first, with ``config.workers`` processes).
    """
    base = dataclasses.replace(config.base(), proposal_workers=1)
    changes = dict(VARIANTS[variant])
    fraction = changes.pop("data_fraction", None)
    if fraction is not None:   # fewer images, more epochs: the same number of iterations
        changes["num_train"] = max(2, int(round(base.num_train * fraction)))
        changes["epochs"] = max(1, int(round(base.epochs / fraction)))
    return dataclasses.replace(base, seed=seed, name=f"{variant}_s{seed}", **changes)


def run_folder(config: ReproduceConfig, variant: str, seed: int) -> str:
    """The `minircnn train` run folder of a variant's detector for one seed."""
    return os.path.join(config.out_dir, "models", f"{variant}_s{seed}")


def _train_variant(job) -> str:
    """Train one variant for one seed (in a worker process: one core, no worker pools of
    its own) unless its model is there already; returns the variant's name. The rows
    test the detector themselves, so the run skips its own evaluation."""
    config, variant, seed = job
    run = run_folder(config, variant, seed)
    if not os.path.isfile(os.path.join(run, "model.npz")):
        started = os.path.isfile(os.path.join(run, "checkpoint.npz"))   # interrupted: go on
        train_detector(variant_config(config, variant, seed), run, resume=started,
                       overwrite=os.path.isdir(run) and not started, progress=False,
                       evaluate=False)
    return variant


def trained(config: ReproduceConfig, variant: str, seed: int) -> tuple:
    """(model, metrics) of a variant: trained now, or loaded from its run folder."""
    from minircnn.models import load_checkpoint

    run = run_folder(config, variant, seed)
    _train_variant((config, variant, seed))
    with open(os.path.join(run, "metrics.json")) as f:
        metrics = json.load(f)
    return load_checkpoint(os.path.join(run, "model.npz")), metrics


def train_variants(config: ReproduceConfig, pairs, *, progress: bool = True) -> None:
    """Train every (variant, seed) of ``pairs`` not trained yet, ``config.workers`` at once.

    The proposals of every dataset they use are computed (and cached) here first, so
    the workers only read them.
    """
    from tqdm.auto import tqdm

    from minircnn.training.config import make_datasets
    from minircnn.training.proposals import load_proposals
    from minircnn.utils.workers import map_in_workers

    todo = [(v, s) for v, s in pairs
            if not os.path.isfile(os.path.join(run_folder(config, v, s), "model.npz"))]
    if not todo:
        return
    datasets = {}
    for v, s in todo:
        cfg = variant_config(config, v, s)
        train, val = make_datasets(cfg)
        datasets[(repr(train), repr(val))] = (train, val, cfg)
    for train, val, cfg in datasets.values():
        shared = dataclasses.replace(cfg, proposal_workers=config.workers)
        load_proposals(train, shared, progress=progress)
        load_proposals(val, shared, progress=progress)
    jobs = [(config, v, s) for v, s in todo]
    quiet = {} if progress else {"disable": True}
    with tqdm(total=len(jobs), desc=f"train detectors ({config.workers} at once)",
              **quiet) as bar:
        if config.workers <= 1 or len(jobs) == 1:
            for job in jobs:
                _train_variant(job)
                bar.update(1)
        else:
            map_in_workers(_train_variant, jobs, min(config.workers, len(jobs)),
                           on_result=lambda _: bar.update(1))


def reproduce(config: ReproduceConfig, *, progress: bool = True) -> dict:
    """Run every row not yet done (one JSON each), then write tables.md and the figures.

    First the detectors the rows need are trained (``train_variants``); then the rows'
    (row, seed) measurements run ``config.workers`` at a time, each on one core, and a
    row's JSON is written as soon as its seeds are in.

    Returns:
        {"rows": {row id: result}, "tables": path of tables.md, "seconds": float}.
    """
    from tqdm.auto import tqdm

    from minircnn.paper.report import write_report
    from minircnn.paper.rows import ROWS, measure_row, variants_of
    from minircnn.utils.workers import map_in_workers

    start = time.time()
    rows_dir = os.path.join(config.out_dir, "rows")
    os.makedirs(rows_dir, exist_ok=True)
    wanted = [r for r in ROWS if config.rows is None or r.id.startswith(tuple(config.rows))]
    if not wanted:
        raise ValueError(f"reproduce: no row matches {config.rows}; row ids: "
                         f"{', '.join(r.id for r in ROWS)}")
    results = {}
    for row in wanted:                       # rows already done: read back, not recomputed
        path = os.path.join(rows_dir, f"{row.id}.json")
        if os.path.isfile(path):
            with open(path) as f:
                results[row.id] = json.load(f)
    todo = [r for r in wanted if r.id not in results]
    needed = {v for r in todo for v in variants_of(r)}
    train_variants(config, [(v, s) for v in VARIANTS if v in needed for s in config.seeds],
                   progress=progress)
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

    quiet = {} if progress else {"disable": True}
    with tqdm(total=len(jobs), desc=f"measure rows ({config.workers} at once)",
              **quiet) as bar:
        if config.workers <= 1 or len(jobs) <= 1:
            for job in jobs:
                collect(measure_row(job))
        else:
            map_in_workers(measure_row, jobs, min(config.workers, len(jobs)),
                           on_result=collect)
    results = {r.id: results[r.id] for r in wanted}      # the table order
    tables = write_report(config, results)
    seconds = time.time() - start
    return {"rows": results, "tables": tables, "seconds": seconds}
