"""``olsim bench swap``: hot swaps under load, by model size and by how weights reach the replicas.

Every mechanism serves the same model through the same deployment class, behind the same registry
and gate, under the same open-loop load. Per round, size and mechanism: deploy, then ``cycles``
times a steady window (``window_s`` seconds of load, no new version: the baseline) followed by a
swapping window (the same load while a new version is published every ``1/publish_hz`` s), then
tear down. Mechanisms alternate within each round; the table reports medians over rounds.

- ``value``: olsim's long poll with ``serving.transfer: value``: each replica's answer carries the
  whole version, which it verifies and copies into a fresh network.
- ``reference``: the long poll with ``serving.transfer: reference`` (the default): the registry puts
  each new array in Ray's object store once; a replica fetches the arrays it does not hold, checks
  their digests and serves them in place.
- ``delta``: as ``reference``, for a model with LoRA adapters over a frozen base where a publish
  changes only the adapters (what a LoRA fine-tune publishes): only they move.
- ``reconfigure`` (Ray Serve): ``registry.publish`` then a Serve *config* update that changes only
  the deployment's ``user_config`` (what ``serve deploy`` sends; Serve treats it as a lightweight,
  in-place update and calls ``Predictor.reconfigure`` on every replica, which loads the registry's
  current version, by reference). ``serve.run`` from Python would not do: it gives every deployment
  a random code version, so each call replaces the replicas (measured: ~10 s per update).

A new version is the last one with every changed tensor nudged in place (``+= 1e-6``), exported and
published by the learner's own path: :meth:`Snapshot.from_model` with the previous export (unchanged
tensors are neither copied nor hashed; its time is the ``export ms`` column), then
:func:`olsim.learner.actors.learner.publish`, which sends the registry only the arrays that changed
since the last accepted version (``publish call ms``).

Staleness is registry accept -> replica serving it, from the replicas' own acknowledgements, which
also say how many bytes each swap fetched and how much weight memory the replica held at the swap's
peak (distinct memory behind the old and new networks and the arrays received). A sampler reads each
replica process's resident set (``/proc/PID/status``) every 20 ms.
"""

from __future__ import annotations

import logging
import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from olsim.deploy.load.generator import LoadGenerator, Sample
from olsim.deploy.load.traffic import Traffic
from olsim.deploy.scenario.spec import Scenario
from olsim.learner.model import ModelSpec

log = logging.getLogger(__name__)

START = "<!-- olsim bench swap: start -->"
END = "<!-- olsim bench swap: end -->"
MECHANISMS = ("value", "reference", "delta", "reconfigure")
SIZES_MB = (1, 10, 100, 1000)
# byte transformers of about 1, 10, 100 and 1000 MB of float32 weights: (layers, width)
SHAPES = {1: (2, 96), 10: (3, 256), 100: (8, 512), 1000: (16, 1152)}
PROMPT_BYTES = 8  # /generate prompts are cut to this many bytes: one new byte per request
LOAD_SHARE = 0.5  # at most this share of the replicas' capacity is offered as load
NUDGE = 1e-6
MB = 1e6


def size_spec(mb: int, adapters: bool = False) -> ModelSpec:
    """The byte transformer of about ``mb`` MB (``adapters``: with one rank-8 LoRA adapter per layer)."""
    if mb not in SHAPES:
        raise ValueError(f"size {mb} MB: choose from {sorted(SHAPES)}")
    layers, width = SHAPES[mb]
    extra: dict[str, Any] = {"adapters": 1, "lora_rank": 8} if adapters else {}
    return ModelSpec(
        kind="transformer", layers=layers, width=width, heads=4, context=64, in_features=64, **extra
    )


def text_traffic(seed: int) -> Traffic:
    """Short /generate requests over standard-library source (one new byte each)."""
    from olsim.deploy.load.traffic import held_out_traffic
    from olsim.stream.tasks import tasks_from_data
    from olsim.stream.text import text_tasks

    tasks = tasks_from_data(text_tasks(seed, ("python",), size=4000), seed)
    traffic = held_out_traffic(tasks, "next-token")
    bodies = [{**b, "prompt": b["prompt"][-PROMPT_BYTES:], "max_new_tokens": 1} for b in traffic.bodies]
    return Traffic(traffic.path, bodies, traffic.response)


