"""Continual-learning metrics on an accuracy matrix (GEM definitions, Lopez-Paz & Ranzato 2017),
generalised to streams where a task can come back.

The stream is a sequence of *segments*, each one task's events; ``seq[s]`` is the task of segment
``s``. ``R[s][j]`` is the test accuracy on task ``j`` of the version at the end of segment ``s``
(``S x N``); ``b[j]`` is the test accuracy of the randomly initialised model on task ``j``. Tasks
first appear in index order (0, then 1, ...). With every task once, in order (``seq = 0..T-1``),
each definition below is exactly the GEM/Chaudhry one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from olsim.learner.model import objective_of
from olsim.learner.objective import NextToken
from olsim.learner.served import ServedModel
from olsim.stream.tasks import Split

Matrix = Sequence[Sequence[float]]


def accuracy(
    model: nn.Module, split: Split, classes: Sequence[int] | None = None, task: int | None = None
) -> float:
    """Fraction of ``split`` that ``model`` gets right, by its objective: the right class, or for a
    next-token model the exact answer (:mod:`olsim.learner.objective`).

    With ``classes`` a class prediction is restricted to those classes (task-incremental evaluation:
    the task id is known at test time, so only its classes compete). ``task`` is passed on to models
    that take one (a served model may route by it).
    """
    return scores(model, split, classes, task)[0]


def scores(
    model: nn.Module, split: Split, classes: Sequence[int] | None = None, task: int | None = None
) -> tuple[float, float | None]:
    """:func:`accuracy`, and from the same forward pass a next-token model's bits per byte on the
    split's text (None for a classifier)."""
    objective = objective_of(model)
    model.eval()
    with torch.inference_mode():
        x, y = torch.from_numpy(split.x), torch.from_numpy(split.y)
        kwargs: dict[str, Any] = {} if task is None else {"task": task}
        if objective.name == "next-token" and isinstance(model, ServedModel):
            kwargs["answer_at"] = y  # a served model with a fact store looks up each row's question
        out = model(x, **kwargs)  # (n, n_classes) or (n, T, vocab)
        if classes is not None and objective.name == "classify":
            mask = torch.full_like(out, float("-inf"))
            mask[:, list(classes)] = 0.0
            out = out + mask
        hits = objective.hits(out, x, y)
        bits = objective.bits_per_byte(out, x) if isinstance(objective, NextToken) else None
    return float(hits.float().mean()), bits


def old_tasks(task: int, seen: int = 0) -> list[int]:
    """The tasks a version learning ``task`` can forget: every other task met so far (``seen`` of
    them, first met in index order; 0 for records that do not say: the tasks before ``task``).

    >>> old_tasks(2), old_tasks(0, seen=3)
    ([0, 1], [1, 2])
    """
    return [j for j in range(seen or task + 1) if j != task]


def _prepare(r: Matrix, seq: Sequence[int] | None) -> tuple[np.ndarray, list[int]]:
    m = np.asarray(r, dtype=float)
    tasks = list(range(m.shape[0])) if seq is None else [int(t) for t in seq]
    if m.ndim != 2 or m.shape[0] > len(tasks) or max(tasks[: m.shape[0]], default=0) >= m.shape[1]:
        raise ValueError(f"accuracy matrix {m.shape} does not fit segments {tasks}")
    return m, tasks[: m.shape[0]]


def _first(tasks: list[int]) -> dict[int, int]:
    """Each seen task's first segment."""
    out: dict[int, int] = {}
    for s, t in enumerate(tasks):
        out.setdefault(t, s)
    return out


def average_accuracy(r: Matrix, seq: Sequence[int] | None = None) -> float:
    """ACC = mean over the tasks seen so far of R[S-1][j].

    >>> average_accuracy([[0.9, 0.1], [0.5, 0.8]])
    0.65
    >>> average_accuracy([[0.9, 0.1], [0.5, 0.8], [0.8, 0.6]], seq=[0, 1, 0])  # task 0 came back
    0.7
    """
    m, tasks = _prepare(r, seq)
    return float(np.mean([m[-1, j] for j in _first(tasks)]))


