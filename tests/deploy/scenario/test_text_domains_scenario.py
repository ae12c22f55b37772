"""The text-domains scenario at a small size, through the learner loop the Ray learner runs: after
fine-tuning on CSV data, plain fine-tuning predicts Python source bytes several bits worse than it did;
replay and a kNN-LM datastore (the same memory budget) keep the rise much smaller."""

from __future__ import annotations

from typing import Any

import pytest

from olsim.deploy.bench.forgetting import run_one
from olsim.deploy.scenario.plugins import resolve
from olsim.deploy.scenario.spec import Scenario, ScenarioError, load_scenario


def _small(strategy: str) -> Scenario:
    data = load_scenario("text-domains").dump()
    data["stream"]["tasks"]["args"].update(domains=["python", "csv"], size=10_000)
    data["stream"]["epochs"] = 16  # ~95 steps a domain
    return resolve(Scenario.model_validate(data).with_strategy(strategy))


@pytest.fixture(scope="module")
def bits() -> dict[str, Any]:
    return {s: run_one(_small(s), seed=0)["bits"] for s in ("naive", "replay", "knn")}


def test_the_scenario_resolves_to_a_transformer_over_full_text_rows() -> None:
    s = resolve(load_scenario("text-domains"))
    task = s.stream.build(s.seed).tasks[0]
    model = s.learner.model
    assert (model.kind, model.objective, s.stream.n_tasks) == ("transformer", "next-token", 4)
    assert task.name == "python" and (task.test.x > 0).all() and (task.test.y == 63).all()


def test_the_report_block_names_the_domains_and_a_row_per_domain(bits: dict[str, Any]) -> None:
    b = bits["naive"]
    assert b["tasks"] == ["python", "csv"] and len(b["matrix"]) == 2
    assert all(v > 7.5 for v in b["baseline"])  # untrained: about 8 bits a byte
    assert b["matrix"][0][0] < 5.5 and b["matrix"][1][1] < 4.0  # each domain is learned in turn


def test_naive_forgets_the_old_domain_and_replay_and_knn_reduce_the_rise(bits: dict[str, Any]) -> None:
    rise = {s: b["mean_rise"] for s, b in bits.items()}
    assert bits["naive"]["rise"][1] is None  # the last domain's change is training, not forgetting
    assert rise["naive"] > 3.0, rise
    assert rise["replay"] < rise["naive"] - 1.5 and rise["knn"] < rise["naive"] - 1.5, rise


def test_a_scenario_tunes_strategies_swapped_in_by_name() -> None:
    s = load_scenario("text-domains")
    assert s.with_strategy("knn").learner.strategy.model_dump()["k"] == 64  # the scenario's setting
    assert s.with_strategy("ewc").learner.strategy.model_dump()["lam"] == 300.0  # the default
    data = s.dump()
    data["learner"]["strategies"].append({"kind": "knn", "k": 3})
    with pytest.raises((ScenarioError, ValueError), match="lists knn more than once"):
        Scenario.model_validate(data)
    data["learner"]["strategies"] = [{"kind": "import", "import": "pkg.mod:Mine"}]
    with pytest.raises((ScenarioError, ValueError), match="a strategy of your own is learner"):
        Scenario.model_validate(data)
