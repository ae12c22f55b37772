"""Every shipped scenario, run as shipped (its own seed, rate, faults and the CLI's default load of 20
/predict requests per second; shared Ray cluster, Serve under load), with the outcomes its YAML
promises checked, plus what the metrics endpoint says.
"""

from __future__ import annotations

import time
from functools import partial
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from olsim.deploy.bench.reliability import chaos_scenarios
from olsim.deploy.run.driver import run
from olsim.deploy.run.options import RunOptions
from olsim.deploy.scenario.expect import served_old_task_drops
from olsim.deploy.scenario.spec import builtin_names, load_scenario
from olsim.learner.metrics import accuracy, forward_transfer
from olsim.learner.model import build_model

CHAOS = chaos_scenarios()
RUNS = builtin_names()  # every scenario olsim ships


def _metrics(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(url, timeout=10).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }


def _scrape_when_settled(report: dict[str, Any], live: dict[str, Any]) -> None:
    """The learner's last report travels on its own: wait until the endpoint has it."""
    deadline = time.monotonic() + 15
    while True:
        live["metrics"] = _metrics(report["metrics_endpoint"])
        if live["metrics"].get(("olsim_learner_running", ())) == 0.0 or time.monotonic() > deadline:
            return
        time.sleep(0.5)


@pytest.fixture(scope="module")
def chaos_runs(ray_cluster: None, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[dict, dict]]:
    out = {}
    for name in RUNS:
        live: dict[str, Any] = {}
        opts = RunOptions(report_dir=tmp_path_factory.mktemp(name), metrics_port=0)  # --load-rps 20
        report = run(load_scenario(name), opts, on_finished=partial(_scrape_when_settled, live=live))
        out[name] = (report, live)
    return out


def test_the_shipped_chaos_scenarios() -> None:
    assert set(CHAOS) >= {
        "burst",
        "stall",
        "duplicates",
        "reorder",
        "malformed",
        "label-noise",
        "poison",
        "learner-crash",
        "replica-kill",
        "registry-kill",
        "evaluator-kill",
    }


@pytest.mark.parametrize("name", RUNS)
def test_every_shipped_scenario_keeps_its_promises_as_shipped(chaos_runs: dict, name: str) -> None:
    report, _ = chaos_runs[name]
    assert len(report["expectations"]) >= 3
    failed = [e for e in report["expectations"] if not e["ok"]]
    assert failed == [], failed
    st = report["stream"]
    assert st["consumed"] == st["records"] and st["events_trained"] == st["events_expected"] >= 1800
    if load_scenario(name).stream.rate is not None:  # (an unpaced stream may end before any request)
        assert report["requests"]["count"] > 0
    assert report["replicas_converged"] and report["faults_unfired"] == []


@pytest.mark.parametrize("name", [n for n in RUNS if load_scenario(n).faults])
def test_every_fault_strikes_at_its_stream_position(chaos_runs: dict, name: str) -> None:
    """The learner holds at each fault's position until the kill: it strikes after the batch that
    reaches the position, however fast the learner ran ahead or behind."""
    report, _ = chaos_runs[name]
    batch = report["scenario_config"]["learner"]["batch_size"]
    faults = report["faults"]
    assert [f["at"] for f in faults] == [f.at for f in load_scenario(name).faults]
    for f in faults:
        assert f["at"] <= f["offset"] < f["at"] + batch, f
        assert f["recovered_after_s"] is not None and f["recovered_after_s"] < 60, f


@pytest.mark.parametrize("name", CHAOS)
def test_chaos_windows_are_reported_and_exported(chaos_runs: dict, name: str) -> None:
    report, live = chaos_runs[name]
    kinds = [c.kind for c in load_scenario(name).stream.chaos]
    assert sorted(c["kind"] for c in report["chaos"]) == sorted(kinds)
    assert all(c["at"] >= report["started_at"] for c in report["chaos"])
    for kind in set(kinds):
        assert live["metrics"][("olsim_chaos_events_total", (("kind", kind),))] == kinds.count(kind)


def test_dead_letters_are_counted_by_reason_everywhere(chaos_runs: dict) -> None:
    report, live = chaos_runs["malformed"]
    assert report["stream"]["dead_letters"] == {r: 15 for r in report["stream"]["dead_letters"]}
    assert len(report["stream"]["dead_letters"]) == 6
    exported = {
        dict(labels)["reason"]: v
        for (name, labels), v in live["metrics"].items()
        if name == "olsim_dead_letters_total"
    }
    assert exported == report["stream"]["dead_letters"]
    assert live["metrics"][("olsim_stream_events_total", (("kind", "dead_letter"),))] == 90
    assert report["stream"]["dead_letter_examples"][0]["reason"] == "wrong_shape"


