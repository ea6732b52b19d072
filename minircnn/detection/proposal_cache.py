"""Proposals of a whole dataset, computed once and cached on disk, as in the paper.

``compute_proposals(dataset, method=..., max_boxes=..., cache=path)`` runs selective
search (or dense boxes, proposals.py) on every image, ``IMAGES_PER_JOB`` images a job in
worker processes under one progress bar, and stores the result in one ``.npz`` whose
metadata (dataset fingerprint, method, settings, CACHE_VERSION) is checked when read.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os

import numpy as np

from minircnn.detection.proposals import _check_image, dense_boxes, selective_search
from minircnn.utils.archive import read_directory, read_entries
from minircnn.utils.fileio import atomic_write
from minircnn.utils.validate import check_count

CACHE_VERSION = 1    # bump when the proposals a set of parameters gives change


def proposal_cache_dir(cache_dir: str | os.PathLike | None = None) -> str | None:
    """The folder proposal caches go to: one per user, shared by every run and folder.

    ``cache_dir`` when given ("" means no cache: returns None); else
    ``$MINIRCNN_CACHE/proposals``; else ``$XDG_CACHE_HOME/minircnn/proposals``; else
    ``~/.cache/minircnn/proposals`` (the XDG default, also used on macOS and Windows).
    So ``minircnn eval`` finds the proposals ``minircnn train`` computed, from any
    working folder, and never writes into the working folder.
    """
    if cache_dir is not None:
        return os.fspath(cache_dir) or None
    root = os.environ.get("MINIRCNN_CACHE")
    if not root:
        xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        root = os.path.join(xdg, "minircnn")
    return os.path.join(root, "proposals")


def _proposals_for(image: np.ndarray, method: str, max_boxes: int | None, kwargs: dict):
    if method == "selective_search":
        return selective_search(image, max_boxes=max_boxes, **kwargs)
    _check_image(image)
    boxes = dense_boxes(image.shape[1:], **kwargs)
    if max_boxes is not None and len(boxes) > max_boxes:   # an evenly spread subset
        boxes = boxes[np.unique(np.linspace(0, len(boxes) - 1, max_boxes).round().astype(int))]
    return boxes


IMAGES_PER_JOB = 8      # a job's images: few, so the one progress bar moves smoothly


class _Part:
    """Images start..stop-1 of a dataset, as a dataset: one job of ``_compute_in_chunks``.

    It carries the dataset itself, so a worker process makes the images it needs (a
    ShapesDataset draws them from its seed) instead of receiving them.
    """

    def __init__(self, dataset, start: int, stop: int):
        self.dataset, self.start, self.stop = dataset, start, stop

    def __len__(self) -> int:
        return self.stop - self.start

    def __getitem__(self, i: int) -> dict:
        return self.dataset[self.start + i]


def _proposals_of_part(job) -> list[np.ndarray]:
    """One job (in a worker process or here): the proposals of every image of a _Part."""
    part, method, max_boxes, kwargs = job
    return [_proposals_for(part[i]["image"], method, max_boxes, kwargs) for i in range(len(part))]


def _compute_in_chunks(dataset, method: str, max_boxes, kwargs: dict, workers: int,
                       progress: bool = True):
    """The proposals of every image, IMAGES_PER_JOB images a job, in ``workers`` processes.

    Jobs come back in order, so the result is the same for any number of workers; one
    progress bar in this process counts the images of every worker.
    """
    from minircnn.utils.progress import progress_bar
    from minircnn.utils.workers import map_in_workers

    n = len(dataset)
    starts = range(0, n, IMAGES_PER_JOB)
    jobs = [(_Part(dataset, a, min(a + IMAGES_PER_JOB, n)), method, max_boxes, kwargs)
            for a in starts]
    workers = min(workers, len(jobs))
    with progress_bar(n, f"proposals ({method})", enabled=progress) as bar:
        if workers <= 1:
            parts = []
            for job in jobs:
                parts.append(_proposals_of_part(job))
                bar.update(len(parts[-1]))
        else:
            parts = map_in_workers(_proposals_of_part, jobs, workers,
                                   on_result=lambda part: bar.update(len(part)))
    return [boxes for part in parts for boxes in part]


def _fingerprint(dataset, method: str, max_boxes, kwargs: dict) -> dict:
    """What a cache must match: code version, method, all its parameters, the dataset."""
    function = selective_search if method == "selective_search" else dense_boxes
    params = {name: p.default for name, p in inspect.signature(function).parameters.items()
              if p.kind is p.KEYWORD_ONLY and name != "max_boxes"}
    params.update(kwargs)                         # defaults count too: they may change
    params.pop("impl", None)                      # the tiers give the same boxes
    name = repr(dataset) if type(dataset).__repr__ is not object.__repr__ else ""
    first = np.ascontiguousarray(dataset[0]["image"]) if len(dataset) else np.zeros(0)
    return dict(version=CACHE_VERSION, method=method, max_boxes=max_boxes, params=params,
                num_images=len(dataset),
                dataset=name if 0 < len(name) <= 300 else type(dataset).__name__,
                first_image=[list(first.shape), hashlib.sha1(first.tobytes()).hexdigest()])


def _load_cache(path: str, expected: dict) -> list[np.ndarray]:
    """The proposals cached at ``path``, after checking the file is what it claims.

    Raises:
        ValueError: naming ``path``: not a readable .npz (a plain .npy, truncated),
            entries missing or of the wrong shape, counts that do not add up to the boxes,
            or settings other than ``expected``; delete it or pass recompute=True.
    """
    todo = "delete it or pass recompute=True"
    directory = read_directory(path, "proposal cache")
    missing = sorted({"boxes", "counts", "meta"} - set(directory))
    if missing:
        raise ValueError(f"proposal cache {path!r} has no {missing} entries: not a minircnn "
                         f"proposal cache; {todo}")
    boxes, counts, meta = directory["boxes"], directory["counts"], directory["meta"]
    if (len(boxes.shape) != 2 or boxes.shape[1] != 4 or boxes.dtype.kind != "f"
            or len(counts.shape) != 1 or counts.dtype.kind not in "iu"
            or meta.shape != () or meta.nbytes > 1 << 20):
        raise ValueError(f"proposal cache {path!r} is inconsistent: boxes {boxes.dtype} "
                         f"{boxes.shape}, counts {counts.dtype} {counts.shape}, meta "
                         f"{meta.dtype} {meta.shape}; {todo}")
    try:
        meta = json.loads(str(read_entries(path, ["meta"], "proposal cache")["meta"]))
    except ValueError as e:
        raise ValueError(f"proposal cache {path!r}: meta is unreadable ({e}); {todo}") from e
    if meta != expected:
        diff = {k: (meta.get(k), v) for k, v in expected.items()
                if not isinstance(meta, dict) or meta.get(k) != v}
        raise ValueError(f"cache {path!r} was computed for different settings "
                         f"(cached, wanted): {diff}; {todo}")
    arrays = read_entries(path, ["boxes", "counts"], "proposal cache")
    counts, boxes = arrays["counts"].astype(np.int64), arrays["boxes"]
    if len(counts) != expected["num_images"] or (counts < 0).any() or \
            counts.sum() != len(boxes) or not np.isfinite(boxes).all():
        raise ValueError(f"proposal cache {path!r} is inconsistent: {len(counts)} counts "
                         f"summing to {int(counts.sum())} for {len(boxes)} boxes and "
                         f"{expected['num_images']} images; {todo}")
    return np.split(boxes, np.cumsum(counts)[:-1]) if len(counts) else []


def read_cached_proposals(dataset, cache, *, method: str = "selective_search",
                          max_boxes: int | None = 300, **kwargs) -> list[np.ndarray]:
    """The proposals of ``dataset`` in the cache file ``cache``, never computed.

    Raises:
        ValueError: naming the file: it was made for other settings or another dataset,
            or it is damaged (see ``compute_proposals``).
    """
    expected = json.loads(json.dumps(_fingerprint(dataset, method, max_boxes, kwargs)))
    return _load_cache(os.fspath(cache), expected)


def compute_proposals(dataset, *, method: str = "selective_search", max_boxes: int | None = 300,
                      cache: str | os.PathLike | None = None, recompute: bool = False,
                      workers: int = 1, progress: bool = True,
                      **kwargs) -> list[np.ndarray]:
    """Proposals for every image of a dataset, computed once and cached (as the paper).

    Args:
        dataset: a sequence of dicts with ``image`` (3, H, W) in [0, 1] (a ShapesDataset).
        method: "selective_search" or "dense" (``dense_boxes``; more than max_boxes windows
            are thinned to an evenly spread subset).
        max_boxes: at most this many boxes per image (None: all).
        cache: an .npz path. If it exists and was made with the same method, parameters
            and dataset it is loaded; if it differs a ValueError says what differs; if it
            is missing the proposals are computed and written atomically (temp file +
            os.replace).
        recompute: ignore (and overwrite) an existing cache.
        workers: processes sharing the images, a few at a time, under one progress bar;
            the proposals and the cache do not depend on it.
        progress: show the progress bar.
        **kwargs: passed on to selective_search / dense_boxes.
    Returns:
        one (P_i, 4) float32 array per image, in dataset order. Ground truth is never read.
    """
    if method not in ("selective_search", "dense"):
        raise ValueError(f"method: expected 'selective_search' or 'dense', got {method!r}")
    if max_boxes is not None:
        check_count("max_boxes", max_boxes, op="compute_proposals")
    check_count("workers", workers, op="compute_proposals")
    if method == "dense":
        inspect.signature(dense_boxes).bind(0, **kwargs)            # TypeError on a typo
    else:
        inspect.signature(selective_search).bind(None, **kwargs)
    if cache is not None and os.path.exists(cache) and not recompute:
        return read_cached_proposals(dataset, cache, method=method, max_boxes=max_boxes,
                                     **kwargs)
    expected = json.loads(json.dumps(_fingerprint(dataset, method, max_boxes, kwargs)))
    proposals = _compute_in_chunks(dataset, method, max_boxes, kwargs, workers, progress)
    if cache is not None:
        with atomic_write(cache, "wb") as f:
            np.savez(f, boxes=np.concatenate(proposals) if proposals else np.zeros((0, 4)),
                     counts=np.array([len(p) for p in proposals], dtype=np.int64),
                     meta=np.array(json.dumps(expected)))
    return proposals
