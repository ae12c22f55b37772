"""olsim's Prometheus metrics: one registry, owned by the process that serves the scrape endpoint.

Serve replicas and the learner are other processes; they report to the evaluator actor, which
owns this registry, so every system-wide gauge has exactly one writer.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from olsim.learner.gate import ACCEPT_REASONS, REJECT_REASONS
from olsim.stream.chaos import CHAOS_KINDS
from olsim.stream.ingest import DEAD_LETTER_REASONS

if TYPE_CHECKING:
    from olsim.learner.evaluator import Evaluator

STALENESS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
FRESHNESS_BUCKETS = (0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 60.0, 120.0, 300.0)
FACT_KINDS = ("old_kept", "updated_fresh", "stale_answers", "new_learned")


@dataclass(frozen=True)
class LearnerStats:
    """What the learner reports every half second (its heartbeat)."""

    samples: int = 0  # trained since the previous report
    events: dict[str, int] = field(default_factory=dict)  # stream events by what became of them
    dead_letters: dict[str, int] = field(default_factory=dict)  # refused records by reason
    chaos: tuple[str, ...] = ()  # chaos windows the stream entered
    drifts: int = 0  # drift alarms since the previous report
    prequential_accuracy: float | None = None
    loss: float | None = None  # mean training loss over recent batches
    memory: tuple[int, int | None] = (0, 0)  # rehearsal memory (held, capacity; None = unbounded)
    lag_s: float | None = None  # age of the oldest untrained event (paced streams)
    running: bool = True  # False once the learner has left its loop (stream end, stop or error)


class Telemetry:
    """All ``olsim_*`` metrics. Labelled counters start at 0 for every known label value, so a
    rate or an alert has a series to work on before the first event (Prometheus practice).

    >>> t = Telemetry(); t.task_accuracy.labels(task="0").set(0.5)
    >>> t.registry.get_sample_value("olsim_task_accuracy", {"task": "0"})
    0.5
    """

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self._task_series = 0  # tasks the per-task gauges have a series for (0..n-1)
        self.task_accuracy = Gauge(
            "olsim_task_accuracy",
            "Served version's accuracy on the task's held-out test split",
            ["task"],
            registry=r,
        )
        self.task_forgetting = Gauge(
            "olsim_task_forgetting",
            "Best accuracy on the task so far minus the served version's (>= 0)",
            ["task"],
            registry=r,
        )
        self.task_bits = Gauge(
            "olsim_task_bits_per_byte",
            "Served language model's bits per byte on the task's held-out test text (lower is better; "
            "NaN for a classifier)",
            ["task"],
            registry=r,
        )
        self.average_accuracy = Gauge(
            "olsim_average_accuracy",
            "Served version's mean test accuracy over the tasks seen so far",
            registry=r,
        )
        self.backward_transfer = Gauge(
            "olsim_backward_transfer",
            "Served version's backward transfer, as the report defines it (NaN while undefined)",
            registry=r,
        )
        self.model_version = Gauge("olsim_model_version", "Version the registry is serving", registry=r)
        self.published = Gauge(
            "olsim_model_published_timestamp_seconds",
            "When the served version was accepted (unix time)",
            registry=r,
        )
        self.staleness = Histogram(
            "olsim_swap_staleness_seconds",
            "Registry accept to replica serving the version",
            buckets=STALENESS_BUCKETS,
            registry=r,
        )
        self.samples = Counter(
            "olsim_learner_samples_total", "Stream samples the learner trained on", registry=r
        )
        self.prequential = Gauge(
            "olsim_prequential_accuracy",
            "Test-then-train accuracy over the learner's recent batches",
            registry=r,
        )
        self.gate = Counter(
            "olsim_gate_decisions_total",
            "Publication decisions on candidate versions",
            ["decision", "reason"],
            registry=r,
        )
        self.stream_events = Counter(
            "olsim_stream_events_total", "Stream events by what became of them", ["kind"], registry=r
        )
        self.drifts = Counter(
            "olsim_drift_detections_total",
            "Drift alarms on the prequential error (task-free streams)",
            registry=r,
        )
        self.gate_old_drop = Gauge(
            "olsim_gate_old_task_accuracy_drop",
            "Last candidate's drop in mean old-task validation accuracy vs the served version",
            registry=r,
        )
        self.rollbacks = Counter(
            "olsim_rollbacks_total", "Rollbacks of the served version", ["trigger"], registry=r
        )
        self.facts = Gauge(
            "olsim_facts_ratio",
            "Served version's share of facts by kind (facts scenarios): old_kept, updated_fresh, "
            "stale_answers, new_learned (NaN while a kind is empty, and in other scenarios)",
            ["kind"],
            registry=r,
        )
        self.fact_freshness = Histogram(
            "olsim_fact_freshness_seconds",
            "From a fact's arrival in the stream to the first version that answers it right",
            buckets=FRESHNESS_BUCKETS,
            registry=r,
        )
        self.versions_evaluated = Counter(
            "olsim_versions_evaluated_total", "Published versions scored on held-out data", registry=r
        )
        self.loss = Gauge("olsim_learner_loss", "Mean training loss over recent batches", registry=r)
        self.memory = Gauge(
            "olsim_learner_memory_samples", "Samples held in the strategy's rehearsal memory", registry=r
        )
        self.memory_capacity = Gauge(
            "olsim_learner_memory_capacity_samples",
            "Capacity of the rehearsal memory (0: none, +Inf: unbounded)",
            registry=r,
        )
        self.lag = Gauge(
            "olsim_stream_lag_seconds",
            "How long the oldest stream event not yet trained on has been waiting (paced streams)",
            registry=r,
        )
        self.learner_running = Gauge(
            "olsim_learner_running", "1 while the learner consumes its stream, 0 once it has left", registry=r
        )
        self.learner_heartbeat = Gauge(
            "olsim_learner_heartbeat_timestamp_seconds",
            "When the learner last reported (unix time; it reports every 0.5 s while alive)",
            registry=r,
        )
        for reason in ACCEPT_REASONS:
            self.gate.labels(decision="accepted", reason=reason)
        for reason in REJECT_REASONS:
            self.gate.labels(decision="rejected", reason=reason)
        self.dead_letters = Counter(
            "olsim_dead_letters_total", "Stream records refused at ingest, by reason", ["reason"], registry=r
        )
        self.chaos = Counter(
            "olsim_chaos_events_total", "Chaos windows the stream entered, by kind", ["kind"], registry=r
        )
        for trigger in ("manual", "auto", "restore"):
            self.rollbacks.labels(trigger=trigger)
        for kind in ("trained", "duplicate", "dead_letter"):
            self.stream_events.labels(kind=kind)
        for reason in DEAD_LETTER_REASONS:
            self.dead_letters.labels(reason=reason)
        for kind in CHAOS_KINDS:
            self.chaos.labels(kind=kind)
        for kind in FACT_KINDS:  # NaN until a facts scenario's served version is scored
            self.facts.labels(kind=kind).set(float("nan"))

    def record_learner(self, stats: LearnerStats) -> None:
        """Apply one learner report."""
        if stats.samples:
            self.samples.inc(stats.samples)
        for kind, n in stats.events.items():
            self.stream_events.labels(kind=kind).inc(n)
        for reason, n in stats.dead_letters.items():
            self.dead_letters.labels(reason=reason).inc(n)
        for kind in stats.chaos:
            self.chaos.labels(kind=kind).inc()
        if stats.drifts:
            self.drifts.inc(stats.drifts)
        if stats.prequential_accuracy is not None:
            self.prequential.set(stats.prequential_accuracy)
        if stats.loss is not None:
            self.loss.set(stats.loss)
        held, capacity = stats.memory
        self.memory.set(held)
        self.memory_capacity.set(float("inf") if capacity is None else capacity)
        if stats.lag_s is not None:
            self.lag.set(stats.lag_s)
        self.learner_running.set(1 if stats.running else 0)
        self.learner_heartbeat.set(time.time())

    def show_version(self, ev: Evaluator, version: int) -> None:
        """Set the served-version gauges from ``ev``'s scores of ``version``: one series per task it
        has met (series of tasks it never met, left by a newer version before a rollback, go), and
        NaN where a value is undefined for it (BWT before a second task), so every gauge describes
        the served version."""
        r = ev.results[version]
        for j, a in enumerate(r.seen):
            self.task_accuracy.labels(task=str(j)).set(a)
        for j, f in enumerate(ev.forgetting_now(version)):
            self.task_forgetting.labels(task=str(j)).set(f)
        bits = r.bits_per_byte or []
        for j in range(r.n_seen):  # NaN for a classifier: a series to query in every scenario
            self.task_bits.labels(task=str(j)).set(bits[j] if j < len(bits) else float("nan"))
        for j in range(r.n_seen, self._task_series):
            self.task_accuracy.remove(str(j))
            self.task_forgetting.remove(str(j))
            self.task_bits.remove(str(j))
        self._task_series = r.n_seen
        self.average_accuracy.set(sum(r.seen) / len(r.seen))
        bwt = ev.backward_transfer_now(version)
        self.backward_transfer.set(float("nan") if bwt is None else bwt)
        self.model_version.set(version)
        self.published.set(r.published_at)
        if ev.facts is not None and version in ev.facts.versions:
            shares = ev.facts.shares(ev.facts.versions[version])
            for kind in FACT_KINDS:
                value = shares[kind]
                self.facts.labels(kind=kind).set(float("nan") if value is None else value)

    def serve(self, host: str, port: int) -> int:
        """Start the scrape endpoint; returns the bound port (useful with ``port=0``)."""
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        return int(server.server_address[1])
