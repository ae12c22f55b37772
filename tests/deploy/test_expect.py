"""Scenario expectations: bounds, the values they read from a report, the CLI's exit code."""

from __future__ import annotations

from typing import Any

import pytest

from deploy.bench_reliability import chaos_scenarios
from deploy.cli import EXPECTATION_FAILED, expectations_exit
from deploy.expect import Bound, Expectations, check
from deploy.scenario import ScenarioError, load_scenario, parse_scenario

REPORT = {
    "stream": {"events_lost": 0, "events_trained_twice": 0, "duplicates_skipped": 609, "dead_lettered": 90},
    "chaos": [{"at": 1.0, "kind": "malformed", "position": 480}],
    "requests": {"errors": 2},
    "versions_published": 5,
    "acc": 0.62,
}


def test_bounds_must_say_something_consistent() -> None:
    with pytest.raises(ValueError, match="give min, max or both"):
        Bound()
    with pytest.raises(ValueError, match=r"min 3\.0 > max 1\.0"):
        Bound(min=3, max=1)
    assert Bound(min=2, max=2).text() == "== 2" and Bound(max=0).text() == "<= 0"


def test_check_reads_each_outcome_from_the_report() -> None:
    e = Expectations.model_validate(
        {
            "events_lost": {"max": 0},
            "duplicates_skipped": {"min": 609, "max": 609},
            "dead_lettered": {"min": 91},
            "chaos_events": {"min": 1, "max": 1},
            "failed_requests": {"max": 0},
            "acc": {"min": 0.5},
        }
    )
    got = {o["name"]: (o["value"], o["ok"]) for o in check(e, REPORT)}
    assert got == {
        "events_lost": (0, True),
        "duplicates_skipped": (609, True),
        "dead_lettered": (90, False),
        "chaos_events": (1, True),
        "failed_requests": (2, False),
        "acc": (0.62, True),
    }


def test_an_outcome_that_was_not_measured_fails() -> None:
    e = Expectations.model_validate({"failed_requests": {"max": 0}})
    assert check(e, {}) == [{"name": "failed_requests", "value": None, "expected": "<= 0", "ok": False}]


def test_failed_expectations_exit_3_naming_each(capsys: pytest.CaptureFixture[str]) -> None:
    report = {"expectations": check(Expectations.model_validate({"dead_lettered": {"max": 0}}), REPORT)}
    assert expectations_exit(report) == EXPECTATION_FAILED == 3
    assert capsys.readouterr().err == "olsim: expectation failed: dead_lettered = 90 (expected <= 0)\n"
    assert expectations_exit({"expectations": []}) == 0


def test_unknown_expectation_is_a_scenario_error() -> None:
    with pytest.raises(ScenarioError, match=r"expect\.events_gone: Extra inputs"):
        parse_scenario("name: x\nexpect:\n  events_gone: {max: 0}\n", "x.yaml")


@pytest.mark.parametrize("name", chaos_scenarios())
def test_every_chaos_scenario_promises_no_loss_and_no_double_training(name: str) -> None:
    s = load_scenario(name)
    assert s.expect.events_lost is not None and s.expect.events_lost.max == 0
    assert s.expect.events_trained_twice is not None and s.expect.events_trained_twice.max == 0
    assert s.description and s.stream.rate is not None


def test_requests_around_a_fault() -> None:
    from deploy.faults import requests_around

    fault = {"killed_at": 100.0, "recovered_after_s": 2.0}
    samples: list[list[Any]] = [
        [99.0, 500.0, 200, 1, "a"],  # done before the kill
        [99.9, 200.0, 500, 1, "a"],  # in flight at the kill, failed
        [99.95, 100.0, 200, 1, "b"],  # in flight, fine
        [101.0, 10.0, 503, None, None],  # failed while recovering
        [103.0, 10.0, 500, None, None],  # after recovery: not this fault's
    ]
    assert requests_around(fault, samples) == {"in_flight": 2, "failed": 2}
    report = {"faults": [fault | {"in_flight": 2, "failed": 3}, fault | {"in_flight": 1, "failed": 0}]}
    e = Expectations.model_validate({"failed_beyond_in_flight": {"max": 0}})
    assert check(e, report)[0]["value"] == 1