def backward_transfer(r: Matrix, seq: Sequence[int] | None = None) -> float | None:
    """BWT = mean over the tasks j met before the last segment, other than the last segment's task,
    of (R[S-1][j] - R[l_j][j]), where l_j is the last segment before S-1 that trained j; negative
    means forgetting. The last segment's task is left out as GEM leaves out the last task: its change
    is the training itself, not a transfer. (The live ``olsim_backward_transfer`` gauge is this
    function on the rows so far plus the served version's scores as the last row.)

    >>> round(backward_transfer([[0.9, 0.1], [0.5, 0.8]]), 6)
    -0.4
    >>> round(backward_transfer([[0.9, 0.1], [0.5, 0.8], [0.8, 0.6]], seq=[0, 1, 0]), 6)  # task 0 again
    -0.2
    """
    m, tasks = _prepare(r, seq)
    last = len(tasks) - 1
    diffs = []
    for j, f in _first(tasks).items():
        if f < last and j != tasks[last]:
            lj = max(s for s in range(last) if tasks[s] == j)
            diffs.append(m[last, j] - m[lj, j])
    return float(np.mean(diffs)) if diffs else None


def bits_rise(b: Matrix, seq: Sequence[int] | None = None) -> tuple[list[float | None], float | None]:
    """A language model's forgetting in bits: for each task BWT compares (met before the last segment,
    not its task), B[S-1][j] - B[l_j][j] on a matrix of bits per byte (positive: the last version
    predicts the task's text worse than the one that last trained on it); None for the other tasks.
    Returns the per-task rises and their mean.

    >>> bits_rise([[2.0, 6.0], [3.5, 2.5]])
    ([1.5, None], 1.5)
    """
    m, tasks = _prepare(b, seq)
    last = len(tasks) - 1
    rise: list[float | None] = [None] * m.shape[1]
    for j, f in _first(tasks).items():
        if f < last and j != tasks[last]:
            lj = max(s for s in range(last) if tasks[s] == j)
            rise[j] = float(m[last, j] - m[lj, j])
    found = [r for r in rise if r is not None]
    return rise, float(np.mean(found)) if found else None


def forward_transfer(r: Matrix, b: Sequence[float], seq: Sequence[int] | None = None) -> float | None:
    """FWT = mean over tasks j first seen at segment f_j >= 1 of (R[f_j - 1][j] - b[j]).

    >>> round(forward_transfer([[0.9, 0.1], [0.5, 0.8]], [0.5, 0.4]), 6)
    -0.3
    """
    m, tasks = _prepare(r, seq)
    later = [(j, f) for j, f in _first(tasks).items() if f >= 1]
    if not later:
        return None
    return float(np.mean([m[f - 1, j] - b[j] for j, f in later]))


def forgetting_per_task(r: Matrix, seq: Sequence[int] | None = None) -> dict[int, float]:
    """For each task j met before the last segment: max_{l < S-1} R[l][j] - R[S-1][j], its best
    accuracy in any earlier evaluation minus the final one (Chaudhry et al. 2018, who take the max
    over every l < T-1, also those before j was trained).

    >>> r = [[0.9, 0.9, 0.1], [0.6, 0.5, 0.3], [0.5, 0.4, 0.95]]
    >>> {j: round(f, 3) for j, f in forgetting_per_task(r).items()}
    {0: 0.4, 1: 0.5}
    """
    m, tasks = _prepare(r, seq)
    last = len(tasks) - 1
    return {
        j: float(max(m[k, j] for k in range(last)) - m[last, j]) for j, f in _first(tasks).items() if f < last
    }


def forgetting(r: Matrix, seq: Sequence[int] | None = None) -> float | None:
    """Average forgetting (Chaudhry et al. 2018): the mean of :func:`forgetting_per_task`.

    >>> round(forgetting([[0.9, 0.9, 0.1], [0.6, 0.5, 0.3], [0.5, 0.4, 0.95]]), 6)
    0.45
    """
    per_task = forgetting_per_task(r, seq)
    return float(np.mean(list(per_task.values()))) if per_task else None


def summarize(
    r: Matrix, b: Sequence[float] | None = None, seq: Sequence[int] | None = None
) -> dict[str, float | None]:
    return {
        "acc": average_accuracy(r, seq) if len(r) else None,
        "bwt": backward_transfer(r, seq) if len(r) else None,
        "fwt": forward_transfer(r, b, seq) if len(r) and b is not None else None,
        "forgetting": forgetting(r, seq) if len(r) else None,
    }
