"""Write minircnn/testing/cupy_names.json: the names CuPy has, for the fake-CuPy shim.

Run with CuPy installed (it imports without a GPU): ``pip install cupy-cuda12x`` then
``python scripts/cupy_names.py [more.json ...]``. Each extra argument is a file this
script wrote earlier under another CuPy version: the committed list keeps only the names
(and keyword arguments) that every version has, so code that passes the shim runs on all.
"""

import inspect
import json
import re
import sys
from pathlib import Path

import cupy
import cupyx

OUT = Path(__file__).resolve().parent.parent / "minircnn" / "testing" / "cupy_names.json"
NAMESPACES = {  # what the shim exposes: the modules minircnn's code may reach
    "cupy": cupy,
    "cupy.linalg": cupy.linalg,
    "cupy.random": cupy.random,
    "cupy.lib.stride_tricks": cupy.lib.stride_tricks,
    "cupyx": cupyx,
}


def describe(obj):
    """{"kind": ..., "params": [names] or None (signature not introspectable)}."""
    if isinstance(obj, cupy.ufunc):
        return {"kind": "ufunc", "params": None}
    if inspect.ismodule(obj):
        return {"kind": "module", "params": None}
    if inspect.isclass(obj):
        return {"kind": "class", "params": None}
    if not callable(obj):
        return {"kind": "value", "params": None}
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):  # compiled (Cython) functions
        return {"kind": "function", "params": None}
    kinds = {p.kind for p in sig.parameters.values()}
    if inspect.Parameter.VAR_KEYWORD in kinds:  # **kwargs: any keyword may be valid
        return {"kind": "function", "params": None}
    return {"kind": "function", "params": list(sig.parameters)}


def method_params(method):
    """Parameter names of a compiled ndarray method, from its docstring's signature line
    ("_ndarray_base.max(self, axis=None, out=None, keepdims=False) -> ..."); None when
    it has none or takes **kwargs."""
    match = re.match(r"\s*[\w.]+\((.*?)\)", method.__doc__ or "")
    if not match:
        return None
    names = []
    for part in match.group(1).split(","):
        part = part.split("=")[0].strip()
        if part.startswith("**"):
            return None
        name = part.lstrip("*").split()[-1] if part.lstrip("*") else ""
        if name and name != "self":
            names.append(name)
    return names


def snapshot():
    spaces = {}
    for label, module in NAMESPACES.items():
        names = [n for n in dir(module) if not n.startswith("_") and n != "annotations"]
        spaces[label] = {n: describe(getattr(module, n)) for n in names}
    spaces["ndarray"] = {}
    for n in dir(cupy.ndarray):
        if not n.startswith("_"):
            attr = getattr(cupy.ndarray, n)
            params = method_params(attr) if callable(attr) else None
            spaces["ndarray"][n] = {"kind": "method" if callable(attr) else "attribute",
                                    "params": params}
    return {"versions": [cupy.__version__], "namespaces": spaces}


def intersect(a, b):
    """Names in both snapshots; keyword lists cut down to the ones both accept."""
    out = {"versions": sorted(set(a["versions"]) | set(b["versions"])), "namespaces": {}}
    for label, names in a["namespaces"].items():
        other = b["namespaces"].get(label, {})
        kept = {}
        for name in sorted(set(names) & set(other)):
            pa, pb = names[name]["params"], other[name]["params"]
            params = None if pa is None or pb is None else [p for p in pa if p in pb]
            kept[name] = {"kind": names[name]["kind"], "params": params}
        out["namespaces"][label] = kept
    return out


def main():
    result = snapshot()
    for path in sys.argv[1:]:
        result = intersect(result, json.loads(Path(path).read_text()))
    OUT.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    counts = {k: len(v) for k, v in result["namespaces"].items()}
    print(f"wrote {OUT} (CuPy {', '.join(result['versions'])}): {counts}")


if __name__ == "__main__":
    main()
