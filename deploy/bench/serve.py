"""``olsim bench serve``: what serving costs, measured in one run on the same model (MLP 64-256-10).

Paths, each for 1 and 256 rows per request: raw torch forward in this process (the limit, rows/s,
one torch thread as a replica uses), bare FastAPI + uvicorn (:mod:`olsim.deploy.bench.bare_app`: the same
schema and per-request work, no Ray) and olsim's Serve path as ``olsim run`` deploys it (Serve's
HTTP ingress in each mode of :mod:`olsim.deploy.run.ingress`, each with its own Ray, weights from the
registry). Like with like: olsim with N replicas is compared with bare uvicorn with N worker
processes (each process one torch thread), for every N in ``processes``. Each runs with the learner
idle and with a learner training at the same time (a separate process running the learner loop over
an unpaced stream with one torch thread, as the learner actor does). Load: ``hey`` (Debian package
``hey``): ``requests`` requests from ``clients`` concurrent clients, after a warm-up; the median of
``repeats`` runs. Ratios are against bare uvicorn with as many processes, measured in the same run.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import torch

from olsim.deploy.bench import torch_threads
from olsim.deploy.errors import UserError
from olsim.deploy.markdown import write_section
from olsim.deploy.net import free_port

log = logging.getLogger(__name__)

START = "<!-- olsim bench serve: start -->"
END = "<!-- olsim bench serve: end -->"


class BenchError(UserError, RuntimeError):
    """The benchmark cannot run; the message is one line meant for users."""


@dataclass
class HeyResult:
    rps: float
    statuses: dict[int, int] = field(default_factory=dict)
    errors: int = 0  # requests without an HTTP answer (connection refused/reset, timeout)
    p50_ms: float | None = None
    p99_ms: float | None = None

    @property
    def failed(self) -> int:
        return self.errors + sum(n for s, n in self.statuses.items() if s != 200)


def parse_hey(text: str) -> HeyResult:
    """Read ``hey``'s summary.

    >>> r = parse_hey('''Summary:
    ...   Requests/sec:\\t1234.5678
    ... Latency distribution:
    ...   50%% in 0.0061 secs
    ...   99%% in 0.0180 secs
    ... Status code distribution:
    ...   [200]\\t2990 responses
    ...   [503]\\t4 responses
    ... Error distribution:
    ...   [6]\\tPost "http://127.0.0.1:1/predict": dial tcp: connection refused
    ... '''.replace("%%", "%"))
    >>> r.rps, r.statuses, r.errors, r.failed, r.p50_ms
    (1234.5678, {200: 2990, 503: 4}, 6, 10, 6.1)
    """
    rps = re.search(r"Requests/sec:\s*([0-9.]+)", text)
    if rps is None:
        raise BenchError(f"hey printed no summary: {text.strip()[:200]!r}")
    statuses = {int(c): int(n) for c, n in re.findall(r"\[(\d{3})\]\s+(\d+) responses", text)}
    errors = 0
    if "Error distribution:" in text:
        errors = sum(
            int(n) for n in re.findall(r"^\s*\[(\d+)\]\s+\D", text.split("Error distribution:")[1], re.M)
        )

    def pct(q: str) -> float | None:
        m = re.search(rf"{q}% in ([0-9.]+) secs", text)
        return None if m is None else round(float(m.group(1)) * 1e3, 3)

    return HeyResult(float(rps.group(1)), statuses, errors, pct("50"), pct("99"))


def require_hey() -> None:
    """Raise BenchError unless the ``hey`` load tool is installed."""
    if shutil.which("hey") is None:
        raise BenchError("`hey` is not installed: apt-get install hey (Debian/Ubuntu)")


def hey(url: str, body: Path, requests: int, clients: int) -> HeyResult:
    require_hey()
    cmd = ["hey", "-n", str(requests), "-c", str(clients), "-m", "POST", "-T", "application/json"]
    done = subprocess.run(
        [*cmd, "-t", "20", "-D", str(body), url], capture_output=True, text=True, timeout=600
    )
    return parse_hey(done.stdout)


def torch_rows_per_s(rows: int, seconds: float = 2.0) -> float:
    """Forward passes of the MLP on ``rows`` rows, one torch thread, for ``seconds``: rows/s."""
    from olsim.learner.model import ModelSpec, build_model

    with torch_threads(1):
        model = build_model(ModelSpec(), seed=0).eval()
        x = torch.rand(rows, 64)
        n, t0 = 0, time.perf_counter()
        with torch.inference_mode():
            while time.perf_counter() - t0 < seconds:
                model(x).argmax(dim=1)
                n += 1
        return n * rows / (time.perf_counter() - t0)


def _wait_http(url: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise BenchError(f"{url} did not answer within {timeout_s:.0f}s")


@contextmanager
def bare_uvicorn(workers: int = 1) -> Iterator[str]:
    """The bare baseline app with ``workers`` uvicorn worker processes; yields its /predict URL."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "olsim.deploy.bench.bare_app", "--port", str(port), "--workers", str(workers)]
    )
    try:
        _wait_http(f"http://127.0.0.1:{port}/docs")
        yield f"http://127.0.0.1:{port}/predict"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@contextmanager
