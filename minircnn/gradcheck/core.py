"""Numeric gradients by centered differences, their error, and the comparison with backward.

A backward pass is right when, for a random upstream gradient ``dout``,

    dL/dx[i] = sum_j dout[j] * d out[j] / d x[i]
             ≈ D(h) = (S(x + h e_i) - S(x - h e_i)) / (2h),   S(x) = sum_j dout[j] * out(x)[j]

Run the check in float64, and keep inputs away from kinks (ReLU at 0) and ties (max
pooling with equal values): there the function is not differentiable and the check fails
for reasons that are not bugs.

How accurate is D(h)? An error model, so that the pass threshold holds on any CPU:

* truncation, from Taylor's theorem: D(h) = g + (h²/6)·S'''(x) + O(h⁴). The step-2h
  difference carries four times that term, so the data estimate it as
  |D(h) - D(2h)| / 3, and Richardson extrapolation cancels it:
  R(h) = (4·D(h) - D(2h)) / 3 = g + O(h⁴).
* round-off: each S is computed with an error of about c·u·A, where u = 2⁻⁵³ is the
  unit round-off of float64, A = sum_j |dout[j]·out[j]| the size of the terms summed and
  c = ``ROUNDOFF_UNITS`` the roundings per output. Dividing a difference by the step
  magnifies it: 4/3·(2cuA)/(2h) + 1/3·(2cuA)/(4h) = 1.5·c·u·A/h for R(h)
  (about 3e-8 for A ~ 100 and h = 1e-5).

``numeric_gradient_with_bound`` returns R(h) with the bound
``|D(h) - D(2h)| / 3 + 1.5·c·u·A / h`` for each entry (the first term overstates R's own
truncation, which is O(h⁴)). ``gradient_error`` compares relatively where the numeric
gradient resolves an entry and against the bound where it cannot (a tiny entry such as
some of batch norm's dx, whose round-off would read as a large relative error).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import numpy as np

from minircnn.backend import asnumpy, get_array_module

THRESHOLD = 1e-7  # largest gradient_error of one layer's gradients in float64
# c: the error of one evaluation of S in units of u·A (module docstring). Each output of
# the chains checked here (up to a ResNet block: two convs, two batch norms, two ReLUs and
# an add) goes through a few roundings per layer, and A ignores cancellation inside a
# layer (x - mean in batch norm, mixed-sign sums in a conv), whose terms exceed |out|.
# scripts/gradcheck_margins.py measures how far below this bound the errors stay.
ROUNDOFF_UNITS = 16


class GradientEstimate(NamedTuple):
    grad: np.ndarray   # Richardson-extrapolated centered difference, shape of x
    bound: np.ndarray  # estimated |grad - exact gradient| of each entry, shape of x


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


def _flat_view(x):
    """``x`` as a flat view: writing ``flat[i]`` perturbs ``x`` in place."""
    if not x.flags.c_contiguous:
        raise ValueError("numeric_gradient: x must be C-contiguous so it can be perturbed in place")
    return x.reshape(-1)


def _difference(f, flat_x, i, dout, h):
    """D(h) of entry i: sum(dout * (f(x + h e_i) - f(x - h e_i))) / 2h; x restored after."""
    xp = get_array_module(flat_x)
    old = flat_x[i].copy()
    flat_x[i] = old + h
    plus = xp.asarray(f()).copy()
    flat_x[i] = old - h
    minus = xp.asarray(f()).copy()
    flat_x[i] = old  # restore exactly, not by adding h back
    return xp.sum(dout * (plus - minus)) / (2 * h)


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
        grad with the shape of ``x``: D(h), off by about (h²/6)·|S'''| + u·A/h.
    """
    xp = get_array_module(x)
    flat_x = _flat_view(x)
    grad = xp.zeros_like(x)
    flat_grad = grad.reshape(-1)
    for i in range(flat_x.size):
        flat_grad[i] = _difference(f, flat_x, i, dout, h)
    return grad


