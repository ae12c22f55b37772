"""The facts block's definitions, on hand-made hits: which facts count as old, changed and new for a
version, what a stale answer is, and how freshness counts versions and seconds from arrival."""

from __future__ import annotations

import numpy as np
import pytest

from olsim.learner.facts import FactProbes, FactsLedger, VersionFacts
from olsim.stream.events import TaskStream
from olsim.stream.facts import fact_tasks
from olsim.stream.plugin import ImportRef
from olsim.stream.tasks import tasks_from_data

# five facts: 0, 1 from period 0; 2 (a new one) and 3 (changes fact 1) from period 1; 4 from period 1
PROBES = FactProbes(
    x=np.zeros((5, 4), dtype=np.int64),
    old_x=np.zeros((5, 4), dtype=np.int64),
    y=np.ones(5, dtype=np.int64),
    task=np.array([0, 0, 1, 1, 1]),
    updated=np.array([False, False, False, True, False]),
    superseded=np.array([2, 1, 2, 2, 2]),  # fact 1 is superseded in period 1 (by fact 3)
    arrival=np.array([0, 10, 100, 120, 150]),
    n_tasks=2,
)


def _v(
    version: int, task: int, offset: int, at: float, now: list[int], stale: list[int] | None = None
) -> VersionFacts:
    return VersionFacts(version, task, offset, at, np.array(now, bool), np.array(stale or [0] * 5, bool))


def test_a_versions_shares_count_only_what_applies_to_it() -> None:
    ledger = FactsLedger(PROBES)
    v = _v(7, task=1, offset=130, at=0.0, now=[1, 0, 1, 0, 1], stale=[0, 0, 0, 1, 0])
    shares = ledger.shares(v)
    assert shares["old_kept"] == 1.0  # fact 0 only: fact 1 is no longer true in period 1
    assert shares["updated_fresh"] == 0.0 and shares["stale_answers"] == 1.0  # fact 3: the old value
    assert shares["new_learned"] == 1.0  # fact 2 only: fact 4 has not arrived by offset 130


def test_freshness_counts_versions_after_arrival_and_interpolates_the_arrival_time() -> None:
    ledger = FactsLedger(PROBES)
    ledger.versions = {  # (offset, time): (50, 1 s), (110, 2 s), (200, 3 s), (300, 4 s)
        1: _v(1, 0, 50, 1.0, [1, 1, 0, 0, 0]),
        2: _v(2, 1, 110, 2.0, [1, 1, 0, 0, 0]),
        3: _v(3, 1, 200, 3.0, [1, 0, 1, 0, 0]),
        4: _v(4, 1, 300, 4.0, [1, 0, 1, 1, 0]),
    }
    f = ledger.freshness()
    # measured: facts 0 (v1: 1 version), 2 (arrived at 100; v2 is the first after it, v3 right: 2 versions),
    # 3 (arrived at 120: v3 first after, v4 right: 2); fact 4 never; fact 1 is superseded: not measured
    assert (f["measured"], f["never"]) == (3, 1)
    assert f["versions"] == {"p50": 2.0, "p90": 2.0}
    # arrival times by interpolation: fact 2 at offset 100 -> 1 + 50/60 s, answered by v3 (3 s);
    # fact 3 at offset 120 -> 2 + 10/90 s, answered by v4 (4 s)
    waits = [3.0 - (1 + 50 / 60), 4.0 - (2 + 10 / 90)]
    assert ledger.freshness(task=1)["seconds"] == pytest.approx(
        {"p50": float(np.percentile(waits, 50)), "p90": float(np.percentile(waits, 90))}
    )


def test_probes_find_each_facts_first_event_in_the_stream() -> None:
    source = ImportRef(
        target="olsim.stream.facts:fact_tasks",
        args={"periods": 2, "entities_per_period": 4, "changes_per_period": 2},
    )
    tasks = tasks_from_data(
        fact_tasks(seed=0, periods=2, entities_per_period=4, changes_per_period=2), seed=0
    )
    stream = TaskStream(tasks, epochs=2, seed=0)
    probes = FactProbes.for_stream(source, 0, stream)
    assert probes is not None and len(probes) == 8 + 10  # period 0: 8 facts, period 1: 8 new + 2 changed
    first: dict[tuple[int, tuple[int, ...]], int] = {}
    for e in stream.events():
        row = tuple(int(v) for v in e.x)
        first.setdefault((e.task, row), e.offset)
    for i in range(len(probes)):
        assert probes.arrival[i] == first[(int(probes.task[i]), tuple(int(v) for v in probes.x[i]))]
    assert probes.updated.sum() == 2 and (probes.superseded < 2).sum() == 2  # each change supersedes one
    assert FactProbes.for_stream(None, 0, stream) is None
