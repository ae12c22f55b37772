"""What load tools send: requests made from a scenario's held-out rows, for the model it serves.

A classifier gets ``POST /predict`` with one row; a next-token model gets ``POST /generate`` with the
row's prompt (its bytes before the answer; the first half of a row without one), as many new tokens
as the answer has, and the answer's last character as ``stop``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from olsim.serving.schemas import GenerateResponse, PredictResponse
from olsim.stream.tasks import Task


@dataclass(frozen=True)
class Traffic:
    path: str  # the route the bodies go to
    bodies: list[dict[str, Any]]  # JSON request bodies, one per held-out row
    response: type[PredictResponse] | type[GenerateResponse]  # what a 200 must parse as


def generate_body(row: np.ndarray, answer_at: int) -> dict[str, Any]:
    """A /generate body asking a token row's prompt for its answer.

    >>> from olsim.stream.facts import Fact, token_rows
    >>> x, y = token_rows([Fact("Kovalo", "city", "Brest", 0)], width=24)
    >>> generate_body(x[0], int(y[0]))
    {'prompt': 'Kovalo lives in ', 'max_new_tokens': 6, 'stop': '.'}
    """
    ids = [int(v) for v in row if v > 0]
    start = answer_at if 0 < answer_at < len(ids) else max(1, len(ids) // 2)
    body: dict[str, Any] = {
        "prompt": bytes(ids[:start]).decode(errors="replace"),
        "max_new_tokens": len(ids) - start,
    }
    last = bytes(ids[-1:]).decode(errors="replace")
    if answer_at > 0 and len(last.encode()) == 1:
        body["stop"] = last
    return body


def held_out_traffic(tasks: list[Task], objective: str) -> Traffic:
    """Requests from every task's held-out test rows (what users send), for a model with ``objective``."""
    if objective == "next-token":
        bodies = [generate_body(x, int(y)) for t in tasks for x, y in zip(t.test.x, t.test.y, strict=True)]
        return Traffic("/generate", bodies, GenerateResponse)
    rows = np.concatenate([t.test.x for t in tasks])
    return Traffic("/predict", [{"inputs": [r.tolist()]} for r in rows], PredictResponse)
