"""Checkpoints: one ``.npz`` holding a model's ``state_dict`` and a JSON config.

Four calls: ``save_checkpoint(model, path, config)`` writes one; ``load_checkpoint(path)``
rebuilds the model it holds; ``read_checkpoint(path)`` returns what the file holds
(weights, model spec, config, training state) without building anything; and
``register_model(cls)`` lets checkpoints rebuild a class of your own.

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
final name).

Loading treats the file as untrusted. It never imports or runs code the file names:
the model's class is looked up by name in an explicit registry (the package's models,
plus any a program adds with :func:`register_model`). It reads the archive's headers
before any data (see archive.py) and refuses, saying what differs:

- a config that implies more than ``MAX_PARAMETERS`` values (checked before building);
- saved names, shapes or dtypes that differ from the rebuilt model's ``state_dict``;
- an entry that would unpack to more than its header describes (a zip bomb), or
  training state (``extra/``) larger than ``EXTRA_FACTOR`` times the weights;
- an entry outside ``param/``, ``extra/`` and ``meta.json``, or one that is not numbers
  (strings, records), or weights of more than ``MAX_PARAMETERS`` float64s in bytes: so
  reading a file allocates at most what its model needs, decided from the headers;
- a model spec edited after saving (its SHA-256, saved beside it, differs: a checkpoint
  whose RoIAlign was changed to RoI pooling by hand would otherwise load silently);
- weights holding NaN or inf (a diverged run), named.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from minircnn.backend import asnumpy
from minircnn.layers.module import Module
from minircnn.utils.archive import read_directory, read_entries
from minircnn.utils.fileio import atomic_write

FORMAT = 1
MAX_PARAMETERS = 50_000_000   # values in a model's state_dict (200 MB in float32)
EXTRA_FACTOR = 4              # training state may hold up to 4x the weights (+ 1 MiB)
MAX_META_BYTES = 1 << 20      # meta.json: a JSON string of at most 1 MiB
MAX_WEIGHT_BYTES = 8 * MAX_PARAMETERS   # weights read: at most MAX_PARAMETERS float64s
NUMBER_KINDS = "biuf"         # bool, integer, unsigned, float: what an entry may hold

# name -> (class, parameter counter or None); see register_model.
_REGISTRY: dict[str, tuple[type, Callable | None]] = {}


class Checkpoint(NamedTuple):
    """Everything ``read_checkpoint`` finds in a file."""
    state: dict          # {name: np.ndarray}: the model's state_dict
    model_spec: dict     # {"class", "module", "kwargs"}: how to rebuild the model
    config: dict         # free-form JSON config saved with it (e.g. the TrainConfig)
    extra: dict          # training state: arrays and JSON values, for --resume


def _model_spec(model: Module, kwargs: dict | None = None) -> dict:
    """``{"class", "module", "kwargs"}`` for ``model`` (nested specs for sub-models).

    Raises:
        TypeError: the model has no ``get_config()`` and no ``kwargs`` were given.
    """
    if kwargs is None:
        if not hasattr(model, "get_config"):
            raise TypeError(f"save_checkpoint: {type(model).__name__} has no get_config(); "
                            "pass its constructor kwargs as config=...")
        kwargs = model.get_config()
    encoded = {k: _model_spec(v) if isinstance(v, Module) else v for k, v in kwargs.items()}
    return {"class": type(model).__name__, "module": type(model).__module__, "kwargs": encoded}


def register_model(cls: type, *, name: str | None = None,
                   count_parameters: Callable[[dict], int] | None = None) -> type:
    """Allow checkpoints to rebuild ``cls`` (a Module subclass) under ``name``.

    Loading only ever builds registered classes, looked up by the class name saved in
    the file; the module path saved beside it is informational and never imported.

    Args:
        cls: the class.  name: the name saved in files (default ``cls.__name__``).
        count_parameters: kwargs (nested specs already counted, as ints) -> the number
            of values the built model holds, used to refuse absurd configs before
            building. None: no check (the class's own arguments are trusted).
    Returns:
        ``cls`` (usable as a decorator).
    """
    if not (isinstance(cls, type) and issubclass(cls, Module)):
        raise TypeError(f"register_model: cls must be a Module subclass, got {cls!r}")
    _REGISTRY[name or cls.__name__] = (cls, count_parameters)
    return cls


def _build_model(spec: dict) -> Module:
    """Instantiate a model from a ``_model_spec`` dict (nested specs are built first).

    Raises:
        ValueError: the spec is malformed, names an unregistered class, or implies more
            than ``MAX_PARAMETERS`` values.
    """
    count = _count_parameters(spec)
    if count > MAX_PARAMETERS:
        raise ValueError(f"model {spec['class']!r} with {spec['kwargs']} would hold {count:,} "
                         f"values, more than the {MAX_PARAMETERS:,} a checkpoint may build")
    return _build(spec)


def _build(spec: dict) -> Module:
    cls, _ = _lookup(spec)
    kwargs = {k: _build(v) if _is_spec(v) else v for k, v in spec["kwargs"].items()}
    return cls(**kwargs)


def _count_parameters(spec: dict) -> int:
    """Values (parameters and buffers) the model of ``spec`` would hold, without building
    it; 0 for a class registered without a counter. Raises ValueError when malformed."""
    _, counter = _lookup(spec)
    nested = sum(_count_parameters(v) for v in spec["kwargs"].values() if _is_spec(v))
    if counter is None:
        return nested
    try:
        return nested + int(counter(spec["kwargs"]))
    except (TypeError, ValueError, KeyError, IndexError, OverflowError) as e:
        raise ValueError(f"model {spec['class']!r}: malformed config {spec['kwargs']}: "
                         f"{e}") from e


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
    spec = _model_spec(model, None if own_config else dict(config))
    extra = dict(extra or {})
    arrays = {f"param/{k}": v for k, v in model.state_dict().items()}
    extra_json = {}
    for key, value in extra.items():
        if isinstance(value, np.ndarray) or type(value).__module__.startswith("cupy"):
            arrays[f"extra/{key}"] = asnumpy(value)
        else:
            extra_json[key] = value
    meta = {"format": FORMAT, "model": spec, "spec_sha256": _spec_hash(spec),
            "config": config or {}, "extra_json": extra_json}
    arrays["meta.json"] = np.array(json.dumps(meta))
    with atomic_write(path, "wb") as f:
        np.savez(f, **arrays)
    return path


def read_checkpoint(path, *, arrays: bool = True) -> Checkpoint:
    """Read a checkpoint file without building the model.

    The archive's headers are checked first: only ``param/``, ``extra/`` and
    ``meta.json`` entries, all of numbers; weights of at most ``MAX_PARAMETERS`` values
    and ``MAX_WEIGHT_BYTES`` bytes, training state of at most ``EXTRA_FACTOR`` times
    that, no entry unpacking to more than its header describes.

    Args:
        arrays: False reads only meta.json: ``state`` is empty and ``extra`` holds the
            JSON values only (what ``minircnn eval`` needs to know the model's kind).
    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is not a readable minircnn checkpoint (truncated, corrupt,
            not an .npz, missing its ``meta.json``, too large); the message names the file.
    """
    path = os.fspath(path)
    directory, meta = _read_meta(path)
    if not arrays:
        return Checkpoint({}, meta["model"], meta.get("config", {}),
                          dict(meta.get("extra_json", {})))
    return _checkpoint(path, directory, meta)


def _read_meta(path: str) -> tuple[dict, dict]:
    """The archive's directory (headers only) and its parsed meta.json."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {path!r}: no such file")
    directory = read_directory(path, "checkpoint")
    entry = directory.get("meta.json")
    if entry is None:
        raise ValueError(f"checkpoint {path!r} has no meta.json entry: not a minircnn checkpoint")
    if entry.nbytes > MAX_META_BYTES or entry.shape != ():
        raise ValueError(f"checkpoint {path!r}: meta.json must be one string of at most "
                         f"{MAX_META_BYTES} bytes, got {entry.dtype} {entry.shape}")
    try:
        meta = json.loads(str(read_entries(path, ["meta.json"], "checkpoint")["meta.json"]))
        spec = meta["model"]
        _check_spec(spec)
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"checkpoint {path!r}: meta.json is unreadable: {e}") from e
    if meta.get("format") != FORMAT:
        raise ValueError(f"checkpoint {path!r}: format {meta.get('format')!r}, expected {FORMAT}")
    saved_hash = meta.get("spec_sha256")        # absent in checkpoints from before it
    if saved_hash is not None and saved_hash != _spec_hash(spec):
        raise ValueError(f"checkpoint {path!r}: its model spec was edited after saving "
                         f"(class {spec['class']}, kwargs {spec['kwargs']} no longer match "
                         "the checksum saved with the weights); the weights belong to the "
                         "model as saved")
    _check_entries(path, directory)
    return directory, meta


def _spec_hash(spec: dict) -> str:
    """SHA-256 of the model spec's canonical JSON (sorted keys)."""
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


def _check_entries(path: str, directory: dict) -> None:
    """From headers only: known names, numbers only, and sizes a model can need."""
    for name, entry in directory.items():
        if name != "meta.json" and not name.startswith(("param/", "extra/")):
            raise ValueError(f"checkpoint {path!r}: unexpected entry {name!r} (a checkpoint "
                             "holds param/, extra/ and meta.json only)")
        if name != "meta.json" and entry.dtype.kind not in NUMBER_KINDS:
            raise ValueError(f"checkpoint {path!r}: entry {name!r} holds {entry.dtype} "
                             "values, not numbers")
    params = [e for k, e in directory.items() if k.startswith("param/")]
    values = sum(math.prod(e.shape) for e in params)
    if values > MAX_PARAMETERS or sum(e.nbytes for e in params) > MAX_WEIGHT_BYTES:
        raise ValueError(f"checkpoint {path!r} holds {values:,} weight values in "
                         f"{sum(e.nbytes for e in params):,} bytes, more than the "
                         f"{MAX_PARAMETERS:,} values ({MAX_WEIGHT_BYTES:,} bytes) a "
                         "checkpoint may hold")
    _check_extra_size(path, directory)


def _check_extra_size(path: str, directory: dict) -> None:
    weights = sum(e.nbytes for k, e in directory.items() if k.startswith("param/"))
    extra = sum(e.nbytes for k, e in directory.items() if not k.startswith("param/"))
    if extra > EXTRA_FACTOR * weights + (1 << 20):
        raise ValueError(f"checkpoint {path!r}: its training state unpacks to {extra:,} bytes, "
                         f"more than {EXTRA_FACTOR}x its {weights:,} bytes of weights")


def _checkpoint(path: str, directory: dict, meta: dict) -> Checkpoint:
    files = read_entries(path, [k for k in directory if k != "meta.json"], "checkpoint")
    state = {k[len("param/"):]: v for k, v in files.items() if k.startswith("param/")}
    extra = {k[len("extra/"):]: v for k, v in files.items() if k.startswith("extra/")}
    extra.update(meta.get("extra_json", {}))
    return Checkpoint(state, meta["model"], meta.get("config", {}), extra)


def load_checkpoint(path, *, device: str = "cpu") -> Module:
    """Rebuild the model saved at ``path`` and load its weights.

    Order: headers and meta.json; the config's size (``MAX_PARAMETERS``); build the
    registered class; compare the saved names, shapes and dtypes with its state_dict;
    only then read the data.

    Raises:
        FileNotFoundError / ValueError: as ``read_checkpoint``; ValueError also when the
            class is not registered or the saved arrays differ from the rebuilt model's
            (each difference listed).
    """
    path = os.fspath(path)
    directory, meta = _read_meta(path)
    try:
        model = _build_model(meta["model"])
    except (TypeError, ValueError, KeyError) as e:
        raise ValueError(f"checkpoint {path!r}: cannot rebuild model "
                         f"{meta['model'].get('class')!r}: {e}") from e
    _compare_headers(path, model, directory)
    state = read_entries(path, [k for k in directory if k.startswith("param/")], "checkpoint")
    for name, value in state.items():
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            raise ValueError(f"checkpoint {path!r}: weight {name[len('param/'):]!r} holds NaN "
                             "or inf (saved from a diverged run?); use an earlier checkpoint")
    model.load_state_dict({k[len("param/"):]: v for k, v in state.items()})  # checked above
    if device != "cpu":
        model.to(device)
    return model


def _compare_headers(path: str, model: Module, directory: dict) -> None:
    """Saved param/ names, shapes, dtypes == the model's state_dict, from headers only."""
    want = {k: (tuple(v.shape), np.dtype(v.dtype)) for k, v in model.state_dict().items()}
    have = {k[len("param/"):]: (e.shape, e.dtype) for k, e in directory.items()
            if k.startswith("param/")}
    missing = sorted(set(want) - set(have))
    unexpected = sorted(set(have) - set(want))
    problems = ([f"missing keys: {missing}"] if missing else []) + \
        ([f"unexpected keys: {unexpected}"] if unexpected else [])
    for k in sorted(set(want) & set(have)):
        if have[k][0] != want[k][0]:
            problems.append(f"{k}: expected shape {want[k][0]}, got {have[k][0]}")
        elif have[k][1] != want[k][1]:
            problems.append(f"{k}: expected dtype {want[k][1]}, got {have[k][1]}")
    if problems:
        raise ValueError(f"checkpoint {path!r} does not match {type(model).__name__}: "
                         + "; ".join(problems))


def _is_spec(value) -> bool:
    return isinstance(value, dict) and set(value) == {"class", "module", "kwargs"}


def _check_spec(spec) -> None:
    if not (isinstance(spec, dict) and isinstance(spec.get("class"), str)
            and isinstance(spec.get("kwargs"), dict)):
        raise ValueError(f"model spec must be {{'class': str, 'module': str, 'kwargs': dict}}, "
                         f"got {spec!r:.200}")
    for value in spec["kwargs"].values():
        if _is_spec(value):
            _check_spec(value)


def _lookup(spec: dict) -> tuple[type, Callable | None]:
    """The registered class (and counter) named by ``spec``; nothing is imported."""
    _check_spec(spec)
    _register_builtin_models()
    found = _REGISTRY.get(spec["class"])
    if found is None:
        raise ValueError(f"unknown model class {spec['class']!r}; a checkpoint can rebuild "
                         f"{sorted(_REGISTRY)} (programs add theirs with register_model)")
    return found


def _register_builtin_models() -> None:
    """The package's models, registered on first use (models import this module)."""
    if "FastRCNN" in _REGISTRY:
        return
    from minircnn.models import sizes
    from minircnn.models.backbones import SmallVGG, VGGClassifier
    from minircnn.models.fast_rcnn import FastRCNN
    from minircnn.models.faster_rcnn import FasterRCNN
    from minircnn.models.rcnn import RCNN, SPPNet
    from minircnn.models.resnet import MiniResNet, ResNetBackbone
    from minircnn.models.rpn import RegionProposalNetwork

    register_model(SmallVGG, count_parameters=sizes.small_vgg)
    register_model(VGGClassifier, count_parameters=sizes.vgg_classifier)
    register_model(MiniResNet, count_parameters=sizes.mini_resnet)
    register_model(ResNetBackbone, count_parameters=sizes.resnet_backbone)
    register_model(FastRCNN, count_parameters=sizes.fast_rcnn)
    register_model(RCNN, count_parameters=sizes.rcnn)
    register_model(SPPNet, count_parameters=sizes.spp_net)
    register_model(RegionProposalNetwork, count_parameters=sizes.rpn)
    register_model(FasterRCNN)                  # its two parts are counted themselves
