"""A task source: scikit-learn's bundled 8x8 digits, turned by another quarter turn each task.

All ten classes in every task (domain-incremental). A quarter turn moves every stroke, so what a
network learned about upright digits does not carry over for free, and some turns make classes
collide (a 6 upside down looks like a 9): training on a new angle overwrites the old ones.
"""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_digits

from olsim.stream.tasks import TaskData


def rotated_digits(seed: int, n_tasks: int = 4, per_task: int = 1000) -> list[TaskData]:
    """``n_tasks`` tasks (at most 4: 0, 90, 180 and 270 degrees), each a seeded draw of ``per_task``
    digits (pixels scaled to 0..1). olsim splits each 60/20/20 itself.

    >>> tasks = rotated_digits(seed=0, n_tasks=2, per_task=100)
    >>> [(t.name, t.x.shape) for t in tasks]
    [('rot0', (100, 64)), ('rot90', (100, 64))]
    """
    if not 1 <= n_tasks <= 4:
        raise ValueError(f"n_tasks must be 1..4 (quarter turns), got {n_tasks}")
    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)  # (1797, 8, 8)
    rng = np.random.default_rng(seed)
    tasks = []
    for k in range(n_tasks):
        rows = rng.choice(len(images), size=min(per_task, len(images)), replace=False)
        turned = np.rot90(images[rows], k=k, axes=(1, 2))
        tasks.append(TaskData(f"rot{90 * k}", turned.reshape(len(rows), -1), digits.target[rows]))
    return tasks
