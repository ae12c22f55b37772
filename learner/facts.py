"""What a served language model knows of a changing world of facts, version by version.

For a scenario whose tasks come from :func:`olsim.stream.facts.fact_tasks`, :class:`FactProbes` holds
every fact of the world as a token row (its value as stated), the row of the value it superseded
(for a changed fact), its period, and the stream offset of its first event. Each served version is
scored on all of them (exact match, one forward pass: :mod:`olsim.learner.objective`), and
:class:`FactsLedger` turns those hits into what the seed's question needs, at the version that ended
each period and at the last one:

- ``old_kept``: facts of earlier periods that are still true, answered right (what is forgotten);
- ``updated_fresh``: changed facts that have arrived, answered with the new value;
- ``stale_answers``: the same facts, answered with the value they superseded;
- ``new_learned``: the period's facts about new entities that have arrived, answered right;
- freshness: from a fact's arrival to the first version that answers it right, in versions
  (1: the first version published after it arrived) and seconds. A fact arrives when the learner
  consumes its first event; its time is interpolated between the two versions whose stream offsets
  bracket it. Facts that are still true at the end are measured; ones never answered right are
  counted apart.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from olsim.learner.objective import NextToken
from olsim.learner.served import ServedModel
from olsim.stream.delivery import Delivery
from olsim.stream.events import TaskStream
from olsim.stream.facts import fact_tasks, fact_world, token_rows
from olsim.stream.plugin import ImportRef
from olsim.stream.spec import Source
from olsim.stream.tasks import Task

FACTS_SOURCE = "olsim.stream.facts:fact_tasks"


@dataclass(frozen=True)
class FactProbes:
    x: np.ndarray  # (F, L) each fact's sentence, as stated when it arrived
    old_x: np.ndarray  # (F, L) the sentence it superseded (zeros for a fact about a new entity)
    y: np.ndarray  # (F,) where the answer starts
    task: np.ndarray  # (F,) the stream task (period) that brings it
    updated: np.ndarray  # (F,) bool: it changes a known fact
    superseded: np.ndarray  # (F,) task whose period changes it again (n_tasks: never)
    arrival: np.ndarray  # (F,) stream offset of its first event (-1: not in the stream)
    n_tasks: int

    def __len__(self) -> int:
        return len(self.y)

    @classmethod
    def for_stream(cls, source: ImportRef | None, seed: int, stream: Source) -> FactProbes | None:
        """The probes of a facts scenario's stream (None for any other task source)."""
        if source is None or source.target != FACTS_SOURCE:
            return None
        if isinstance(stream, Delivery):
            stream = stream.stream
        bound = inspect.signature(fact_tasks).bind(seed, **source.args)  # its defaults, one place
        bound.apply_defaults()
        args = bound.arguments
        world = fact_world(
            args["seed"],
            args["periods"],
            args["entities_per_period"],
            args["changes_per_period"],
            tuple(args["relations"]),
        )
        by_name = {t.name: t for t in stream.tasks}
        width = stream.tasks[0].train.x.shape[1]
        first = _first_offsets(stream)
        facts, old, task, arrival = [], [], [], []
        for p in world:
            t: Task | None = by_name.get(f"period{p.index}")
            if t is None:
                continue  # a period the scenario does not use (n_tasks below the world's periods)
            for i, f in enumerate(p.facts):
                facts.append(f)
                old.append(f if f.old is None else replace(f, value=f.old, old=None))
                task.append(t.index)
                arrival.append(first[t.index].get(i, -1))
        x, y = token_rows(facts, width)
        updated = np.asarray([f.old is not None for f in facts], dtype=bool)
        old_x = np.where(updated[:, None], token_rows(old, width)[0], 0)
        n_tasks = len(stream.tasks)
        superseded = np.full(len(facts), n_tasks)
        latest: dict[tuple[str, str], int] = {}
        for i, f in enumerate(facts):  # facts are in period order: a later one supersedes
            if f.key in latest:
                superseded[latest[f.key]] = task[i]
            latest[f.key] = i
        return cls(
            x=x,
            old_x=old_x,
            y=y,
            task=np.asarray(task),
            updated=updated,
            superseded=superseded,
            arrival=np.asarray(arrival),
            n_tasks=n_tasks,
        )

    def score(self, model: ServedModel) -> tuple[np.ndarray, np.ndarray]:
        """Hits of ``model`` on every fact: with the current value, and with the superseded one."""
        objective = NextToken()
        with torch.inference_mode():
            x, old, y = torch.from_numpy(self.x), torch.from_numpy(self.old_x), torch.from_numpy(self.y)
            now = objective.hits(model(x.float(), answer_at=y), x, y).numpy()
            stale = np.zeros(len(self), dtype=bool)
            changed = torch.from_numpy(np.flatnonzero(self.updated))
            if len(changed):  # only a changed fact has a superseded value to give
                o, a = old[changed], y[changed]
                stale[changed.numpy()] = objective.hits(model(o.float(), answer_at=a), o, a).numpy()
        return now, stale


