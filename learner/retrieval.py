"""Retrieval over learning for a language model: a store of fact sentences read at query time.

:class:`FactStore` takes every token row the stream brings, keyed by its question (the bytes before
its answer); a newer sentence under the same question replaces the older, so a changed fact is
current in the store the moment it arrives, without any training. It travels with the weights in
the served version (``rag.keys``, ``rag.rows``). :class:`Retriever` answers a prompt with the stored
sentence whose question shares the most character trigrams with it (Jaccard similarity, at least
:data:`MIN_SIMILARITY`; ties go to the newer), and :func:`with_context` puts that sentence before
the prompt: ``"Kovalo lives in Brest.\\nKovalo lives in "``. The model's part is to answer from the
context, which it learns once (:class:`olsim.learner.strategies.rag.Rag`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from olsim.learner.objective import row_bytes

SEP = b"\n"  # between the retrieved sentence and the prompt
MIN_SIMILARITY = 0.5
KEYS, ROWS = "rag.keys", "rag.rows"


def _pack(items: list[bytes]) -> np.ndarray:
    width = max((len(b) for b in items), default=1) or 1
    out = np.zeros((len(items), width), dtype=np.uint8)
    for i, b in enumerate(items):
        out[i, : len(b)] = np.frombuffer(b, dtype=np.uint8)
    return out


class FactStore:
    """Sentences by question; a newer one replaces the older (and moves to the end).

    >>> s = FactStore()
    >>> row = lambda t: np.frombuffer(t, dtype=np.uint8)
    >>> s.add([row(b"Ana lives in Rome."), row(b"Ana lives in Oslo.")], [13, 13]); len(s), s.rows
    (1, {b'Ana lives in ': b'Ana lives in Oslo.'})
    """

    def __init__(self, capacity: int | None = None) -> None:
        self.capacity = capacity
        self.rows: dict[bytes, bytes] = {}

    def __len__(self) -> int:
        return len(self.rows)

    def add(self, x: Any, y: Any) -> None:
        """Store token rows ``x`` (answers starting at ``y``); rows without an answer are skipped."""
        for row, start in zip(x, y, strict=True):
            text, start = row_bytes(row), int(start)
            if not 0 < start < len(text):
                continue
            key = text[:start]
            self.rows.pop(key, None)
            self.rows[key] = text
            if self.capacity is not None and len(self.rows) > self.capacity:
                self.rows.pop(next(iter(self.rows)))  # the least recently stated goes

    def export(self) -> dict[str, np.ndarray]:
        return {KEYS: _pack(list(self.rows)), ROWS: _pack(list(self.rows.values()))}

    @property
    def nbytes(self) -> int:
        return sum(len(k) + len(v) for k, v in self.rows.items())

    def state_dict(self) -> dict[str, Any]:
        return {"keys": _pack(list(self.rows)), "rows": _pack(list(self.rows.values()))}  # in order

    def load_state_dict(self, state: dict[str, Any]) -> None:
        keys = [row_bytes(r) for r in np.asarray(state["keys"])]
        rows = [row_bytes(r) for r in np.asarray(state["rows"])]
        self.rows = {k: r for k, r in zip(keys, rows, strict=True) if k}


def _trigrams(b: bytes) -> set[bytes]:
    return {b[i : i + 3] for i in range(max(1, len(b) - 2))}


class Retriever:
    """The served side of a :class:`FactStore` (built from its exported arrays).

    >>> st = FactStore()
    >>> st.rows = {b"Ana lives in ": b"Ana lives in Oslo.", b"Bo keeps a ": b"Bo keeps a cat."}
    >>> r = Retriever.from_extras({k: torch.from_numpy(v) for k, v in st.export().items()})
    >>> r.lookup(b"Ana lives in "), r.lookup(b"Zed works as a ")
    (b'Ana lives in Oslo.', None)
    """

    def __init__(self, keys: list[bytes], rows: list[bytes]) -> None:
        self.keys, self.rows = keys, rows
        self.grams = [_trigrams(k) for k in keys]

    @classmethod
    def from_extras(cls, extras: dict[str, torch.Tensor]) -> Retriever | None:
        if KEYS not in extras:
            return None
        keys = [row_bytes(r) for r in extras[KEYS].numpy()]
        rows = [row_bytes(r) for r in extras[ROWS].numpy()]
        return cls([k for k in keys if k], [r for k, r in zip(keys, rows, strict=True) if k])

    def __len__(self) -> int:
        return len(self.keys)

    def lookup(self, prompt: bytes) -> bytes | None:
        if not self.keys:
            return None
        q = _trigrams(prompt)
        scores = [len(q & g) / len(q | g) for g in self.grams]
        best = max(range(len(scores)), key=lambda i: (scores[i], i))
        return self.rows[best] if scores[best] >= MIN_SIMILARITY else None


def with_context(prompt: bytes, context: bytes | None) -> bytes:
    """``prompt`` with the retrieved sentence before it (as is without one)."""
    return prompt if context is None else context + SEP + prompt


def training_rows(x: torch.Tensor, y: torch.Tensor, swap: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows that teach answering from context, and where their answers start. Row ``i`` asks its own
    question after a context sentence that gives it row ``swap[i]``'s answer, and that answer is the
    target: the weights cannot know it, only the context does. (B, L) -> (B, 2L + 1), zero-padded.

    >>> x = torch.tensor([[65, 61, 49, 0], [66, 61, 50, 0]])  # "A=1", "B=2"; answers start at 2
    >>> rows, at = training_rows(x, torch.tensor([2, 2]), torch.tensor([1, 0]))
    >>> bytes(rows[0][rows[0] > 0].tolist()), at.tolist()
    (b'A=2\\nA=2', [6, 6])
    """
    out = torch.zeros(len(x), 2 * x.shape[1] + 1, dtype=x.dtype)
    at = torch.zeros(len(x), dtype=torch.long)
    texts = [row_bytes(r) for r in x.cpu()]
    for i, (text, start) in enumerate(zip(texts, y.tolist(), strict=True)):
        other, other_start = texts[int(swap[i])], int(y[int(swap[i])])
        sentence = (text[: int(start)] + other[other_start:])[: x.shape[1]]  # as long as a row at most
        row = with_context(sentence, sentence)
        out[i, : len(row)] = torch.tensor(list(row), dtype=x.dtype)
        at[i] = len(row) - len(sentence) + int(start)
    return out.to(x.device), at.to(x.device)
