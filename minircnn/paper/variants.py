"""The trained detectors that the rows of `minircnn reproduce` share (its variants).

Each variant is a `minircnn train` run: the toy's base recipe with a few TrainConfig
changes (``VARIANTS``), trained once per seed into ``<out_dir>/models/<variant>_s<seed>/``
and reused when present. minircnn/paper/rows.py measures them; minircnn/paper/reproduce.py
runs the whole thing.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass

from minircnn.training.config import TrainConfig
from minircnn.training.loop import train_detector

# The toy's base recipe for every row: the shipped one (`minircnn train` defaults, so the
# proposal cache of a `minircnn train` run is reused), with two changes. It tests at one
# scale, as the paper does in every table but Table 7 (its s = 600). It trains for 5
# epochs (2,000 iterations) instead of 9, to fit the run's time budget (the page states
# what the run took: minircnn/paper/budget.py); every row trains as many iterations.
FULL_BASE = {"pictures": False, "epochs": 5, "test_scales": (1.0,)}
# --quick: tiny images and dense proposals, one epoch; checks the code paths only.
QUICK_BASE = {"num_train": 6, "num_val": 3, "image_size": 64, "max_objects": 2, "epochs": 1,
              "proposal_method": "dense", "max_proposals": 40, "cache_dir": "", "hidden": 16,
              "rois_per_batch": 16, "warmup_iters": 1, "pictures": False,
              "test_scales": (1.0,)}

# The learning rate of layers that train on fixed features: the fc layers of "fc only"
# and SPP-net (every conv fixed) and stage 2 of stage-wise training (the box layer
# alone). The recipe's 0.02 suits a detector whose convs adapt with its head; with the
# features fixed it stalls those layers (what it measured: the report's "Learning rate").
FIXED_FEATURES_LR = 0.005

# Trained detectors the rows share: name -> TrainConfig changes from the base. Listed
# slowest first, so that the workers, taking them in this order, finish together.
VARIANTS = {
    # Table 4: R-CNN fine-tunes on warped crops with a softmax alone (box regressors and
    # SVMs come later, on cached features: minircnn/paper/baselines.py)
    "rcnn": {"model": "rcnn", "box_loss_weight": 0.0},
    "multiscale": {"train_scales": (1.0, 2.0), "test_scales": (1.0, 2.0)},   # Table 7
    "ft_all": {"freeze_at": 1},                       # Table 5: fine-tune every conv block
    # Table 4: SPP-net fine-tunes its fc layers only (convs fixed), softmax alone, at one
    # scale (pooling the 2x level's large RoIs made training 3x slower), and tests on a
    # two-scale image pyramid
    "sppnet": {"model": "sppnet", "freeze_at": 5, "lr": FIXED_FEATURES_LR, "box_loss_weight": 0.0,
               "test_scales": (1.0, 2.0)},
    "cls_only": {"box_loss_weight": 0.0},             # Table 6: stage 1 of stage-wise
    "fast_rcnn": {},                                  # the recipe: fine-tune from block 3
    "ft_head": {"freeze_at": 5, "lr": FIXED_FEATURES_LR},   # Table 5: fc layers only
    # the Fast R-CNN paper's Figure 3 (number of proposals) gets an RPN curve from this
    # detector: Faster R-CNN, an RPN proposing its boxes (approximate joint training)
    "faster_rcnn": {"proposal_method": "rpn"},
}
# More training data (section 5.3), crossed with pretrained vs from scratch. Every
# cell trains GRID_ITERS iterations (fewer than the rows above, so that the grid's
# detectors, most of the run's, fit its time; the page says so), however many images
# it has.
GRID_SIZES = (24, 50, 100, 200, 400, 800)
GRID_ITERS = 1200
GRID_KINDS = (("pretrained", True), ("scratch", False))
for _n in sorted(GRID_SIZES, reverse=True):
    for _kind, _pre in GRID_KINDS[::-1]:              # from scratch is slower: first
        VARIANTS[f"data{_n}_{_kind}"] = {"grid_images": _n, "pretrained": _pre}
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
    base = dataclasses.replace(config.base(), proposal_workers=1, train_workers=1)
    changes = dict(VARIANTS[variant])
    images = changes.pop("grid_images", None)
    if images is not None and config.quick:      # a few images; checks the code path
        changes["num_train"] = max(2, round(base.num_train * images / max(GRID_SIZES)))
    elif images is not None:   # n images, GRID_ITERS iterations of images_per_batch
        changes["num_train"] = images
        changes["epochs"] = GRID_ITERS * base.images_per_batch // images
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
    from minircnn.models.checkpoint import load_checkpoint

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
    from minircnn.training.config import make_datasets
    from minircnn.training.proposals import load_proposals
    from minircnn.utils.progress import progress_bar

    todo = [(v, s) for v, s in pairs
            if not os.path.isfile(os.path.join(run_folder(config, v, s), "model.npz"))]
    if not todo:
        return
    datasets = {}
    for v, s in todo:
        cfg = variant_config(config, v, s)
        if cfg.proposal_method == "rpn":              # Faster R-CNN proposes its own
            continue
        train, val = make_datasets(cfg)
        datasets[(repr(train), repr(val))] = (train, val, cfg)
    for train, val, cfg in datasets.values():
        shared = dataclasses.replace(cfg, proposal_workers=config.workers)
        load_proposals(train, shared, progress=progress)
        load_proposals(val, shared, progress=progress)
    jobs = [(config, v, s) for v, s in todo]
    with progress_bar(len(jobs), f"train detectors ({config.workers} at once)",
                      enabled=progress) as bar:
        map_jobs(_train_variant, jobs, config.workers, lambda _: bar.update(1))


def map_jobs(fn, jobs: list, workers: int, on_result) -> None:
    """``on_result(fn(job))`` for every job, in job order, ``workers`` processes at once."""
    from minircnn.utils.workers import map_in_workers

    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            on_result(fn(job))
    else:
        map_in_workers(fn, jobs, min(workers, len(jobs)), on_result=on_result)