def test_redeliveries_are_skipped_not_trained(chaos_runs: dict) -> None:
    report, live = chaos_runs["duplicates"]
    assert report["stream"]["duplicates_skipped"] == 609
    assert live["metrics"][("olsim_stream_events_total", (("kind", "duplicate"),))] == 609
    assert live["metrics"][("olsim_learner_samples_total", ())] == report["stream"]["events_trained"]


def test_a_killed_learner_resumes_from_its_checkpoint_while_serving_goes_on(chaos_runs: dict) -> None:
    report, _ = chaos_runs["learner-crash"]
    faults = report["faults"]
    assert [f["target"] for f in faults] == ["learner"] * 3
    assert all(f["recovered_after_s"] is not None and f["recovered_after_s"] < 30 for f in faults)
    # every kill counted: restarts are counted as they happen, not restored from a checkpoint
    assert report["stream"]["learner_restarts"] == 3 and report["stream"]["checkpoints"] > 3
    rows = report["requests"]["samples"]  # [sent, latency ms, status, version, replica]
    for f in faults:  # requests sent while the learner was down were all answered
        down = [r for r in rows if f["killed_at"] <= r[0] <= f["killed_at"] + f["recovered_after_s"]]
        assert down and all(r[2] == 200 and r[3] is not None for r in down)
    assert report["tasks_completed"] == 3 and report["replicas_converged"]


def _served_at(report: dict[str, Any], t: float) -> int | None:
    """The version the registry served at unix time ``t`` (from the change log)."""
    served = [s["version"] for s in report["swaps"] if s["published_at"] <= t]
    return served[-1] if served else None


def test_a_killed_replica_is_replaced_by_one_serving_the_current_version(chaos_runs: dict) -> None:
    report, _ = chaos_runs["replica-kill"]
    rows = sorted(report["requests"]["samples"])  # [sent, latency ms, status, version, replica]
    served_by_replacement = 0
    for f in report["faults"]:
        assert f["target"] == "replica" and f["recovered_after_s"] is not None
        assert f["dead_after_s"] is not None and f["failed_beyond_in_flight"] == 0, f
        mine = [r for r in rows if r[4] == f["replacement"]]
        if mine:  # (the last replacement may come up after the load stopped)
            first = mine[0]
            low, high = _served_at(report, first[0]), _served_at(report, first[0] + first[1] / 1e3)
            assert first[2] == 200 and low is not None and low <= first[3] <= (high or low)
            served_by_replacement += 1
    assert served_by_replacement >= 1, "no request reached a replacement replica"


def test_the_gate_keeps_poisoned_and_noisy_versions_from_users(chaos_runs: dict) -> None:
    for name in ("poison", "label-noise"):
        report, _ = chaos_runs[name]
        budget = report["gate"]["forgetting_budget"]
        assert max(served_old_task_drops(report), default=0.0) <= budget + 0.1, name
    poisoned, _ = chaos_runs["poison"]
    assert poisoned["stream"]["injected_trained"] == 300
    assert sum(n for k, n in poisoned["gate"]["counts"].items() if k.startswith("rejected/")) >= 1


def _answered_while_down(report: dict[str, Any]) -> None:
    """Requests sent while a killed actor was down were all answered, by a version."""
    rows = report["requests"]["samples"]  # [sent, latency ms, status, version, replica]
    for f in report["faults"]:
        down = [r for r in rows if f["killed_at"] <= r[0] <= f["killed_at"] + f["recovered_after_s"]]
        assert down and all(r[2] == 200 and r[3] is not None for r in down)


def test_a_killed_registry_comes_back_from_its_journal_with_every_version(chaos_runs: dict) -> None:
    report, _ = chaos_runs["registry-kill"]
    faults = report["faults"]
    assert [f["target"] for f in faults] == ["registry"] * 2
    assert all(f["latest_before"] >= 1 for f in faults)  # each kill took versions with it to disk
    _answered_while_down(report)
    latest = report["versions"]["latest"]
    accepted = [k for k in report["gate"]["counts"] if k.startswith("accepted/")]
    # one version per accepted candidate, numbered 1..latest without a gap or a repeat, all scored
    assert sum(report["gate"]["counts"][k] for k in accepted) == latest > 10
    assert [t["version"] for t in report["timeline"]] == list(range(1, latest + 1))
    assert report["served_version"] == latest and report["replicas_converged"]
    assert report["tasks_completed"] == 3


