"""Every registered strategy runs through ``olsim run``'s path: Ray learner, registry, Serve, gauges.

A short scenario (2 tasks, 2 passes, unthrottled stream) keeps each run to seconds; naive and replay
have their full-length runs in test_run.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from olsim.deploy.bench.forgetting import run_one
from olsim.deploy.run.driver import run
from olsim.deploy.run.options import RunOptions
from olsim.deploy.scenario.plugins import resolve
from olsim.deploy.scenario.spec import Scenario, load_scenario
from olsim.learner.strategies import STRATEGIES


def _short(strategy: str) -> Any:
    s = load_scenario("split-digits").with_strategy(strategy)
    stream = s.stream.model_copy(update={"n_tasks": 2, "epochs": 2, "rate": 1500.0})
    gate_off = s.gate.model_copy(update={"mode": "off"})  # compared with the gate-less in-process bench
    return s.model_copy(update={"stream": stream, "seed": 3, "gate": gate_off})


CLASSIFIERS = sorted(s for s, (_, cls) in STRATEGIES.items() if "classify" in cls.objectives)


@pytest.mark.parametrize("strategy", sorted(set(CLASSIFIERS) - {"naive", "replay"}))
def test_strategy_runs_served_and_matches_in_process(
    ray_cluster: None, tmp_path: Path, strategy: str
) -> None:
    scraped: dict[tuple[str, str], float] = {}
    answers: dict[str, httpx.Response] = {}

    def scrape(report: dict[str, Any]) -> None:
        url = "http://127.0.0.1:8000/predict"
        answers["task"] = httpx.post(url, json={"inputs": [[0.1] * 64], "task": 1}, timeout=10)
        answers["bad task"] = httpx.post(url, json={"inputs": [[0.1] * 64], "task": 99}, timeout=10)
        for fam in text_string_to_metric_families(httpx.get(report["metrics_endpoint"], timeout=10).text):
            for s in fam.samples:
                if s.name == "olsim_task_accuracy":
                    scraped[(s.name, s.labels["task"])] = s.value

    scenario = _short(strategy)
    report = run(scenario, RunOptions(report_dir=tmp_path, metrics_port=0, load_rps=30.0), on_finished=scrape)
    assert report["strategy"] == strategy and report["tasks_completed"] == 2
    assert report["replicas_converged"] and report["requests"]["errors"] == 0
    assert set(report["replica_versions"].values()) == {report["versions_published"]}
    for task, acc in enumerate(report["accuracy_matrix"][-1]):
        assert scraped[("olsim_task_accuracy", str(task))] == pytest.approx(acc)
    assert answers["task"].status_code == 200
    if strategy == "lora":  # the only served model with per-task parts: an unknown task is the caller's error
        assert (
            answers["bad task"].status_code == 422 and "out of range" in answers["bad task"].json()["detail"]
        )
        assert report["routing_accuracy"] is not None and report["routing_accuracy"] > 0.5
    else:
        assert answers["bad task"].status_code == 200
    # the in-process benchmark trains the same model: same matrix, exactly
    assert run_one(scenario, scenario.seed)["class"]["accuracy_matrix"] == report["accuracy_matrix"]


def test_rag_runs_served_on_a_small_world_and_matches_in_process(ray_cluster: None, tmp_path: Path) -> None:
    """The language-model strategy through the same path: /generate under load while its fact store
    travels in every version, the facts block and gauges, and the in-process learner's matrix."""
    data = load_scenario("facts").with_strategy("rag").dump()
    data["stream"]["tasks"]["args"] = {"periods": 2, "entities_per_period": 10, "changes_per_period": 3}
    data["stream"]["epochs"] = 40
    data["learner"]["batch_size"] = 32
    scenario = resolve(Scenario.model_validate(data))
    scraped: dict[str, float] = {}

    def scrape(report: dict[str, Any]) -> None:
        for fam in text_string_to_metric_families(httpx.get(report["metrics_endpoint"], timeout=10).text):
            for s in fam.samples:
                if s.name == "olsim_facts_ratio":
                    scraped[s.labels["kind"]] = s.value
                if s.name == "olsim_learner_memory_samples":
                    scraped["store"] = s.value

    report = run(scenario, RunOptions(report_dir=tmp_path, metrics_port=0, load_rps=30.0), on_finished=scrape)
    assert report["strategy"] == "rag" and report["tasks_completed"] == 2 and report["replicas_converged"]
    assert report["requests"]["count"] > 0 and report["requests"]["errors"] == 0
    last = report["facts"]["overall"]
    assert scraped["old_kept"] == pytest.approx(last["old_kept"])
    assert scraped["store"] == 2 * 10 * 2  # one sentence per question: 20 people x 2 relations
    assert run_one(scenario, scenario.seed)["class"]["accuracy_matrix"] == report["accuracy_matrix"]
