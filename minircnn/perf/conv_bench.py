"""The conv stack benchmark, and two entries that show where its time goes.

- **the stack** (SmallVGG's widths): conv (im2col, products), ReLU and 2x2 max pooling,
  forward then backward, as the fast tier runs them (``minircnn/layers/conv.py``). As
  in a network, the first conv computes no input gradient (nothing reads the image's):
  its backward is ``conv2d_param_grads``;
- **its matrix products alone**, a reference: the products of the stack (out = W cols,
  dW^T = cols dout^T and, but for the first conv, dcols = W^T dout), one whole-image
  product per conv, image and kind, on columns unfolded beforehand. That is the work
  BLAS does at the stack's shapes, without unfolding the windows (im2col), adding the
  columns back (col2im), the bias, the gradient sums or the elementwise layers (the
  stack itself multiplies a block of rows at a time, ``conv.BLOCK_BYTES``);
- **its ReLU and max pooling alone**, forward and backward, on the stack's shapes.

What the stack takes beyond the two references together is mostly the unfolding and
folding back of the windows, the bias and the sums. ``minircnn bench`` lists the three.
"""

from __future__ import annotations

import numpy as np

from minircnn.layers.activations import relu_backward, relu_forward
from minircnn.layers.conv import conv2d_backward, conv2d_forward, conv2d_param_grads, im2col
from minircnn.layers.pool import max_pool2d_backward, max_pool2d_forward

# The VGG-like stack: 3x3 convs with pad 1, ReLU after each, 2x2 max pools ("pool").
# On a 2x3x128x128 batch its convs count ~0.62 GFLOP forward + backward.
CONV_STACK = ((3, 16), "pool", (16, 32), "pool", (32, 64), "pool", (64, 64))
BATCH = (2, 3, 128, 128)


def f32(rng, *shape):
    return rng.standard_normal(shape, dtype=np.float32)


def conv_flops(x_shape: tuple, w_shape: tuple, out_hw: tuple) -> float:
    """Forward FLOPs of a convolution: 2·N·F·C·KH·KW·OH·OW (multiply + add)."""
    n, (f, c, kh, kw), (oh, ow) = x_shape[0], w_shape, out_hw
    return 2.0 * n * f * c * kh * kw * oh * ow


def _layers(batch: tuple, stack: tuple):
    """Each conv of the stack as (c_in, c_out, side of its input and output, pooled
    after it), and the stack's FLOPs: each conv's forward times 3 (backward = one
    product for dW, one for dx), times 2 for the first (no dx)."""
    layers, flops, side = [], 0.0, batch[2]
    for i, layer in enumerate(stack):
        if layer == "pool":
            side //= 2
            continue
        c_in, c_out = layer
        pooled = i + 1 < len(stack) and stack[i + 1] == "pool"
        products = 2 if not layers else 3
        layers.append((c_in, c_out, side, pooled))
        flops += products * conv_flops((batch[0], c_in, side, side), (c_out, c_in, 3, 3),
                                       (side, side))
    return layers, flops


def setup_conv_stack(rng, batch: tuple = BATCH, stack: tuple = CONV_STACK):
    """Forward then backward through the stack; FLOPs count the convs only, ReLU and
    pooling time included. ``run()`` returns the first conv's weight gradients."""
    x = f32(rng, *batch)
    layers, flops = _layers(batch, stack)
    weights = [(f32(rng, c_out, c_in, 3, 3) * np.float32(np.sqrt(2.0 / (9 * c_in))),
                np.zeros(c_out, dtype=np.float32)) for c_in, c_out, _, _ in layers]

    def run():
        out, caches, params = x, [], iter(weights)
        for layer in stack:  # forward
            if layer == "pool":
                out, cache = max_pool2d_forward(out, kernel=2, stride=2)
                caches.append((max_pool2d_backward, cache))
                continue
            out, cache = conv2d_forward(out, *next(params), stride=1, pad=1)
            caches.append((conv2d_backward, cache))
            out, cache = relu_forward(out)
            caches.append((relu_backward, cache))
        first_conv = caches.pop(0)[1]             # the stack starts with a conv
        dout = np.ones_like(out)
        for backward, cache in reversed(caches):  # backward, in reverse order
            grads = backward(dout, cache)
            dout = grads[0] if isinstance(grads, tuple) else grads
        return conv2d_param_grads(dout, first_conv)   # dw, db: nothing reads the image's dx

    return run, flops


def setup_conv_stack_products(rng, batch: tuple = BATCH, stack: tuple = CONV_STACK):
    """The stack's matrix products alone, one per image and kind, on columns unfolded
    beforehand (module docstring); the same FLOPs as the stack."""
    layers, flops = _layers(batch, stack)
    operands = []                                              # (w_mat, cols, dout, dx?)
    for c_in, c_out, side, _ in layers:
        x = f32(rng, batch[0], c_in, side, side)
        cols = im2col(x, 3, 3, stride=1, pad=1)                # (N, K, P), K = 9 c_in
        w_mat = f32(rng, c_out, 9 * c_in)                      # (F, K)
        dout = f32(rng, batch[0], c_out, side * side)          # (N, F, P)
        operands.append((w_mat, cols, dout, len(operands) > 0))

    def run():
        for w_mat, cols, dout, input_grad in operands:
            for n in range(len(cols)):
                w_mat @ cols[n]                                # out: (F, K) @ (K, P)
                cols[n] @ dout[n].T                            # dW^T: (K, P) @ (P, F)
                if input_grad:
                    w_mat.T @ dout[n]                          # dcols: (K, F) @ (F, P)

    return run, flops


def setup_conv_stack_elementwise(rng, batch: tuple = BATCH, stack: tuple = CONV_STACK):
    """The stack's ReLUs and max pools alone, forward then backward, on its shapes."""
    layers, _ = _layers(batch, stack)
    maps = [(f32(rng, batch[0], c_out, side, side), pooled)
            for _, c_out, side, pooled in layers]              # each conv's output

    def run():
        for y, pooled in maps:
            out, relu_cache = relu_forward(y)
            if pooled:
                pooled_out, pool_cache = max_pool2d_forward(out, kernel=2, stride=2)
                out = max_pool2d_backward(np.ones_like(pooled_out), pool_cache)
            relu_backward(out, relu_cache)

    return run, None
