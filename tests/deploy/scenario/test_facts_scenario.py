"""The facts scenario at a small size, through the learner loop the Ray learner runs: plain
fine-tuning forgets earlier periods' facts; retrieval keeps them, serves changed facts with their
new value and new facts in the first version after they arrive; strategies and settings that cannot
work on a language model stop ``olsim run`` before anything starts."""

from __future__ import annotations

from typing import Any

import pytest

from olsim.deploy.bench.forgetting import run_one
from olsim.deploy.cli import main
from olsim.deploy.scenario.plugins import resolve
from olsim.deploy.scenario.spec import Scenario, load_scenario


def _small(strategy: str) -> Scenario:
    data = load_scenario("facts").dump()
    data["stream"]["tasks"]["args"] = {"periods": 3, "entities_per_period": 25, "changes_per_period": 6}
    data["stream"]["epochs"] = 120
    data["learner"]["batch_size"] = 32  # ~200 steps a period, as many as the full size takes
    return resolve(Scenario.model_validate(data).with_strategy(strategy))


@pytest.fixture(scope="module")
def runs() -> dict[str, Any]:
    return {s: run_one(_small(s), seed=0) for s in ("naive", "rag")}


def test_the_scenario_resolves_to_a_next_token_transformer() -> None:
    s = resolve(load_scenario("facts"))
    model = s.learner.model
    assert (model.kind, model.objective, model.n_classes, s.stream.n_tasks) == (
        "transformer",
        "next-token",
        256,
        4,
    )
    assert model.in_features <= model.context


def test_naive_fine_tuning_forgets_the_first_period(runs: dict[str, Any]) -> None:
    r = runs["naive"]["class"]["accuracy_matrix"]
    assert r[0][0] >= 0.9  # learned
    assert all(r[i][i] >= 0.9 for i in range(len(r)))  # every period is learned in turn
    assert r[-1][0] <= r[0][0] - 0.3  # and the first is gone by the end


def test_naive_answers_new_facts_and_loses_old_ones(runs: dict[str, Any]) -> None:
    last = runs["naive"]["facts"]["overall"]
    assert last["new_learned"] >= 0.9 and last["old_kept"] <= 0.3


def test_retrieval_keeps_old_facts_serves_changes_fresh_and_at_once(runs: dict[str, Any]) -> None:
    facts = runs["rag"]["facts"]
    last = facts["overall"]
    assert last["old_kept"] >= 0.9 and last["updated_fresh"] >= 0.9 and last["stale_answers"] <= 0.05
    assert last["new_learned"] >= 0.9
    # once the network answers from context, a fact is served by the first version after it arrives
    assert facts["periods"][-1]["freshness"]["versions"]["p90"] == 1.0
    assert (
        runs["rag"]["class"]["accuracy_matrix"][-1][0]
        >= runs["naive"]["class"]["accuracy_matrix"][0][0] - 0.1
    )


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--strategy", "der"], "strategy der cannot train a next-token model"),
        (["--strategy", "lwf"], "strategy lwf cannot train a next-token model"),
    ],
)
def test_what_a_language_model_cannot_do_exits_2(
    args: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "facts", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert says in err and "\n" not in err


def test_rows_longer_than_the_context_are_refused(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    data = load_scenario("facts").dump()
    data["learner"]["model"]["context"] = 16
    path = tmp_path / "short.yaml"
    import yaml

    path.write_text(yaml.safe_dump(data))
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "exceed the transformer's context of 16" in err and "\n" not in err


TOKEN_SOURCES = """
import numpy as np
from olsim.stream.facts import fact_tasks

def shifted(seed, **kw):  # padding before the text
    tasks = fact_tasks(seed, periods=2, entities_per_period=5, changes_per_period=1)
    t = tasks[0]
    t.x[:, 1:] = t.x[:, :-1].copy(); t.x[:, 0] = 0
    return tasks

def answer_past_text(seed, **kw):  # an answer that starts where the text has ended
    tasks = fact_tasks(seed, periods=2, entities_per_period=5, changes_per_period=1)
    tasks[1].y[0] = int((tasks[1].x[0] > 0).sum())
    return tasks

def tiny_lm(in_features, n_classes):  # a next-token model with no hidden() or head()
    import torch
    class TinyLM(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed, self.out = torch.nn.Embedding(256, 8), torch.nn.Linear(8, n_classes)
        def forward(self, x):
            return self.out(self.embed(x.long()))
    return TinyLM()
"""


@pytest.mark.parametrize(
    ("source", "says"),
    [
        ("shifted", "a token row is its text then 0s"),
        ("answer_past_text", "row 0's answer starts at"),
    ],
)
def test_malformed_token_rows_exit_2(
    source: str, says: str, tmp_path: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "olsim_token_sources.py").write_text(TOKEN_SOURCES)
    monkeypatch.syspath_prepend(str(tmp_path))
    path = tmp_path / f"{source}.yaml"
    path.write_text(
        f"name: t\nstream: {{tasks: {{import: 'olsim_token_sources:{source}'}}, epochs: 1, rate: null}}\n"
        "learner: {model: {kind: transformer, layers: 1, heads: 2, width: 16}}\n"
    )
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert says in err and "\n" not in err


def test_knn_on_a_next_token_model_without_hidden_states_exits_2(
    tmp_path: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "olsim_token_sources.py").write_text(TOKEN_SOURCES)
    monkeypatch.syspath_prepend(str(tmp_path))
    path = tmp_path / "tiny.yaml"
    path.write_text(
        "name: t\nstream: {tasks: {import: 'olsim.stream.facts:fact_tasks', args: {periods: 2}}, epochs: 1}\n"
        "learner: {model: {import: 'olsim_token_sources:tiny_lm', objective: next-token, n_classes: 256},"
        " strategy: {kind: knn}}\n"
    )
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "knn on a next-token model needs hidden(tokens)" in err and "\n" not in err
