from __future__ import annotations

from pathlib import Path

import pytest

from olsim.deploy.scenario.spec import ScenarioError, builtin_names, load_scenario
from olsim.learner.strategies import STRATEGIES


def test_builtins_load_and_validate() -> None:
    assert {"split-digits", "permuted-digits", "synthetic"} <= set(builtin_names())
    for name in builtin_names():
        s = load_scenario(name)
        assert s.name == name
        assert s.learner.model.in_features == 64


def test_with_strategy_swaps_config_and_keeps_same_kind() -> None:
    s = load_scenario("split-digits")
    r = s.with_strategy("replay")
    assert r.learner.strategy.kind == "replay" and s.learner.strategy.kind == "naive"
    assert r.with_strategy("replay") is r
    with pytest.raises(ScenarioError, match="valid: " + ", ".join(sorted(STRATEGIES))):
        s.with_strategy("ewc-typo")


def test_lora_gets_one_adapter_set_per_task() -> None:
    s = load_scenario("split-digits")
    assert s.learner.model.adapters == 0
    assert s.with_strategy("lora").learner.model.adapters == s.stream.task_count


def test_lora_with_too_few_adapters_is_rejected(tmp_path: Path) -> None:
    p = tmp_path / "lora.yaml"
    p.write_text("name: x\nstream: {n_tasks: 5}\nlearner: {strategy: {kind: lora}, model: {adapters: 2}}\n")
    with pytest.raises(ScenarioError, match=r"adapters=2 < stream\.n_tasks=5"):
        load_scenario(str(p))


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("name: x\nstream: {epochs: 0}\n", "stream.epochs"),
        ("name: x\nlearner: {strategy: {kind: nope}}\n", "learner.strategy"),
        ("name: x\nbogus: 1\n", "bogus: Extra inputs"),
        ("name: [unclosed\n", "line"),
        ("- a\n- b\n", "mapping"),
    ],
)
def test_invalid_yaml_gives_one_line_error(tmp_path: Path, text: str, needle: str) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    with pytest.raises(ScenarioError, match=needle) as info:
        load_scenario(str(p))
    assert "\n" not in str(info.value)


def test_validation_errors_name_the_yaml_line(tmp_path: Path) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text(
        "name: x\nstream:\n  tasks: split-digits\n  chaos:\n"
        "    - {kind: burst, at: 10, events: 5, factor: 2}\n    - {kind: stall, at: -1, seconds: 1}\n"
        "faults:\n  - {kind: kill, target: learnr, at: 5}\n"
    )
    with pytest.raises(ScenarioError) as info:
        load_scenario(str(p))
    msg = str(info.value)
    assert msg.startswith(f"{p}: line 6: stream.chaos.1.stall.at: ") and "greater than or equal to 0" in msg
    assert "; line 8: faults.0.target: Input should be" in msg


def test_missing_file_and_unknown_name() -> None:
    with pytest.raises(ScenarioError, match="not found"):
        load_scenario("/nonexistent/x.yaml")
    with pytest.raises(ScenarioError, match="valid: " + ", ".join(builtin_names())):
        load_scenario("split-digit")


def test_gate_block_is_validated_with_the_field_named() -> None:
    from olsim.deploy.scenario.spec import ScenarioError, parse_scenario

    ok = parse_scenario(
        "name: g\ngate: {mode: off, forgetting_budget: 0.05, rollback_floor: 0.5}\n", "g.yaml"
    )
    assert (ok.gate.mode, ok.gate.forgetting_budget, ok.gate.rollback_floor) == ("off", 0.05, 0.5)
    assert parse_scenario("name: d\n", "d.yaml").gate.mode == "on"
    with pytest.raises(ScenarioError, match=r"gate\.forgetting_budget: .*less than or equal to 1"):
        parse_scenario("name: g\ngate: {forgetting_budget: 2}\n", "g.yaml")


def test_lora_refuses_a_task_that_comes_back() -> None:
    from olsim.deploy.scenario.spec import parse_scenario

    text = "name: r\nstream: {n_tasks: 3, sequence: [0, 1, 0, 2]}\nlearner: {strategy: {kind: lora}}\n"
    with pytest.raises(ScenarioError, match=r"line 1: .*a task cannot come back"):
        parse_scenario(text, "r.yaml")
    assert parse_scenario(text.replace("lora", "ewc"), "r.yaml").stream.segments == [0, 1, 0, 2]
