"""One ``olsim run``: start (or join) Ray, wire registry, evaluator, Serve and learner, drive, report.

:class:`ServingStack` (the registry behind its gate plus the Serve application) is the part tests
and ``olsim bench swap`` reuse without a learner; :class:`Run` adds the evaluator, the learner
and the load generator, and :func:`run` is the whole thing with teardown.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from deploy.errors import UserError, first_line
from deploy.expect import check
from deploy.faults import Injector, requests_around
from deploy.ingress import current_ingress
from deploy.net import port_free
from deploy.scenario import Scenario
from serving.auth import MIN_TOKEN_LENGTH, check_token

log = logging.getLogger(__name__)

NAMESPACE = "olsim"
APP_NAME = "olsim"
TOKEN_ENV = "OLSIM_ADMIN_TOKEN"


class RunOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    duration_s: float | None = Field(None, gt=0, description="stop the stream after this many seconds")
    report_dir: Path = Path("out")
    address: str | None = None
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(9464, ge=0, le=65535)
    ray_metrics_port: int = Field(
        8090, ge=0, le=65535, description="Ray's metrics export port when olsim starts Ray (0: Ray picks)"
    )
    prometheus: bool = Field(False, description="start a Prometheus server scraping this run")
    prometheus_port: int = Field(9090, ge=1, le=65535)
    scrape_interval_s: float = Field(5.0, gt=0, le=60)
    load_rps: float = Field(
        20.0, ge=0, description="/predict requests per second while the run lasts; 0 = none"
    )
    settle_timeout_s: float = Field(30.0, gt=0)
    stall_timeout_s: float = Field(120.0, gt=0, description="fail if the learner makes no progress this long")
    admin_token: str | None = Field(
        None,
        min_length=MIN_TOKEN_LENGTH,
        repr=False,
        description=f"bearer token for /admin routes (default ${TOKEN_ENV}, else new in DIR/admin-token)",
    )


class RunError(UserError, RuntimeError):
    """A run could not start or did not finish; the message is one line meant for users."""


Progress = Callable[[dict[str, Any]], None]
Hook = Callable[[dict[str, Any]], None]


def get(ref: Any) -> Any:
    """``ray.get``, typed loosely: actor handles are untyped here."""
    import ray

    return ray.get(ref)


def _actor(cls: type, **options: Any) -> Any:
    import ray

    return ray.remote(cls).options(**options)


# The three learning-side actors, built in one place for `olsim run` and the Serve config's builder
# (deploy.serve_app); ``options`` adds or overrides Ray actor options (names, detached lifetime).
RESTARTS: dict[str, Any] = {"max_restarts": -1, "max_task_retries": -1}


def start_registry_actor(scenario: Scenario, store: Path | None, gate: bool = True, **options: Any) -> Any:
    """The registry (gate inside unless ``gate`` is False); with a ``store`` directory it is durable
    and Ray restarts it from that journal if its process dies."""
    from serving.registry import GateSource, RegistryActor

    s = scenario
    source = GateSource(s.stream, s.seed, s.learner.model, s.gate) if gate else None
    base = {
        "num_cpus": 0,
        "max_concurrency": 1000,
        "resources": dict(s.placement.registry),
        **(RESTARTS if store is not None else {}),
    }
    return _actor(RegistryActor, **{**base, **options}).remote(
        gate=source, store=None if store is None else str(store.resolve())
    )


def start_evaluator_actor(
    scenario: Scenario, registry: Any, host: str, port: int, state: Path, **options: Any
) -> Any:
    """The evaluator: scores every published version, serves the olsim_* scrape endpoint at
    ``host:port`` and keeps what a restarted one needs in ``state``."""
    from learner.evaluator_actor import EvaluatorActor

    s = scenario
    base = {"num_cpus": 0, "max_concurrency": 8, "resources": dict(s.placement.evaluator), **RESTARTS}
    return _actor(EvaluatorActor, **{**base, **options}).remote(
        s.stream, s.seed, registry, host, port, s.gate.rollback_floor, str(state.resolve())
    )


def learner_gpu(scenario: Scenario) -> Scenario:
    """``scenario`` with one GPU for the learner actor when its device resolves to CUDA on this
    machine (Ray hides GPUs from an actor that asks for none). Raises DeviceError for ``cuda``
    without a CUDA device."""
    from learner.device import choose_device

    learner, placement = scenario.learner, scenario.placement
    device = choose_device(learner.device, learner.model, learner.batch_size)
    if device.type != "cuda" or placement.learner_gpus > 0:
        return scenario
    return scenario.model_copy(update={"placement": placement.model_copy(update={"learner_gpus": 1})})


def start_learner_actor(
    scenario: Scenario,
    registry: Any,
    evaluator: Any,
    checkpoint: Path,
    holds: list[int] | None = None,
    **options: Any,
) -> Any:
    """The learner (not yet consuming: call its ``start``); a restarted one resumes from ``checkpoint``.
    ``holds``: stream positions where it waits to be released (a fault injector's)."""
    from learner.actor import LearnerActor

    s = scenario
    base = {
        "num_cpus": 0,
        "num_gpus": s.placement.learner_gpus,
        "max_concurrency": 4,
        "resources": dict(s.placement.learner),
        **RESTARTS,
    }
    return _actor(LearnerActor, **{**base, **options}).remote(
        s.stream, s.learner, s.seed, registry, evaluator, str(checkpoint.resolve()), holds
    )


LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def keep_ray_on_loopback() -> None:
    """Make a local Ray bind its ports to 127.0.0.1, not the machine's address.

    Ray gives a local node the machine's IP (its ports then listen on it, the metrics export port on
    0.0.0.0) unless this switch, which Ray itself applies on macOS and Windows, says "no cluster".
    It is read when ``ray`` is first imported, so call this before that; joining a cluster
    (``--address``) must not call it.
    """
    os.environ.setdefault(LOOPBACK_ENV, "0")


def connect_ray(address: str | None, metrics_export_port: int = 0) -> bool:
    """Start a local Ray (or join ``address``) unless this process is connected to one already; True
    if this call started it. A local Ray is always a new one (never another Ray found running on this
    machine) and exports its metrics on ``metrics_export_port`` (0: a port Ray picks).
    """
    if address is None:
        keep_ray_on_loopback()
    import ray

    if ray.is_initialized():
        return False
    local: dict[str, Any] = {}
    if address is None and metrics_export_port:
        if not port_free(metrics_export_port):  # Ray would time out starting, without saying why
            raise RunError(
                f"Ray's metrics export port {metrics_export_port} is in use; "
                "pick another with --ray-metrics-port (0 = any free port)"
            )
        local["_metrics_export_port"] = metrics_export_port
    try:
        ray.init(
            address=address or "local",  # "local": a new Ray of our own, even if another runs here
            namespace=NAMESPACE,
            include_dashboard=False,
            logging_level=logging.WARNING,
            **local,
        )
    except Exception as exc:
        first = first_line(exc)
        hint = (
            " (a cluster started with `ray start` uses token auth in Ray 2.60: run with"
            " RAY_AUTH_MODE=token and the cluster's token in ~/.ray/auth_token or RAY_AUTH_TOKEN)"
            if address
            else ""
        )
        raise RunError(
            f"cannot {'join Ray at ' + address if address else 'start Ray'}: {first}{hint}"
        ) from None
    return True


def ray_metrics_target() -> str:
    """``host:port`` of this node's Ray metrics export endpoint (what Prometheus scrapes)."""
    import ray

    me = ray.get_runtime_context().get_node_id()
    node = next(n for n in ray.nodes() if n["NodeID"] == me)
    return f"{node['NodeManagerAddress']}:{node['MetricsExportPort']}"


def wait_until(cond: Callable[[], bool], timeout_s: float, what: str) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.1)
    log.warning("timed out waiting for %s after %.0fs", what, timeout_s)
    return False