def learner_training(on: bool) -> Iterator[None]:
    """With ``on``: a learner loop training in its own process for as long as the block runs."""
    if not on:
        yield
        return
    proc = subprocess.Popen([sys.executable, "-m", "olsim.deploy.bench.serve", "train"])
    try:
        time.sleep(2.0)  # imports done, training under way
        if proc.poll() is not None:
            raise BenchError(f"the training process exited with {proc.returncode}")
        yield
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def train_forever() -> None:
    """What the ``train`` subprocess runs: the learner loop over unpaced streams, again and again."""
    from olsim.learner.config import LearnerConfig
    from olsim.learner.loop import LearnerLoop
    from olsim.stream.spec import StreamSpec

    torch.set_num_threads(1)
    spec = StreamSpec(tasks="split-digits", n_tasks=5, epochs=50, rate=None)
    seed = 0
    while True:
        LearnerLoop(spec.build(seed), LearnerConfig(), seed=seed, publish=lambda _s: None).run()
        seed += 1


def serve_forever(ingress: str, port: int, replicas: int = 2) -> None:
    """What the ``serve`` subprocess runs: olsim's Serve application as ``olsim run`` deploys it (gate
    off) with its own Ray in ``ingress`` mode on ``port`` and ``replicas`` replicas, serving one version;
    prints ``url URL`` once the replicas serve it and stops when its stdin closes."""
    from olsim.deploy.run.cluster import keep_ray_on_loopback
    from olsim.deploy.run.ingress import use_ingress

    keep_ray_on_loopback()
    use_ingress(ingress)  # before Ray starts: its processes read these switches
    import ray

    from olsim.deploy.run.cluster import connect_ray, get, wait_until
    from olsim.deploy.run.stack import ServingStack
    from olsim.deploy.scenario.spec import load_scenario
    from olsim.learner.model import build_model
    from olsim.learner.snapshot import Snapshot

    connect_ray(None, 0)
    scenario = load_scenario("split-digits")
    serving = scenario.serving.model_copy(update={"port": port, "replicas": replicas})
    scenario = scenario.model_copy(update={"serving": serving})
    stack = ServingStack(scenario, gate=False)
    try:
        stack.start_registry()
        stack.start_serve()
        get(stack.registry.publish.remote(Snapshot.from_model(build_model(scenario.learner.model, seed=0))))
        if not wait_until(stack.replicas_current, 60, "replicas to serve version 1"):
            raise BenchError("Serve replicas did not load the version within 60s")
        cfg = scenario.serving
        print(f"url http://{cfg.host}:{cfg.port}/predict", flush=True)
        sys.stdin.read()  # until the parent closes our stdin
    finally:
        stack.stop()
        ray.shutdown()


