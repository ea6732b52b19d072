"""Speed: minircnn bench, the detector's benchmark, the NumPy-vs-CuPy check.

``minircnn bench`` (layers, a training step and inference next to a same-run
matrix product), the detector's benchmark and the NumPy-vs-CuPy check."""