def _p(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def _latencies(samples: list[Sample]) -> list[float]:
    return [s.latency_s * 1e3 for s in samples if s.status == 200]


FIELDS = ("VmRSS", "RssAnon", "RssShmem")  # resident set; its private part; its shared-memory part


@dataclass
class RssSampler:
    """Resident memory (:data:`FIELDS`, bytes) of every process whose command line names ``tag``,
    every ``period_s`` seconds."""

    tag: str
    period_s: float = 0.02
    samples: list[tuple[float, int, dict[str, int]]] = field(default_factory=list)  # (time, pid, fields)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="olsim-rss", daemon=True)
        self.pids = self._find()

    def _find(self) -> list[int]:
        pids = []
        for p in Path("/proc").iterdir():
            if p.name.isdigit():
                try:
                    if self.tag.encode() in (p / "cmdline").read_bytes():
                        pids.append(int(p.name))
                except OSError:
                    continue
        return pids

    def _loop(self) -> None:
        while not self._stop.wait(self.period_s):
            now = time.time()
            for pid in self.pids:
                try:
                    status = Path(f"/proc/{pid}/status").read_text()
                except OSError:
                    continue
                values = {}
                for line in status.splitlines():
                    key, _, rest = line.partition(":")
                    if key in FIELDS:
                        values[key] = int(rest.split()[0]) * 1024
                self.samples.append((now, pid, values))

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2)

    def rise(self, key: str, steady: tuple[float, float], after: float) -> int | None:
        """Largest rise of ``key`` over one process's median in the ``steady`` window, after ``after``."""
        base: dict[int, list[int]] = {}
        peak: dict[int, int] = {}
        for t, pid, v in self.samples:
            if key not in v:
                continue
            if steady[0] <= t < steady[1]:
                base.setdefault(pid, []).append(v[key])
            elif t >= after:
                peak[pid] = max(peak.get(pid, 0), v[key])
        rises = [peak[p] - int(statistics.median(b)) for p, b in base.items() if p in peak]
        return max(rises, default=None)


class Publisher:
    """The learner's stand-in, in its own process (``ray.remote``): it holds the model, and each
    :meth:`next` nudges the tensors that change (all, or only the LoRA adapters), exports and
    publishes. Its work then competes with the replicas for CPU as a learner's would, not with the
    load generator's threads in the driver."""

    def __init__(self, registry: Any, spec: ModelSpec, seed: int, adapters_only: bool) -> None:
        from olsim.learner.model import build_model
        from olsim.learner.snapshot import Snapshot

        torch.set_num_threads(1)
        self.registry = registry
        self.adapters_only = adapters_only
        self.model = build_model(spec, seed=seed)
        self.last = Snapshot.from_model(self.model, task=0, step=0)
        self.accepted: Any = None
        self.step = 0

    def sizes(self) -> tuple[int, int]:
        """(bytes of weights, parameters)."""
        return self.last.manifest().nbytes, sum(p.numel() for p in self.model.parameters())

    def next(self) -> tuple[float, float]:
        """Publish the next version; returns (export seconds, publish-call seconds)."""
        from olsim.learner.actors.learner import publish
        from olsim.learner.snapshot import Snapshot

        if self.accepted is not None:
            from olsim.learner.adapters import adapter_parameters

            changing = adapter_parameters(self.model) if self.adapters_only else self.model.parameters()
            with torch.no_grad():
                for p in changing:
                    if p.is_floating_point():
                        p.add_(NUDGE)
        self.step += 1
        t = time.perf_counter()
        if self.accepted is not None:
            self.last = Snapshot.from_model(self.model, previous=self.last, task=0, step=self.step)
        export_s = time.perf_counter() - t
        t = time.perf_counter()
        result = publish(self.registry, self.last, self.accepted)
        if result.version is None:
            raise RuntimeError(f"bench candidate rejected: {result.reason} {result.detail}")
        self.accepted = self.last
        return export_s, time.perf_counter() - t


