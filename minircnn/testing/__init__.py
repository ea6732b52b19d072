"""Test helpers that ship with the package: the fake CuPy (``MINIRCNN_FAKE_GPU=1``)."""
