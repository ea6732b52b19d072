"""A CuPy-shaped NumPy: runs the GPU code path on a machine without a GPU.

``MINIRCNN_FAKE_GPU=1`` makes minircnn.backend hand out this module in place of cupy, so
``to_device(x, "gpu")`` returns a ``fake_cupy.ndarray`` and every op that dispatches on
``get_array_module`` runs here. The arithmetic is NumPy's; what is CuPy's is what the
code may touch and what it may not:

- Only names CuPy has exist (cupy_names.json, generated from CuPy 13 and 14 by
  scripts/cupy_names.py); a keyword argument that CuPy's function or ndarray method
  lacks is a TypeError.
- The array refuses implicit conversion to host memory, as CuPy's does:
  ``np.asarray(x)`` and ``np.array(x)`` raise, NumPy functions on it dispatch to the
  fake module (``__array_function__``) and fail when CuPy lacks the function, and
  mixing it with a NumPy array in arithmetic raises. Explicit copies (``.get()``,
  ``asnumpy``, ``float(x)`` and ``int(x)`` of a one-element array, ``.tolist()``,
  ``.item()``) work, as on CuPy. Reductions and element indexing give 0-d arrays, not
  NumPy scalars, and there is no ``__index__`` (``range(x.max())`` fails on CuPy too).
- ufunc ``.at`` exists for add, subtract, maximum, minimum and the bitwise ops only,
  with CuPy's dtype limits (``add.at`` takes no int64); ``.reduceat`` for add only.
"""

from __future__ import annotations

import types

import numpy as np

from minircnn.testing.fake_ndarray import NAMES as _NAMES
from minircnn.testing.fake_ndarray import (
    _check_keywords,
    _host_error,
    _unwrap,
    _unwrap_kwargs,
    _wrap,
    ndarray,
)

VERSIONS = _NAMES["versions"]          # the CuPy versions the name list was taken from
_HOST_INPUT_OK = {"array", "asarray", "asanyarray", "ascontiguousarray", "asfortranarray"}

# CuPy's _scatter_op (cupy/_core/_routines_indexing.pyx): the dtypes its atomics support.
_AT_DTYPES = {
    "add": ("int32", "float16", "float32", "float64", "uint32", "uint64"),
    "subtract": ("int32", "uint32"),
    "maximum": ("int32", "float32", "float64", "uint32", "uint64"),
    "minimum": ("int32", "float32", "float64", "uint32", "uint64"),
    "bitwise_and": ("int32", "int64", "uint32", "uint64"),
    "bitwise_or": ("int32", "int64", "uint32", "uint64"),
    "bitwise_xor": ("int32", "int64", "uint32", "uint64"),
}


class ufunc:
    """A CuPy ufunc: call, reduce, accumulate, outer; ``at`` and ``reduceat`` as limited."""

    def __init__(self, np_ufunc: np.ufunc):
        self._u = np_ufunc
        self.__name__ = np_ufunc.__name__

    def __repr__(self) -> str:
        return f"<fake cupy ufunc '{self.__name__}'>"

    def _inputs(self, args):
        for a in args:
            if not isinstance(a, (ndarray, int, float, complex, bool, np.generic)):
                kind = f"{type(a).__module__}.{type(a).__name__}"
                raise _host_error(f"cupy.{self.__name__} got {kind} "
                                  "(CuPy's ufuncs take only cupy arrays and scalars)")
        return [_unwrap(a, self.__name__) for a in args]

    def __call__(self, *args, **kwargs):
        kw = _unwrap_kwargs(kwargs, f"cupy.{self.__name__}")
        return _wrap(self._u(*self._inputs(args), **kw))

    def reduce(self, a, *args, **kwargs):
        return _wrap(self._u.reduce(*self._inputs([a]), *args, **kwargs))

    def accumulate(self, a, *args, **kwargs):
        return _wrap(self._u.accumulate(*self._inputs([a]), *args, **kwargs))

    def outer(self, a, b, **kwargs):
        return _wrap(self._u.outer(*self._inputs([a, b]), **kwargs))

    def at(self, a, indices, b=None):
        """In-place unbuffered op; CuPy casts ``b`` to a.dtype then checks that dtype."""
        allowed = _AT_DTYPES.get(self.__name__)
        if allowed is None:
            raise NotImplementedError(f"`cupy_{self.__name__}.at` is not supported yet")
        if not isinstance(a, ndarray):
            raise _host_error(f"cupy.{self.__name__}.at target is {type(a).__name__}")
        if a.dtype.name not in allowed:
            raise TypeError(f"cupy.{self.__name__}.at only supports {', '.join(allowed)} "
                            f"as data type; got {a.dtype.name}")
        index = _unwrap(indices, "ufunc.at indices", host_ok=True)
        value = _unwrap(b, f"cupy.{self.__name__}.at value", host_ok=True)
        self._u.at(a._a, index, np.asarray(value).astype(a.dtype, copy=False))

    def reduceat(self, a, indices, axis=0, dtype=None, out=None):
        if self.__name__ != "add":
            raise NotImplementedError(f"`cupy_{self.__name__}.reduceat` is not supported yet")
        data, index = self._inputs([a, indices])
        return _wrap(self._u.reduceat(data, index, axis=axis, dtype=dtype))


