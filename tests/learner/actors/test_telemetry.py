"""The olsim_* registry: zero-initialised label sets and the learner's heartbeat report."""

from __future__ import annotations

import math
import time

from olsim.learner.actors.telemetry import LearnerStats, Telemetry
from olsim.learner.gate import ACCEPT_REASONS, REJECT_REASONS


def test_labelled_counters_start_at_zero_for_every_known_label() -> None:
    t = Telemetry()
    v = t.registry.get_sample_value
    for reason in REJECT_REASONS:
        assert v("olsim_gate_decisions_total", {"decision": "rejected", "reason": reason}) == 0.0
    for reason in ACCEPT_REASONS:
        assert v("olsim_gate_decisions_total", {"decision": "accepted", "reason": reason}) == 0.0
    assert (
        v("olsim_rollbacks_total", {"trigger": "manual"})
        == v("olsim_rollbacks_total", {"trigger": "auto"})
        == 0.0
    )


def test_record_learner_sets_the_learner_and_stream_gauges() -> None:
    t = Telemetry()
    v = t.registry.get_sample_value
    before = time.time()
    t.record_learner(
        LearnerStats(
            samples=32,
            events={"trained": 32},
            drifts=1,
            prequential_accuracy=0.5,
            loss=0.7,
            memory=(10, 200),
            lag_s=0.25,
        )
    )
    t.record_learner(LearnerStats(samples=8, events={"trained": 8}, memory=(12, None), running=False))
    assert v("olsim_learner_samples_total") == 40.0
    assert v("olsim_stream_events_total", {"kind": "trained"}) == 40.0
    assert v("olsim_drift_detections_total") == 1.0
    assert v("olsim_prequential_accuracy") == 0.5 and v("olsim_learner_loss") == 0.7  # None keeps the last
    assert v("olsim_learner_memory_samples") == 12.0
    assert math.isinf(v("olsim_learner_memory_capacity_samples") or 0.0)  # unbounded (joint)
    assert v("olsim_stream_lag_seconds") == 0.25
    assert v("olsim_learner_running") == 0.0
    assert (v("olsim_learner_heartbeat_timestamp_seconds") or 0.0) >= before


def test_a_rollback_leaves_no_series_from_the_newer_version() -> None:
    from olsim.learner.evaluator import Evaluator, VersionEval
    from olsim.stream.tasks import build_tasks

    ev = Evaluator(build_tasks("split-digits", n_tasks=3, seed=0))
    for n, task in ((1, 0), (2, 1), (3, 2)):
        acc = [0.9 - 0.1 * task, 0.8, 0.7]
        bits = [3.0 + task, 4.0, 5.0]  # as a language model's would be
        ev.results[n] = VersionEval(
            n, float(n), task, True, n, acc, segment=task, seen_tasks=task + 1, bits_per_byte=bits
        )
        ev.rows[task] = acc
    t = Telemetry()
    v = t.registry.get_sample_value
    t.show_version(ev, 3)
    assert v("olsim_task_accuracy", {"task": "2"}) == 0.7
    assert (
        v("olsim_task_bits_per_byte", {"task": "0"}) == 5.0
        and v("olsim_task_bits_per_byte", {"task": "2"}) == 5.0
    )
    assert not math.isnan(v("olsim_backward_transfer") or 0.0)
    t.show_version(ev, 1)  # rolled back to a version that met task 0 only
    assert v("olsim_task_accuracy", {"task": "0"}) == 0.9
    assert v("olsim_task_accuracy", {"task": "1"}) is None and v("olsim_task_accuracy", {"task": "2"}) is None
    assert v("olsim_task_forgetting", {"task": "1"}) is None
    assert (
        v("olsim_task_bits_per_byte", {"task": "0"}) == 3.0
        and v("olsim_task_bits_per_byte", {"task": "1"}) is None
    )
    assert math.isnan(v("olsim_backward_transfer") or 0.0)  # undefined for it: NaN, not the old value
    assert v("olsim_model_version") == 1.0
    ev.results[1].bits_per_byte = None  # a classifier's: a series per task met, NaN
    t.show_version(ev, 1)
    assert math.isnan(v("olsim_task_bits_per_byte", {"task": "0"}) or 0.0)
