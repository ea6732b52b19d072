"""`minircnn reproduce`: the Fast R-CNN paper's tables and figures, in toy form, from real runs.

Every number comes from detectors trained here (three seeds per row: the model init,
minibatch and dropout seeds; the data stay fixed) and evaluated on held-out shapes
images. The output folder holds:

- ``models/<variant>_s<seed>/``: one `minircnn train` run folder per trained detector
  (reused when present, so an interrupted run picks up where it stopped); the detectors
  the rows need are trained first, ``workers`` at a time (one core each);
- ``rows/<row>.json``: one result per table row, written as soon as it is done (a row
  whose JSON exists is not recomputed: the run is resumable row by row);
- ``tables.md``, ``figure2_svd.png``, ``figure3_proposals.png`` and ``results.json``
  (minircnn/reproduce_report.py writes them).

The experiments (minircnn/reproduce_rows.py) follow the paper's sections: Table 4
(R-CNN, SPP-net, Fast R-CNN, +SVD: train and test time, mAP), Table 5 (which layers to
fine-tune), Table 6 (multi-task training), Table 7 (image pyramid at test time),
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

from minircnn.fileio import write_json
from minircnn.train import TrainConfig, train_detector

# The toy's base recipe for every row: the shipped one (`minircnn train` defaults, so the
# proposal cache of a `minircnn train` run is reused), without its pictures.
FULL_BASE = {"pictures": False}
# --quick: tiny images and dense proposals, one epoch; checks the code paths only.
QUICK_BASE = {"num_train": 6, "num_val": 3, "image_size": 64, "max_objects": 2, "epochs": 1,
              "proposal_method": "dense", "max_proposals": 40, "cache_dir": "", "hidden": 16,
              "rois_per_batch": 16, "warmup_iters": 1, "pictures": False}

# Trained detectors the rows share: name -> TrainConfig changes from the base.
VARIANTS = {
    "fast_rcnn": {},                                  # the recipe: fine-tune from block 3
    "ft_all": {"freeze_at": 1},                       # Table 5: fine-tune every conv block
    "ft_head": {"freeze_at": 5},                      # Table 5: fc layers only
    "scratch": {"pretrained": False},                 # Table 5: no pretraining
    "cls_only": {"box_loss_weight": 0.0},             # Table 6: stage 1 of stage-wise
    "rcnn": {"model": "rcnn"},                        # Table 4
    "sppnet": {"model": "sppnet", "freeze_at": 5},    # Table 4: SPP-net fine-tunes fc only
    "data_quarter": {"data_fraction": 0.25},          # section 5.2: less data, same iters
    "data_half": {"data_fraction": 0.5},
}


@dataclass
class ReproduceConfig:
    """What ``reproduce`` runs: seeds, the rows (None: all) and the base settings."""

    out_dir: str = "runs/reproduce"
    seeds: tuple = (0, 1, 2)
    quick: bool = False
    rows: tuple | None = None                 # e.g. ("table5", "table6"): prefixes of row ids
    cache_dir: str | None = None              # proposal cache (None: the per-user one)
    workers: int = 2                          # detectors trained at once, one core each

    def base(self) -> TrainConfig:
        """The TrainConfig every variant starts from."""
        changes = dict(QUICK_BASE if self.quick else FULL_BASE)
        if not self.quick:
            changes["cache_dir"] = self.cache_dir
        return dataclasses.replace(TrainConfig(), **changes)


def variant_config(config: ReproduceConfig, variant: str, seed: int) -> TrainConfig:
    """The TrainConfig of a trained-detector variant for one seed."""
    base = config.base()
    changes = dict(VARIANTS[variant])
    fraction = changes.pop("data_fraction", None)
    if fraction is not None:   # fewer images, more epochs: the same number of iterations
        changes["num_train"] = max(2, int(round(base.num_train * fraction)))
        changes["epochs"] = max(1, int(round(base.epochs / fraction)))
    return dataclasses.replace(base, seed=seed, name=f"{variant}_s{seed}", **changes)


def _run_folder(config: ReproduceConfig, variant: str, seed: int) -> str:
    return os.path.join(config.out_dir, "models", f"{variant}_s{seed}")


def _train_variant(job) -> str:
    """Train one variant for one seed (in a worker process: one core, no worker pools of
    its own) unless its model is there already; returns the variant's name."""
    config, variant, seed = job
    run = _run_folder(config, variant, seed)
    if not os.path.isfile(os.path.join(run, "model.npz")):
        single = dataclasses.replace(variant_config(config, variant, seed), proposal_workers=1)
        started = os.path.isfile(os.path.join(run, "checkpoint.npz"))   # interrupted: go on
        train_detector(single, run, resume=started, overwrite=os.path.isdir(run) and not started,
                       progress=False)
    return variant


def trained(config: ReproduceConfig, variant: str, seed: int) -> tuple:
    """(model, metrics) of a variant: trained now, or loaded from its run folder."""
    from minircnn.models import load_checkpoint

    run = _run_folder(config, variant, seed)
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

    from minircnn.train import load_proposals, make_datasets
    from minircnn.workers import map_in_workers

    todo = [(v, s) for v, s in pairs
            if not os.path.isfile(os.path.join(_run_folder(config, v, s), "model.npz"))]
    if not todo:
        return
    datasets = {}
    for v, s in todo:
        cfg = variant_config(config, v, s)
        train, val = make_datasets(cfg)
        datasets[(repr(train), repr(val))] = (train, val, cfg)
    for train, val, cfg in datasets.values():
        load_proposals(train, cfg, progress=progress)
        load_proposals(val, cfg, progress=progress)
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

    Returns:
        {"rows": {row id: result}, "tables": path of tables.md, "seconds": float}.
    """
    from tqdm.auto import tqdm

    from minircnn.reproduce_report import write_report
    from minircnn.reproduce_rows import ROWS, variants_of

    start = time.time()
    rows_dir = os.path.join(config.out_dir, "rows")
    os.makedirs(rows_dir, exist_ok=True)
    wanted = [r for r in ROWS if config.rows is None or r.id.startswith(tuple(config.rows))]
    if not wanted:
        raise ValueError(f"reproduce: no row matches {config.rows}; row ids: "
                         f"{', '.join(r.id for r in ROWS)}")
    todo = [r for r in wanted if not os.path.isfile(os.path.join(rows_dir, f"{r.id}.json"))]
    pairs = sorted({(v, s) for r in todo for v in variants_of(r) for s in config.seeds})
    train_variants(config, pairs, progress=progress)
    results = {}
    quiet = {} if progress else {"disable": True}
    with tqdm(total=len(wanted) * len(config.seeds), desc="reproduce", **quiet) as bar:
        for row in wanted:
            path = os.path.join(rows_dir, f"{row.id}.json")
            if os.path.isfile(path):
                with open(path) as f:
                    results[row.id] = json.load(f)
                bar.update(len(config.seeds))
                continue
            bar.set_postfix_str(row.id)
            per_seed = []
            for seed in config.seeds:
                per_seed.append(row.run(config, seed))
                bar.update(1)
            results[row.id] = {"id": row.id, "seeds": list(config.seeds), "runs": per_seed}
            write_json(path, results[row.id])
    tables = write_report(config, results)
    seconds = time.time() - start
    return {"rows": results, "tables": tables, "seconds": seconds}