def _function(label: str, name: str, np_func):
    """Wrap ``np_func`` as CuPy's ``label.name``: device arrays in, device arrays out."""
    host_ok = label == "cupy" and name in _HOST_INPUT_OK

    def call(*args, **kwargs):
        _check_keywords(label, name, kwargs)
        where = f"{label}.{name}"
        from_host = host_ok and bool(args) and not isinstance(args[0], ndarray)
        result = np_func(*_unwrap(args, where, host_ok), **_unwrap_kwargs(kwargs, where, host_ok))
        if from_host:                   # a host -> device copy: never shares host memory
            result = np.array(result, copy=True)
        return _wrap(result)

    call.__name__ = call.__qualname__ = name
    call.__doc__ = f"Fake {label}.{name}: NumPy's {name} on device-shaped arrays."
    return call


class _Namespace(types.SimpleNamespace):
    """A module-like object; a name CuPy lacks is an AttributeError naming it."""

    def __init__(self, label: str, **members):
        super().__init__(**members)
        self._label = label
        self.__name__ = label          # as a module's: "cupy", "cupy.linalg", ...

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        known = name in _NAMES["namespaces"].get(self._label, {})
        hint = "the fake does not model it" if known else f"{self._label} has no such name"
        raise AttributeError(f"module '{self._label}' has no attribute '{name}' ({hint})")

    def __repr__(self) -> str:
        return f"<fake module '{self._label}' (CuPy {', '.join(VERSIONS)} names)>"


def _members(label: str, np_module, specials: dict) -> dict:
    """Each name CuPy's ``label`` has and NumPy's ``np_module`` implements, wrapped."""
    out = {}
    for name, info in _NAMES["namespaces"][label].items():
        if name in specials:
            out[name] = specials[name]
        elif not hasattr(np_module, name) or info["kind"] == "module":
            continue                                # CuPy-only (kernels, fuse, ...)
        elif isinstance(getattr(np_module, name), np.ufunc):
            out[name] = ufunc(getattr(np_module, name))
        elif info["kind"] == "function" and callable(getattr(np_module, name)):
            out[name] = _function(label, name, getattr(np_module, name))
        else:                                       # dtypes, constants, finfo, ...
            out[name] = getattr(np_module, name)
    return out


def asnumpy(a, stream=None, order="C", out=None):
    """Copy to host: cupy.asnumpy (a NumPy array or scalar passes through as a copy)."""
    if isinstance(a, ndarray):
        return a.get()
    return np.asarray(a, order=order)


def get_array_module(*args):
    return module if any(isinstance(a, ndarray) for a in args) else np


def _scatter(np_ufunc_name: str):
    def scatter(a, slices, value):
        getattr(module, np_ufunc_name).at(a, slices, value)
    scatter.__name__ = f"scatter_{np_ufunc_name[:3]}"
    return scatter


stride_tricks = _Namespace("cupy.lib.stride_tricks",
                           **_members("cupy.lib.stride_tricks", np.lib.stride_tricks, {}))
lib = _Namespace("cupy.lib", stride_tricks=stride_tricks)
linalg = _Namespace("cupy.linalg", **_members("cupy.linalg", np.linalg, {}))
random = _Namespace("cupy.random", **_members("cupy.random", np.random, {}))
cupyx = _Namespace("cupyx", scatter_add=_scatter("add"), scatter_max=_scatter("maximum"),
                   scatter_min=_scatter("minimum"))
module = _Namespace("cupy", **_members("cupy", np, {
    "ndarray": ndarray, "asnumpy": asnumpy, "get_array_module": get_array_module,
    "linalg": linalg, "random": random, "lib": lib}))
module.VERSIONS = VERSIONS
ndarray._cupy = module           # what the array's operators dispatch to
