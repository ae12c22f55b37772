"""A small open-loop load generator for /predict or /generate (loopback only), used by ``olsim run
--load-rps``.

Requests are *scheduled* at a fixed arrival rate and sent by a pool of worker threads, so a slow
response does not delay the next request (open loop). Latency is measured from the scheduled send
time: when every worker is busy the wait counts, which closed-loop tools hide ("coordinated
omission"). Each response is checked against the response schema. Full load testing (Locust) is
``olsim load``'s job.

Like any HTTP client with a connection pool (urllib3, browsers), a request sent on a *reused*
keep-alive connection that the server closed without answering (no HTTP response at all) is sent
once more; ``/predict`` and ``/generate`` are idempotent. HAProxy closes idle client connections
when Serve reloads it on a replica change, and a request can race that close. Nothing else is
retried: not a refused connection, not a timeout, not a new connection that failed. A retry is a
fact about the request: its sample says so and why (``retried``), the summary counts them, and a
request that fails on its second try counts as failed.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
from pydantic import ValidationError

from olsim.deploy.load.traffic import Traffic
from olsim.serving.schemas import GenerateResponse, PredictResponse

log = logging.getLogger(__name__)


# No HTTP answer because an open connection went away (closed or reset); not refusals, not timeouts.
CLOSED_UNANSWERED = (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)
KEEPALIVE_CLOSED = "keepalive_closed"  # the one reason a request is retried


@dataclass
class Sample:
    sent_at: float  # unix time
    latency_s: float
    status: int  # 0 = no HTTP response (connection error, timeout, bad body)
    version: int | None
    replica: str | None
    retried: str | None = None  # why it was sent a second time (KEEPALIVE_CLOSED), None if it was not
    tokens: int | None = None  # bytes a /generate answer generated


@dataclass
class LoadGenerator:
    url: str
    rows: np.ndarray  # candidate input rows (a /predict body each), unless ``bodies`` are given
    rps: float = 20.0
    timeout_s: float = 10.0
    seed: int = 0
    workers: int = 16
    max_samples_kept: int = 100_000
    bodies: list[dict[str, Any]] | None = None  # request bodies to send instead (e.g. /generate prompts)
    response: type[PredictResponse] | type[GenerateResponse] = PredictResponse  # what a 200 parses as
    samples: list[Sample] = field(default_factory=list)

    @classmethod
    def sending(cls, traffic: Traffic, base_url: str, **kwargs: Any) -> LoadGenerator:
        """A generator of ``traffic``'s requests to ``base_url`` (its route appended)."""
        return cls(
            f"{base_url}{traffic.path}",
            np.empty((0, 0)),
            bodies=traffic.bodies,
            response=traffic.response,
            **kwargs,
        )

    def __post_init__(self) -> None:
        if not self.rps > 0:
            raise ValueError(f"rps must be > 0, got {self.rps}")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="olsim-load", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.timeout_s + 1)

    def _loop(self) -> None:
        rng = np.random.default_rng(self.seed)
        period = 1.0 / self.rps
        next_at = time.perf_counter()
        limits = httpx.Limits(max_connections=self.workers, max_keepalive_connections=self.workers)
        with (
            httpx.Client(timeout=self.timeout_s, limits=limits) as client,
            ThreadPoolExecutor(self.workers, thread_name_prefix="olsim-load") as pool,
        ):
            while not self._stop.is_set():
                if self.bodies is not None:
                    body = self.bodies[int(rng.integers(len(self.bodies)))]
                else:
                    body = {"inputs": [self.rows[int(rng.integers(len(self.rows)))].tolist()]}
                pool.submit(self._one, client, body, next_at)
                next_at += period
                self._stop.wait(max(0.0, next_at - time.perf_counter()))

    def _one(self, client: httpx.Client, body: dict[str, object], scheduled: float) -> None:
        sent = time.time() - (time.perf_counter() - scheduled)  # unix time it was due
        status, version, replica, retried, tokens = 0, None, None, None, None
        try:
            try:
                r = _post(client, self.url, body)
            except ReusedConnectionClosed as exc:  # what a pooled client retries: once
                log.info("request retried error=%r", exc.__cause__)
                retried = KEEPALIVE_CLOSED
                r = client.post(self.url, json=body)
            status = r.status_code
            if status == 200:
                parsed = self.response.model_validate_json(r.content)
                version, replica = parsed.model_version, r.headers.get("x-olsim-replica")
                tokens = parsed.tokens if isinstance(parsed, GenerateResponse) else None
        except httpx.HTTPError as exc:
            log.warning("request failed error=%r retried=%s", exc, retried)
        except ValidationError:
            status = 0  # a 200 whose body breaks the response schema counts as a failure
        latency = time.perf_counter() - scheduled
        self.samples.append(Sample(sent, latency, status, version, replica, retried, tokens))

    def window(self, start: float, end: float) -> list[Sample]:
        """Requests due in [start, end) (unix times)."""
        return [s for s in list(self.samples) if start <= s.sent_at < end]

    def summary(self, samples: list[Sample] | None = None) -> dict[str, Any]:
        """Counts and latency percentiles of ``samples`` (default: every request so far)."""
        samples = sorted(self.samples if samples is None else samples, key=lambda s: s.sent_at)
        # one row per request: [unix time sent, latency ms, HTTP status (0 = none), version, replica,
        # rows in it, why it was retried (None: it was not)]
        rows = [
            [round(s.sent_at, 4), round(s.latency_s * 1e3, 3), s.status, s.version, s.replica, 1, s.retried]
            for s in samples
        ]
        out = summarize_rows(rows) | {"samples": rows[: self.max_samples_kept]}
        generated = [s for s in samples if s.tokens]
        if generated:
            out["ms_per_token"] = per_token(
                [s.latency_s * 1e3 for s in generated], [s.tokens or 0 for s in generated]
            )
        return out


