"""Shared test configuration: the `gpu` marker skips itself without CuPy and a GPU; every
test writes proposal caches to a temporary MINIRCNN_CACHE, never to ~/.cache.

Hypothesis profiles. The default, ``ci``, is what ``python -m pytest -q`` and CI run:
``derandomize=True`` (the examples follow from each test's source, so two runs and two
machines try the same inputs), ``database=None`` (no ``.hypothesis/`` folder replaying
old failures on one machine only) and ``deadline=None`` (a busy machine is slow, not
wrong). To search new random inputs while developing, choose the ``explore`` profile:

    HYPOTHESIS_PROFILE=explore python -m pytest -q tests/detection
"""

import contextlib
import io
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


@pytest.fixture(scope="session")
def gradcheck_command():
    """``minircnn gradcheck`` run once for the session: (exit code, what it printed, its
    rows by layer). The command checks every layer case with seed 0, as
    tests/gradcheck/test_cases.py does case by case: that test reads the rows recorded
    here instead of computing each gradient check a second time."""
    from minircnn.cli.main import main
    from minircnn.gradcheck import cases

    rows, real = [], cases.run_gradchecks

    def recorded(*args, **kwargs):
        rows.extend(real(*args, **kwargs))
        return list(rows)

    printed = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(printed):
        patch.setattr(cases, "run_gradchecks", recorded)
        code = main(["gradcheck"])
    return code, printed.getvalue(), {row.layer: row for row in rows}


def pytest_collection_modifyitems(config, items):
    from minircnn.backend import gpu_available

    if gpu_available():
        return
    skip = pytest.mark.skip(reason="needs CuPy and a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
