"""The fake CuPy array: NumPy data that, like cupy.ndarray, will not turn into host data.

See fake_cupy.py for what is modelled. The array wraps a NumPy array (``_a``) instead of
subclassing ndarray, because ``np.asarray`` of an ndarray subclass silently returns its
data: a wrapper is the only way to make that call fail as it does on CuPy.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

NAMES = json.loads(Path(__file__).with_name("cupy_names.json").read_text())
_ATTRIBUTES = set(NAMES["namespaces"]["ndarray"])   # what cupy.ndarray has
_PLAIN = {"shape", "dtype", "ndim", "size", "strides", "nbytes", "itemsize", "flags"}
_NOT_MODELLED = {"flat", "data", "device", "cstruct", "mdspan", "reduced_view",
                 "toDlpack", "dump", "dumps", "tofile"}


class HostDeviceError(TypeError):
    """Host data met device data where CuPy would refuse (a TypeError, as CuPy raises)."""


def _host_error(what: str) -> HostDeviceError:
    return HostDeviceError(f"fake CuPy: {what}; CuPy refuses this. Move data explicitly "
                           "with minircnn.backend.asnumpy / to_device at the boundary.")


def _unwrap(obj, where: str, host_ok: bool = False):
    """Fake arrays -> their NumPy data, recursively; a NumPy array is an error."""
    if isinstance(obj, ndarray):
        return obj._a
    if isinstance(obj, np.ndarray) and not host_ok:
        raise _host_error(f"{where} got a NumPy array (host memory)")
    if isinstance(obj, (list, tuple)):
        return type(obj)(_unwrap(o, where, host_ok) for o in obj)
    return obj


def _unwrap_kwargs(kwargs: dict, where: str, host_ok: bool = False) -> dict:
    return {k: _unwrap(v, where, host_ok) for k, v in kwargs.items()}


def _wrap(obj):
    """NumPy results -> fake arrays; NumPy scalars -> 0-d arrays (CuPy returns those)."""
    if isinstance(obj, np.ndarray):
        return ndarray(obj)
    if isinstance(obj, np.generic):
        return ndarray(np.asarray(obj))
    if isinstance(obj, tuple):
        return tuple(_wrap(o) for o in obj)
    if isinstance(obj, list):
        return [_wrap(o) for o in obj]
    return obj


def _check_keywords(label: str, name: str, kwargs: dict) -> None:
    """A keyword CuPy's ``label.name`` does not take is a TypeError, as on CuPy."""
    params = NAMES["namespaces"][label][name]["params"]
    if params is None:                     # not introspectable, or takes **kwargs
        return
    unknown = sorted(set(kwargs) - set(params))
    if unknown:
        raise TypeError(f"{label}.{name}() got unexpected keyword argument(s) {unknown}: "
                        f"CuPy's signature is ({', '.join(params)})")


def _ufunc(name: str):
    return getattr(ndarray._cupy, name)