def _phase(
    mechanism: str,
    scenario: Scenario,
    spec: ModelSpec,
    traffic: Traffic,
    cycles: int,
    window_s: float,
    rps: float,
    publish_hz: float,
    seed: int,
) -> dict[str, Any]:
    import ray

    from olsim.deploy.run.cluster import get, wait_until
    from olsim.deploy.run.stack import ServingStack

    delta = mechanism == "delta"
    if delta:
        spec = spec.model_copy(update={"adapters": 1, "lora_rank": 8})
    cfg = scenario.serving.model_copy(
        update={
            "updates": "reconfigure" if mechanism == "reconfigure" else "long-poll",
            "transfer": "value" if mechanism == "value" else "reference",
        }
    )
    learner = scenario.learner.model_copy(update={"model": spec})
    s = scenario.model_copy(update={"serving": cfg, "learner": learner})
    stack = ServingStack(s, gate=False, app_name=f"bench-swap-{mechanism}")
    registry = stack.start_registry()
    publisher: Any = ray.remote(Publisher).options(num_cpus=0).remote(registry, spec, seed, delta)
    size, parameters = get(publisher.sizes.remote())
    load: LoadGenerator | None = None
    rss: RssSampler | None = None

    def deploy_config(generation: int) -> None:
        """Serve's declarative path (as ``serve deploy``), blocking until the app is running."""
        from ray.serve.context import _get_global_client
        from ray.serve.schema import ServeDeploySchema

        from olsim.deploy.run.cluster import NAMESPACE

        app = {
            "name": stack.app_name,
            "route_prefix": stack.route_prefix,
            "import_path": "olsim.serving.app:app_builder",
            "args": {
                "registry_name": stack.registry_name,
                "namespace": NAMESPACE,
                "model": spec.model_dump(mode="json"),
                "serving": cfg.model_dump(mode="json"),
            },
            "deployments": [{"name": "Predictor", "user_config": {"generation": generation}}],
        }
        client = _get_global_client()
        if client is None:
            raise RuntimeError("Serve is not running")
        client.deploy_apps(ServeDeploySchema.model_validate({"applications": [app]}), _blocking=True)

    try:
        get(publisher.next.remote())
        if mechanism == "reconfigure":
            from ray import serve

            serve.start(http_options={"host": cfg.host, "port": cfg.port})
            deploy_config(1)
        else:
            stack.start_serve()
        wait_until(stack.replicas_current, 120, "replicas to load version 1")
        base_url = f"http://{cfg.host}:{cfg.port}"
        service_s = _service_time(traffic, base_url)
        offered = min(rps, LOAD_SHARE * cfg.replicas / service_s)
        rss = RssSampler(f"ServeReplica:{stack.app_name}")
        rss.start()
        load = LoadGenerator.sending(traffic, base_url, rps=offered, seed=seed, timeout_s=30.0)
        load.start()
        time.sleep(1.0)  # warm the connections
        swaps_before = len(get(registry.swaps.remote()))
        update_s: list[float] = []
        export_s: list[float] = []
        steady: list[Sample] = []
        during: list[Sample] = []
        windows: list[tuple[float, float, bool]] = []
        generation, swap_time, first_swap_at = 1, 0.0, 0.0
        for _ in range(cycles):  # steady and swapping windows alternate, so drift hits both alike
            t0 = time.time()
            time.sleep(window_s)
            windows.append((t0, time.time(), False))
            t0 = time.time()
            first_swap_at = first_swap_at or t0
            next_at = time.monotonic()
            while time.time() - t0 < window_s:
                exported, published = get(publisher.next.remote())
                export_s.append(exported)
                generation += 1
                t = time.perf_counter()
                if mechanism == "reconfigure":
                    deploy_config(generation)  # blocks until the app is running again
                update_s.append(published + time.perf_counter() - t)
                next_at += 1.0 / publish_hz
                time.sleep(max(0.0, min(next_at - time.monotonic(), t0 + window_s - time.time())))
            windows.append((t0, time.time(), True))
            swap_time += time.time() - t0
        wait_until(stack.replicas_current, 120, "replicas to serve the last version")
        time.sleep(0.5)  # let requests due in the last window finish
        load.stop()
        rss.stop()
        for start, end, swapping in windows:
            (during if swapping else steady).extend(load.window(start, end))
        swaps = [s for s in get(registry.swaps.remote())[swaps_before:] if s.generation > 1]
        staleness = [max(0.0, s.staleness_s) * 1e3 for s in swaps]
        before = windows[0][:2]  # serving version 1, before any swap
        return {
            "mechanism": mechanism,
            "model_bytes": size,
            "parameters": parameters,
            "rps": offered,
            "service_ms": service_s * 1e3,
            "versions": generation - 1,
            "publish_per_s": (generation - 1) / swap_time,
            "swaps_acked": len(swaps),
            "swaps_expected": (generation - 1) * cfg.replicas,
            "staleness_ms": {
                "p50": _p(staleness, 50),
                "p99": _p(staleness, 99),
                "max": max(staleness, default=None),
            },
            "moved_bytes": _p([float(s.moved_bytes) for s in swaps], 50),
            "held_peak_bytes": max((s.held_bytes for s in swaps), default=None),
            "rss_rise_bytes": {k: rss.rise(k, before, first_swap_at) for k in FIELDS},
            "update_call_ms": _p([u * 1e3 for u in update_s], 50),
            "export_ms": _p([e * 1e3 for e in export_s], 50),
            "steady": _window_stats(steady),
            "swapping": _window_stats(during),
        }
    finally:
        if load is not None:
            load.stop()
        if rss is not None:
            rss.stop()
        ray.kill(publisher)
        stack.stop()