def test_a_killed_evaluator_rebuilds_its_scores_and_metrics(chaos_runs: dict) -> None:
    report, live = chaos_runs["evaluator-kill"]
    faults = report["faults"]
    assert [f["target"] for f in faults] == ["evaluator"] * 2
    _answered_while_down(report)
    m = live["metrics"]  # scraped after the run, at the port the first evaluator process had
    latest = report["versions"]["latest"]
    assert [t["version"] for t in report["timeline"]] == list(range(1, latest + 1))
    # the untrained model's accuracy (FWT's baseline) survived the kills in the evaluator's state
    s = load_scenario("evaluator-kill")
    untrained = build_model(s.learner.model, seed=s.seed)
    expected = [accuracy(untrained, t.test) for t in s.stream.build_tasks(s.seed)]
    assert len(report["accuracy_matrix"]) == 3 and report["baseline_accuracy"] == pytest.approx(expected)
    assert report["fwt"] == pytest.approx(forward_transfer(report["accuracy_matrix"], expected))
    # counters derived from the registry came back whole (no reset): they count the whole run
    assert m[("olsim_versions_evaluated_total", ())] == latest
    assert (
        sum(v for (n, _), v in m.items() if n == "olsim_gate_decisions_total") == report["gate"]["candidates"]
    )
    acks = sum(len(row["applied"]) for row in report["swaps"])
    assert m[("olsim_swap_staleness_seconds_count", ())] == acks
    assert m[("olsim_model_version", ())] == report["served_version"]


def test_a_recurring_task_gets_its_own_rows_and_is_relearnt(chaos_runs: dict) -> None:
    report, live = chaos_runs["recurring"]
    assert report["segments"] == [0, 1, 0, 2, 1] and len(report["accuracy_matrix"]) == 5
    r = report["accuracy_matrix"]
    assert r[1][0] < 0.5 < r[0][0] and r[2][0] > r[1][0] + 0.5  # forgotten, then relearnt on return
    assert r[4][1] > r[3][1] + 0.5
    ends = [t for t in report["timeline"] if t["task_end"]]
    assert [(t["segment"], t["task"], t["seen_tasks"]) for t in ends] == [
        (0, 0, 1),
        (1, 1, 2),
        (2, 0, 2),
        (3, 2, 3),
        (4, 1, 3),
    ]
    # the live BWT gauge and the report's BWT are one definition (the last segment relearnt task 1)
    assert live["metrics"][("olsim_backward_transfer", ())] == pytest.approx(report["bwt"])
    # the served version (on task 1, all three met) exports accuracy for every task
    assert {dict(k[1]).get("task") for k in live["metrics"] if k[0] == "olsim_task_accuracy"} == {
        "0",
        "1",
        "2",
    }


def test_the_facts_run_reports_and_exports_what_the_served_model_knows(chaos_runs: dict) -> None:
    """The language-model scenario as shipped: every /generate request answered while versions swap,
    naive fine-tuning losing old facts, and the facts gauges describing the served (last) version."""
    report, live = chaos_runs["facts"]
    requests = report["requests"]
    assert requests["count"] > 100 and requests["errors"] == 0 and len(requests["versions_seen"]) >= 3
    facts = report["facts"]
    last = facts["overall"]
    assert last["version"] == report["served_version"] and len(facts["periods"]) == 4
    assert last["new_learned"] >= 0.9 and last["old_kept"] <= 0.3  # fine-tuning forgets
    m = live["metrics"]
    for kind in ("old_kept", "updated_fresh", "stale_answers", "new_learned"):
        assert m[("olsim_facts_ratio", (("kind", kind),))] == pytest.approx(last[kind]), kind
    assert m[("olsim_fact_freshness_seconds_count", ())] >= facts["freshness"]["measured"] > 0
    # a language model's bits per byte: the gauges are the served version's, as the report has them
    (served,) = [t for t in report["timeline"] if t["version"] == report["served_version"]]
    for j, bits in enumerate(served["bits_per_byte"]):
        assert m[("olsim_task_bits_per_byte", (("task", str(j)),))] == pytest.approx(bits), j
    assert report["bits_per_byte"]["matrix"][-1] == served["bits_per_byte"]
    # per generated byte: each answer's latency over its bytes (answers here are 4-8 bytes)
    per = requests["ms_per_token"]
    assert 0 < per["p50"] <= requests["latency_ms"]["p50"] and per["p50"] <= per["p99"]
