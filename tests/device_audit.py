"""Fail, on a CPU-only machine, where the course's code would fail beside a model on a GPU.

On CUDA, an op that mixes a CPU tensor (more than a scalar) with a GPU tensor raises "Expected
all tensors to be on the same device", and ``.numpy()`` of a GPU tensor raises too. On a CPU-only
machine everything is on the CPU, so nothing fails and the bug ships. This torch function mode
follows where each tensor's device came from:

- *placed* (on the model's device, whatever it is): anything moved with ``.to(<device or tensor>)``
  or ``.cuda()`` (a loaded model's parameters: ``load_model`` moves the model to its device),
  anything made with ``device=<a torch.device>``, and everything computed from a placed tensor;
- *stray* (on the CPU on every machine): anything the course's own code (``course/``,
  ``solutions/``) makes with a factory (``torch.zeros``, ``torch.tensor``, ``torch.arange``, …)
  without ``device=``, with ``torch.from_numpy``, with ``.cpu()``, or reads
  with ``torch.load`` and no ``map_location``; and everything computed from strays alone.

Tensors that tests make are neither: they stand for whatever a user passes in.

Where a placed tensor meets a stray one of one element or more, or a placed tensor is turned into
a NumPy array, the audit raises :class:`DeviceMismatch` (a ``RuntimeError``, as CUDA would) naming
the file and line that made the stray tensor and the one that mixed them. CUDA allows 0-dim CPU
tensors beside GPU ones, CPU index tensors in ``t[idx]`` and copies across devices, so those pass.
A ``torch.device`` counts as placed, the string ``"cpu"`` as stray (a literal: code that moves
to the model's device passes ``model.device`` or a tensor).
"""

from __future__ import annotations

import sys

import torch
from torch.overrides import TorchFunctionMode
import weakref

PLACED = "placed"

FACTORIES = {getattr(torch, n) for n in (
    "zeros", "ones", "empty", "full", "arange", "linspace", "logspace", "eye", "tensor", "as_tensor",
    "rand", "randn", "randint", "randperm", "normal", "tril_indices", "triu_indices", "scalar_tensor")}
MOVES = {torch.Tensor.to, torch.Tensor.cuda}
# CUDA accepts CPU index tensors (and copies CPU values in) for these.
INDEXING = {torch.Tensor.__getitem__, torch.Tensor.__setitem__, torch.Tensor.copy_}
TO_NUMPY = {torch.Tensor.numpy, torch.Tensor.__array__}
OURS = ("/course/", "/solutions/")
SKIP = ("/torch/", "/tests/device_audit.py", "/transformers/", "/contextlib.py", "/functools.py")


_LEAVES = (int, float, bool, str, type(None), torch.dtype, torch.device, slice, type(Ellipsis))


def _tensors(obj, out=None) -> list:
    """The tensors in an op's arguments or result (nested tuples, lists and dicts): a plain walk,
    several times cheaper than torch's pytree on every op."""
    out = [] if out is None else out
    if isinstance(obj, torch.Tensor):
        out.append(obj)
    elif isinstance(obj, (tuple, list)):
        for x in obj:
            if isinstance(x, torch.Tensor):
                out.append(x)
            elif not isinstance(x, _LEAVES):
                _tensors(x, out)
    elif isinstance(obj, dict):
        _tensors(tuple(obj.values()), out)
    return out


class _Labels:
    """tensor -> label by identity, forgotten when the tensor is freed. A dict on ``id`` with a
    weak reference's callback: lookups are plain dict lookups (torch's WeakIdKeyDictionary builds
    a weak reference for each one, a large share of the audit's cost on every op)."""

    def __init__(self):
        self._d: dict[int, tuple[str, weakref.ref]] = {}

    def get(self, t, default=None):
        entry = self._d.get(id(t))
        return entry[0] if entry is not None and entry[1]() is t else default

    def __contains__(self, t) -> bool:
        return self.get(t) is not None

    def __setitem__(self, t, label: str) -> None:
        key, d = id(t), self._d
        old = d.get(key)
        if old is not None and old[1]() is t:
            d[key] = (label, old[1])
            return
        d[key] = (label, weakref.ref(t, lambda ref, key=key: d.pop(key, None) if d.get(key, (0, ref))[1] is ref else None))

    def pop(self, t, default=None):
        if t in self:
            return self._d.pop(id(t))[0]
        return default


class DeviceMismatch(RuntimeError):
    pass


def _caller(ours_markers=OURS) -> tuple[str, bool]:
    """(file:line, whether it is the course's own code) of the innermost frame outside torch."""
    f = sys._getframe(2)
    while f is not None and any(s in f.f_code.co_filename for s in SKIP):
        f = f.f_back
    if f is None:
        return "?", False
    name = f.f_code.co_filename
    ours = next((m for m in ours_markers if m in name), None)
    short = (ours[1:] + name.split(ours, 1)[1]) if ours else name.rsplit("/", 1)[-1]
    return f"{short}:{f.f_lineno}", ours is not None


