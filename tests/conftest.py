"""Shared test configuration: the `gpu` marker skips itself without CuPy and a GPU; every
test writes proposal caches to a temporary MINIRCNN_CACHE, never to ~/.cache.

Hypothesis profiles. The default, ``ci``, is what ``python -m pytest -q`` and CI run:
``derandomize=True`` (the examples follow from each test's source, so two runs and two
machines try the same inputs), ``database=None`` (no ``.hypothesis/`` folder replaying
old failures on one machine only) and ``deadline=None`` (a busy machine is slow, not
wrong). To search new random inputs while developing, choose the ``explore`` profile:

    HYPOTHESIS_PROFILE=explore python -m pytest -q tests/detection
"""

import os

import pytest
from hypothesis import settings

settings.register_profile("ci", derandomize=True, database=None, deadline=None,
                          print_blob=True)
settings.register_profile("explore", derandomize=False, deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# One BLAS thread unless the caller chose otherwise: the test matrices are small, and on a
# busy 2-core machine a second BLAS thread makes some tests several times slower (as in
# minircnn/utils/blas.py). Set before NumPy is imported; the lesson kernels inherit it.
for _var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """Proposal caches go to a temporary folder, never to the user's ~/.cache."""
    monkeypatch.setenv("MINIRCNN_CACHE", str(tmp_path_factory.mktemp("minircnn-cache")))


def pytest_collection_modifyitems(config, items):
    from minircnn.backend import gpu_available

    if gpu_available():
        return
    skip = pytest.mark.skip(reason="needs CuPy and a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
