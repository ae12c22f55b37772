"""The run report as a typed model: what ``olsim run`` writes to ``DIR/report.json``.

Every report a run writes is validated against :class:`RunReport` first, so the published JSON
schema (``docs/report.schema.json``, rewritten by ``python -m olsim.deploy.report.model``; a test
fails when it is stale) is what users' tools can rely on. :func:`load_report` reads one back.

Blocks whose contents depend on the scenario (fault rows, the stream's account, Prometheus's
summary) are typed where their keys are fixed and allow more.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from olsim.deploy.errors import UserError, first_line, validation_line

SCHEMA = Path(__file__).resolve().parents[2] / "docs" / "report.schema.json"  # the repository's docs/


class _Fixed(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class TaskInfo(_Open):
    index: int
    name: str


class TaskIL(_Fixed):
    """The same metrics when the task id is known at test time (split-digits)."""

    accuracy_matrix: list[list[float]]
    acc: float | None
    bwt: float | None
    fwt: float | None
    forgetting: float | None


class Swap(_Fixed):
    """One change of the served version and when each replica applied it."""

    generation: int
    version: int
    kind: Literal["publish", "rollback"]
    published_at: float = Field(description="unix time the version became the served one")
    applied: dict[str, float] = Field(description="replica id -> unix time it served the version")
    moved_bytes: dict[str, int] = Field(
        default_factory=dict, description="replica id -> bytes of weight arrays it fetched for this swap"
    )
    held_bytes: dict[str, int] = Field(
        default_factory=dict,
        description="replica id -> weight memory it held at the swap's peak (old and new version)",
    )


class Percentiles(_Open):
    p50: float | None = None
    p99: float | None = None


class Gate(_Open):
    """Gate settings, decision counts by ``accepted|rejected/reason``, and every rejection."""

    mode: str
    forgetting_budget: float
    rollback_floor: float | None = None
    candidates: int
    counts: dict[str, int]
    rejected: list[dict[str, Any]]


class Rollback(_Fixed):
    """A change of the served version back to an older one."""

    generation: int
    version: int
    previous: int
    at: float
    kind: Literal["rollback"]
    trigger: str = Field(description="manual (the admin route), auto (the evaluator's floor), restore")
    reason: str


class VersionScore(_Open):
    """One accepted version's test accuracy on every task of the scenario."""

    version: int
    published_at: float
    task: int
    task_end: bool
    step: int
    accuracies: list[float]


class LearnerProgress(_Fixed):
    steps: int
    samples: int
    offset: int
    total: int
    prequential_accuracy: float | None


class Requests(_Fixed):
    """The run's own ``/predict`` load: counts, latency from each request's scheduled send time."""

    count: int
    errors: int
    by_status: dict[str, int]
    retried: int
    retried_by_reason: dict[str, int]
    latency_ms: dict[str, float | None] = Field(description="p50, p90, p95, p99, p99.9, max")
    versions_seen: list[int]
    ms_per_token: dict[str, float] | None = Field(
        None, description="/generate: p50 and p99 of each answer's latency / the bytes it generated"
    )
    samples: list[list[Any]] = Field(
        description="one row per request: unix time sent, latency ms, HTTP status (0: none), version, "
        "replica, rows, why it was retried (null: it was not)"
    )


class StreamAccount(_Fixed):
    """What became of the stream: the learner's event ledger against what was delivered."""

    records: int
    consumed: int
    events_expected: int
    events_trained: int
    injected_trained: int = Field(description="well-formed records that were not in the clean stream")
    events_lost: int
    events_trained_twice: int
    duplicates_skipped: int
    dead_lettered: int
    dead_letters: dict[str, int] = Field(description="dead letters by reason")
    dead_letter_examples: list[dict[str, Any]]
    learner_restarts: int
    checkpoints: int


class VersionAudit(_Fixed):
    latest: int
    retained: int
    lost: int
    unscored: int


class Expectation(_Fixed):
    """One outcome the scenario's ``expect:`` promised; ``ok`` None: nothing to measure it on."""

    name: str
    value: Any
    expected: str
    ok: bool | None
    detail: str | None = None


class Spread(_Fixed):
    p50: float
    p90: float


class Freshness(_Fixed):
    """From a fact's arrival in the stream to the first served version that answers it right."""

    measured: int = Field(description="facts (still true at the end) that some version answered right")
    never: int = Field(description="facts no version answered right")
    versions: Spread | None = Field(
        description="versions published after its arrival, up to that one (1: the first)"
    )
    seconds: Spread | None