class ReusedConnectionClosed(Exception):
    """A request's reused keep-alive connection was closed before any answer (``__cause__``: why)."""


def _post(client: httpx.Client, url: str, body: dict[str, object]) -> httpx.Response:
    """POST once; a request that went out on a reused pooled connection (it opened none) and got no
    answer because that connection closed raises ReusedConnectionClosed, everything else as is."""
    opened: list[str] = []

    def trace(event: str, _info: dict[str, Any]) -> None:
        if event == "connection.connect_tcp.started":
            opened.append(event)

    try:
        return client.post(url, json=body, extensions={"trace": trace})
    except CLOSED_UNANSWERED as exc:
        if opened:  # a new connection failed: no stale keep-alive to blame, not retried
            raise
        raise ReusedConnectionClosed(str(exc)) from exc


def per_token(latency_ms: list[float], tokens: list[int]) -> dict[str, float]:
    """Percentiles of each answered /generate request's latency divided by the bytes it generated.

    >>> per_token([10.0, 30.0], [5, 10])
    {'p50': 2.5, 'p99': 2.99}
    """
    each = np.array(latency_ms) / np.array(tokens)
    return {f"p{q}": round(float(np.percentile(each, q)), 3) for q in (50, 99)}


def retried(row: list[Any]) -> str | None:
    """Why the request of a sample row was retried (None: it was not, or the row does not say)."""
    return row[6] if len(row) > 6 else None


def summarize_rows(rows: list[list[Any]]) -> dict[str, Any]:
    """Count, errors, answers by status, retries by reason, latency percentiles of the 200s and the
    versions that answered, from rows of [unix time sent, latency ms, status (0 = no answer),
    version, replica, rows, retried].

    >>> s = summarize_rows([[0.0, 10.0, 200, 1, "a", 1, None],
    ...                     [0.1, 30.0, 200, 2, "a", 1, "keepalive_closed"],
    ...                     [0.2, 5.0, 503, None, None, 1, None]])
    >>> s["count"], s["errors"], s["by_status"], s["retried"], s["latency_ms"]["p50"], s["versions_seen"]
    (3, 1, {'200': 2, '503': 1}, 1, 20.0, [1, 2])
    """
    ok = [r for r in rows if r[2] == 200]
    by_reason: dict[str, int] = {}
    for r in rows:
        why = retried(r)
        if why:
            by_reason[why] = by_reason.get(why, 0) + 1
    lat = np.array([r[1] for r in ok], dtype=float)
    by_status: dict[str, int] = {}
    for r in rows:
        by_status[str(r[2])] = by_status.get(str(r[2]), 0) + 1
    return {
        "count": len(rows),
        "errors": len(rows) - len(ok),
        "by_status": by_status,
        "retried": sum(by_reason.values()),  # requests sent a second time (each counted once)
        "retried_by_reason": by_reason,
        "latency_ms": {
            f"p{q}": float(np.percentile(lat, q)) if len(lat) else None for q in (50, 90, 95, 99, 99.9)
        }
        | {"max": float(lat.max()) if len(lat) else None},
        "versions_seen": sorted({r[3] for r in ok if r[3] is not None}),
    }