class DeviceAudit(TorchFunctionMode):
    """Labels tensors placed or stray (with the line that made them) and raises where they mix."""

    def __init__(self, raise_on_mismatch: bool = True, ours: tuple[str, ...] = OURS):
        """``ours``: path fragments of the code audited (the course's; a test names its own file)."""
        super().__init__()
        self.raise_on_mismatch = raise_on_mismatch
        self.ours = ours
        self.labels = _Labels()
        self.mismatches: list[str] = []
        self._patched = {}

    def _label(self, t):
        return self.labels.get(t)

    def _mark(self, out, label):
        if label is None:
            return
        for t in _tensors(out):
            if isinstance(t, torch.Tensor) and t not in self.labels:
                self.labels[t] = label

    def _moved(self, src, out, label):
        """Label a move's result. On the CPU a move is a no-op returning its input; a new alias then
        carries the new label, so the input keeps its own (``x.to(device)`` does not place ``x``).
        A parameter is labelled in place: ``model.to(device)`` moves the module's own tensors."""
        if out is src and not isinstance(src, torch.nn.Parameter):
            out = src.view_as(src)
        if label is None:
            self.labels.pop(out, None)
        else:
            self.labels[out] = label
        return out

    def _stray(self, out, force: bool = False):
        where, ours = _caller(self.ours)
        if force:   # what torch did inside (torch.load places what it rebuilds) does not count
            for t in _tensors(out):
                self.labels.pop(t, None)
        if ours:
            self._mark(out, "stray:" + where)

    def _fail(self, what: str):
        where, ours = _caller(self.ours)
        if not ours:
            return   # a test mixing what the toolkit returned: the test's own business, not the course's
        message = f"{what}, at {where} (device audit: on a GPU this line fails)"
        self.mismatches.append(message)
        if self.raise_on_mismatch:
            raise DeviceMismatch(message)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if func in FACTORIES:
            if kwargs.get("device") is None or kwargs.get("device") == "cpu":
                self._stray(out)
            else:
                self._mark(out, PLACED)
            return out
        if func in MOVES or func is torch.Tensor.cpu:
            target = [a for a in args[1:] if isinstance(a, (torch.device, str, int, torch.Tensor))]
            if func is torch.Tensor.cpu or kwargs.get("device") == "cpu" or (target and target[0] == "cpu"):
                where, ours = _caller(self.ours)   # on the CPU on every machine
                return self._moved(args[0], out, "stray:" + where if ours else None)
            if func is torch.Tensor.cuda or kwargs.get("device") is not None or target:
                return self._moved(args[0], out, PLACED)
            self._mark(out, self._label(args[0]))   # a dtype change keeps the device
            return out
        if func in TO_NUMPY:
            if self._label(args[0]) == PLACED:
                self._fail("a tensor on the model's device is turned into a NumPy array without .cpu()")
            return out
        tensors = [t for t in _tensors((args, kwargs)) if isinstance(t, torch.Tensor)]
        labels = [(self._label(t), t) for t in tensors]
        placed = any(lab == PLACED for lab, _ in labels)
        strays = [lab for lab, t in labels if lab and lab.startswith("stray:")]
        if placed and func not in INDEXING:
            big = [lab for lab, t in labels if lab and lab.startswith("stray:") and t.dim() > 0]
            if big:
                self._fail(f"a tensor made on the CPU at {big[0][6:]} meets a tensor on the model's device "
                           f"in {getattr(func, '__name__', func)}")
        if func in INDEXING:   # t[idx] is where t is, whatever idx's device
            self._mark(out, self._label(args[0]) if args else None)
        else:
            self._mark(out, PLACED if placed else (strays[0] if strays else None))
        return out

    def start(self) -> "DeviceAudit":
        """Enter the mode and follow what it cannot see: ``torch.from_numpy`` and ``torch.load``."""
        audit, from_numpy, load = self, torch.from_numpy, torch.load

        def from_numpy_stray(array):
            out = from_numpy(array)
            audit._stray(out, force=True)
            return out

        def load_stray(*a, **k):
            out = load(*a, **k)
            if k.get("map_location") is None and len(a) < 2:
                audit._stray(out, force=True)
            return out

        self._patched = {"from_numpy": from_numpy, "load": load}
        torch.from_numpy, torch.load = from_numpy_stray, load_stray
        self.__enter__()
        return self

    def place(self, module: torch.nn.Module) -> None:
        """Label a module's parameters and buffers placed (for a model loaded while paused)."""
        for t in [*module.parameters(), *module.buffers()]:
            self.labels[t] = PLACED

    def pause(self) -> None:
        """Leave the mode (labels are kept, nothing new is labelled) until :meth:`resume`."""
        self.__exit__(None, None, None)
        self._paused = True

    def resume(self) -> None:
        self.__enter__()
        self._paused = False

    def stop(self) -> "DeviceAudit":
        if not getattr(self, "_paused", False):
            self.__exit__(None, None, None)
        for name, original in self._patched.items():
            setattr(torch, name, original)
        return self