@contextmanager
def olsim_serve(ingress: str, replicas: int = 2) -> Iterator[str]:
    """olsim's Serve path in ``ingress`` mode with ``replicas`` replicas, in its own process with its
    own Ray (the ingress is a setting Ray reads when it starts); yields its /predict URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "olsim.deploy.bench.serve", "serve", ingress, str(free_port()), str(replicas)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        line = proc.stdout.readline()  # "url ..." once serving, "" if it died
        if not line.startswith("url "):
            proc.wait(timeout=60)
            raise BenchError(f"olsim's Serve path ({ingress}) did not start (exit code {proc.returncode})")
        url = line.split()[1]
        _wait_http(url.rsplit("/", 1)[0] + "/healthz")
        yield url
    finally:
        proc.stdin.close()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def request_bodies(out: Path, sizes: list[int]) -> dict[int, Path]:
    """One /predict body file per size (rows drawn from the held-out digits, seeded), for hey."""
    from olsim.deploy.load.session import held_out_requests

    rows = held_out_requests("split-digits").rows
    rng = np.random.default_rng(0)
    paths = {}
    out.mkdir(parents=True, exist_ok=True)
    for n in sizes:
        p = out / f"body-{n}.json"
        p.write_text(json.dumps({"inputs": rows[rng.integers(len(rows), size=n)].tolist()}))
        paths[n] = p
    return paths


def measure(url: str, body: Path, requests: int, clients: int, repeats: int) -> dict[str, Any]:
    """A warm-up, then ``repeats`` hey runs: median req/s, every run's, failures, the median run's
    latencies and the statuses summed over runs."""
    hey(url, body, max(clients, requests // 10), clients)  # warm-up: connections, caches, JIT paths
    runs = [hey(url, body, requests, clients) for _ in range(repeats)]
    best = sorted(runs, key=lambda r: r.rps)[len(runs) // 2]  # the median run
    return {
        "rps": statistics.median(r.rps for r in runs),
        "rps_runs": [round(r.rps, 1) for r in runs],
        "failed": sum(r.failed for r in runs),
        "sent": sum(sum(r.statuses.values()) + r.errors for r in runs),  # hey sends n rounded down to c
        "p50_ms": best.p50_ms,
        "p99_ms": best.p99_ms,
        "statuses": {
            str(k): sum(r.statuses.get(k, 0) for r in runs) for k in {k for r in runs for k in r.statuses}
        },
    }


def _ratio(olsim: dict[str, Any], bare: dict[str, Any]) -> float | None:
    return olsim["rps"] / bare["rps"] if bare["rps"] else None


def overload(concurrency: list[int], requests: int, work: Path) -> list[dict[str, Any]]:
    """olsim's default path at and beyond capacity: one ``hey`` run of single-row requests per
    client count in ``concurrency``: statuses, connection errors and latency."""
    from olsim.deploy.run.ingress import DEFAULT_INGRESS

    if not concurrency:
        return []
    body = request_bodies(work, [1])[1]
    out = []
    with olsim_serve(DEFAULT_INGRESS) as url:
        runs = []
        for c in concurrency:
            log.warning("bench serve: overload, %d clients", c)
            runs.append((c, hey(url, body, max(c, requests), c)))
    for c, r in runs:
        out.append(
            {
                "clients": c,
                "rps": r.rps,
                "statuses": {str(k): v for k, v in sorted(r.statuses.items())},
                "errors": r.errors,
                "p50_ms": r.p50_ms,
                "p99_ms": r.p99_ms,
            }
        )
    return out


def bench_serve(
    sizes: list[int],
    requests: int,
    clients: int,
    repeats: int,
    work: Path,
    modes: list[str] | None = None,
    processes: list[int] | None = None,
) -> list[dict[str, Any]]:
    """One row per (processes N, learner idle/training, rows per request): raw torch, bare uvicorn with
    N workers and olsim with N replicas in each ingress mode (``modes``, default all), in one run."""
    from olsim.deploy.run.ingress import INGRESS_MODES

    modes = list(modes or INGRESS_MODES)
    counts = list(processes or [1, 2])
    bodies = request_bodies(work, sizes)

    def reqs(n: int) -> int:
        return max(clients, requests if n == 1 else requests // 4)

    raw: dict[tuple[bool, int], float] = {}

    def each_cell(url: str, what: str) -> dict[tuple[bool, int], dict[str, Any]]:
        out = {}
        for training in (False, True):
            with learner_training(training):
                for n in sizes:
                    log.warning(
                        "bench serve: %s, learner %s, %d rows/request",
                        what,
                        "training" if training else "idle",
                        n,
                    )
                    if (training, n) not in raw:  # the limit, under the same learner load
                        raw[training, n] = statistics.median(torch_rows_per_s(n) for _ in range(repeats))
                    out[training, n] = measure(url, bodies[n], reqs(n), clients, repeats)
        return out

    rows = []
    for count in counts:
        with bare_uvicorn(count) as bare_url:
            bare = each_cell(bare_url, f"bare uvicorn, {count} worker(s)")
        olsim: dict[str, dict[tuple[bool, int], dict[str, Any]]] = {}
        for mode in modes:
            with olsim_serve(mode, count) as url:
                olsim[mode] = each_cell(url, f"olsim ({mode}), {count} replica(s)")
        rows += [
            {
                "processes": count,
                "learner": "training" if training else "idle",
                "rows": n,
                "raw_torch_rows_s": raw[training, n],
                "bare": bare[training, n],
                "olsim": {m: olsim[m][training, n] for m in modes},
                "ratio": {m: _ratio(olsim[m][training, n], bare[training, n]) for m in modes},
            }
            for training in (False, True)
            for n in sizes
        ]
    return rows


TARGETS = {1: 0.6, 256: 0.8}  # olsim / bare uvicorn with as many processes, learner idle, default ingress


def render(rows: list[dict[str, Any]], command: str, clients: int) -> str:
    from olsim.deploy.run.ingress import DEFAULT_INGRESS

    lines = [
        START,
        f"Command: `{command}` (2-core machine, MLP 64-256-10, `hey` with {clients} clients; "
        "req/s is the median of the repeats). Like with like: olsim with N replicas against bare "
        "uvicorn with N worker processes, one torch thread per process; olsim reached through the Serve "
        f"port in each ingress mode (the default is {DEFAULT_INGRESS}, which the targets apply to).",
        "",
        "| replicas = workers | learner | rows/request | raw torch rows/s (1 thread) | bare uvicorn req/s "
        "| olsim ingress | olsim req/s | olsim / bare | target | olsim p50 / p99 ms "
        "| failed / sent (olsim) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        for mode, o in r["olsim"].items():
            ratio = r["ratio"][mode]
            target = TARGETS.get(r["rows"]) if r["learner"] == "idle" and mode == DEFAULT_INGRESS else None
            met = "-" if target is None else f"{target:g}x: {'met' if ratio >= target else 'missed'}"
            lines.append(
                f"| {r['processes']} | {r['learner']} | {r['rows']} | {r['raw_torch_rows_s']:,.0f} "
                f"| {r['bare']['rps']:,.0f} | {mode} | {o['rps']:,.0f} | {ratio:.2f} | {met} "
                f"| {o['p50_ms']} / {o['p99_ms']} | {o['failed']} / {o['sent']} |"
            )
    lines.append(END)
    return "\n".join(lines)


def render_overload(rows: list[dict[str, Any]]) -> str:
    """The overload table (default ingress, 1 row per request)."""
    lines = [
        "",
        "At and beyond capacity (default ingress, learner idle, 1 row per request, one `hey` run per "
        "client count): excess load is refused with 503 + `Retry-After`, nothing else fails.",
        "",
        "| clients | req/s | 200 | 503 | other statuses | connection errors | p50 / p99 ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        st = r["statuses"]
        other = sum(n for k, n in st.items() if k not in ("200", "503"))
        lines.append(
            f"| {r['clients']} | {r['rps']:,.0f} | {st.get('200', 0)} | {st.get('503', 0)} | {other} "
            f"| {r['errors']} | {r['p50_ms']} / {r['p99_ms']} |"
        )
    return "\n".join(lines)


def write(
    rows: list[dict[str, Any]],
    path: Path,
    command: str,
    clients: int,
    overloaded: list[dict[str, Any]] | None = None,
) -> None:
    text = render(rows, command, clients)
    if overloaded:
        text = text.replace(END, render_overload(overloaded) + "\n" + END)
    write_section(path, text, title="Serving throughput (`olsim bench serve`)")


def main() -> None:
    """The benchmark's helper processes: ``python -m olsim.deploy.bench.serve train`` (the training process
    of :func:`learner_training`) and ``... serve MODE PORT REPLICAS`` (:func:`olsim_serve`)."""
    args = sys.argv[1:]
    if args == ["train"]:
        train_forever()
    elif len(args) == 4 and args[0] == "serve":
        serve_forever(args[1], int(args[2]), int(args[3]))
    else:
        raise SystemExit(
            "usage: python -m olsim.deploy.bench.serve train | serve MODE PORT REPLICAS"
            "  (olsim bench serve runs these)"
        )


if __name__ == "__main__":
    main()
