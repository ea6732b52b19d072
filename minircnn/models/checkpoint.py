"""Checkpoints: one ``.npz`` holding a model's ``state_dict`` and a JSON config.

File layout (``np.load(path)`` shows it):

- ``param/<name>``: every array of ``model.state_dict()`` (parameters and buffers);
- ``meta.json``: a JSON string ``{"format": 1, "model": SPEC, "config": {...},
  "extra_json": {...}}`` where ``SPEC = {"class": "FastRCNN", "module":
  "minircnn.models.fast_rcnn", "kwargs": {...}}`` is enough to rebuild the model
  (a kwarg that is itself a SPEC, such as FastRCNN's backbone, is rebuilt first);
- ``extra/<name>``: optional arrays of training state (momentum buffers, RNG state)
  saved alongside for ``--resume``; JSON-able extra values go to ``extra_json``.

A model describes its constructor arguments with ``get_config() -> dict``. A model
without one can still be saved by passing those kwargs as ``config``.

Files are written atomically: to a temporary file in the same directory, then
``os.replace`` (a crash mid-write never leaves a half-written checkpoint under the
final name). Loading checks the file, the names and the shapes and says what differs.
"""

from __future__ import annotations

import importlib
import json
import os
import zipfile
from typing import Any, NamedTuple

import numpy as np

from minircnn.backend import asnumpy
from minircnn.fileio import atomic_write
from minircnn.layers.module import Module

FORMAT = 1


class Checkpoint(NamedTuple):
    """Everything ``read_checkpoint`` finds in a file."""
    state: dict          # {name: np.ndarray}: the model's state_dict
    model_spec: dict     # {"class", "module", "kwargs"}: how to rebuild the model
    config: dict         # free-form JSON config saved with it (e.g. the TrainConfig)
    extra: dict          # training state: arrays and JSON values, for --resume


def model_spec(model: Module, kwargs: dict | None = None) -> dict:
    """``{"class", "module", "kwargs"}`` for ``model`` (nested specs for sub-models).

    Raises:
        TypeError: the model has no ``get_config()`` and no ``kwargs`` were given.
    """
    if kwargs is None:
        if not hasattr(model, "get_config"):
            raise TypeError(f"save_checkpoint: {type(model).__name__} has no get_config(); "
                            "pass its constructor kwargs as config=...")
        kwargs = model.get_config()
    encoded = {k: model_spec(v) if isinstance(v, Module) else v for k, v in kwargs.items()}
    return {"class": type(model).__name__, "module": type(model).__module__, "kwargs": encoded}


def build_model(spec: dict) -> Module:
    """Instantiate a model from a ``model_spec`` dict (nested specs are built first)."""
    cls = _find_class(spec["class"], spec.get("module", ""))
    kwargs = {k: build_model(v) if _is_spec(v) else v for k, v in spec["kwargs"].items()}
    return cls(**kwargs)


def save_checkpoint(model: Module, path, config: dict | None = None, *,
                    extra: dict | None = None) -> str:
    """Write ``model``'s weights and config to ``path`` (.npz) atomically.

    Args:
        model: the Module; its ``get_config()`` (constructor kwargs) is saved so that
            ``load_checkpoint`` can rebuild it.
        path: destination file; its directory is created if needed.
        config: JSON-able dict saved with the weights (e.g. the training config). For a
            model without ``get_config()``, these are taken as its constructor kwargs.
        extra: training state for resuming: {name: np.ndarray or JSON-able value}.
    Returns:
        the path written.
    """
    path = os.fspath(path)
    own_config = hasattr(model, "get_config")
    if not own_config and config is None:
        raise TypeError(f"save_checkpoint: {type(model).__name__} has no get_config(); "
                        "pass its constructor kwargs as config=...")
    spec = model_spec(model, None if own_config else dict(config))
    extra = dict(extra or {})
    arrays = {f"param/{k}": v for k, v in model.state_dict().items()}
    extra_json = {}
    for key, value in extra.items():
        if isinstance(value, np.ndarray) or type(value).__module__.startswith("cupy"):
            arrays[f"extra/{key}"] = asnumpy(value)
        else:
            extra_json[key] = value
    meta = {"format": FORMAT, "model": spec, "config": config or {}, "extra_json": extra_json}
    arrays["meta.json"] = np.array(json.dumps(meta))
    with atomic_write(path, "wb") as f:
        np.savez(f, **arrays)
    return path


def read_checkpoint(path) -> Checkpoint:
    """Read a checkpoint file without building the model.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is not a readable minircnn checkpoint (truncated, corrupt,
            not an .npz, or missing its ``meta.json``); the message names the file.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {path!r}: no such file")
    try:
        with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as data:
            files = {name: data[name] for name in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as e:
        raise ValueError(f"checkpoint {path!r} is corrupt or truncated "
                         f"(not a readable .npz): {e}") from e
    if "meta.json" not in files:
        raise ValueError(f"checkpoint {path!r} has no meta.json entry: not a minircnn checkpoint")
    try:
        meta = json.loads(str(files.pop("meta.json")))
        spec = meta["model"]
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"checkpoint {path!r}: meta.json is unreadable: {e}") from e
    if meta.get("format") != FORMAT:
        raise ValueError(f"checkpoint {path!r}: format {meta.get('format')!r}, expected {FORMAT}")
    state = {k[len("param/"):]: v for k, v in files.items() if k.startswith("param/")}
    extra = {k[len("extra/"):]: v for k, v in files.items() if k.startswith("extra/")}
    extra.update(meta.get("extra_json", {}))
    return Checkpoint(state, spec, meta.get("config", {}), extra)


def load_checkpoint(path, *, device: str = "cpu") -> Module:
    """Rebuild the model saved at ``path`` and load its weights.

    Raises:
        FileNotFoundError / ValueError: as ``read_checkpoint``; ValueError also when the
            saved names or shapes differ from the rebuilt model's (each difference listed).
    """
    ckpt = read_checkpoint(path)
    try:
        model = build_model(ckpt.model_spec)
    except (TypeError, ValueError, KeyError, ImportError, AttributeError) as e:
        raise ValueError(f"checkpoint {os.fspath(path)!r}: cannot rebuild model "
                         f"{ckpt.model_spec.get('class')!r}: {e}") from e
    load_weights(model, ckpt.state, source=path)
    if device != "cpu":
        model.to(device)
    return model


def load_weights(model: Module, state: dict, *, source: Any = "state") -> None:
    """``model.load_state_dict(state)`` with an error message that names ``source``."""
    try:
        model.load_state_dict(state)
    except ValueError as e:
        raise ValueError(f"checkpoint {os.fspath(source)!r} does not match "
                         f"{type(model).__name__}: {e}") from e


def _is_spec(value) -> bool:
    return isinstance(value, dict) and set(value) == {"class", "module", "kwargs"}


def _find_class(name: str, module: str) -> type:
    """The Module class ``name``: from its saved module when inside minircnn (or a test
    module), else from the ``minircnn.models`` namespace."""
    if module.startswith("minircnn.") or module.startswith("tests."):
        cls = getattr(importlib.import_module(module), name, None)
        if isinstance(cls, type) and issubclass(cls, Module):
            return cls
    models = importlib.import_module("minircnn.models")
    cls = getattr(models, name, None)
    if isinstance(cls, type) and issubclass(cls, Module):
        return cls
    raise ValueError(f"unknown model class {name!r} (module {module!r}); known in "
                     f"minircnn.models: {sorted(n for n in dir(models) if n[0].isupper())}")