def _service_time(traffic: Traffic, base_url: str, n: int = 5) -> float:
    """Median seconds one request takes alone, over the first ``n`` bodies (the load is sized from it)."""
    import itertools

    import httpx

    from olsim.deploy.bench import median_s

    bodies = itertools.cycle(traffic.bodies[:n])
    with httpx.Client(timeout=60) as client:
        return median_s(
            lambda: client.post(f"{base_url}{traffic.path}", json=next(bodies)).raise_for_status(), n
        )


def _window_stats(samples: list[Sample]) -> dict[str, Any]:
    lat = _latencies(samples)
    return {
        "requests": len(samples),
        "failed": sum(1 for s in samples if s.status != 200),
        "p50_ms": _p(lat, 50),
        "p99_ms": _p(lat, 99),
        "max_ms": max(lat, default=None),
    }


def bench_swap(
    scenario: Scenario,
    rounds: int = 3,
    cycles: int = 4,
    window_s: float = 5.0,
    rps: float = 50.0,
    publish_hz: float = 1.0,
    seed: int = 0,
    sizes: tuple[int, ...] = (),
    mechanisms: tuple[str, ...] = MECHANISMS,
) -> list[dict[str, Any]]:
    """Every size x mechanism, ``rounds`` times, on one local Ray cluster; returns every phase.

    Without ``sizes``, the scenario's own model and held-out traffic; with them, byte transformers
    of about those many MB under short /generate requests. A phase that fails is recorded with its
    error and the run goes on."""
    from olsim.deploy.load.traffic import held_out_traffic
    from olsim.deploy.run.cluster import connect_ray

    started = connect_ray(None)
    results: list[dict[str, Any]] = []
    cases: list[tuple[int | None, ModelSpec, Traffic]]
    if sizes:
        cases = [(mb, size_spec(mb), text_traffic(scenario.seed)) for mb in sizes]
    else:
        spec = scenario.learner.model
        tasks = scenario.stream.build_tasks(scenario.seed)
        cases = [(None, spec, held_out_traffic(tasks, spec.objective, scenario.serving))]
    try:
        for r in range(rounds):
            for mb, spec, traffic in cases:
                order = mechanisms if r % 2 == 0 else mechanisms[::-1]
                for mechanism in order:
                    t = time.time()
                    try:
                        res = _phase(
                            mechanism,
                            scenario,
                            spec,
                            traffic,
                            cycles,
                            window_s,
                            rps,
                            publish_hz,
                            seed + 100 * r,
                        )
                    except Exception as exc:  # e.g. a size this machine cannot swap in time
                        log.error("[round %d] %s MB %s failed: %r", r, mb, mechanism, exc)
                        res = {"mechanism": mechanism, "error": repr(exc)}
                    res.update(round=r, size_mb=mb, seconds=time.time() - t)
                    if "error" not in res:
                        log.warning(
                            "[round %d] %s MB %s: staleness p99 %.1f ms, moved %.1f MB, p99 ms steady "
                            "%.1f swapping %.1f, failed %d",
                            r,
                            mb,
                            mechanism,
                            res["staleness_ms"]["p99"] or float("nan"),
                            (res["moved_bytes"] or 0) / MB,
                            res["steady"]["p99_ms"] or float("nan"),
                            res["swapping"]["p99_ms"] or float("nan"),
                            res["steady"]["failed"] + res["swapping"]["failed"],
                        )
                    results.append(res)
    finally:
        if started:
            import ray

            ray.shutdown()
    return results


def _med(values: list[float | None], fmt: str = "{:.1f}") -> str:
    vs = [v for v in values if v is not None]
    return fmt.format(statistics.median(vs)) if vs else "n/a"


