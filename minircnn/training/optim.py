"""SGD with momentum and weight decay, per-parameter multipliers, and lr schedules.

The update is Caffe's / PyTorch's (Fast R-CNN was trained with Caffe's SGD solver)::

    g    = grad + weight_decay * decay_mult * w        # L2 regularisation
    v    = momentum * v + g                            # momentum buffer
    w   -= lr * lr_mult * v

This is ``torch.optim.SGD(momentum=m, weight_decay=wd, dampening=0, nesterov=False)``
with the learning rate and weight decay scaled per parameter, as Caffe's ``lr_mult`` /
``decay_mult`` do (Fast R-CNN: biases at 2x the learning rate, no weight decay).
Parameters with ``requires_grad = False`` are skipped entirely: their data, gradient
and (absent) momentum buffer are never touched, so frozen weights stay bit-identical.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np

from minircnn.backend import asnumpy, get_array_module
from minircnn.layers.module import Parameter
from minircnn.utils.validate import check_count, check_number, check_positive

# SGD.step's block of each array: four such slices (w, grad, v and the work array g) fit
# in a core's L2 cache (1-2 MiB on current x86 CPUs), so the passes over a block re-read
# it from there.
BLOCK_BYTES = 1 << 17


class SGD:
    """Stochastic gradient descent with momentum, weight decay and per-param multipliers.

    Args:
        params: the Parameters to update (e.g. ``model.parameters()``); their order is
            the order of the momentum buffers in ``state_dict()``.
        lr: base learning rate; schedules overwrite the ``lr`` attribute each iteration.
        momentum: heavy-ball momentum (0 disables it).
        weight_decay: L2 coefficient added to the gradient (times ``decay_mult``).

    Example:
        >>> opt = SGD(model.parameters(), lr=0.01)
        >>> for it in range(iters):
        ...     opt.lr = step_lr(0.01, it, steps=(3000,), warmup_iters=100)
        ...     model.zero_grad(); loss = ...; model.backward(...)  # fills p.grad
        ...     opt.step()
    """

    def __init__(self, params: Iterable[Parameter], lr: float, *, momentum: float = 0.9,
                 weight_decay: float = 5e-4):
        self.params = list(params)
        for i, p in enumerate(self.params):
            if not isinstance(p, Parameter):
                raise TypeError(f"SGD: params[{i}] must be a Parameter, got {type(p).__name__}")
        if not self.params:
            raise ValueError("SGD: params is empty: nothing to optimize (as torch.optim)")
        self.lr = check_number("lr", lr, op="SGD", low=0.0)
        self.momentum = check_number("momentum", momentum, op="SGD", low=0.0, high=1.0)
        self.weight_decay = check_number("weight_decay", weight_decay, op="SGD", low=0.0)
        self.velocity: list = [None] * len(self.params)  # created lazily on the first step
        self._scratch: list = [None] * len(self.params)  # step()'s work arrays, not state

    def zero_grad(self) -> None:
        """Set every trainable parameter's gradient to zero (gradients accumulate
        otherwise); a frozen parameter's gradient is never added to, so it stays zero."""
        for p in self.params:
            if p.requires_grad:
                p.zero_grad()

    def step(self) -> None:
        """One update of every trainable parameter from its accumulated ``grad``.

        The update reads and writes each array several times (six passes below). On the
        CPU it runs a block of rows at a time (``block_rows``), so the block's work array
        ``g`` stays in the cache between passes instead of going out to memory and back;
        every element gets the same operations, in the same order, either way.
        """
        for i, p in enumerate(self.params):
            if not p.requires_grad:
                continue  # frozen: untouched, bit for bit
            xp = get_array_module(p.data)
            if self.momentum != 0 and self.velocity[i] is None:
                self.velocity[i] = xp.zeros_like(p.data)
            v = self.velocity[i] if self.momentum != 0 else None
            # row blocks of a 0-d parameter: view it as one row
            w, grad, v = (a if a is None or a.ndim else a.reshape(1) for a in (p.data, p.grad, v))
            rows = block_rows(w)
            if self._scratch[i] is None:                # one work array per parameter,
                self._scratch[i] = xp.empty_like(w[:rows])   # reused: no temporaries per step
            for r in range(0, len(w), rows):
                block = slice(r, r + rows)              # a view of rows r..r+rows-1
                g = self._scratch[i][:len(w[block])]
                self._update(w[block], grad[block], None if v is None else v[block], g, p)

    def _update(self, w, grad, v, g, p: Parameter) -> None:
        """w -= lr * lr_mult * (m v + grad + wd * decay_mult * w), in place; ``g`` is work
        space of w's shape, ``v`` the momentum buffer (None without momentum)."""
        xp = get_array_module(w)
        wd = self.weight_decay * p.decay_mult
        if wd != 0:
            xp.multiply(w, wd, out=g)
            xp.add(grad, g, out=g)                      # g = grad + wd w: d/dw (wd/2 |w|^2) = wd w
        else:
            g[...] = grad
        if v is not None:
            v *= self.momentum
            v += g                                      # v = m v + g
            xp.multiply(v, self.lr * p.lr_mult, out=g)
        else:
            g *= self.lr * p.lr_mult
        w -= g                                          # w -= lr * lr_mult * v

    def state_dict(self) -> dict:
        """Momentum buffers (NumPy copies, None where not yet created) and the settings."""
        return {
            "lr": self.lr,
            "momentum": self.momentum,
            "weight_decay": self.weight_decay,
            "velocity": [None if v is None else asnumpy(v).copy() for v in self.velocity],
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore what ``state_dict`` returned (for ``--resume``).

        Raises:
            ValueError: the number or shapes of the buffers do not match the parameters.
        """
        velocity = list(state["velocity"])
        if len(velocity) != len(self.params):
            raise ValueError(f"SGD.load_state_dict: expected {len(self.params)} momentum "
                             f"buffers, got {len(velocity)}")
        for i, (p, v) in enumerate(zip(self.params, velocity, strict=True)):
            if v is not None and tuple(np.shape(v)) != tuple(p.data.shape):
                raise ValueError(f"SGD.load_state_dict: buffer {i} has shape {np.shape(v)}, "
                                 f"parameter has {tuple(p.data.shape)}")
        self.lr = float(state["lr"])
        self.momentum = float(state["momentum"])
        self.weight_decay = float(state["weight_decay"])
        self.velocity = []
        for p, v in zip(self.params, velocity, strict=True):
            xp = get_array_module(p.data)
            self.velocity.append(None if v is None else xp.asarray(v, dtype=p.data.dtype).copy())


def block_rows(w) -> int:
    """Rows of ``w`` that SGD.step updates at once: about BLOCK_BYTES of it on the CPU
    (a slice along the first axis is always a view, whatever the memory layout), all of
    it on a GPU (one kernel per pass is cheapest there)."""
    if get_array_module(w) is not np:
        return max(len(w), 1)
    row_bytes = max(w[:1].nbytes, 1)
    return max(1, BLOCK_BYTES // row_bytes)


def _check_schedule(op: str, base_lr, it, warmup_iters, warmup_factor) -> None:
    check_number("base_lr", base_lr, op=op, low=0.0)
    check_count("it", it, op=op, minimum=0)
    check_count("warmup_iters", warmup_iters, op=op, minimum=0)
    check_number("warmup_factor", warmup_factor, op=op, low=0.0, high=1.0)


def step_lr(base_lr: float, it: int, *, steps: Sequence[int] = (), gamma: float = 0.1,
            warmup_iters: int = 0, warmup_factor: float = 1.0 / 3) -> float:
    """Learning rate at iteration ``it``: linear warm-up, then step decay.

    detectron2's ``WarmupMultiStepLR`` with ``warmup_method="linear"``: for
    ``it < warmup_iters`` the rate is scaled by ``warmup_factor * (1 - a) + a`` with
    ``a = it / warmup_iters`` (from ``warmup_factor`` up to 1); it is multiplied by
    ``gamma`` once for every milestone in ``steps`` that is ``<= it``.

    Example:
        >>> step_lr(0.01, 0, steps=(10,), warmup_iters=4)   # 0.01 / 3
        >>> step_lr(0.01, 10, steps=(10,))                   # 0.001
    """
    _check_schedule("step_lr", base_lr, it, warmup_iters, warmup_factor)
    check_positive("gamma", gamma, op="step_lr")
    for s in steps:
        check_count("steps", s, op="step_lr", minimum=0)
    if list(steps) != sorted(steps):
        raise ValueError(f"step_lr: steps must be increasing, got {tuple(steps)}")
    factor = 1.0
    if it < warmup_iters:
        alpha = it / warmup_iters
        factor = warmup_factor * (1 - alpha) + alpha
    decays = sum(1 for s in steps if s <= it)
    return base_lr * factor * gamma ** decays


def cosine_lr(base_lr: float, it: int, *, total_iters: int, warmup_iters: int = 0,
              warmup_factor: float = 1.0 / 3, final_factor: float = 0.0) -> float:
    """Learning rate at iteration ``it``: linear warm-up, then half a cosine to the end.

    detectron2's ``WarmupCosineLR``: ``base_lr * (final + (1 - final) * 0.5 * (1 + cos(pi
    * it / total_iters)))``, times the same linear warm-up factor as ``step_lr``.
    """
    _check_schedule("cosine_lr", base_lr, it, warmup_iters, warmup_factor)
    check_count("total_iters", total_iters, op="cosine_lr")
    check_number("final_factor", final_factor, op="cosine_lr", low=0.0, high=1.0)
    factor = 1.0
    if it < warmup_iters:
        alpha = it / warmup_iters
        factor = warmup_factor * (1 - alpha) + alpha
    progress = min(it, total_iters) / total_iters
    cosine = final_factor + (1 - final_factor) * 0.5 * (1 + math.cos(math.pi * progress))
    return base_lr * factor * cosine
