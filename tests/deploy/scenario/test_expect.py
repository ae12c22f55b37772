"""Scenario expectations: bounds, the values they read from a report, the CLI's exit code."""

from __future__ import annotations

from typing import Any

import pytest

from olsim.deploy.bench.reliability import chaos_scenarios
from olsim.deploy.run.cli import EXPECTATION_FAILED, expectations_exit
from olsim.deploy.scenario.expect import Bound, Expectations, check
from olsim.deploy.scenario.spec import ScenarioError, load_scenario, parse_scenario

REPORT = {
    "stream": {"events_lost": 0, "events_trained_twice": 0, "duplicates_skipped": 609, "dead_lettered": 90},
    "chaos": [{"at": 1.0, "kind": "malformed", "position": 480}],
    "requests": {"count": 50, "errors": 2},
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


def test_an_outcome_that_was_not_measured_fails_and_says_why() -> None:
    e = Expectations.model_validate({"failed_requests": {"max": 0}, "acc": {"min": 0.5}})
    assert check(e, {}) == [
        {
            "name": "failed_requests",
            "value": None,
            "expected": "<= 0",
            "ok": False,
            "detail": "no /predict load ran (no version was ever served)",
        },
        {"name": "acc", "value": None, "expected": ">= 0.5", "ok": False},
    ]


def test_what_the_runs_own_options_leave_unmeasured_is_not_checked(
    capsys: pytest.CaptureFixture[str],
) -> None:
    e = Expectations.model_validate({"failed_requests": {"max": 0}, "events_lost": {"max": 0}})
    no_load = check(e, REPORT | {"requests": None, "load_rps": 0})
    assert [(o["name"], o["ok"]) for o in no_load] == [("events_lost", True), ("failed_requests", None)]
    cut = check(e, REPORT | {"truncated": True})
    assert all(o["ok"] is None and "cut short" in o["detail"] for o in cut)
    assert expectations_exit({"expectations": no_load + cut}) == 0  # nothing failed
    assert capsys.readouterr().err == ""


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
    from olsim.deploy.scenario.faults import requests_around

    fault = {"target": "replica", "killed_at": 100.0, "dead_after_s": 0.05, "recovered_after_s": 2.0}
    samples: list[list[Any]] = [
        [99.0, 500.0, 200, 1, "a", 1, None],  # done before the kill
        [99.9, 200.0, 500, 1, "a", 1, None],  # in flight at the kill, failed: excused
        [99.95, 100.0, 200, 1, "b", 1, None],  # in flight, fine: excuses nothing
        [100.2, 5.0, 500, None, None, 1, None],  # sent after the process was gone: not excused
        [101.0, 10.0, 503, None, None, 1, None],  # failed while recovering
        [101.5, 10.0, 200, 2, "c", 1, "keepalive_closed"],  # retried, then answered
        [103.0, 10.0, 500, None, None, 1, None],  # after recovery: not this fault's
    ]
    assert requests_around(fault, samples) == {
        "failed": 3,
        "in_flight_failed": 1,
        "failed_beyond_in_flight": 2,
        "retried": 1,
    }


def test_a_success_in_flight_excuses_no_later_failure() -> None:
    """Counting requests in flight (successes too) against failures let one success hide a failure."""
    from olsim.deploy.scenario.faults import requests_around

    fault = {"target": "replica", "killed_at": 100.0, "dead_after_s": 0.02, "recovered_after_s": 5.0}
    samples: list[list[Any]] = [[99.99, 50.0, 200, 1, "a", 1, None], [101.0, 3.0, 500, None, None, 1, None]]
    around = requests_around(fault, samples)
    assert around["failed_beyond_in_flight"] == 1
    e = Expectations.model_validate({"failed_beyond_in_flight": {"max": 0}})
    (outcome,) = check(e, {"requests": {"count": 2, "errors": 1}, "faults": [fault | around]})
    assert outcome["value"] == 1 and not outcome["ok"]


def test_a_replica_never_seen_to_die_fails_the_in_flight_bound_with_that_reason() -> None:
    from olsim.deploy.scenario.faults import requests_around

    fault = {"target": "replica", "offset": 1000, "killed_at": 100.0, "dead_after_s": None}
    fault |= {"recovered_after_s": 3.0}
    around = requests_around(fault, [[101.0, 3.0, 500, None, None, 1, None]])
    assert around["in_flight_failed"] is None and around["failed"] == 1
    e = Expectations.model_validate({"failed_beyond_in_flight": {"max": 0}})
    (outcome,) = check(e, {"requests": {"count": 1, "errors": 1}, "faults": [fault | around]})
    assert not outcome["ok"] and "replica killed at offset 1000 was never seen to die" in outcome["detail"]


def test_a_bound_on_requests_when_none_was_sent_fails() -> None:
    e = Expectations.model_validate({"failed_requests": {"max": 0}})
    (outcome,) = check(e, {"requests": {"count": 0, "errors": 0}, "load_rps": 20})
    assert not outcome["ok"] and outcome["detail"] == "the load sent no request before the run ended"


def test_retries_are_bounded_like_failures() -> None:
    e = Expectations.model_validate({"retried": {"max": 1}})
    assert check(e, {"requests": {"count": 9, "errors": 0, "retried": 2}})[0] == {
        "name": "retried",
        "value": 2,
        "expected": "<= 1",
        "ok": False,
    }