def swap_table(swaps: list[Any], changes: list[Any]) -> list[dict[str, Any]]:
    """One row per change of the served version: what, when, and when each replica applied it."""
    rows = {
        c.generation: {
            "generation": c.generation,
            "version": c.version,
            "kind": c.kind,
            "published_at": c.at,
            "applied": {},
        }
        for c in changes
    }
    for s in swaps:
        row = rows.setdefault(
            s.generation,
            {
                "generation": s.generation,
                "version": s.version,
                "kind": "publish",
                "published_at": s.published_at,
                "applied": {},
            },
        )
        row["applied"][s.replica] = s.applied_at
    return [rows[g] for g in sorted(rows)]


def staleness_ms(swaps: list[Any]) -> dict[str, float | None]:
    st = np.array([max(0.0, s.staleness_s) for s in swaps]) * 1e3
    if len(st) == 0:
        return {"p50": None, "p99": None, "max": None}
    return {"p50": float(np.percentile(st, 50)), "p99": float(np.percentile(st, 99)), "max": float(st.max())}


@dataclass
class ServingStack:
    """The registry actor (gate inside) and the Serve application that follows it."""

    scenario: Scenario
    admin_token: str | None = None
    app_name: str = APP_NAME
    route_prefix: str = "/"
    gate: bool = True  # False: no gate object at all (checksum only), for benchmarks
    registry: Any = None
    registry_name: str = field(default_factory=lambda: f"olsim-registry-{uuid.uuid4().hex[:8]}")

    def start_registry(self, store: Path | None = None) -> Any:
        """Start the registry actor; with a ``store`` directory it is durable and Ray restarts it
        (from that journal) if its process dies. A new run starts with an empty ``store``."""
        import shutil

        if store is not None:
            shutil.rmtree(store, ignore_errors=True)
        self.registry = start_registry_actor(
            self.scenario, store, self.gate, name=self.registry_name, namespace=NAMESPACE
        )
        return self.registry

    def start_serve(self, user_config: dict[str, int] | None = None) -> None:
        """Deploy (or, with a changed ``user_config``, update in place) the Serve application."""
        from ray import serve

        from serving.app import build_app

        cfg = self.scenario.serving
        serve.start(
            proxy_location=cfg.proxy_location,
            http_options={"host": cfg.host, "port": cfg.port},
            logging_config={"log_level": "WARNING"},
        )
        app = build_app(
            self.registry_name, NAMESPACE, self.scenario.learner.model, cfg, self.admin_token, user_config
        )
        serve.run(app, name=self.app_name, route_prefix=self.route_prefix)

    def live_replicas(self) -> dict[str, str]:
        """Replicas Serve is running now, id -> actor name (in Serve's namespace). Serve's replica id is
        the one replicas acknowledge with; killed ones' acknowledgements stay in the registry."""
        import ray

        prefix = f"SERVE_REPLICA::{self.app_name}#"
        actors = ray.util.list_named_actors(all_namespaces=True)
        return {a["name"].rsplit("#", 1)[1]: a["name"] for a in actors if a["name"].startswith(prefix)}

    def replicas_current(self) -> bool:
        """Every live replica serves the registry's current generation."""
        gen = get(self.registry.state.remote())["generation"]
        acked = get(self.registry.replica_generations.remote())
        live = self.live_replicas()
        return len(live) >= self.scenario.serving.replicas and all(acked.get(r, -1) >= gen for r in live)

    def replica_versions(self) -> dict[str, int]:
        """Version each live replica serves."""
        live = self.live_replicas()
        return {r: v for r, v in get(self.registry.replica_versions.remote()).items() if r in live}

    def drain(self) -> bool:
        """Tell every replica the server is going away: from now on they answer 503 + Retry-After.
        False if there was nothing to tell (nothing deployed) or it did not answer in time."""
        from ray import serve

        try:
            handle = serve.get_deployment_handle("Predictor", self.app_name)
            handle.broadcast("drain").results(timeout_s=10)
        except Exception as exc:
            log.warning("drain app=%s error=%r", self.app_name, exc)
            return False
        return True

    def stop(self, delete_app: bool = True) -> None:
        """Drain the replicas, then (``delete_app``) wait ``serving.drain_s`` and remove the application;
        kill the registry. Without ``delete_app`` the caller takes Ray down at once, and clients see
        the port close after the 503s."""
        import ray
        from ray import serve

        if self.drain() and delete_app:
            time.sleep(self.scenario.serving.drain_s)
        if delete_app:
            try:
                serve.delete(self.app_name)
            except Exception as exc:  # nothing deployed yet
                log.debug("serve.delete error=%r", exc)
        if self.registry is not None:
            ray.kill(self.registry)


