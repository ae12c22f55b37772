"""What load tools send: requests made from a scenario's held-out rows, for the model it serves.

A classifier gets ``POST /predict`` with one row; a next-token model gets ``POST /generate`` with the
row's prompt (its bytes before the answer; the first half of a row without one), as many new tokens
as the answer has, and the answer's last character as ``stop``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from olsim.learner.objective import row_bytes
from olsim.serving.config import ServeConfig
from olsim.serving.schemas import GenerateResponse, PredictResponse
from olsim.stream.tasks import Task

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Traffic:
    path: str  # the route the bodies go to
    bodies: list[dict[str, Any]]  # JSON request bodies, one per held-out row
    response: type[PredictResponse] | type[GenerateResponse]  # what a 200 must parse as

    @property
    def rows(self) -> np.ndarray:
        """The /predict bodies' rows as one float32 array (n, features)."""
        if self.path != "/predict":
            raise ValueError(f"{self.path} requests carry no feature rows")
        return np.asarray([b["inputs"][0] for b in self.bodies], dtype=np.float32)


def generate_body(row: np.ndarray, answer_at: int) -> dict[str, Any]:
    """A /generate body asking a token row's prompt for its answer.

    >>> from olsim.stream.facts import Fact, token_rows
    >>> x, y = token_rows([Fact("Kovalo", "city", "Brest", 0)], width=24)
    >>> generate_body(x[0], int(y[0]))
    {'prompt': 'Kovalo lives in ', 'max_new_tokens': 6, 'stop': '.'}
    """
    ids = list(row_bytes(row))
    start = answer_at if 0 < answer_at < len(ids) else max(1, len(ids) // 2)
    body: dict[str, Any] = {
        "prompt": bytes(ids[:start]).decode(errors="replace"),
        "max_new_tokens": len(ids) - start,
    }
    last = bytes(ids[-1:]).decode(errors="replace")
    if answer_at > 0 and len(last.encode()) == 1:
        body["stop"] = last
    return body


def held_out_traffic(tasks: list[Task], objective: str, limits: ServeConfig | None = None) -> Traffic:
    """Requests from every task's held-out test rows (what users send), for a model with ``objective``.
    /generate bodies keep within the server's ``limits``: longer answers are asked for in part, and
    rows whose prompt the server would refuse are left out (with a warning)."""
    if objective == "next-token":
        cfg = limits or ServeConfig()
        bodies, refused = [], 0
        for t in tasks:
            for x, y in zip(t.test.x, t.test.y, strict=True):
                body = generate_body(x, int(y))
                if body["max_new_tokens"] < 1 or len(body["prompt"].encode()) > cfg.max_prompt_bytes:
                    refused += 1
                    continue
                body["max_new_tokens"] = min(body["max_new_tokens"], cfg.max_new_tokens)
                bodies.append(body)
        if refused:
            log.warning(
                "%d held-out rows left out of the load: no answer, or prompts over %d bytes",
                refused,
                cfg.max_prompt_bytes,
            )
        if not bodies:
            raise ValueError("no held-out row makes a /generate request within the server's limits")
        return Traffic("/generate", bodies, GenerateResponse)
    rows = np.concatenate([t.test.x for t in tasks])
    return Traffic("/predict", [{"inputs": [r.tolist()]} for r in rows], PredictResponse)
