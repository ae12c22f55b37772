"""Locust users for olsim's ``/predict`` (single-row and batched requests drawn from held-out data)
or ``/generate`` (held-out questions, for a language model).

Run by ``olsim load`` (``python -m locust -f deploy/load/locustfile.py --headless ...``), or by hand
against any olsim::

    OLSIM_LOAD_ROWS=rows.npy locust -f deploy/load/locustfile.py -H http://127.0.0.1:8000

Environment (``olsim load`` sets it):

- ``OLSIM_LOAD_ROWS``: ``.npy`` file of input rows (float32, ``allow_pickle=False``); default:
  every task's held-out test rows of split-digits, seed 0.
- ``OLSIM_LOAD_GENERATE``: a JSON list of ``/generate`` bodies; when set, users send those instead
  of ``/predict`` rows (each response must parse as ``GenerateResponse``).
- ``OLSIM_LOAD_BATCH_ROWS`` (default 32) and ``OLSIM_LOAD_BATCH_SHARE`` (default 0.2): rows per
  batched request, and the share of requests that are batched.
- ``OLSIM_LOAD_SAMPLES``: where to write one row per request when the test stops (JSON list of
  ``[unix time sent, latency ms, status, version, replica, rows, retried]``, status 0 = no HTTP
  answer or a response that broke the schema; retried is always null: Locust's users do not retry).

Every response is checked: a 200 must parse as :class:`olsim.serving.schemas.PredictResponse` with one
prediction per row, else Locust counts it as a failure.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from locust import FastHttpUser, events, task
from pydantic import ValidationError

from olsim.serving.schemas import GenerateResponse, PredictResponse

SAMPLES: list[list[Any]] = []


def _rows() -> np.ndarray:
    path = os.environ.get("OLSIM_LOAD_ROWS")
    if path:
        return np.load(path, allow_pickle=False)
    from olsim.stream.tasks import build_tasks

    return np.concatenate([t.test.x for t in build_tasks("split-digits", seed=0)])


GENERATE: list[dict[str, Any]] | None = None
if os.environ.get("OLSIM_LOAD_GENERATE"):
    with open(os.environ["OLSIM_LOAD_GENERATE"]) as _f:
        GENERATE = json.load(_f)
ROWS = _rows() if GENERATE is None else np.zeros((0, 0), dtype=np.float32)
BATCH_ROWS = int(os.environ.get("OLSIM_LOAD_BATCH_ROWS", "32"))
BATCH_SHARE = float(os.environ.get("OLSIM_LOAD_BATCH_SHARE", "0.2"))


class PredictUser(FastHttpUser):
    """Closed loop: each user sends its next request as soon as the last one is answered."""

    def on_start(self) -> None:
        self.rng = random.Random(id(self))

    @task
    def request(self) -> None:
        if GENERATE is not None:
            body = GENERATE[self.rng.randrange(len(GENERATE))]
            self._send(
                "/generate",
                body,
                "/generate",
                1,
                lambda raw: GenerateResponse.model_validate_json(raw).model_version,
            )
            return
        batched = self.rng.random() < BATCH_SHARE
        n = BATCH_ROWS if batched else 1
        idx = [self.rng.randrange(len(ROWS)) for _ in range(n)]
        name = f"/predict [{n} rows]" if batched else "/predict [1 row]"
        self._send("/predict", {"inputs": ROWS[idx].tolist()}, name, n, lambda raw: _predicted(raw, n))

    def _send(
        self, path: str, body: dict[str, Any], name: str, rows: int, check: Callable[[bytes], int]
    ) -> None:
        """POST ``body``; ``check`` parses a 200's body to the version that answered (raising
        ValidationError or ValueError when it breaks the schema); one sample row per request."""
        sent = time.time()
        t0 = time.perf_counter()
        with self.client.post(path, json=body, name=name, catch_response=True) as r:
            latency_ms = (time.perf_counter() - t0) * 1e3
            status, version = r.status_code or 0, None
            if status == 200:
                try:
                    version = check(r.content or b"")
                except (ValidationError, ValueError) as exc:
                    status = 0
                    r.failure(f"response breaks the schema: {exc}")
            replica = r.headers.get("x-olsim-replica")
            SAMPLES.append([round(sent, 4), round(latency_ms, 3), status, version, replica, rows, None])


def _predicted(raw: bytes, n: int) -> int:
    parsed = PredictResponse.model_validate_json(raw)
    if len(parsed.predictions) != n:
        raise ValueError(f"{len(parsed.predictions)} predictions for {n} rows")
    return parsed.model_version


@events.quitting.add_listener
def _write_samples(**_kwargs: Any) -> None:
    path = os.environ.get("OLSIM_LOAD_SAMPLES")
    if path:
        with open(path, "w") as f:
            json.dump(SAMPLES, f)