class Run:
    """Everything one ``olsim run`` starts, in order, and the report it ends with."""

    def __init__(self, scenario: Scenario, opts: RunOptions) -> None:
        self.scenario = scenario
        self.opts = opts
        self.run_id = uuid.uuid4().hex[:8]
        self.t_start = time.time()
        token, self.token_file = resolve_token(opts)
        self.stack = ServingStack(scenario, admin_token=token)
        self.evaluator: Any = None
        self.learner: Any = None
        self.metrics_port = 0
        self.load: Any = None
        self.prometheus: Any = None
        self.faults = Injector(list(scenario.faults))

    def start(self) -> None:
        import shutil

        s, opts = self.scenario, self.opts
        registry = self.stack.start_registry(opts.report_dir / "registry")
        evaluator_state = opts.report_dir / "evaluator"
        shutil.rmtree(evaluator_state, ignore_errors=True)  # a restarted evaluator reads it; a new run not
        self.evaluator = start_evaluator_actor(
            s, registry, opts.metrics_host, opts.metrics_port, evaluator_state
        )
        try:
            self.metrics_port = get(self.evaluator.port.remote())
        except Exception as exc:  # typically: the port is taken
            raise RunError(
                f"metrics endpoint could not start on {opts.metrics_host}:{opts.metrics_port} "
                f"({type(exc).__name__}); pick another with --metrics-port"
            ) from None
        if opts.prometheus:
            self._start_prometheus()
        self.stack.start_serve()
        # a new run starts from scratch; a restarted learner resumes from here
        ckpts = opts.report_dir / "checkpoints"
        shutil.rmtree(ckpts, ignore_errors=True)
        self.learner = start_learner_actor(
            s, registry, self.evaluator, ckpts / "learner.npz", self.faults.holds
        )
        get(self.learner.start.remote())
        self.faults.learner, self.faults.evaluator, self.faults.stack = (
            self.learner,
            self.evaluator,
            self.stack,
        )
        log.info(
            "run started run_id=%s metrics=%s:%d serve=%s:%d gate=%s",
            self.run_id,
            opts.metrics_host,
            self.metrics_port,
            s.serving.host,
            s.serving.port,
            s.gate.mode,
        )

    def _start_prometheus(self) -> None:
        from deploy.promserver import PrometheusError, PrometheusServer

        opts = self.opts
        self.prometheus = PrometheusServer(
            opts.report_dir / "prometheus",
            targets={"olsim": f"{opts.metrics_host}:{self.metrics_port}", "ray": ray_metrics_target()},
            port=opts.prometheus_port,
            scrape_interval_s=opts.scrape_interval_s,
        )
        try:
            self.prometheus.start()
        except PrometheusError as exc:
            self.prometheus = None
            raise RunError(f"--prometheus: {exc}") from None
        log.info("prometheus url=%s targets=%s", self.prometheus.url, self.prometheus.targets)

    def drive(
        self, progress: Progress | None, stop: threading.Event | None = None
    ) -> tuple[dict[str, Any], bool]:
        """Follow the learner to the end of the stream (or the deadline, or ``stop``); returns its last
        progress and whether the stream was cut short."""
        opts = self.opts
        deadline = None if opts.duration_s is None else time.monotonic() + opts.duration_s
        last_offset, last_move = -1, time.monotonic()
        while True:
            p = get(self.learner.progress.remote())
            self.faults.step(p)
            if p["offset"] != last_offset or p["done"]:
                last_offset, last_move = p["offset"], time.monotonic()
            elif time.monotonic() - last_move > opts.stall_timeout_s:
                raise RunError(
                    f"learner made no progress for {opts.stall_timeout_s:.0f}s at offset {p['offset']}"
                    + (f": {p['error']}" if p["error"] else "")
                )
            if self.load is None and opts.load_rps > 0 and p["versions"]:
                self._start_load()  # once a version exists: before that, replicas rightly answer 503
            if progress is not None:
                progress({**p, "elapsed_s": time.time() - self.t_start, **get(self.evaluator.live.remote())})
            if p["done"]:
                return p, False
            if (deadline is not None and time.monotonic() > deadline) or (stop is not None and stop.is_set()):
                get(self.learner.stop.remote())
                wait_until(
                    lambda: bool(get(self.learner.progress.remote())["done"]),
                    opts.settle_timeout_s,
                    "learner stop",
                )
                return get(self.learner.progress.remote()), True
            time.sleep(0.1 if self.faults.pending else 0.25)  # a held learner waits for this loop

    def _start_load(self) -> None:
        from deploy.load import LoadGenerator

        s, cfg = self.scenario, self.scenario.serving
        rows = np.concatenate([t.test.x for t in s.stream.build_tasks(s.seed)])
        self.load = LoadGenerator(
            f"http://{cfg.host}:{cfg.port}/predict", rows, rps=self.opts.load_rps, seed=s.seed
        )
        self.load.start()

    def settle(self) -> bool:
        """Let the evaluator score and every replica apply the last change; True if replicas converged."""
        timeout = self.opts.settle_timeout_s
        wait_until(lambda: bool(get(self.evaluator.caught_up.remote())), timeout, "evaluator")
        converged = wait_until(self.stack.replicas_current, timeout, "replicas to serve the current version")
        if self.load is not None:
            self.load.stop()
        return converged

    def report(self, p: dict[str, Any], truncated: bool, converged: bool) -> dict[str, Any]:
        s, registry = self.scenario, self.stack.registry
        swaps = get(registry.swaps.remote())
        changes = get(registry.changes.remote())
        decisions = get(registry.decisions.remote())
        state = get(registry.state.remote())
        ev = get(self.evaluator.report.remote())
        report: dict[str, Any] = {
            "scenario": s.name,
            "strategy": s.learner.strategy.kind,
            "seed": s.seed,
            "run_id": self.run_id,
            "started_at": self.t_start,
            "duration_s": time.time() - self.t_start,
            "truncated": truncated,
            "tasks": ev["tasks"],
            "segments": s.stream.segments,
            "tasks_completed": len(ev["accuracy_matrix"]),
            "accuracy_matrix": ev["accuracy_matrix"],
            "baseline_accuracy": ev["baseline_accuracy"],
            "acc": ev["acc"],
            "bwt": ev["bwt"],
            "fwt": ev["fwt"],
            "forgetting": ev["forgetting"],
            "task_il": ev["task_il"],
            "routing_accuracy": ev["routing_accuracy"],
            "unserved_rows": ev["unserved_rows"],  # segments that ended with nothing served: row = baseline
            "versions_published": state["latest"],
            "served_version": state["served"],
            "replica_versions": self.stack.replica_versions(),
            "replicas_converged": converged,
            "swaps": swap_table(swaps, changes),
            "swap_staleness_ms": staleness_ms(swaps),
            "gate": gate_summary(s, decisions),
            "rollbacks": [asdict(c) for c in changes if c.kind == "rollback"],
            "timeline": ev["timeline"],
            "boundaries": s.learner.boundaries,
            "drifts_detected": p["drifts"],
            "learner": {k: p[k] for k in ("steps", "samples", "offset", "total", "prequential_accuracy")},
            "metrics_endpoint": f"http://{self.opts.metrics_host}:{self.metrics_port}/metrics",
            "ingress": None if self.opts.address else current_ingress(),  # a joined cluster's own setting
            "admin_token_file": None if self.token_file is None else str(self.token_file),
            "scenario_config": s.model_dump(mode="json"),
        }
        report["load_rps"] = self.opts.load_rps
        if self.load is not None:
            report["requests"] = self.load.summary()
        if self.prometheus is not None:
            report["prometheus"] = self._prometheus_summary()
        stream = get(self.learner.stream_report.remote())
        report["chaos"] = stream.pop("chaos")
        report["stream"] = stream
        report["faults"] = self.faults.done
        report["faults_unfired"] = [f.model_dump() for f in self.faults.unfired()]
        if self.load is not None:
            for f in report["faults"]:
                f |= requests_around(f, report["requests"]["samples"])
        report["versions"] = version_audit(state, get(registry.history.remote()), p, swaps, ev["timeline"])
        report["expectations"] = check(s.expect, report)
        return report

    def _prometheus_summary(self) -> dict[str, Any]:
        from deploy.promserver import PrometheusError

        prom = self.prometheus
        summary: dict[str, Any] = {
            "url": prom.url,
            "config": str(prom.out / "prometheus.yml"),
            "data_dir": str(prom.out / "data"),
            "targets": prom.targets,
        }
        try:
            summary["targets_up"] = prom.api.targets_up()
            summary["alerts"] = [
                {
                    "name": a["labels"]["alertname"],
                    "state": a["state"],
                    "labels": a["labels"],
                    "since": a["activeAt"],
                }
                for a in prom.api.alerts()
            ]
        except (PrometheusError, OSError) as exc:
            summary["error"] = str(exc)
        return summary

    def teardown(self, own_ray: bool = False) -> None:
        """Stop everything this run started, in order; a step that fails is logged and the rest
        still runs (the error that ended the run, if any, is the one reported). ``own_ray``: the
        caller shuts down the Ray this run started right after, taking Serve and its port with it."""
        import ray

        def attempt(what: str, step: Callable[[], Any]) -> None:
            try:
                step()
            except Exception as exc:
                log.warning("teardown: %s failed error=%r", what, exc)

        if self.load is not None:
            attempt("stopping the load", self.load.stop)
        actors = [a for a in (self.learner, self.evaluator) if a is not None]
        for a in actors:  # stop the followers before the registry goes away
            attempt("stopping an actor", partial(_stop_actor, a))
        attempt("draining and removing Serve", partial(self.stack.stop, delete_app=not own_ray))
        for a in actors:
            attempt("killing an actor", partial(ray.kill, a))
        if self.prometheus is not None:
            attempt("stopping Prometheus", self.prometheus.stop)


