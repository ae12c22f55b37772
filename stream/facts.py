"""A seeded synthetic world of facts that changes over time: entities with attributes from closed
vocabularies, arriving in periods.

Each period brings facts about new entities and changes some facts already known (a new value that
supersedes the old one). Facts are stated as sentences (``"Kovalo lives in Brest."``); a held-out
query is the sentence's prefix as a prompt (``"Kovalo lives in "``) and its value plus the full stop
as the answer, so a model is asked in the same form the facts are stated in (a model trained only on
statements does not answer differently phrased questions). Pure Python and numpy: no torch, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from olsim.stream.tasks import TaskData

RELATIONS: dict[str, tuple[str, tuple[str, ...]]] = {  # name -> (template before the value, values)
    "city": (
        "{e} lives in ",
        (
            "Brest",
            "Lyon",
            "Porto",
            "Graz",
            "Turku",
            "Split",
            "Cork",
            "Ghent",
            "Bergen",
            "Pisa",
            "Riga",
            "Bonn",
        ),
    ),
    "job": (
        "{e} works as a ",
        ("baker", "pilot", "nurse", "judge", "tailor", "miner", "poet", "clerk", "chef", "smith", "guide"),
    ),
    "pet": ("{e} keeps a ", ("cat", "dog", "hen", "goat", "fox", "owl", "frog", "crow", "mule", "newt")),
    "color": (
        "{e} likes the color ",
        ("red", "blue", "green", "amber", "grey", "teal", "plum", "gold", "rust", "jade"),
    ),
}
STOP = ord(".")  # every answer ends with a full stop: the byte that ends a generation
_ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "tr", "st", "kl")
_VOWELS = ("a", "e", "i", "o", "u")


@dataclass(frozen=True)
class Fact:
    """One fact: ``entity``'s ``relation`` is ``value`` from ``period`` on; ``old`` is the value it
    superseded (None for a fact about a new entity).

    >>> f = Fact("Kovalo", "city", "Brest", 0)
    >>> f.sentence, f.prompt, f.answer
    ('Kovalo lives in Brest.', 'Kovalo lives in ', 'Brest.')
    """

    entity: str
    relation: str
    value: str
    period: int
    old: str | None = None

    @property
    def prompt(self) -> str:
        return RELATIONS[self.relation][0].format(e=self.entity)

    @property
    def answer(self) -> str:
        return f"{self.value}."

    @property
    def sentence(self) -> str:
        return self.prompt + self.answer

    @property
    def key(self) -> tuple[str, str]:
        return self.entity, self.relation


@dataclass(frozen=True)
class Period:
    """What one period of the stream brings: facts about new entities, and new values of known facts."""

    index: int
    new: tuple[Fact, ...]
    updated: tuple[Fact, ...]

    @property
    def facts(self) -> tuple[Fact, ...]:
        return self.new + self.updated


def _names(rng: np.random.Generator, n: int) -> list[str]:
    """``n`` distinct pronounceable names of three syllables, seeded."""
    out: dict[str, None] = {}
    while len(out) < n:
        name = "".join(str(rng.choice(_ONSETS)) + str(rng.choice(_VOWELS)) for _ in range(3))
        out[name.capitalize()] = None
    return list(out)


def fact_world(
    seed: int,
    periods: int = 4,
    entities_per_period: int = 75,
    changes_per_period: int = 30,
    relations: tuple[str, ...] = ("city", "job"),
) -> list[Period]:
    """The world's history: ``periods`` periods, each with ``entities_per_period`` new entities (one
    fact per relation each) and, from the second period on, ``changes_per_period`` changed facts
    about entities of earlier periods (a different value of the same relation).

    >>> world = fact_world(seed=0, periods=2, entities_per_period=3, changes_per_period=2)
    >>> [(len(p.new), len(p.updated)) for p in world]
    [(6, 0), (6, 2)]
    >>> u = world[1].updated[0]; u.old != u.value and u.period == 1
    True
    """
    if periods < 1 or entities_per_period < 1 or changes_per_period < 0:
        raise ValueError("periods and entities_per_period must be >= 1, changes_per_period >= 0")
    if unknown := [r for r in relations if r not in RELATIONS]:
        raise ValueError(f"unknown relations {unknown}; valid: {', '.join(RELATIONS)}")
    rng = np.random.default_rng(seed)
    names = _names(rng, periods * entities_per_period)
    current: dict[tuple[str, str], Fact] = {}
    out = []
    for p in range(periods):
        new = []
        for e in names[p * entities_per_period : (p + 1) * entities_per_period]:
            for r in relations:
                new.append(Fact(e, r, str(rng.choice(RELATIONS[r][1])), p))
        updated = []
        if p > 0 and changes_per_period:
            known = sorted(current)
            picks = rng.choice(len(known), size=min(changes_per_period, len(known)), replace=False)
            for i in sorted(picks.tolist()):
                before = current[known[i]]
                values = [v for v in RELATIONS[before.relation][1] if v != before.value]
                updated.append(Fact(before.entity, before.relation, str(rng.choice(values)), p, before.value))
        for f in (*new, *updated):
            current[f.key] = f
        out.append(Period(p, tuple(new), tuple(updated)))
    return out


def true_after(world: list[Period], period: int) -> dict[tuple[str, str], Fact]:
    """Every fact that holds once ``period`` has arrived: the latest value of each (entity, relation).

    >>> world = fact_world(seed=0, periods=2, entities_per_period=3, changes_per_period=2)
    >>> len(true_after(world, 0)), len(true_after(world, 1))
    (6, 12)
    """
    facts: dict[tuple[str, str], Fact] = {}
    for p in world[: period + 1]:
        for f in p.facts:
            facts[f.key] = f
    return facts


def encode(text: str) -> np.ndarray:
    """UTF-8 bytes as token ids (int64): the byte-level vocabulary has 256 tokens, no tokenizer."""
    return np.frombuffer(text.encode(), dtype=np.uint8).astype(np.int64)


def decode(tokens: np.ndarray | list[int]) -> str:
    return bytes(int(t) for t in tokens).decode(errors="replace")


def token_rows(facts: list[Fact], width: int) -> tuple[np.ndarray, np.ndarray]:
    """Facts as token rows: each sentence's bytes padded with 0 to ``width``, and where its answer
    starts (the row's label, :mod:`olsim.learner.objective`).

    >>> x, y = token_rows([Fact("Kovalo", "city", "Brest", 0)], width=24)
    >>> decode(x[0, : y[0]]), x.shape, int(x[0, -1])
    ('Kovalo lives in ', (1, 24), 0)
    """
    x = np.zeros((len(facts), width), dtype=np.int64)
    y = np.zeros(len(facts), dtype=np.int64)
    for i, f in enumerate(facts):
        row = encode(f.sentence)
        x[i, : len(row)] = row
        y[i] = len(f.prompt.encode())
    return x, y


def fact_tasks(
    seed: int,
    periods: int = 4,
    entities_per_period: int = 40,
    changes_per_period: int = 10,
    relations: tuple[str, ...] | list[str] = ("city", "job"),
) -> list[TaskData]:
    """The world of :func:`fact_world` as a task source: one task per period.

    A period's training rows state every fact it brings (new entities and changed values). Its
    validation and test rows ask the facts it brought that are still true at the end of the world
    (a fact changed later belongs to the later period's rows), so a period's score only falls when
    a model forgets. In a world of facts there is nothing else to ask: the gate and the report ask
    the same questions, and neither is trained on the question (only on the statement).

    >>> tasks = fact_tasks(seed=0, periods=2, entities_per_period=3, changes_per_period=2)
    >>> [(t.name, t.x.shape[0], int((t.split == 2).sum())) for t in tasks]
    [('period0', 14, 4), ('period1', 24, 8)]
    """
    world = fact_world(seed, periods, entities_per_period, changes_per_period, tuple(relations))
    final = true_after(world, periods - 1)
    width = max(len(f.sentence.encode()) for p in world for f in p.facts)
    out = []
    for p in world:
        kept = [f for f in p.facts if final[f.key] is f]
        x, y = token_rows([*p.facts, *kept, *kept], width)
        split = np.repeat([0, 1, 2], [len(p.facts), len(kept), len(kept)])
        out.append(TaskData(f"period{p.index}", x, y, split))
    return out
