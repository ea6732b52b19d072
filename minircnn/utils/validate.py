"""Argument checks shared by the whole package: arrays, numbers, counts, ``dout``.

Every public function checks what a user can get wrong with these helpers instead of
its own copy, so every mistake reads the same way: ``op: name must be <expected>, got
<received>`` as a ValueError (wrong value or shape) or a TypeError (wrong type or dtype).

Python lists and tuples passed where an array is expected are converted with
``xp.asarray`` (NumPy unless ``like`` is a CuPy array); anything else that is not an
array is refused with a TypeError. Numbers must be real Python or NumPy scalars: bools,
strings and arrays are refused, and NaN or inf is refused unless a check allows it.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from minircnn.backend import get_array_module

KIND_NAMES = {"f": "float", "i": "integer", "u": "unsigned integer", "b": "bool"}


def _where(op: str | None, name: str) -> str:
    return f"{op}: {name}" if op else name


def is_array(x) -> bool:
    """True for a NumPy or CuPy array (anything with shape, dtype and ndim)."""
    return isinstance(x, np.ndarray) or get_array_module(x) is not np


def as_array(name: str, x, *, op: str | None = None, like=None):
    """``x`` as an array: arrays pass unchanged, lists/tuples are converted, else TypeError.

    ``like``: an array whose module (NumPy or CuPy) a converted list should use.
    """
    if is_array(x):
        return x
    if isinstance(x, (list, tuple)):
        xp = np if like is None else get_array_module(like)
        try:
            return xp.asarray(x)
        except (ValueError, TypeError) as e:
            raise TypeError(f"{_where(op, name)} must be an array; the {type(x).__name__} "
                            f"given cannot be converted to one: {e}") from e
    raise TypeError(f"{_where(op, name)} must be an array (NumPy/CuPy, or a list), "
                    f"got {type(x).__name__}")


def check_array(name: str, x, *, op: str | None = None, ndim: int | None = None,
                shape: tuple | None = None, kinds: str | None = "f", finite: bool = False,
                like=None, axes: str = ""):
    """Convert (lists) and check an array; return it.

    Args:
        name: the argument's name, for the message.  op: the function, for the message.
        ndim: required number of dimensions.  shape: required shape; ``None`` entries
            match any size.
        kinds: allowed dtype kinds, letters of ``numpy.dtype.kind`` ("f" float,
            "i" signed int, "u" unsigned, "b" bool); None allows any.
        finite: refuse NaN and inf.
        like: as ``as_array``; also the array whose module (NumPy or CuPy) x must share.
        axes: the axes' letters for the message, e.g. "(N, C, H, W)".
    """
    x = as_array(name, x, op=op, like=like)
    if like is not None and get_array_module(x) is not get_array_module(like):
        raise TypeError(f"{_where(op, name)} must live on the same device as the other "
                        f"inputs ({get_array_module(like).__name__}), got a "
                        f"{get_array_module(x).__name__} array")
    if ndim is not None and x.ndim != ndim:
        want = f"{ndim}-D" + (f" {axes}" if axes else
                              f" {tuple_text(shape)}" if shape is not None else "")
        raise ValueError(f"{_where(op, name)} must be {want}, got shape {tuple(x.shape)}")
    if shape is not None and (len(shape) != x.ndim or any(
            s is not None and s != d for s, d in zip(shape, x.shape, strict=True))):
        raise ValueError(f"{_where(op, name)} must have shape {tuple_text(shape)}, "
                         f"got {tuple(x.shape)}")
    if kinds is not None and x.dtype.kind not in kinds:
        want = " or ".join(KIND_NAMES.get(k, k) for k in kinds)
        raise TypeError(f"{_where(op, name)} must be a {want} array, got dtype {x.dtype}")
    xp = get_array_module(x)
    if finite and x.dtype.kind == "f" and x.size and not bool(xp.isfinite(x).all()):
        raise ValueError(f"{_where(op, name)} must be finite, got NaN or inf "
                         f"(shape {tuple(x.shape)})")
    return x


def tuple_text(shape) -> str:
    """``(N, 4)``-style text of a shape whose entries may be None (any size)."""
    return "(" + ", ".join("any" if s is None else str(s) for s in shape) + \
        ("," if len(shape) == 1 else "") + ")"


def check_number(name: str, v, *, op: str | None = None, low: float | None = None,
                 high: float | None = None, low_open: bool = False, high_open: bool = False,
                 allow_inf: bool = False) -> float:
    """A real number (not bool), finite unless ``allow_inf``, within [low, high]; as float.

    ``low_open`` / ``high_open`` exclude the bound itself (e.g. ``low=0, low_open=True``
    for "> 0").
    """
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise TypeError(f"{_where(op, name)} must be a real number, got {type(v).__name__} {v!r}")
    f = float(v)
    if math.isnan(f) or (math.isinf(f) and not allow_inf):
        raise ValueError(f"{_where(op, name)} must be a finite number, got {v!r}")
    too_low = low is not None and (f <= low if low_open else f < low)
    too_high = high is not None and (f >= high if high_open else f > high)
    if too_low or too_high:
        lo = "" if low is None else f"{'(' if low_open else '['}{low}"
        hi = "" if high is None else f"{high}{')' if high_open else ']'}"
        want = (f"in {lo}, {hi}" if low is not None and high is not None else
                f"{'>' if low_open else '>='} {low}" if low is not None else
                f"{'<' if high_open else '<='} {high}")
        raise ValueError(f"{_where(op, name)} must be {want}, got {v!r}")
    return f


def check_positive(name: str, v, *, op: str | None = None, allow_zero: bool = False) -> float:
    """A finite real number > 0 (>= 0 with ``allow_zero``); as float."""
    return check_number(name, v, op=op, low=0.0, low_open=not allow_zero)


# The largest count or size any function takes (2**31 - 1, the int32 limit of array
# indices on a GPU): a larger one cannot be allocated and would fail deep inside NumPy.
MAX_COUNT = 2**31 - 1


def check_count(name: str, n, *, op: str | None = None, minimum: int = 1,
                maximum: int | None = MAX_COUNT) -> int:
    """An integer in [``minimum``, ``maximum``]: Python/NumPy ints, or floats with no
    fractional part; bools, NaN and fractions are refused. Returned as int."""
    if isinstance(n, bool) or not isinstance(n, numbers.Real):
        raise TypeError(f"{_where(op, name)} must be an integer, got {type(n).__name__} {n!r}")
    if not math.isfinite(float(n)) or int(n) != n:
        raise ValueError(f"{_where(op, name)} must be an integer, got {n!r}")
    if n < minimum or (maximum is not None and n > maximum):
        open_ended = maximum is None or (maximum == MAX_COUNT and n < minimum)
        want = f">= {minimum}" if open_ended else f"in [{minimum}, {maximum}]"
        raise ValueError(f"{_where(op, name)} must be an integer {want}, got {n!r}")
    return int(n)


def check_pair(name: str, value, *, op: str | None = None, minimum: int = 1) -> tuple[int, int]:
    """An int >= ``minimum`` or a pair of them, returned as a pair (kernel, output_size)."""
    both = (value, value) if np.isscalar(value) else value
    ok = isinstance(both, (tuple, list)) and len(both) == 2 and all(
        isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(float(v))
        and int(v) == v and minimum <= v <= MAX_COUNT for v in both)
    if not ok:
        raise ValueError(f"{_where(op, name)} must be an int >= {minimum} or a pair of them, "
                         f"got {value!r}")
    return int(both[0]), int(both[1])


def check_choice(name: str, value, choices, *, op: str | None = None):
    """``value`` if it is one of ``choices`` (e.g. roi_op "pool" / "align"), else a
    ValueError that lists them."""
    if value not in choices:
        names = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{_where(op, name)} must be one of {names}, got {value!r}")
    return value


def check_attributes(name: str, obj, attributes, *, op: str | None = None):
    """``obj`` if it has every one of ``attributes`` (an interface), else a TypeError
    naming the first it lacks."""
    for attr in attributes:
        if not hasattr(obj, attr):
            raise TypeError(f"{_where(op, name)} {type(obj).__name__} has no {attr!r}")
    return obj


def check_dout(dout, shape: tuple, dtype, like, *, op: str, name: str = "dout"):
    """The upstream gradient of a backward pass: an array of the forward output's shape,
    dtype (None: any float dtype) and array module (``like`` is an array from the
    cache). Returned unchanged.

    Every backward pass calls it, so it calls nothing else unless it raises: stepping
    into a backward in a debugger passes through this one frame.
    """
    if not isinstance(dout, (np.ndarray, type(like))):        # like: a NumPy or CuPy array
        raise TypeError(f"{op}: {name} must be an array of shape {tuple(shape)}, "
                        f"got {type(dout).__name__}")
    if isinstance(dout, np.ndarray) is not isinstance(like, np.ndarray):   # host vs device
        raise TypeError(f"{op}: {name} must be a {get_array_module(like).__name__} array like "
                        f"the forward pass's input, got {get_array_module(dout).__name__}")
    if tuple(dout.shape) != tuple(shape):
        raise ValueError(f"{op}: {name} must have the forward output's shape {tuple(shape)}, "
                         f"got {tuple(dout.shape)}")
    if dtype is None and dout.dtype.kind != "f":
        raise TypeError(f"{op}: {name} must be a float array, got dtype {dout.dtype}")
    if dtype is not None and dout.dtype != np.dtype(dtype):
        raise TypeError(f"{op}: {name} must have the forward output's dtype "
                        f"{np.dtype(dtype)}, got {dout.dtype}")
    return dout


def check_scalar_grad(name: str, dloss, *, op: str) -> None:
    """The upstream gradient of a scalar loss: a number or a 0-d / 1-element array."""
    if is_array(dloss):
        if dloss.size != 1:
            raise ValueError(f"{op}: {name} must be a scalar (the loss is one number), "
                             f"got shape {tuple(dloss.shape)}")
        return
    check_number(name, dloss, op=op)


def check_rng(name: str, rng, *, op: str | None = None) -> None:
    """A ``numpy.random.Generator`` (``np.random.default_rng(seed)``)."""
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"{_where(op, name)} must be a numpy.random.Generator "
                        f"(np.random.default_rng(seed)), got {type(rng).__name__}")