class ndarray:  # noqa: N801  (CuPy's name)
    """A device array: NumPy arithmetic, CuPy's rules about host memory."""

    __slots__ = ("_a",)
    __array_priority__ = 100.0  # NumPy hands binary operators with us to our methods
    __hash__ = None
    # The fake ``cupy`` namespace that operators and NumPy calls on the array run in.
    # The array and the namespace refer to each other: fake_cupy.py builds the namespace
    # from this class, then binds it here, so neither file imports the other.
    _cupy = None

    def __init__(self, data: np.ndarray):
        if not isinstance(data, np.ndarray):
            raise TypeError("fake_cupy.ndarray wraps a NumPy array; use fake_cupy.asarray")
        self._a = data

    # --- explicit copies to the host: allowed, as on CuPy ----------------------------
    def get(self, stream=None, order="C", out=None) -> np.ndarray:
        """Copy to host memory (cupy.ndarray.get)."""
        return np.array(self._a, order=order)

    def set(self, arr, stream=None) -> None:
        """Copy host data in (cupy.ndarray.set)."""
        self._a[...] = arr

    # --- implicit conversion: refused ------------------------------------------------
    def __array__(self, dtype=None, copy=None):
        raise _host_error("implicit conversion to a NumPy array (np.asarray / np.array)")

    def __array_ufunc__(self, np_ufunc, method, *inputs, **kwargs):
        """np.add(x, ...) on a device array runs cupy.add, as CuPy's arrays do."""
        try:
            fake = _ufunc(np_ufunc.__name__)
        except AttributeError:
            return NotImplemented
        return getattr(fake, method)(*inputs, **kwargs) if method != "__call__" \
            else fake(*inputs, **kwargs)

    def __array_function__(self, func, types, args, kwargs):
        """np.f(x) runs cupy.f when CuPy has an f (NumPy then raises TypeError if not)."""
        target = ndarray._cupy
        for part in func.__module__.split(".")[1:]:
            target = getattr(target, part, None)
        fake = getattr(target, func.__name__, None)
        return NotImplemented if fake is None else fake(*args, **kwargs)

    # --- attributes and methods: only those cupy.ndarray has ---------------------------
    def __getattr__(self, name: str):
        if name not in _ATTRIBUTES:
            raise AttributeError(f"'cupy.ndarray' object has no attribute '{name}'")
        if name in _NOT_MODELLED:
            raise AttributeError(f"fake CuPy does not model ndarray.{name}")
        value = getattr(self._a, name)
        if name in _PLAIN:
            return value
        if not callable(value):
            return _wrap(value)                      # .T, .real, .imag, .base

        def method(*args, **kwargs):
            _check_keywords("ndarray", name, kwargs)
            where = f"cupy.ndarray.{name}"
            result = value(*_unwrap(args, where), **_unwrap_kwargs(kwargs, where))
            return result if name in ("tolist", "item", "tobytes") else _wrap(result)

        return method

    def __repr__(self) -> str:
        return "fake_cupy." + repr(self._a)

    def __str__(self) -> str:
        return str(self._a)

    def __format__(self, spec: str) -> str:
        return format(self._a, spec)            # CuPy formats a copy: format(x.get(), spec)

    def __len__(self) -> int:
        return len(self._a)

    def __iter__(self):
        """Rows (0-d arrays for a vector), never host scalars."""
        for i in range(len(self._a)):
            yield self[i]

    def __bool__(self) -> bool:
        return bool(self._a)

    def __int__(self) -> int:
        return int(self._a)             # CuPy: int(self.get()), NumPy's rules

    def __float__(self) -> float:
        return float(self._a)

    def __complex__(self) -> complex:
        return complex(self._a)

    def __copy__(self):
        return ndarray(self._a.copy())

    def __deepcopy__(self, memo):
        return ndarray(self._a.copy())

    def __reduce__(self):
        return (ndarray, (self._a,))

    # --- indexing: indices may be host data (CuPy copies them over) --------------------
    def __getitem__(self, index):
        return _wrap(self._a[_unwrap(index, "index", host_ok=True)])

    def __setitem__(self, index, value) -> None:
        # CuPy copies a host value in (cupy.array(value)); a device value stays device.
        self._a[_unwrap(index, "index", host_ok=True)] = _unwrap(value, "value", host_ok=True)

    # --- operators: the ufuncs, with their host checks --------------------------------
    def __neg__(self): return _ufunc("negative")(self)
    def __pos__(self): return _ufunc("positive")(self)
    def __abs__(self): return _ufunc("absolute")(self)
    def __invert__(self): return _ufunc("invert")(self)
    def __add__(self, o): return _ufunc("add")(self, o)
    def __radd__(self, o): return _ufunc("add")(o, self)
    def __sub__(self, o): return _ufunc("subtract")(self, o)
    def __rsub__(self, o): return _ufunc("subtract")(o, self)
    def __mul__(self, o): return _ufunc("multiply")(self, o)
    def __rmul__(self, o): return _ufunc("multiply")(o, self)
    def __truediv__(self, o): return _ufunc("true_divide")(self, o)
    def __rtruediv__(self, o): return _ufunc("true_divide")(o, self)
    def __floordiv__(self, o): return _ufunc("floor_divide")(self, o)
    def __rfloordiv__(self, o): return _ufunc("floor_divide")(o, self)
    def __mod__(self, o): return _ufunc("remainder")(self, o)
    def __rmod__(self, o): return _ufunc("remainder")(o, self)
    def __pow__(self, o): return _ufunc("power")(self, o)
    def __rpow__(self, o): return _ufunc("power")(o, self)
    def __matmul__(self, o): return _ufunc("matmul")(self, o)
    def __rmatmul__(self, o): return _ufunc("matmul")(o, self)
    def __and__(self, o): return _ufunc("bitwise_and")(self, o)
    def __rand__(self, o): return _ufunc("bitwise_and")(o, self)
    def __or__(self, o): return _ufunc("bitwise_or")(self, o)
    def __ror__(self, o): return _ufunc("bitwise_or")(o, self)
    def __xor__(self, o): return _ufunc("bitwise_xor")(self, o)
    def __rxor__(self, o): return _ufunc("bitwise_xor")(o, self)
    def __lshift__(self, o): return _ufunc("left_shift")(self, o)
    def __rshift__(self, o): return _ufunc("right_shift")(self, o)
    def __eq__(self, o): return _ufunc("equal")(self, o)
    def __ne__(self, o): return _ufunc("not_equal")(self, o)
    def __lt__(self, o): return _ufunc("less")(self, o)
    def __le__(self, o): return _ufunc("less_equal")(self, o)
    def __gt__(self, o): return _ufunc("greater")(self, o)
    def __ge__(self, o): return _ufunc("greater_equal")(self, o)

    def _inplace(self, name: str, other):
        _ufunc(name)(self, other, out=self)
        return self

    def __iadd__(self, o): return self._inplace("add", o)
    def __isub__(self, o): return self._inplace("subtract", o)
    def __imul__(self, o): return self._inplace("multiply", o)
    def __itruediv__(self, o): return self._inplace("true_divide", o)
    def __ifloordiv__(self, o): return self._inplace("floor_divide", o)
    def __ipow__(self, o): return self._inplace("power", o)
    def __iand__(self, o): return self._inplace("bitwise_and", o)
    def __ior__(self, o): return self._inplace("bitwise_or", o)
