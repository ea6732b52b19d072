"""Proposals of a whole dataset: computed in worker processes, cached per user.

``load_proposals(dataset, config)`` is what training, ``minircnn eval`` and the
``minircnn reproduce`` rows call: selective search (or dense boxes) on every image,
shared among ``config.proposal_workers`` processes under one progress bar, and cached as
one file per dataset and proposal settings in the per-user cache folder, so any later
run, from any folder and with any number of workers, loads them.
"""

from __future__ import annotations

import dataclasses
import os
import sys

import numpy as np

from minircnn.data.shapes import ShapesDataset
from minircnn.detection.proposal_cache import (
    compute_proposals,
    proposal_cache_dir,
    read_cached_proposals,
)
from minircnn.utils.fileio import remove_stale_temps
from minircnn.utils.workers import InBackground


def proposal_cache_file(dataset, config) -> str | None:
    """The cache file of ``dataset``'s proposals under ``config``'s settings (None: no cache).

    Named by the dataset (size, seed, objects, count) and the proposal settings, not by
    the number of worker processes; the file's own metadata is checked when it is read.
    """
    folder = proposal_cache_dir(config.cache_dir)
    if not folder:
        return None
    return os.path.join(folder, (
        f"{config.proposal_method}_{config.max_proposals}_s{dataset.image_size}_"
        f"seed{dataset.seed}_obj{dataset.max_objects}_n{len(dataset)}.npz"))


def load_proposals(dataset, config, *, progress: bool = True) -> list[np.ndarray]:
    """compute_proposals for ``dataset``, in ``config.proposal_workers`` processes, cached.

    ``config`` is a TrainConfig (its proposal_method, max_proposals, proposal_workers
    and cache_dir are read); ``dataset`` a ShapesDataset. Without a cache file of its
    own, the first images of a larger cached dataset serve. A stale or damaged cache file
    (other settings, truncated) is reported, recomputed and replaced.
    """
    cache = proposal_cache_file(dataset, config)
    if cache:
        os.makedirs(os.path.dirname(cache), exist_ok=True)
        remove_stale_temps(os.path.dirname(cache))      # left by a run killed while writing
        if not os.path.exists(cache):
            first = _first_images_of_a_larger_cache(dataset, config, cache)
            if first is not None:
                return first
    settings = dict(method=config.proposal_method, max_boxes=config.max_proposals,
                    cache=cache, workers=config.proposal_workers, progress=progress)
    try:
        return compute_proposals(dataset, **settings)
    except ValueError as e:
        if cache is None or not os.path.exists(cache):
            raise
        print(f"minircnn: recomputing the proposal cache {cache} ({e})", file=sys.stderr)
        return compute_proposals(dataset, recompute=True, **settings)


def _first_images_of_a_larger_cache(dataset, config, cache: str):
    """The proposals of ``dataset`` read from the cache of a larger ShapesDataset, or None.

    A ShapesDataset's image i depends only on its seed and i, so its first n images are
    those of every larger one with the same seed, size and objects: a run on 200 training
    images reads the first 200 of the 800-image cache. A file that does not check out
    (other settings, damaged) is passed over.
    """
    if type(dataset) is not ShapesDataset:
        return None
    folder, name = os.path.split(cache)
    stem = name[:name.rindex("_n") + 2]            # ..._obj{objects}_n
    for other in sorted(os.listdir(folder)):
        count = other[len(stem):-len(".npz")]
        if not (other.startswith(stem) and other.endswith(".npz") and count.isdigit()
                and int(count) > len(dataset)):
            continue
        larger = ShapesDataset(int(count), image_size=dataset.image_size, seed=dataset.seed,
                               max_objects=dataset.max_objects)
        try:
            proposals = read_cached_proposals(larger, os.path.join(folder, other),
                                              method=config.proposal_method,
                                              max_boxes=config.max_proposals)
        except ValueError:
            continue
        return proposals[:len(dataset)]
    return None


def _load_quietly(dataset, config) -> list[np.ndarray]:
    """load_proposals in one process and without a bar (a background job's share)."""
    return load_proposals(dataset, dataclasses.replace(config, proposal_workers=1),
                          progress=False)


def proposals_in_background(dataset, config) -> InBackground:
    """``load_proposals(dataset, config)`` in a background worker process.

    Training uses one core (one BLAS thread), so with ``proposal_workers >= 2`` the
    held-out images' proposals are computed on the other one meanwhile:
    ``with proposals_in_background(val, config) as job: train(); props = job.result()``.
    """
    return InBackground(_load_quietly, dataset, config)
