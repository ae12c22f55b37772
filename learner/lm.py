"""Language-model helpers over bytes, pure torch: next-byte batches from sentences, exact-match
scoring of greedy answers.

>>> x, y = sentence_batch(["ab.", "c."])
>>> x.tolist(), y.tolist()
([[97, 98], [99, 0]], [[98, 46], [46, -100]])
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from olsim.learner.objective import IGNORE
from olsim.learner.transformer import ByteTransformer
from olsim.stream.facts import STOP


def sentence_batch(sentences: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs (B, T) and next-byte targets (B, T) for ``sentences``; shorter rows are padded (inputs
    with 0, targets with ``IGNORE``, which the loss skips)."""
    rows = [list(s.encode()) for s in sentences]
    t = max(len(r) for r in rows) - 1
    x = torch.zeros(len(rows), t, dtype=torch.long)
    y = torch.full((len(rows), t), IGNORE, dtype=torch.long)
    for i, r in enumerate(rows):
        x[i, : len(r) - 1] = torch.tensor(r[:-1])
        y[i, : len(r) - 1] = torch.tensor(r[1:])
    return x, y


def lm_loss(model: ByteTransformer, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean next-byte cross-entropy over the non-padded positions."""
    logits = model(x)  # (B, T, 256)
    return torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), y.reshape(-1), ignore_index=IGNORE
    )


def answers(model: ByteTransformer, prompts: Sequence[str], max_new_tokens: int = 16) -> list[str]:
    """Greedy answer to each prompt, up to and including the first full stop."""
    model.eval()
    out = []
    for p in prompts:
        ids = model.generate(torch.tensor(list(p.encode())), max_new_tokens, stop=STOP)
        out.append(bytes(ids).decode(errors="replace"))
    return out


def exact_match(model: ByteTransformer, prompts: Sequence[str], expected: Sequence[str]) -> float:
    """Share of prompts answered with exactly the expected text."""
    got = answers(model, prompts)
    return sum(g == e for g, e in zip(got, expected, strict=True)) / max(len(expected), 1)


def windows(
    text: bytes, length: int, count: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` random windows of ``length`` + 1 bytes from ``text``: inputs and next-byte targets
    (B, length) each."""
    data = torch.tensor(list(text), dtype=torch.long)
    starts = torch.randint(len(data) - length - 1, (count,), generator=generator)
    rows = torch.stack([data[s : s + length + 1] for s in starts.tolist()])
    return rows[:, :-1], rows[:, 1:]


@torch.no_grad()
def bits_per_byte(model: ByteTransformer, text: bytes, length: int) -> float:
    """Mean next-byte cross-entropy over ``text`` in bits, read in consecutive windows of ``length``
    + 1 bytes (each byte after a window's first is predicted once).

    >>> m = ByteTransformer(layers=1, heads=2, width=16, context=8)
    >>> with torch.no_grad(): _ = m.embed_tokens.weight.zero_()  # uniform predictions: 8 bits a byte
    >>> round(bits_per_byte(m, b"abcdefghijklmnopqrs", 8), 3)
    8.0
    """
    model.eval()
    data = torch.tensor(list(text), dtype=torch.long)
    n = (len(data) - 1) // length
    if n < 1:
        raise ValueError(f"{len(text)} bytes: too few for one window of {length + 1}")
    x = torch.stack([data[i * length : (i + 1) * length] for i in range(n)])
    y = torch.stack([data[i * length + 1 : (i + 1) * length + 1] for i in range(n)])
    nats = torch.nn.functional.cross_entropy(model(x).reshape(-1, 256), y.reshape(-1))
    return float(nats) / math.log(2)
