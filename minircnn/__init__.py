"""minircnn: Fast R-CNN from scratch in NumPy (and CuPy), for learning.

Every layer is a pair of plain functions ``op_forward`` / ``op_backward`` with a
hand-derived backward pass; the layers compose into a Fast R-CNN detector that trains
on a synthetic shapes dataset on a laptop CPU. See README.md and lessons/.
"""

__version__ = "0.1.0"
