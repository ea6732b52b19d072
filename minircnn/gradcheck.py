"""Numeric gradients by centered differences, and the relative error used to compare them.

A backward pass is right when, for a random upstream gradient ``dout``,

    dL/dx[i] = sum_j dout[j] * d out[j] / d x[i]
             ≈ sum_j dout[j] * (out(x + h e_i)[j] - out(x - h e_i)[j]) / (2h)

Run the check in float64: with h = 1e-5 the centered difference is accurate to about
h² ≈ 1e-10 relative, so a correct layer shows a relative error near 1e-9..1e-11, and a
wrong one 1e-2 or worse. Keep inputs away from kinks (ReLU at 0) and ties (max pooling
with equal values): there the function is not differentiable and the check fails for
reasons that are not bugs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from minircnn.backend import asnumpy, get_array_module


def rel_error(a, b) -> float:
    """Max elementwise relative error ``|a - b| / max(1e-8, |a| + |b|)`` (cs231n's).

    Typical values in float64: < 1e-7 a correct gradient, > 1e-3 almost surely a bug.
    """
    a = asnumpy(a).astype(np.float64)
    b = asnumpy(b).astype(np.float64)
    if a.shape != b.shape:
        raise ValueError(f"rel_error: shapes differ, a {a.shape} vs b {b.shape}")
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a - b) / np.maximum(1e-8, np.abs(a) + np.abs(b))))


def numeric_gradient(f: Callable[[], object], x, dout, h: float = 1e-5):
    """Centered-difference gradient of ``sum(dout * f())`` with respect to ``x``.

    ``f`` takes no arguments and reads ``x`` (which is perturbed in place, one entry at
    a time, and restored exactly afterwards).

    Args:
        f: closure returning the op's output (any shape; a scalar for losses).
        x: the array to differentiate; float64 for a meaningful check.
        dout: upstream gradient with the shape of ``f()``.
        h: step.
    Returns:
        grad with the shape of ``x``.
    """
    xp = get_array_module(x)
    grad = xp.zeros_like(x)
    if not x.flags.c_contiguous:
        raise ValueError("numeric_gradient: x must be C-contiguous so it can be perturbed in place")
    flat_x = x.reshape(-1)  # a view: writing flat_x[i] perturbs x
    flat_grad = grad.reshape(-1)
    for i in range(flat_x.size):
        old = flat_x[i].copy()
        flat_x[i] = old + h
        plus = xp.asarray(f()).copy()
        flat_x[i] = old - h
        minus = xp.asarray(f()).copy()
        flat_x[i] = old  # restore exactly, not by adding h back
        # d(sum dout*out)/dx_i ≈ sum dout * (out+ - out-) / 2h
        flat_grad[i] = xp.sum(dout * (plus - minus)) / (2 * h)
    return grad


def check_layer(
    forward: Callable,
    backward: Callable,
    inputs: Mapping[str, np.ndarray],
    *,
    kwargs: Mapping | None = None,
    wrt: Sequence[str] | None = None,
    seed: int = 0,
    h: float = 1e-5,
) -> dict[str, float]:
    """Gradient-check a forward/backward pair; return {input name: relative error}.

    ``forward(*inputs.values(), **kwargs)`` must return ``(out, cache)`` and
    ``backward(dout, cache)`` the gradients of the inputs named in ``wrt`` (default:
    all inputs), a single array when there is one, else a tuple in that order.

    Example:
        >>> errs = check_layer(linear_forward, linear_backward, {"x": x, "w": w, "b": b})
        >>> assert max(errs.values()) < 1e-7
    """
    kwargs = dict(kwargs or {})
    names = list(inputs)
    wrt = list(wrt) if wrt is not None else names
    unknown = [n for n in wrt if n not in inputs]
    if unknown:
        raise ValueError(f"check_layer: wrt names {unknown} are not among the inputs {names}")
    arrays = {n: inputs[n] for n in names}

    def run():
        out, _ = forward(*arrays.values(), **kwargs)
        return out

    out, cache = forward(*arrays.values(), **kwargs)
    xp = get_array_module(out)
    rng = np.random.default_rng(seed)
    dout = xp.asarray(rng.standard_normal(np.shape(out)))
    if np.ndim(out) == 0:
        dout = float(dout)
    grads = backward(dout, cache)
    if not isinstance(grads, tuple):
        grads = (grads,)
    if len(grads) != len(wrt):
        raise ValueError(f"check_layer: backward returned {len(grads)} gradients for wrt={wrt}")
    errors = {}
    for name, analytic in zip(wrt, grads, strict=True):
        numeric = numeric_gradient(run, arrays[name], dout, h=h)
        errors[name] = rel_error(analytic, numeric)
    return errors