def numeric_gradient_with_bound(f: Callable[[], object], x, dout,
                                h: float = 1e-5) -> GradientEstimate:
    """``numeric_gradient`` extrapolated to O(h⁴), with an error bound for each entry.

    Four evaluations of ``f`` per entry instead of two (module docstring):
        grad  = (4·D(h) - D(2h)) / 3                  truncation O(h⁴)
        bound = |D(h) - D(2h)| / 3 + 1.5·c·u·A / h    truncation of D(h) + round-off
    """
    xp = get_array_module(x)
    out = xp.asarray(f())
    u = np.finfo(out.dtype).eps / 2                  # unit round-off: 2⁻⁵³ in float64
    terms = float(xp.sum(xp.abs(dout * out)))        # A = sum_j |dout_j · out_j|
    roundoff = 1.5 * ROUNDOFF_UNITS * u * terms / h
    flat_x = _flat_view(x)
    grad, bound = xp.zeros_like(x), xp.zeros_like(x)
    flat_grad, flat_bound = grad.reshape(-1), bound.reshape(-1)
    for i in range(flat_x.size):
        d1 = _difference(f, flat_x, i, dout, h)
        d2 = _difference(f, flat_x, i, dout, 2 * h)
        flat_grad[i] = (4 * d1 - d2) / 3             # the h² terms cancel
        flat_bound[i] = abs(d1 - d2) / 3 + roundoff
    return GradientEstimate(grad, bound)


def gradient_error(analytic, numeric: GradientEstimate, *, threshold: float = THRESHOLD) -> float:
    """Max over entries of ``|a - n| / max(|a| + |n|, bound / threshold)``.

    Where the numeric gradient ``n`` resolves an entry (bound < threshold·(|a| + |n|))
    this is ``rel_error``; where it cannot, the entry passes when ``|a - n| <= bound``.
    So ``gradient_error(...) <= threshold`` reads: every entry agrees to the relative
    ``threshold`` or within the numeric gradient's own error. The bound takes the place
    of the fixed 1e-8 floor in ``rel_error``'s denominator.
    """
    a = asnumpy(analytic).astype(np.float64)
    n = asnumpy(numeric.grad).astype(np.float64)
    bound = asnumpy(numeric.bound).astype(np.float64)
    if a.shape != n.shape:
        raise ValueError(f"gradient_error: shapes differ, analytic {a.shape} vs numeric {n.shape}")
    if a.size == 0:
        return 0.0
    diff = np.abs(a - n)
    scale = np.maximum(np.abs(a) + np.abs(n), bound / threshold)
    return float(np.max(np.divide(diff, scale, out=np.zeros_like(diff), where=scale > 0)))


def check_layer(
    forward: Callable,
    backward: Callable,
    inputs: Mapping[str, np.ndarray],
    *,
    kwargs: Mapping | None = None,
    wrt: Sequence[str] | None = None,
    seed: int = 0,
    h: float = 1e-5,
    threshold: float = THRESHOLD,
) -> dict[str, float]:
    """Gradient-check a forward/backward pair; return {input name: relative error}.

    ``forward(*inputs.values(), **kwargs)`` must return ``(out, cache)`` and
    ``backward(dout, cache)`` the gradients of the inputs named in ``wrt`` (default:
    all inputs), a single array when there is one, else a tuple in that order. Each
    error is ``gradient_error`` against ``numeric_gradient_with_bound``: the layer
    passes when every error is <= ``threshold``.

    Example:
        >>> errs = check_layer(linear_forward, linear_backward, {"x": x, "w": w, "b": b})
        >>> assert max(errs.values()) <= 1e-7
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
        numeric = numeric_gradient_with_bound(run, arrays[name], dout, h=h)
        errors[name] = gradient_error(analytic, numeric, threshold=threshold)
    return errors
