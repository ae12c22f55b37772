"""A scenario's promised outcomes (``expect:`` in its YAML), checked against the run's report.

>>> e = Expectations.model_validate({"events_lost": {"max": 0}, "dead_lettered": {"min": 3, "max": 3}})
>>> [(o["name"], o["ok"]) for o in check(e, {"stream": {"events_lost": 0, "dead_lettered": 2}})]
[('events_lost', True), ('dead_lettered', False)]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator

from olsim.learner.metrics import old_tasks


class Bound(BaseModel):
    """``min <= value <= max``; give either or both."""

    model_config = ConfigDict(extra="forbid")

    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _some_bound(self) -> Bound:
        if self.min is None and self.max is None:
            raise ValueError("give min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} > max {self.max}")
        return self

    def text(self) -> str:
        if self.min is not None and self.min == self.max:
            return f"== {self.min:g}"
        parts = [f">= {self.min:g}"] if self.min is not None else []
        return " and ".join(parts + ([f"<= {self.max:g}"] if self.max is not None else []))


def _stream(key: str) -> Callable[[dict[str, Any]], float | None]:
    return lambda r: (r.get("stream") or {}).get(key)


def served_old_task_drops(r: dict[str, Any]) -> list[float]:
    """For every newly published version that became the served one: the mean over the tasks before
    the one it was learning of max(0, previous served - new) *test* accuracy (the gate judges the
    validation split; this checks its decisions on data it never saw).

    >>> tl = [{"version": 1, "task": 0, "accuracies": [0.9, 0.0]},
    ...       {"version": 2, "task": 1, "accuracies": [0.5, 0.9]}]
    >>> sw = [{"version": 1, "kind": "publish"}, {"version": 2, "kind": "publish"}]
    >>> served_old_task_drops({"timeline": tl, "swaps": sw})
    [0.4]
    """
    scored = {v["version"]: v for v in r.get("timeline", [])}
    drops, prev = [], None
    for s in r.get("swaps", []):
        v = scored.get(s["version"])
        if v is None:
            continue
        old = old_tasks(v["task"], v.get("seen_tasks") or 0)
        if prev is not None and s["kind"] == "publish" and old:
            drops.append(
                round(sum(max(0.0, prev["accuracies"][j] - v["accuracies"][j]) for j in old) / len(old), 6)
            )
        prev = v
    return drops


def gate_rejections(r: dict[str, Any]) -> int:
    """Candidates the promotion gate rejected, for any reason."""
    counts = (r.get("gate") or {}).get("counts", {})
    return sum(n for k, n in counts.items() if k.startswith("rejected/"))


def _recoveries(r: dict[str, Any]) -> list[float]:
    return [f["recovered_after_s"] for f in r.get("faults", []) if f["recovered_after_s"] is not None]


class Unmeasured(Exception):
    """An outcome that should have been measured and could not be; the message says why (it fails)."""


class NotChecked(Exception):
    """An outcome the run's own options leave nothing to check for (no load, a stream cut short);
    the message says why. It neither holds nor fails."""


def _load_ran(r: dict[str, Any]) -> dict[str, Any]:
    req = r.get("requests")
    if req is not None and req["count"] == 0:  # a bound on no requests at all would hold vacuously
        raise Unmeasured("the load sent no request before the run ended")
    if req is not None:
        return dict(req)
    if r.get("load_rps") == 0:
        raise NotChecked("the run sent no /predict load (--load-rps 0)")
    raise Unmeasured("no /predict load ran (no version was ever served)")


def _requests(key: str) -> Callable[[dict[str, Any]], float | None]:
    return lambda r: _load_ran(r)[key]


def failed_beyond_in_flight(r: dict[str, Any]) -> float:
    """Failed requests, over every fault, beyond those that could have reached a dying process."""
    _load_ran(r)
    total = 0
    for f in r.get("faults", []):
        if f.get("failed_beyond_in_flight", 0) is None:
            raise Unmeasured(
                f"the {f['target']} killed at offset {f['offset']} was never seen to die, "
                "so no failure can be told apart from one it caused"
            )
        total += f.get("failed_beyond_in_flight", 0)
    return total


VALUES: dict[str, Callable[[dict[str, Any]], float | None]] = {
    "events_lost": _stream("events_lost"),
    "events_trained_twice": _stream("events_trained_twice"),
    "duplicates_skipped": _stream("duplicates_skipped"),
    "dead_lettered": _stream("dead_lettered"),
    "chaos_events": lambda r: len(r.get("chaos") or []),
    "failed_requests": _requests("errors"),
    "retried": _requests("retried"),
    "learner_restarts": _stream("learner_restarts"),
    "faults_recovered": lambda r: len(_recoveries(r)),
    "max_recovery_s": lambda r: max(_recoveries(r), default=None),
    "failed_beyond_in_flight": failed_beyond_in_flight,
    "versions_published": lambda r: r.get("versions_published"),
    "max_served_old_task_drop": lambda r: max(served_old_task_drops(r), default=0.0),
    "gate_rejections": gate_rejections,
    "injected_trained": _stream("injected_trained"),
    "acc": lambda r: r.get("acc"),
    "segments_completed": lambda r: r.get("tasks_completed"),
    "versions_lost": lambda r: (r.get("versions") or {}).get("lost"),
    "versions_unscored": lambda r: (r.get("versions") or {}).get("unscored"),
}


class Expectations(BaseModel):
    """Each field bounds one measured outcome of the run (see ``VALUES`` for where it comes from)."""

    model_config = ConfigDict(extra="forbid")

    events_lost: Bound | None = None  # clean events delivered but never trained
    events_trained_twice: Bound | None = None  # from the learner's event-id ledger
    duplicates_skipped: Bound | None = None  # redeliveries the ledger recognised
    dead_lettered: Bound | None = None  # records refused at ingest
    chaos_events: Bound | None = None  # chaos windows the stream reached
    failed_requests: Bound | None = None  # /predict answers other than 200 under the run's load
    retried: Bound | None = None  # requests the run's load sent twice (reused connection closed unanswered)
    learner_restarts: Bound | None = None  # times the learner came back from its checkpoint
    faults_recovered: Bound | None = None  # injected faults the system came back from
    max_recovery_s: Bound | None = None  # longest kill-to-recovered
    failed_beyond_in_flight: Bound | None = None  # failed, kill to recovery, beyond those in flight at it
    versions_published: Bound | None = None
    max_served_old_task_drop: Bound | None = None  # worst old-task forgetting a served version brought
    gate_rejections: Bound | None = None
    injected_trained: Bound | None = None  # well-formed foreign records (poison) that were trained
    acc: Bound | None = None
    segments_completed: Bound | None = None  # accuracy-matrix rows: segments (tasks, or returns) ended
    versions_lost: Bound | None = None  # versions accepted (and still retained) the registry no longer has
    versions_unscored: Bound | None = None  # versions the registry holds that the evaluator never scored


def check(expect: Expectations, report: dict[str, Any]) -> list[dict[str, Any]]:
    """One outcome per bound given: name, measured value, the bound, ``ok`` (True, False, or None for
    not checked) and, when no value was measured, a ``detail`` saying why. A value that should have
    been measured and was not fails; a run cut short (``truncated``) or without load leaves the
    outcomes that need those not checked.

    >>> [(o["ok"], o["detail"]) for o in check(Expectations(retried={"max": 2}), {})]
    [(False, 'no /predict load ran (no version was ever served)')]
    >>> [(o["ok"], o["detail"]) for o in check(Expectations(retried={"max": 2}), {"load_rps": 0})]
    [(None, 'not checked: the run sent no /predict load (--load-rps 0)')]
    """
    out = []
    for name in type(expect).model_fields:
        bound = getattr(expect, name)
        if bound is None:
            continue
        row: dict[str, Any] = {"name": name, "value": None, "expected": bound.text()}
        if report.get("truncated"):
            out.append(row | {"ok": None, "detail": "not checked: the stream was cut short (--duration)"})
            continue
        try:
            value = VALUES[name](report)
        except NotChecked as exc:
            out.append(row | {"ok": None, "detail": f"not checked: {exc}"})
            continue
        except Unmeasured as exc:
            out.append(row | {"ok": False, "detail": str(exc)})
            continue
        ok = (
            value is not None
            and (bound.min is None or value >= bound.min)
            and (bound.max is None or value <= bound.max)
        )
        out.append(row | {"value": value, "ok": bool(ok)})
    return out
