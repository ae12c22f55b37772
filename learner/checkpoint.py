"""Crash-safe learner state on disk, without pickle: arrays in an ``.npz``, everything else JSON.

A checkpoint is one file written atomically (temp file, fsync, rename, fsync of the directory), so a
learner killed while writing, or a machine losing power, leaves the previous checkpoint or the new one
intact, never neither. Nested dicts (int or str keys), lists, tuples,
numbers, strings, numpy arrays and torch tensors round-trip exactly; nothing is unpickled on load.

>>> import tempfile, torch
>>> path = Path(tempfile.mkdtemp()) / "ck.npz"
>>> save(path, {"w": torch.arange(3.0), "opt": {0: {"step": 5}}, "ids": ("a", "b"), "big": 2**100})
>>> state = load(path)
>>> state["w"], state["opt"], state["ids"], state["big"] == 2**100
(tensor([0., 1., 2.]), {0: {'step': 5}}, ('a', 'b'), True)
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

META = "__meta__"


def _encode(obj: Any, arrays: dict[str, np.ndarray]) -> Any:
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    if isinstance(obj, torch.Tensor):
        name = f"a{len(arrays)}"
        arrays[name] = obj.detach().cpu().numpy()
        return {"__tensor__": name}
    if isinstance(obj, np.ndarray):
        name = f"a{len(arrays)}"
        arrays[name] = obj
        return {"__array__": name}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, list | tuple):
        return {"__list__" if isinstance(obj, list) else "__tuple__": [_encode(v, arrays) for v in obj]}
    if isinstance(obj, dict):
        for k in obj:
            if not isinstance(k, str | int) or isinstance(k, bool):
                raise TypeError(f"checkpoint dict keys must be str or int, got {type(k).__name__}")
        return {"__dict__": [[k, _encode(v, arrays)] for k, v in obj.items()]}
    raise TypeError(f"cannot checkpoint a {type(obj).__name__}")


def _decode(tree: Any, arrays: Any) -> Any:
    if not isinstance(tree, dict):
        return tree
    if "__tensor__" in tree:
        return torch.from_numpy(np.array(arrays[tree["__tensor__"]]))
    if "__array__" in tree:
        return np.array(arrays[tree["__array__"]])
    if "__list__" in tree:
        return [_decode(v, arrays) for v in tree["__list__"]]
    if "__tuple__" in tree:
        return tuple(_decode(v, arrays) for v in tree["__tuple__"])
    return {k: _decode(v, arrays) for k, v in tree["__dict__"]}


def sync_dir(path: Path) -> None:
    """fsync the directory ``path``, so that a file created, renamed or removed in it stays so
    across a power loss (fsyncing the file itself does not cover its directory entry)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dirs(path: Path) -> None:
    """``path.mkdir(parents=True, exist_ok=True)``, with each new directory's entry made durable."""
    missing = [p for p in (path, *path.parents) if not p.exists()]
    path.mkdir(parents=True, exist_ok=True)
    for p in reversed(missing):
        sync_dir(p.parent)


def write_atomic(path: Path, write: Callable[[IO[bytes]], Any]) -> None:
    """Replace ``path`` with what ``write(file)`` writes, atomically and durably: a temp file,
    fsynced, renamed over ``path``, then the directory fsynced."""
    make_dirs(path.parent)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    sync_dir(path.parent)


def save(path: Path, state: Any) -> None:
    """Write ``state`` to ``path`` atomically and durably (:func:`write_atomic`)."""
    arrays: dict[str, np.ndarray] = {}
    tree = _encode(state, arrays)
    meta = np.frombuffer(json.dumps(tree).encode(), dtype=np.uint8)
    savez: Any = np.savez  # numpy's stubs type **kwds as its bool flags
    write_atomic(path, lambda f: savez(f, **{META: meta}, **arrays))


def load(path: Path) -> Any:
    """The state :func:`save` wrote (``allow_pickle=False``: object arrays are refused)."""
    with np.load(path, allow_pickle=False) as z:
        tree = json.loads(bytes(z[META]).decode())
        return _decode(tree, {k: z[k] for k in z.files if k != META})