def _first_offsets(stream: TaskStream) -> list[dict[int, int]]:
    """For each task, the stream offset of the first event of each training row (its arrival)."""
    out: list[dict[int, int]] = [{} for _ in stream.tasks]
    for k, (a, b) in enumerate(stream.segment_bounds()):
        seen = out[stream.segments[k]]
        size = len(stream.tasks[stream.segments[k]].train)
        for batch in stream.batches(1024, start=a, stop=min(b, a + 3 * size)):
            for j, row in enumerate(batch.index.tolist()):
                if batch.task == stream.segments[k]:
                    seen.setdefault(int(row), batch.offset + j)
    return out


@dataclass
class VersionFacts:
    version: int
    task: int
    offset: int
    published_at: float
    now: np.ndarray
    stale: np.ndarray


def _timeline(versions: list[VersionFacts]) -> tuple[np.ndarray, np.ndarray]:
    """Stream offsets and publication times of ``versions``, by offset (what arrival times are
    interpolated on; a learner resumed from a checkpoint can publish a lower offset later)."""
    by_offset = sorted(versions, key=lambda v: (v.offset, v.published_at))
    offsets = np.asarray([v.offset for v in by_offset], dtype=float)
    return offsets, np.maximum.accumulate(np.asarray([v.published_at for v in by_offset], dtype=float))


def _pcts(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {"p50": float(np.percentile(values, 50)), "p90": float(np.percentile(values, 90))}


def _share(hits: np.ndarray, mask: np.ndarray) -> float | None:
    return float(hits[mask].mean()) if mask.any() else None


@dataclass
class FactsLedger:
    """Every scored version's fact hits, and the facts block of the report built from them."""

    probes: FactProbes
    versions: dict[int, VersionFacts] = field(default_factory=dict)
    first_right: dict[int, int] = field(default_factory=dict)  # fact -> first version right after arrival

    def record(self, version: int, model: ServedModel, meta: dict[str, Any], published_at: float) -> None:
        now, stale = self.probes.score(model)
        v = VersionFacts(
            version, int(meta.get("task", 0)), int(meta.get("offset", 0)), published_at, now, stale
        )
        self.versions[version] = v

    def newly_fresh(self, version: int) -> list[float]:
        """Seconds from arrival for each fact that ``version`` (the newest scored) is the first to
        answer right: what the live freshness histogram observes."""
        v, p = self.versions[version], self.probes
        order = sorted(self.versions.values(), key=lambda u: u.version)
        offsets, times = _timeline(order)
        out = []
        for i in np.flatnonzero(v.now & (p.arrival >= 0) & (p.arrival < v.offset)):
            if int(i) not in self.first_right:
                self.first_right[int(i)] = version
                out.append(max(0.0, v.published_at - float(np.interp(p.arrival[i], offsets, times))))
        return out

    def shares(self, v: VersionFacts) -> dict[str, Any]:
        """What version ``v`` knows, by the categories above, on the facts that had arrived."""
        p, c = self.probes, v.task
        arrived = (p.arrival >= 0) & (p.arrival < v.offset)
        true_now = p.superseded > c
        changed = arrived & p.updated & true_now & (p.task <= c)
        return {
            "version": v.version,
            "task": c,
            "old_kept": _share(v.now, (p.task < c) & true_now),
            "updated_fresh": _share(v.now, changed),
            "stale_answers": _share(v.stale, changed),
            "new_learned": _share(v.now, arrived & ~p.updated & (p.task == c)),
        }

    def freshness(self, task: int | None = None) -> dict[str, Any]:
        """Arrival to first right answer, over the facts (of ``task``, or all) still true at the end
        (see the module doc)."""
        p = self.probes
        order = sorted(self.versions.values(), key=lambda v: v.version)
        offsets, times = _timeline(order)
        n_versions: list[float] = []
        seconds: list[float] = []
        never = 0
        mine = (p.superseded >= p.n_tasks) & (p.arrival >= 0)
        if task is not None:
            mine &= p.task == task
        for i in np.flatnonzero(mine):
            after = [k for k, v in enumerate(order) if v.offset > p.arrival[i]]
            right = [k for k in after if order[k].now[i]]
            if not right:
                never += 1
                continue
            arrived_at = float(np.interp(p.arrival[i], offsets, times))
            n_versions.append(right[0] - after[0] + 1)
            seconds.append(max(0.0, order[right[0]].published_at - arrived_at))
        return {
            "measured": len(n_versions),
            "never": never,
            "versions": _pcts(n_versions),
            "seconds": _pcts(seconds),
        }

    def report(self, period_ends: dict[int, int]) -> dict[str, Any]:
        """The report's ``facts`` block: per period (scored by the version that ended it; ``period_ends``:
        task -> version, with its facts' freshness), the last version's overall, and freshness."""
        periods = [
            {**self.shares(self.versions[v]), "freshness": self.freshness(self.versions[v].task)}
            for _, v in sorted(period_ends.items())
            if v in self.versions
        ]
        last = self.shares(self.versions[max(self.versions)]) if self.versions else None
        return {"periods": periods, "overall": last, "freshness": self.freshness()}
