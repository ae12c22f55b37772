"""The facts scenario at a small size, through the learner loop the Ray learner runs: plain
fine-tuning forgets earlier periods' facts, replay keeps most of them; strategies and settings that
cannot work on a language model stop ``olsim run`` before anything starts."""

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
    return {s: run_one(_small(s), seed=0)["class"] for s in ("naive", "replay")}


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
    r = runs["naive"]["accuracy_matrix"]
    assert r[0][0] >= 0.9  # learned
    assert all(r[i][i] >= 0.9 for i in range(len(r)))  # every period is learned in turn
    assert r[-1][0] <= r[0][0] - 0.3  # and the first is gone by the end


def test_replay_keeps_more_of_the_old_periods(runs: dict[str, Any]) -> None:
    old = [runs[s]["accuracy_matrix"][-1][:-1] for s in ("naive", "replay")]
    assert sum(old[1]) / len(old[1]) >= sum(old[0]) / len(old[0]) + 0.2


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--strategy", "der"], "strategy der cannot train a next-token model"),
        (["--strategy", "knn"], "strategy knn cannot train a next-token model"),
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