def _stop_actor(actor: Any) -> None:
    get(actor.stop.remote())


def version_audit(
    state: dict[str, Any],
    history: list[dict[str, Any]],
    progress: dict[str, Any],
    swaps: list[Any],
    timeline: list[dict[str, Any]],
) -> dict[str, int]:
    """Versions the registry should hold against what it holds, and what the evaluator scored.

    A version is *lost* when the learner was told it was accepted, a replica served it, or the
    evaluator scored it (or its number is below the newest), retention would still keep it, and
    the registry no longer has it; *unscored* when the registry has it and the evaluator has no
    score for it.

    >>> held = [{"version": 1}, {"version": 3}]
    >>> version_audit({"latest": 3, "keep": 10}, held, {"versions": [1, 2, 3]}, [], [{"version": 1}])
    {'latest': 3, 'retained': 2, 'lost': 1, 'unscored': 1}
    """
    held = {int(h["version"]) for h in history}
    scored = {int(t["version"]) for t in timeline}
    known = set(progress.get("versions", [])) | {s.version for s in swaps} | scored
    latest = max([state["latest"], *known])
    should = {n for n in range(1, latest + 1) if n > latest - state["keep"]}
    return {
        "latest": state["latest"],
        "retained": len(held),
        "lost": len(should - held),
        "unscored": len(held - scored),
    }


