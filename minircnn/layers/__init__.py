"""Layers: functional ``op_forward`` / ``op_backward`` pairs and thin Module classes.

Everything public is importable from here: ``from minircnn.layers import conv2d_forward``.
"""

from minircnn.layers.module import Module, Parameter, Sequential
