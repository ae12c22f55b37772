"""A small open-loop load generator for /predict (loopback only), used by ``olsim run --load-rps``.

Requests are sent at a fixed arrival rate from one thread; each response is checked against the
response schema. Full load testing (Locust) is ``olsim load``'s job.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

import httpx
import numpy as np
from pydantic import ValidationError

from serving.schemas import PredictResponse

log = logging.getLogger(__name__)


@dataclass
class Sample:
    sent_at: float  # unix time
    latency_s: float
    status: int  # 0 = no HTTP response (connection error, timeout, bad body)
    version: int | None
    replica: str | None


@dataclass
class LoadGenerator:
    url: str
    rows: np.ndarray  # candidate input rows
    rps: float = 20.0
    timeout_s: float = 10.0
    seed: int = 0
    max_samples_kept: int = 100_000
    samples: list[Sample] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.rps > 0:
            raise ValueError(f"rps must be > 0, got {self.rps}")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="olsim-load", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.timeout_s + 1)

    def _loop(self) -> None:
        rng = np.random.default_rng(self.seed)
        period = 1.0 / self.rps
        next_at = time.monotonic()
        with httpx.Client(timeout=self.timeout_s) as client:
            while not self._stop.is_set():
                row = self.rows[int(rng.integers(len(self.rows)))]
                self.samples.append(self._one(client, {"inputs": [row.tolist()]}))
                next_at += period
                self._stop.wait(max(0.0, next_at - time.monotonic()))

    def _one(self, client: httpx.Client, body: dict[str, object]) -> Sample:
        sent = time.time()
        t = time.perf_counter()
        try:
            r = client.post(self.url, json=body)
        except httpx.HTTPError as exc:
            log.warning("request failed error=%r", exc)
            return Sample(sent, time.perf_counter() - t, 0, None, None)
        latency = time.perf_counter() - t
        if r.status_code != 200:
            return Sample(sent, latency, r.status_code, None, None)
        try:
            parsed = PredictResponse.model_validate_json(r.content)
        except ValidationError:
            return Sample(sent, latency, 0, None, None)
        return Sample(sent, latency, 200, parsed.model_version, r.headers.get("x-olsim-replica"))

    def summary(self) -> dict[str, object]:
        ok = [s for s in self.samples if s.status == 200]
        lat = np.array([s.latency_s for s in ok]) * 1e3
        by_status: dict[str, int] = {}
        for s in self.samples:
            by_status[str(s.status)] = by_status.get(str(s.status), 0) + 1
        return {
            "count": len(self.samples),
            "errors": len(self.samples) - len(ok),
            "by_status": by_status,
            "latency_ms": {
                f"p{q}": float(np.percentile(lat, q)) if len(lat) else None for q in (50, 90, 95, 99)
            }
            | {"max": float(lat.max()) if len(lat) else None},
            "versions_seen": sorted({s.version for s in ok if s.version is not None}),
            # one row per request: [unix time sent, latency ms, HTTP status (0 = none), version, replica]
            "samples": [
                [round(s.sent_at, 4), round(s.latency_s * 1e3, 3), s.status, s.version, s.replica]
                for s in self.samples[: self.max_samples_kept]
            ],
        }