def gate_summary(scenario: Scenario, decisions: list[Any]) -> dict[str, Any]:
    counts: dict[str, int] = {}
    for d in decisions:
        key = f"{'accepted' if d.accepted else 'rejected'}/{d.reason}"
        counts[key] = counts.get(key, 0) + 1
    return {
        **scenario.gate.model_dump(),
        "candidates": len(decisions),
        "counts": counts,
        "rejected": [
            {
                "at": d.at,
                "reason": d.reason,
                "detail": d.detail,
                "served": d.served,
                "task": d.meta.get("task"),
                "step": d.meta.get("step"),
                "task_end": d.meta.get("task_end"),
            }
            for d in decisions
            if not d.accepted
        ],
    }


def write_token(path: Path, token: str) -> None:
    """Write ``token`` to a new file at ``path``, mode 0600. A file an earlier run left there is
    replaced by a new one (its mode is never reused); a symlink there is refused, never followed."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        if path.is_symlink() or not path.is_file():
            raise RunError(f"refusing to write the admin token to {path}: it is not a regular file") from None
        path.unlink()  # an earlier run's token
        try:
            fd = os.open(path, flags, 0o600)
        except FileExistsError:  # something put it back in between: refuse
            raise RunError(f"refusing to write the admin token to {path}: it reappeared") from None
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")


def resolve_token(opts: RunOptions) -> tuple[str, Path | None]:
    """The admin bearer token: the option, else $OLSIM_ADMIN_TOKEN (at least 16 characters), else a
    fresh one written to a new ``report_dir/admin-token`` (mode 0600, path returned) so a user of
    this run can read it."""
    if opts.admin_token:
        return opts.admin_token, None
    env = os.environ.get(TOKEN_ENV)
    if env:
        try:
            return check_token(env, f"${TOKEN_ENV}"), None
        except ValueError as exc:
            raise RunError(str(exc)) from None
    token = secrets.token_urlsafe(24)
    opts.report_dir.mkdir(parents=True, exist_ok=True)
    path = opts.report_dir / "admin-token"
    write_token(path, token)
    log.info("admin token written to %s", path)
    return token, path


def run(
    scenario: Scenario,
    opts: RunOptions,
    progress: Progress | None = None,
    on_finished: Hook | None = None,
    stop: threading.Event | None = None,
) -> dict[str, Any]:
    """Run ``scenario`` end to end and return the report (also written to ``opts.report_dir``).

    ``on_finished(report)`` runs after the report is written and before anything is torn down,
    while Serve and the metrics endpoint still answer (tests scrape there; ``--linger`` waits there).
    Setting ``stop`` ends the stream early, like ``duration_s`` (``olsim load`` uses it).
    """
    import ray

    check_faults(scenario)
    started_ray = connect_ray(opts.address, opts.ray_metrics_port)
    r = Run(scenario, opts)
    try:
        r.start()
        p, truncated = r.drive(progress, stop)
        if p["error"]:
            raise RunError(f"learner failed: {p['error']}")
        r.faults.wait_recovered(lambda: get(r.learner.progress.remote()), opts.settle_timeout_s)
        report = r.report(p, truncated, r.settle())
        _write(report, opts.report_dir)
        if on_finished is not None:
            on_finished(report)
        return report
    finally:
        r.teardown(own_ray=started_ray)
        if started_ray:
            ray.shutdown()  # our own local cluster: Serve goes with it


def check_faults(scenario: Scenario) -> None:
    """RunError for a fault whose position the stream never reaches (it could never strike)."""
    if not scenario.faults:
        return
    records = len(scenario.stream.build(scenario.seed))
    late = [f for f in scenario.faults if f.at > records]
    if late:
        where = ", ".join(f"{f.target} at {f.at}" for f in late)
        raise RunError(f"faults past the end of the stream ({records} records): {where}")


def _write(report: dict[str, Any], out: Path) -> None:
    import json

    from deploy.report import render_text, write_html

    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2))
    (out / "report.txt").write_text(render_text(report))
    write_html(report, out)
