"""Networks that serve weights in place: a replica's module trees, reused from version to version.

A replica reading Ray's object store gets read-only arrays in shared memory. The networks here wrap
them without copying, so every replica on a node serves the one copy in the store, and a tensor two
versions share (same digest) is the same memory in both. Building a module tree is Python work that
holds the GIL for milliseconds (a request's forward pass on another thread waits for it), so a
:class:`NetworkPool` builds a tree once, on torch's meta device (no weights allocated or
initialised), and afterwards only points a free tree's parameters at the next version's tensors. A
tree is free again once nothing serves it: the caller hands it back when the last request that read
its version is done (the follower's :func:`weakref.finalize` on the served model does exactly that).

A model whose construction needs real tensors (a buffer computed at construction and kept outside
its state dict, a factory that cannot run on the meta device) is built normally instead, and each
version's arrays are copied into it: the classic double buffer.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from olsim.learner.model import ModelSpec, build_model
from olsim.learner.served import ServedModel
from olsim.learner.snapshot import Manifest, SnapshotError, check_fits, check_spec, split_extras


class NetworkPool:
    """Free module trees of one spec; :meth:`serve` fills one with a version's arrays.

    >>> from olsim.learner.snapshot import Snapshot
    >>> snap = Snapshot.from_model(build_model(ModelSpec(in_features=4, hidden=8, n_classes=3), seed=0))
    >>> pool = NetworkPool()
    >>> served, tree = pool.serve(snap.manifest(), snap.arrays())
    >>> served.net.fc1.weight.data_ptr() == snap.tensors["fc1.weight"].ctypes.data, pool.built
    (True, 1)
    >>> pool.release(tree); _ = pool.serve(snap.manifest(), snap.arrays()); pool.built  # reused
    1
    >>> pool.release(tree); tree.fc1.weight.is_meta  # a free tree holds no version's memory
    True
    """

    def __init__(self) -> None:
        self._free: list[nn.Module] = []
        self._lock = threading.Lock()
        self.built = 0  # trees built so far (a steady replica needs two)

    @staticmethod
    def warm(spec: ModelSpec) -> None:
        """Build ``spec`` on the meta device once and drop it: torch's first meta build imports its
        decompositions (about 0.7 s here), which a process should pay before it serves, not in its
        first swap."""
        try:
            with torch.device("meta"):
                build_model(spec)
        except Exception:  # such a model is built for real when it is served (see _build)
            return

    def release(self, tree: nn.Module) -> None:
        """``tree`` serves nothing any more. It lets go of its tensors (so the version it served is
        freed) and waits for the next version; the pool keeps one free tree and drops any other."""
        if not tree.__dict__.get("_olsim_copies"):
            _unpoint(tree)
        with self._lock:
            if not self._free:
                self._free.append(tree)

    def serve(
        self, manifest: Manifest, arrays: Mapping[str, np.ndarray], expected: ModelSpec | None = None
    ) -> tuple[ServedModel, nn.Module]:
        """A served model whose weights *are* ``arrays`` (by digest), and the tree it uses (release
        it when the served model is gone). Arrays are not verified here: the caller hashes what it
        received (:func:`olsim.learner.snapshot.digest`)."""
        check_spec(manifest.spec, expected)
        digests, extra_digests = split_extras(manifest.digests)
        extras = {n: torch.from_numpy(np.array(arrays[d])) for n, d in extra_digests.items()}
        with self._lock:
            tree = next((t for t in self._free if t.__dict__.get("_olsim_spec") == manifest.spec), None)
            if tree is not None:
                self._free.remove(tree)
        if tree is None:
            tree = self._build(manifest.spec, _tensors(digests, arrays))
            self.built += 1
        else:
            _point(tree, _tensors(digests, arrays))
        return ServedModel(tree, extras).eval(), tree

    @staticmethod
    def _build(spec: ModelSpec, state: dict[str, torch.Tensor]) -> nn.Module:
        try:
            with torch.device("meta"):
                tree: nn.Module | None = build_model(spec)
        except Exception:  # a factory that cannot run on the meta device; the real build says why
            tree = None
        if tree is not None:
            check_fits(tree, state)
            tree.load_state_dict(state, assign=True)
            if _keeps_meta(tree):
                tree = None  # it keeps tensors outside its state dict: build it for real
        if tree is None:
            tree = build_model(spec)
            check_fits(tree, state)
            tree.load_state_dict(state)
            tree.__dict__["_olsim_copies"] = True
        for p in tree.parameters():
            p.requires_grad_(False)
        tree.__dict__["_olsim_spec"] = spec
        tree.__dict__["_olsim_slots"] = _slots(tree)
        return tree


def _keeps_meta(tree: nn.Module) -> bool:
    """A meta tensor is left after loading the state dict: in a parameter, a buffer, or an attribute."""
    for m in tree.modules():
        tensors = (*m._parameters.values(), *m._buffers.values(), *m.__dict__.values())
        if any(isinstance(t, torch.Tensor) and t.is_meta for t in tensors):
            return True
    return False


def _unpoint(tree: nn.Module) -> None:
    """Point every state-dict tensor of ``tree`` at nothing (a meta tensor of its shape)."""
    slots: dict[str, tuple[nn.Module, str, bool]] = tree.__dict__["_olsim_slots"]
    for module, attr, is_param in slots.values():
        now = _table(module, is_param)[attr]
        if now is None:
            continue
        _set(module, attr, is_param, torch.empty(now.shape, dtype=now.dtype, device="meta"))


def _tensors(digests: Mapping[str, str], arrays: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
    with warnings.catch_warnings():  # read-only store arrays: served weights are never written
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return {n: torch.from_numpy(arrays[d]) for n, d in digests.items()}


def _slots(tree: nn.Module) -> dict[str, tuple[nn.Module, str, bool]]:
    """State-dict key -> (module, attribute, is a parameter), for every tensor in the state dict."""
    out: dict[str, tuple[nn.Module, str, bool]] = {}
    for prefix, module in tree.named_modules(remove_duplicate=False):
        for attr in module._parameters:
            out[f"{prefix}.{attr}" if prefix else attr] = (module, attr, True)
        for attr in module._buffers:
            if attr not in module._non_persistent_buffers_set:
                out[f"{prefix}.{attr}" if prefix else attr] = (module, attr, False)
    return out


def _point(tree: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Make ``tree``'s tensors ``state``'s (for a tree built for real: copy them in)."""
    slots: dict[str, tuple[nn.Module, str, bool]] = tree.__dict__["_olsim_slots"]
    if slots.keys() != state.keys():
        raise SnapshotError(f"parameter names differ: {sorted(set(slots) ^ set(state))}")
    for key, t in state.items():
        module, attr, is_param = slots[key]
        now = _table(module, is_param)[attr]
        if now is None or now.shape != t.shape:
            shape = None if now is None else tuple(now.shape)
            raise SnapshotError(f"{key}: shape {tuple(t.shape)} != {shape}")
    copies = bool(tree.__dict__.get("_olsim_copies"))
    for key, t in state.items():
        module, attr, is_param = slots[key]
        now = _table(module, is_param)[attr]
        if copies and now is not None:
            with torch.no_grad():
                now.copy_(t)
        else:
            _set(module, attr, is_param, t)


def _table(module: nn.Module, is_param: bool) -> dict[str, Any]:
    """The module's own parameters or buffers, by attribute name."""
    return module._parameters if is_param else module._buffers


def _set(module: nn.Module, attr: str, is_param: bool, t: torch.Tensor) -> None:
    """Point ``module``'s parameter or buffer ``attr`` at ``t`` (a parameter that takes no gradient)."""
    if is_param:
        module._parameters[attr] = nn.Parameter(t, requires_grad=False)
    else:
        module._buffers[attr] = t