class FactShares(_Fixed):
    """What one served version knows (exact match; null where the category is empty)."""

    version: int
    task: int = Field(description="the period the learner was on")
    old_kept: float | None = Field(description="earlier periods' facts that are still true, answered right")
    updated_fresh: float | None = Field(
        description="changed facts that have arrived, answered with the new value"
    )
    stale_answers: float | None = Field(
        description="the same changed facts, answered with the superseded value"
    )
    new_learned: float | None = Field(description="the period's facts about new entities, answered right")


class PeriodFacts(FactShares):
    freshness: Freshness = Field(description="of the facts this period brought")


class Facts(_Fixed):
    """A facts scenario's knowledge of its changing world: see olsim.learner.facts."""

    periods: list[PeriodFacts] = Field(description="scored by the version that ended each period")
    overall: FactShares | None = Field(description="the last version")
    freshness: Freshness


class BitsPerByte(_Fixed):
    """A language model's held-out bits per byte per task (lower is better; 8 is a uniform guess over
    bytes). Forgetting is a rise: see olsim.learner.metrics.bits_rise."""

    tasks: list[str]
    baseline: list[float] = Field(description="the untrained model's, per task")
    matrix: list[list[float]] = Field(description="row i: the version served when segment i ended")
    rise: list[float | None] = Field(
        description="per task: last row minus the row of the segment that last trained it (null: "
        "the last segment's task, or not met before it)"
    )
    mean_rise: float | None


class RunReport(_Fixed):
    """What one ``olsim run`` measured. R[i][j] in ``accuracy_matrix`` is the test accuracy on task j
    of the version served when task (segment) i ended (GEM's definition)."""

    scenario: str
    strategy: str
    seed: int
    run_id: str
    started_at: float = Field(description="unix time the run started (before the actors)")
    serving_started_at: float | None = Field(
        None, description="unix time Serve first answered; the report's time axes start here"
    )
    duration_s: float
    truncated: bool = Field(description="the stream was cut short (--duration)")
    tasks: list[TaskInfo]
    segments: list[int] = Field(description="the task of each accuracy-matrix row")
    tasks_completed: int
    accuracy_matrix: list[list[float]]
    baseline_accuracy: list[float] = Field(description="the untrained model's accuracy per task (for FWT)")
    acc: float | None
    bwt: float | None
    fwt: float | None
    forgetting: float | None
    task_il: TaskIL | None = None
    routing_accuracy: float | None = Field(None, description="share of rows routed to their own task (lora)")
    facts: Facts | None = Field(None, description="a facts scenario's old, updated, stale and new facts")
    bits_per_byte: BitsPerByte | None = Field(None, description="a language model's held-out bits per byte")
    unserved_rows: list[int]
    versions_published: int = Field(description="versions the registry accepted")
    served_version: int | None
    replica_versions: dict[str, int]
    replicas_converged: bool
    swaps: list[Swap]
    swap_staleness_ms: dict[str, float | None]
    gate: Gate
    rollbacks: list[Rollback]
    timeline: list[VersionScore]
    boundaries: Literal["announced", "detected"]
    drifts_detected: list[int]
    learner: LearnerProgress
    metrics_endpoint: str
    ingress: str | None
    admin_token_file: str | None
    scenario_config: dict[str, Any]
    load_rps: float
    requests: Requests | None = None
    prometheus: dict[str, Any] | None = None
    chaos: list[dict[str, Any]]
    stream: StreamAccount
    faults: list[dict[str, Any]] = Field(description="each kill: where it was set and struck, recovery")
    faults_unfired: list[dict[str, Any]]
    versions: VersionAudit
    expectations: list[Expectation]


def checked(report: dict[str, Any]) -> dict[str, Any]:
    """``report`` as it will be written, after validating it against :class:`RunReport`."""
    return RunReport.model_validate(report).model_dump(mode="json", exclude_unset=True)


def load_report(path: str | Path) -> RunReport:
    """A report.json (or the directory holding one) as a :class:`RunReport`."""
    p = Path(path)
    if p.is_dir():
        p = p / "report.json"
    try:
        return RunReport.model_validate(json.loads(p.read_text()))
    except FileNotFoundError:
        raise UserError(f"{p} not found (give the directory `olsim run --report-dir` wrote)") from None
    except (OSError, ValueError) as exc:
        first = validation_line(exc) if isinstance(exc, ValidationError) else first_line(exc)
        raise UserError(f"{p} is not an olsim report: {first}") from None


def schema_text() -> str:
    return json.dumps(RunReport.model_json_schema(), indent=2) + "\n"


def main(out: Path = SCHEMA) -> None:
    out.write_text(schema_text())
    sys.stdout.write(f"wrote {out}\n")


if __name__ == "__main__":
    main()
