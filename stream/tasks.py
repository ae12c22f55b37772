"""Task sequences built from real data that ships inside packages (no downloads).

A *task* is a labelled dataset with three disjoint splits: ``train`` (streamed to the
learner), ``val`` (read only by the promotion gate) and ``test`` (read only by the
evaluator and the report). Held-out splits are never trained on.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal

import numpy as np

from olsim.stream.plugin import ImportRef, PluginError, call

TaskKind = Literal["split-digits", "permuted-digits", "synthetic"]
N_FEATURES = 64  # 8x8 digits, flattened
N_CLASSES = 10


@dataclass(frozen=True)
class Split:
    x: np.ndarray  # (n, n_features) float32
    y: np.ndarray  # (n,) int64
    source: np.ndarray  # (n,) row index of each sample in the source dataset

    def __len__(self) -> int:
        return len(self.y)


@dataclass(frozen=True)
class Task:
    """One task of a sequence: its classes and its three splits."""

    index: int
    name: str
    classes: tuple[int, ...]
    train: Split
    val: Split
    test: Split

    @property
    def splits(self) -> tuple[Split, Split, Split]:
        return self.train, self.val, self.test


@cache
def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits  # bundled with scikit-learn, no download

    data = load_digits()
    x = (data.data / 16.0).astype(np.float32)  # pixel intensities 0..16 -> 0..1
    return x, data.target.astype(np.int64)


def _split(
    x: np.ndarray, y: np.ndarray, source: np.ndarray, rng: np.random.Generator, fractions: tuple[float, float]
) -> tuple[Split, Split, Split]:
    """Stratified train/val/test split: every class keeps the same proportions in each split."""
    train_idx: list[np.ndarray] = []
    val_idx: list[np.ndarray] = []
    test_idx: list[np.ndarray] = []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        a = round(fractions[0] * len(idx))
        b = a + round(fractions[1] * len(idx))
        train_idx.append(idx[:a])
        val_idx.append(idx[a:b])
        test_idx.append(idx[b:])
    out = []
    for parts in (train_idx, val_idx, test_idx):
        idx = rng.permutation(np.concatenate(parts))
        out.append(Split(x[idx], y[idx], source[idx]))
    return out[0], out[1], out[2]


def build_tasks(
    kind: TaskKind,
    n_tasks: int = 5,
    seed: int = 0,
    fractions: tuple[float, float] = (0.6, 0.2),
) -> list[Task]:
    """Build a seeded task sequence.

    - ``split-digits``: the 10 digit classes in a seeded order, 2 per task (class-incremental).
    - ``permuted-digits``: all 10 classes each task, pixels under a fixed seeded permutation per
      task (task 0 is the identity; domain-incremental).
    - ``synthetic``: Gaussian blobs, 2 classes per task, 64 features; for speed tests.

    >>> tasks = build_tasks("split-digits", seed=0)
    >>> [t.classes for t in tasks][:2], len(tasks)
    ([(4, 6), (2, 7)], 5)
    >>> t = tasks[0]; (len(t.train), len(t.val), len(t.test))
    (218, 72, 72)
    """
    if n_tasks < 1:
        raise ValueError(f"n_tasks must be >= 1, got {n_tasks}")
    if not (0 < fractions[0] and 0 < fractions[1] and fractions[0] + fractions[1] < 1):
        raise ValueError(f"fractions (train, val) must be positive and leave room for test, got {fractions}")
    rng = np.random.default_rng(seed)
    tasks: list[Task] = []
    if kind == "split-digits":
        if n_tasks > 5:
            raise ValueError(f"split-digits has at most 5 tasks of 2 classes, got n_tasks={n_tasks}")
        x, y = _digits()
        order = rng.permutation(N_CLASSES)
        for t in range(n_tasks):
            classes = (int(order[2 * t]), int(order[2 * t + 1]))
            mask = np.isin(y, classes)
            tr, va, te = _split(x[mask], y[mask], np.flatnonzero(mask), rng, fractions)
            tasks.append(Task(t, f"digits{classes[0]}{classes[1]}", classes, tr, va, te))
    elif kind == "permuted-digits":
        x, y = _digits()
        for t in range(n_tasks):
            perm = np.arange(N_FEATURES) if t == 0 else rng.permutation(N_FEATURES)
            tr, va, te = _split(x[:, perm], y, np.arange(len(y)), rng, fractions)
            tasks.append(Task(t, f"perm{t}", tuple(range(N_CLASSES)), tr, va, te))
    elif kind == "synthetic":
        for t in range(n_tasks):
            classes = (2 * t % N_CLASSES, (2 * t + 1) % N_CLASSES)
            centers = rng.normal(0.0, 1.0, size=(2, N_FEATURES)).astype(np.float32)
            n = 300
            labels = rng.integers(0, 2, size=n)
            xs = centers[labels] + rng.normal(0.0, 0.7, size=(n, N_FEATURES)).astype(np.float32)
            ys = np.asarray(classes, dtype=np.int64)[labels]
            tr, va, te = _split(xs.astype(np.float32), ys, np.arange(n), rng, fractions)
            tasks.append(Task(t, f"synth{t}", classes, tr, va, te))
    else:
        raise ValueError(f"unknown task kind {kind!r}; valid: split-digits, permuted-digits, synthetic")
    return tasks


@dataclass(frozen=True)
class TaskData:
    """One task as a task source returns it: a name, inputs ``x`` (n, d) and integer labels ``y`` (n,).

    ``split`` optionally says where each row goes: 0 train, 1 validation, 2 test. Without it olsim
    splits the task itself, seeded and stratified by class, 60/20/20. A plain ``(name, x, y)`` tuple
    or any object with ``name``, ``x`` and ``y`` attributes works as well.

    >>> import numpy as np
    >>> t = TaskData("blobs", np.zeros((10, 3)), np.arange(10) % 2)
    >>> [len(s) for s in tasks_from_data([t], seed=0)[0].splits]
    [6, 2, 2]
    """

    name: str
    x: Any
    y: Any
    split: Any = None


def _unpack(item: object, i: int) -> TaskData:
    if isinstance(item, TaskData):
        return item
    if isinstance(item, tuple) and len(item) == 3:
        return TaskData(*item)
    if all(hasattr(item, a) for a in ("name", "x", "y")):
        return TaskData(item.name, item.x, item.y, getattr(item, "split", None))  # type: ignore[attr-defined]
    raise PluginError(
        f"task {i}: a {type(item).__name__}, not a (name, x, y) tuple or an object with name, x and y"
    )


def _as_task(t: TaskData, i: int, rng: np.random.Generator, fractions: tuple[float, float]) -> Task:
    where = f"task {i} ({t.name!r})" if isinstance(t.name, str) else f"task {i}"
    if not isinstance(t.name, str) or not t.name:
        raise PluginError(f"{where}: name must be a non-empty string, got {t.name!r}")
    x, y = np.asarray(t.x), np.asarray(t.y)
    if (
        x.ndim != 2
        or x.shape[1] == 0
        or not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating))
    ):
        raise PluginError(f"{where}: x must be a 2-D numeric array (rows, features), got {x.dtype} {x.shape}")
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise PluginError(f"{where}: y must be a 1-D integer array of class labels, got {y.dtype} {y.shape}")
    if len(x) != len(y) or len(y) == 0:
        raise PluginError(f"{where}: x has {len(x)} rows and y {len(y)}: they must match and be non-empty")
    x = x.astype(np.float32)
    if not np.isfinite(x).all():
        raise PluginError(f"{where}: x has {int((~np.isfinite(x)).sum())} non-finite values")
    if y.min() < 0:
        raise PluginError(f"{where}: labels must be >= 0, got {int(y.min())}")
    y = y.astype(np.int64)
    rows = np.arange(len(y))
    if t.split is None:
        tr, va, te = _split(x, y, rows, rng, fractions)
    else:
        split = np.asarray(t.split)
        if split.shape != y.shape or not np.isin(split, (0, 1, 2)).all():
            raise PluginError(f"{where}: split must give each row 0 (train), 1 (val) or 2 (test)")
        tr, va, te = (Split(x[split == k], y[split == k], rows[split == k]) for k in (0, 1, 2))
    for part, s in zip(("train", "val", "test"), (tr, va, te), strict=True):
        if len(s) == 0:
            raise PluginError(f"{where}: its {part} split is empty ({len(y)} rows)")
    classes = tuple(int(c) for c in np.unique(y))
    return Task(i, t.name, classes, tr, va, te)


def tasks_from_data(
    items: Iterable[object], seed: int, fractions: tuple[float, float] = (0.6, 0.2)
) -> list[Task]:
    """Check a task source's output and make :class:`Task` s of it (splitting where it did not)."""
    if isinstance(items, str | bytes | dict) or not isinstance(items, Iterable):
        raise PluginError(f"a task source returns a sequence of tasks, got {type(items).__name__}")
    raw = [_unpack(item, i) for i, item in enumerate(items)]
    if not raw:
        raise PluginError("the task source returned no tasks")
    rng = np.random.default_rng(seed)
    tasks = [_as_task(t, i, rng, fractions) for i, t in enumerate(raw)]
    widths = {t.train.x.shape[1] for t in tasks}
    if len(widths) > 1:
        raise PluginError(f"every task needs the same number of features, got {sorted(widths)}")
    names = [t.name for t in tasks]
    if len(set(names)) < len(names):
        raise PluginError(f"task names must be unique, got {names}")
    return tasks


def tasks_from_source(source: ImportRef, seed: int) -> list[Task]:
    """Call a task source ``factory(seed=..., **args)`` and check what it returns."""
    items = call(source, "stream.tasks", seed=seed)
    try:
        return tasks_from_data(items, seed)
    except PluginError as exc:
        raise PluginError(f"stream.tasks: {source.target}: {exc}") from None
