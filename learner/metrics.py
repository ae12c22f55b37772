"""Continual-learning metrics on an accuracy matrix (GEM definitions, Lopez-Paz & Ranzato 2017).

``R[i][j]`` is the test accuracy on task ``j`` after training on task ``i`` (``T x T``);
``b[j]`` is the test accuracy of the randomly initialised model on task ``j``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from stream.tasks import Split

Matrix = Sequence[Sequence[float]]


def accuracy(
    model: nn.Module, split: Split, classes: Sequence[int] | None = None, task: int | None = None
) -> float:
    """Fraction of ``split`` that ``model`` classifies correctly.

    With ``classes`` the prediction is restricted to those classes (task-incremental evaluation:
    the task id is known at test time, so only its classes compete). ``task`` is passed on to models
    that take one (a served model may route by it).
    """
    model.eval()
    with torch.inference_mode():
        x = torch.from_numpy(split.x)
        logits = model(x) if task is None else model(x, task=task)  # (n, n_classes)
        if classes is not None:
            mask = torch.full_like(logits, float("-inf"))
            mask[:, list(classes)] = 0.0
            logits = logits + mask
        pred = logits.argmax(dim=1).numpy()
    return float((pred == split.y).mean())


def _square(r: Matrix) -> np.ndarray:
    m = np.asarray(r, dtype=float)
    if m.ndim != 2 or m.shape[0] > m.shape[1]:
        raise ValueError(f"accuracy matrix must be T x N with T <= N, got shape {m.shape}")
    return m


def average_accuracy(r: Matrix) -> float:
    """ACC = mean_j R[T-1][j] over the T tasks trained so far.

    >>> average_accuracy([[0.9, 0.1], [0.5, 0.8]])
    0.65
    """
    m = _square(r)
    t = m.shape[0]
    return float(m[t - 1, :t].mean())


def backward_transfer(r: Matrix) -> float | None:
    """BWT = mean_{i<T-1} (R[T-1][i] - R[i][i]); negative means forgetting.

    >>> round(backward_transfer([[0.9, 0.1], [0.5, 0.8]]), 6)
    -0.4
    """
    m = _square(r)
    t = m.shape[0]
    if t < 2:
        return None
    return float(np.mean([m[t - 1, i] - m[i, i] for i in range(t - 1)]))


def forward_transfer(r: Matrix, b: Sequence[float]) -> float | None:
    """FWT = mean_{1<=i<T} (R[i-1][i] - b[i]).

    >>> round(forward_transfer([[0.9, 0.1], [0.5, 0.8]], [0.5, 0.4]), 6)
    -0.3
    """
    m = _square(r)
    t = m.shape[0]
    if t < 2:
        return None
    return float(np.mean([m[i - 1, i] - b[i] for i in range(1, t)]))


def forgetting(r: Matrix) -> float | None:
    """Average forgetting (Chaudhry et al. 2018): mean_{j<T-1} max_{l<T-1} (R[l][j] - R[T-1][j]).

    >>> round(forgetting([[0.9, 0.1], [0.5, 0.8]]), 6)
    0.4
    """
    m = _square(r)
    t = m.shape[0]
    if t < 2:
        return None
    return float(np.mean([max(m[k, j] for k in range(j, t - 1)) - m[t - 1, j] for j in range(t - 1)]))


def summarize(r: Matrix, b: Sequence[float] | None = None) -> dict[str, float | None]:
    return {
        "acc": average_accuracy(r) if len(r) else None,
        "bwt": backward_transfer(r) if len(r) else None,
        "fwt": forward_transfer(r, b) if len(r) and b is not None else None,
        "forgetting": forgetting(r) if len(r) else None,
    }
