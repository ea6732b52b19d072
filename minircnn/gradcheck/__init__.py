"""Gradient checking: numeric gradients, their error bound, one case per layer.

Numeric gradients with an error bound, ``rel_error``, ``check_layer``
(core.py), and one declarative case per layer that ``minircnn gradcheck`` runs (cases.py).

``from minircnn.gradcheck import check_layer, rel_error`` is the import lessons use.
"""

from minircnn.gradcheck.core import (
    THRESHOLD,
    GradientEstimate,
    check_layer,
    gradient_error,
    numeric_gradient,
    numeric_gradient_with_bound,
    rel_error,
)
