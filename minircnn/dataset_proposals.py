"""Proposals of a whole dataset: computed in worker processes, cached per user.

``load_proposals(dataset, config)`` is what training, ``minircnn eval`` and the transfer
comparison call: selective search (or dense boxes) on every image, split among
``config.proposal_workers`` processes, each share cached as its own file in the per-user
cache folder, so any later run, from any folder, loads them.
"""

from __future__ import annotations

import os
import sys

import numpy as np

from minircnn.detection.proposals import compute_proposals, proposal_cache_dir
from minircnn.fileio import remove_stale_temps
from minircnn.workers import map_in_workers


class _Slice:
    """Images start..stop-1 of a dataset, as a dataset (one worker's share of proposals)."""

    def __init__(self, dataset, start: int, stop: int):
        self.dataset, self.start, self.stop = dataset, start, stop

    def __len__(self) -> int:
        return self.stop - self.start

    def __getitem__(self, i: int) -> dict:
        return self.dataset[self.start + i]

    def __repr__(self) -> str:
        return f"{self.dataset!r}[{self.start}:{self.stop}]"


def _proposals_for_slice(args) -> list[np.ndarray]:
    """One worker's share; a stale or damaged cache file is recomputed and replaced."""
    part, method, max_boxes, cache = args
    try:
        return compute_proposals(part, method=method, max_boxes=max_boxes, cache=cache)
    except ValueError as e:
        if cache is None or not os.path.exists(cache):
            raise
        print(f"minircnn: recomputing the proposal cache {cache} ({e})", file=sys.stderr)
        return compute_proposals(part, method=method, max_boxes=max_boxes, cache=cache,
                                 recompute=True)


def load_proposals(dataset, config) -> list[np.ndarray]:
    """compute_proposals for ``dataset``, in ``config.proposal_workers`` processes.

    ``config`` is a TrainConfig (its proposal_method, max_proposals, proposal_workers
    and cache_dir are read); ``dataset`` a ShapesDataset.

    Each process handles a contiguous share of the images and caches it as its own
    file in the per-user cache folder (``proposal_cache_dir(config.cache_dir)``; none
    when cache_dir is ""), named by the dataset and proposal settings, so any later run
    or ``minircnn eval``, from any folder, loads them.
    """
    workers = max(1, min(config.proposal_workers, len(dataset)))
    bounds = np.linspace(0, len(dataset), workers + 1).astype(int)
    folder = proposal_cache_dir(config.cache_dir)
    if folder:
        os.makedirs(folder, exist_ok=True)
        remove_stale_temps(folder)             # left by a run killed while writing
    jobs = []
    for k in range(workers):
        cache = None
        if folder:
            cache = os.path.join(folder, (
                f"{config.proposal_method}_{config.max_proposals}_s{dataset.image_size}_"
                f"seed{dataset.seed}_obj{dataset.max_objects}_{bounds[k]}-{bounds[k + 1]}.npz"))
        part = _Slice(dataset, int(bounds[k]), int(bounds[k + 1]))
        jobs.append((part, config.proposal_method, config.max_proposals, cache))
    if workers == 1:
        return _proposals_for_slice(jobs[0])
    parts = map_in_workers(_proposals_for_slice, jobs, workers)
    return [p for part in parts for p in part]