def render(results: list[dict[str, Any]], command: str, replicas: int, publish_hz: float) -> str:
    lines = [
        START,
        f"Command: `{command}`. {replicas} replicas; open-loop load (latency from the scheduled send "
        f"time) at the req/s shown: the command's rate, or {LOAD_SHARE:g} of the replicas' capacity "
        "measured alone if that is lower. Steady windows (no new version) alternate with swapping "
        f"windows (a new version every {1 / publish_hz:g} s, or as fast as the publish call returns). "
        "moved MB: fetched per swap (median); held / model: the most weight memory a replica held at a "
        "swap's peak (old and new network, and the arrays received: distinct memory, object store "
        "included), over the model's bytes; RSS rise / model: a replica's peak resident set while swapping "
        "over its median serving version 1, in model sizes, private (RssAnon: copies it made) and shared "
        "(RssShmem: object-store pages it has read, which the node holds once for every replica and the "
        "registry keeps for retained versions); p99 ratio = swapping p99 / steady p99 per round. "
        "Medians over rounds, mechanisms alternating within each round.",
        "",
        "| model MB | mechanism | req/s | staleness p50 ms | staleness p99 ms | moved MB per swap | "
        "held / model | private RSS rise / model | shared RSS rise / model | steady p99 ms | "
        "swapping p99 ms | p99 ratio | "
        "failed / requests | export ms | publish call ms | versions/s | swaps acked |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    keys = sorted({(r["size_mb"] or 0, r["mechanism"]) for r in results}, key=lambda k: (k[0], _order(k[1])))
    for mb, m in keys:
        rs = [r for r in results if (r["size_mb"] or 0) == mb and r["mechanism"] == m]
        ok = [r for r in rs if "error" not in r]
        if not ok:
            lines.append(f"| {mb or '-'} | {m} | did not complete: {rs[0]['error'][:120]} |" + " |" * 14)
            continue
        size = statistics.median(r["model_bytes"] for r in ok)
        failed = sum(r["steady"]["failed"] + r["swapping"]["failed"] for r in ok)
        requests = sum(r["steady"]["requests"] + r["swapping"]["requests"] for r in ok)
        ratios = [
            r["swapping"]["p99_ms"] / r["steady"]["p99_ms"]
            for r in ok
            if r["swapping"]["p99_ms"] and r["steady"]["p99_ms"]
        ]

        def rise(key: str, rs: list[dict[str, Any]] = ok) -> str:
            return _med(
                [
                    None if r["rss_rise_bytes"][key] is None else r["rss_rise_bytes"][key] / r["model_bytes"]
                    for r in rs
                ],
                "{:.2f}",
            )

        cells = [
            f"{size / MB:.1f}",
            m + ("" if len(ok) == len(rs) else f" ({len(rs) - len(ok)} of {len(rs)} rounds failed)"),
            _med([r["rps"] for r in ok]),
            _med([r["staleness_ms"]["p50"] for r in ok]),
            _med([r["staleness_ms"]["p99"] for r in ok]),
            _med([None if r["moved_bytes"] is None else r["moved_bytes"] / MB for r in ok], "{:.2f}"),
            _med(
                [None if r["held_peak_bytes"] is None else r["held_peak_bytes"] / size for r in ok], "{:.2f}"
            ),
            rise("RssAnon"),
            rise("RssShmem"),
            _med([r["steady"]["p99_ms"] for r in ok]),
            _med([r["swapping"]["p99_ms"] for r in ok]),
            _med(list(ratios), "{:.2f}"),
            f"{failed} / {requests}",
            _med([r["export_ms"] for r in ok]),
            _med([r["update_call_ms"] for r in ok]),
            _med([r["publish_per_s"] for r in ok], "{:.2f}"),
            f"{sum(r['swaps_acked'] for r in ok)} / {sum(r['swaps_expected'] for r in ok)}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append(END)
    return "\n".join(lines)


def _order(mechanism: str) -> int:
    return MECHANISMS.index(mechanism) if mechanism in MECHANISMS else len(MECHANISMS)


def write(results: list[dict[str, Any]], out: Path, command: str, scenario: Scenario, hz: float) -> None:
    from olsim.deploy.markdown import write_section

    section = render(results, command, scenario.serving.replicas, hz)
    write_section(out, section, title="Hot swap at size (`olsim bench swap`)")
