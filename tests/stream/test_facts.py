"""The synthetic fact world: seeded, its updates supersede real facts, and what holds after each
period is the latest value of every fact."""

from __future__ import annotations

import pytest

from olsim.stream.facts import decode, encode, fact_world, true_after


def test_the_same_seed_builds_the_same_world_and_another_seed_another() -> None:
    a, b = fact_world(seed=3), fact_world(seed=3)
    assert a == b
    assert fact_world(seed=4) != a


def test_periods_bring_new_entities_and_change_known_facts() -> None:
    world = fact_world(seed=0, periods=3, entities_per_period=20, changes_per_period=5)
    entities = [{f.entity for f in p.new} for p in world]
    assert all(len(e) == 20 for e in entities)
    assert not (entities[0] & entities[1]) and not (entities[1] & entities[2])  # new means new
    for p in world[1:]:
        assert len(p.updated) == 5
        before = true_after(world, p.index - 1)
        for f in p.updated:
            assert f.key in before and f.old == before[f.key].value != f.value


def test_what_holds_after_a_period_is_the_latest_value() -> None:
    world = fact_world(seed=1, periods=2, entities_per_period=10, changes_per_period=4)
    after = true_after(world, 1)
    for f in world[1].updated:
        assert after[f.key] == f
    assert len(after) == len(true_after(world, 0)) + len(world[1].new)


def test_a_sentence_is_its_prompt_then_its_answer_and_bytes_round_trip() -> None:
    for f in fact_world(seed=2, periods=1, entities_per_period=5, relations=("city", "job", "pet", "color"))[
        0
    ].new:
        assert f.sentence == f.prompt + f.answer and f.answer.endswith(".")
        assert decode(encode(f.sentence)) == f.sentence


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown relations"):
        fact_world(seed=0, relations=("height",))
    with pytest.raises(ValueError, match="periods"):
        fact_world(seed=0, periods=0)
