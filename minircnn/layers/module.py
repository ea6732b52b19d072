"""Parameter, Module and Sequential: the thin object layer over the functional ops.

There is no autograd. A Module's ``forward`` calls an ``op_forward`` function and keeps
its cache; ``backward`` calls ``op_backward``, *accumulates* the parameter gradients
into ``param.grad`` (``+=``, as micrograd does for fan-out) and returns ``dx``. Models
chain these calls explicitly, in reverse order, so a debugger steps through each one.

Sub-modules and parameters are found by looking at the attributes of a module (in the
order they were assigned), including lists and tuples of modules. Non-trainable state
that must be saved (BatchNorm running statistics) is declared with ``register_buffer``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np

from minircnn.backend import asnumpy, get_array_module


class Parameter:
    """A trainable array and its accumulated gradient.

    Attributes:
        data: the value (any shape).
        grad: same shape as ``data``; backward passes add into it, zero_grad() clears it.
        requires_grad: False freezes it: optimizers skip it and modules do not
            accumulate into ``grad``.
        lr_mult, decay_mult: per-parameter multipliers of the optimizer's learning rate
            and weight decay (Caffe's ``lr_mult`` / ``decay_mult``; Fast R-CNN trains
            biases at 2x the learning rate with no decay).
    """

    def __init__(self, data, grad=None, *, requires_grad: bool = True,
                 lr_mult: float = 1.0, decay_mult: float = 1.0):
        xp = get_array_module(data)
        self.data = data
        self.grad = xp.zeros_like(data) if grad is None else grad
        self.requires_grad = requires_grad
        self.lr_mult = lr_mult
        self.decay_mult = decay_mult

    # zero_grad() only marks the gradient as zero; the first accumulate() then takes g as
    # the gradient (0 + g = g) instead of clearing the array and adding g to it: no pass
    # over the gradient at all where g is a fresh array it can keep, one copy otherwise.
    # Reading ``grad`` clears a pending zero.
    @property
    def grad(self):
        if self._zero_pending:
            self._grad[...] = 0
            self._zero_pending = False
        return self._grad

    @grad.setter
    def grad(self, value) -> None:
        self._grad = value
        self._zero_pending = False

    def zero_grad(self) -> None:
        """Make ``grad`` zero (lazily: see above)."""
        self._zero_pending = True

    @property
    def shape(self) -> tuple:
        return self.data.shape

    def accumulate(self, g) -> None:
        """``grad += g`` unless frozen (a frozen parameter's grad stays zero).

        Right after zero_grad() the sum is g itself: a fresh array of the gradient's
        shape, dtype and layout becomes ``grad`` (no copy), so the caller hands g over
        and must not write to it afterwards (a backward pass returns fresh arrays).
        Anything else (a view, another dtype) is copied into ``grad``.
        """
        if not self.requires_grad:
            return
        if self._zero_pending and _can_keep(g, self._grad):
            self.grad = g                        # grad was zero: 0 + g is g (kept)
        elif self._zero_pending:
            self._grad[...] = g                  # the same, copied into grad's array
            self._zero_pending = False
        else:
            self._grad += g

    def __repr__(self) -> str:
        frozen = "" if self.requires_grad else ", frozen"
        return f"Parameter(shape={tuple(self.data.shape)}, dtype={self.data.dtype}{frozen})"


def _can_keep(g, grad) -> bool:
    """Whether ``g`` can become the gradient in place of ``grad``: an array of the same
    type, shape and dtype, C-contiguous, owning its memory (not a view of another)."""
    return (type(g) is type(grad) and g.shape == grad.shape and g.dtype == grad.dtype
            and g.base is None and g.flags.c_contiguous)


class Module:
    """Base class: parameter discovery, state_dict, train/eval mode, zero_grad.

    Subclasses set attributes in ``__init__`` and implement ``forward``/``backward``.
    """

    training: bool = True
    # False when nothing below this layer reads its input gradient (the first trainable
    # layer above frozen ones; set by e.g. SmallVGG.freeze_blocks): backward skips dx.
    needs_input_grad: bool = True
    # False inside ``no_grad(model)``: no backward follows, so no layer keeps a cache.
    grad_enabled: bool = True

    def register_buffer(self, name: str, value) -> None:
        """Declare saved, non-trainable state (e.g. BatchNorm running_mean)."""
        names = self.__dict__.setdefault("_buffer_names", [])
        if name not in names:
            names.append(name)
        setattr(self, name, value)

    # --- discovery -------------------------------------------------------------------
    def named_children(self) -> Iterator[tuple[str, Module]]:
        """Direct sub-modules, in assignment order; list items are named ``attr.i``."""
        for name, value in vars(self).items():
            if isinstance(value, Module):
                yield name, value
            elif isinstance(value, (list, tuple)):
                for i, item in enumerate(value):
                    if isinstance(item, Module):
                        yield f"{name}.{i}", item

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        """All parameters, depth first, with dotted names such as ``head.fc6.w``."""
        for name, value in vars(self).items():
            if isinstance(value, Parameter):
                yield prefix + name, value
        for name, child in self.named_children():
            yield from child.named_parameters(prefix + name + ".")

    def parameters(self) -> list[Parameter]:
        """Each parameter once, also one reached by two names (a shared layer): an
        optimizer steps it once per step (as torch's ``parameters()``)."""
        unique = {id(p): p for _, p in self.named_parameters()}
        return list(unique.values())

    def named_buffers(self, prefix: str = "") -> Iterator[tuple[str, object]]:
        for name in self.__dict__.get("_buffer_names", []):
            yield prefix + name, getattr(self, name)
        for name, child in self.named_children():
            yield from child.named_buffers(prefix + name + ".")

    def modules(self) -> Iterator[Module]:
        """This module and every one below it, each once (a shared layer too)."""
        seen = set()

        def walk(module: Module) -> Iterator[Module]:
            if id(module) in seen:
                return
            seen.add(id(module))
            yield module
            for _, child in module.named_children():
                yield from walk(child)
        yield from walk(self)

    # --- modes and gradients ---------------------------------------------------------
    def train(self, mode: bool = True) -> Module:
        """Set training mode (dropout active, BatchNorm uses batch statistics)."""
        for m in self.modules():
            m.training = mode
        return self

    def eval(self) -> Module:
        return self.train(False)

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.zero_grad()

    def is_frozen(self) -> bool:
        """True when no backward will run through this layer: no trainable parameter and
        no input gradient wanted. Such a layer keeps no forward cache (in any mode)."""
        if not self.grad_enabled:
            return True
        return not self.needs_input_grad and not any(p.requires_grad for p in self.parameters())

    def freeze(self) -> Module:
        """Mark every parameter ``requires_grad = False`` (optimizers skip them)."""
        for p in self.parameters():
            p.requires_grad = False
        return self

    def unfreeze(self) -> Module:
        for p in self.parameters():
            p.requires_grad = True
        return self

    # --- state -------------------------------------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        """{name: NumPy copy} of every parameter and buffer (host memory, for saving)."""
        state = {name: asnumpy(p.data).copy() for name, p in self.named_parameters()}
        for name, value in self.named_buffers():
            state[name] = asnumpy(value).copy()
        return state

    def load_state_dict(self, state: dict, strict: bool = True) -> None:
        """Copy arrays from ``state`` into parameters and buffers, in place.

        Raises:
            ValueError: names missing or unexpected (when ``strict``), or shapes that
                differ; the message lists every difference.
        """
        params = dict(self.named_parameters())
        buffers = dict(self.named_buffers())
        expected = set(params) | set(buffers)
        problems = []
        missing = sorted(expected - set(state))
        unexpected = sorted(set(state) - expected)
        if strict and missing:
            problems.append(f"missing keys: {missing}")
        if strict and unexpected:
            problems.append(f"unexpected keys: {unexpected}")
        for name in sorted(expected & set(state)):
            have = params[name].data.shape if name in params else np.shape(buffers[name])
            got = np.shape(state[name])
            if tuple(have) != tuple(got):
                problems.append(f"{name}: expected shape {tuple(have)}, got {tuple(got)}")
        if problems:
            raise ValueError("load_state_dict: " + "; ".join(problems))
        for name in expected & set(state):
            if name in params:
                p = params[name]
                xp = get_array_module(p.data)
                p.data[...] = xp.asarray(state[name], dtype=p.data.dtype)
            else:
                self._set_buffer(name, state[name])

    def _set_buffer(self, dotted: str, value) -> None:
        *path, leaf = dotted.split(".")
        owner = self
        i = 0
        while i < len(path):  # walk "layers.3.bn" through attributes and list items
            attr = getattr(owner, path[i])
            if isinstance(attr, (list, tuple)):
                owner = attr[int(path[i + 1])]
                i += 2
            else:
                owner = attr
                i += 1
        old = getattr(owner, leaf)
        xp = get_array_module(old)
        old[...] = xp.asarray(value, dtype=old.dtype)

    def to(self, device: str) -> Module:
        """Move every parameter, gradient and buffer to "cpu" or "gpu" (in place)."""
        from minircnn.backend import to_device

        for p in self.parameters():
            p.data = to_device(p.data, device)
            p.grad = to_device(p.grad, device)
        for m in self.modules():
            for name in m.__dict__.get("_buffer_names", []):
                setattr(m, name, to_device(getattr(m, name), device))
        return self

    # --- the interface subclasses implement --------------------------------------------
    def forward(self, *args):
        raise NotImplementedError(f"{type(self).__name__} does not implement forward")

    def backward(self, dout):
        raise NotImplementedError(f"{type(self).__name__} does not implement backward")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def __repr__(self) -> str:
        children = list(self.named_children())
        if not children:
            return f"{type(self).__name__}()"
        lines = [f"  ({n}): " + repr(c).replace("\n", "\n  ") for n, c in children]
        return f"{type(self).__name__}(\n" + "\n".join(lines) + "\n)"


@contextlib.contextmanager
def no_grad(model):
    """Within the block no backward will follow (test time, as ``torch.no_grad``): every
    layer of ``model`` computes its output only (no caches, no argmax or ReLU masks).
    A model that is not a Module is left as it is."""
    modules = list(model.modules()) if isinstance(model, Module) else []
    before = [m.__dict__.get("grad_enabled") for m in modules]
    for m in modules:
        m.grad_enabled = False
    try:
        yield model
    finally:
        for m, value in zip(modules, before, strict=True):
            if value is None:
                del m.grad_enabled            # back to the class default
            else:
                m.grad_enabled = value


class Sequential(Module):
    """Modules applied in order; backward runs them in reverse order."""

    def __init__(self, *layers: Module):
        self.layers = list(layers)

    def forward(self, x):
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def backward(self, dout):
        for layer in reversed(self.layers):
            dout = layer.backward(dout)
        return dout

    def __getitem__(self, i: int) -> Module:
        return self.layers[i]

    def __len__(self) -> int:
        return len(self.layers)


class OpModule(Module):
    """A layer whose op has several versions ("fast", "naive", ...): the one switch.

    ``IMPLS`` maps each version's name to its (op_forward, op_backward) pair. Setting
    ``impl`` looks the pair up once and keeps it as ``self.op_forward`` and
    ``self.op_backward``, so ``forward`` and ``backward`` call the op directly: in a
    debugger, ``s`` on ``self.op_backward(dout, self._cache)`` lands in the op's first
    line. ``impl`` may change between a forward and its backward: the versions of an op
    keep interchangeable caches.
    """

    IMPLS: dict = {}   # impl name -> (op_forward, op_backward)
    _cache = None      # what the last forward kept for backward; None: no forward yet

    @property
    def impl(self) -> str:
        """The name of the version that runs (a key of IMPLS)."""
        return self._impl

    @impl.setter
    def impl(self, name: str) -> None:
        if name not in self.IMPLS:
            names = ", ".join(repr(version) for version in self.IMPLS)
            raise ValueError(f"{type(self).__name__}: impl must be one of {names}, got {name!r}")
        self._impl = name
        self.op_forward, self.op_backward = self.IMPLS[name]


def no_forward_error(module: Module) -> RuntimeError:
    """The error of a backward called before any forward (there is no cache yet)."""
    return RuntimeError(f"{type(module).__name__}.backward called before forward (or "
                        f"after the forward of a frozen layer, which keeps no cache)")
