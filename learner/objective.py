"""What a model is trained on and scored by: class labels, or the next byte of a token row.

A model spec names its objective (``classify`` for the MLP and most users' models, ``next-token``
for the transformer). The trainer takes its loss and its prequential hits from it, the evaluator and
the gate their per-task score, EWC its per-sample log-likelihood, so none of them branches on the
kind of model.

Token rows: a row of ``x`` holds byte ids (0..255) from its first position on, and 0 after the text
ends (the NUL byte never occurs in text, so 0 marks padding). ``y`` is where the row's *answer*
starts: a row ``"Kovalo lives in Brest."`` with ``y = 16`` asks ``"Kovalo lives in "`` and expects
``"Brest."``. A row is a hit when every answer byte is the model's top prediction given the bytes
before it; because the answer ends with the byte that stops generation, that is exactly "greedy
decoding from the prompt returns the answer" (exact match), at the cost of one forward pass. ``y = 0``
scores the whole row.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal

import torch
from torch.nn import functional as F

ObjectiveName = Literal["classify", "next-token"]
PAD = 0  # the byte that pads a token row
IGNORE = -100  # cross_entropy's ignore_index


class Classify:
    """Cross-entropy on class logits (B, n_classes); a hit is the top class being the label.

    >>> out = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    >>> Classify().hits(out, torch.zeros(2, 3), torch.tensor([0, 0])).tolist()
    [True, False]
    """

    name: ClassVar[ObjectiveName] = "classify"
    metric: ClassVar[str] = "accuracy"

    def loss(self, out: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(out, y)

    def row_loss(self, out: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-row negative log-likelihood (B,)."""
        return F.cross_entropy(out, y, reduction="none")

    def hits(self, out: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return out.argmax(dim=1) == y

    def output_shape(self, rows: int, width: int, n_classes: int) -> tuple[int, ...]:
        return (rows, n_classes)


class NextToken:
    """Next-byte cross-entropy over a token row's text; a hit is an exactly predicted answer.

    >>> x = torch.tensor([[72, 105, 33, 0]])  # "Hi!" and one pad
    >>> out = F.one_hot(torch.tensor([[105, 33, 0, 0]]), 256).float() * 9  # predicts "i!" after "H"
    >>> NextToken().hits(out, x, torch.tensor([1])).tolist(), round(float(NextToken().loss(out, x, None)), 4)
    ([True], 0.031)
    """

    name: ClassVar[ObjectiveName] = "next-token"
    metric: ClassVar[str] = "exact_match"

    @staticmethod
    def targets(x: torch.Tensor) -> torch.Tensor:
        """Next-byte targets (B, T-1): the row shifted by one, padding ignored."""
        t = x[:, 1:].long()
        return t.masked_fill(t == PAD, IGNORE)

    def row_loss(self, out: torch.Tensor, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        """Mean next-byte negative log-likelihood of each row's text (B,), in nats."""
        t = self.targets(x)
        nll = F.cross_entropy(
            out[:, :-1].transpose(1, 2), t, ignore_index=IGNORE, reduction="none"
        )  # (B, T-1)
        return nll.sum(dim=1) / (t != IGNORE).sum(dim=1).clamp(min=1)

    def bits_per_byte(self, out: torch.Tensor, x: torch.Tensor) -> float:
        """:meth:`loss` in bits: the mean next-byte cross-entropy over every predicted byte of the rows
        (8: a uniform guess over 256 bytes)."""
        return float(self.loss(out, x, None)) / math.log(2)

    def loss(self, out: torch.Tensor, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        t = self.targets(x)
        return F.cross_entropy(out[:, :-1].reshape(-1, out.shape[-1]), t.reshape(-1), ignore_index=IGNORE)

    def hits(self, out: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        t = self.targets(x)  # (B, T-1): target at position p+1 is predicted at p
        pos = torch.arange(1, x.shape[1], device=x.device)  # position of each target
        scored = (pos[None, :] >= y.long().clamp(min=1)[:, None]) & (t != IGNORE)
        right = out[:, :-1].argmax(dim=-1) == t
        return (right | ~scored).all(dim=1)

    def output_shape(self, rows: int, width: int, n_classes: int) -> tuple[int, ...]:
        return (rows, width, n_classes)


def question_only(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Token rows with everything from the answer on zeroed: what a row asks, as a prompt looks (rows
    without an answer, ``y = 0``, are kept whole).

    >>> question_only(torch.tensor([[72, 105, 33, 0]]), torch.tensor([2])).tolist()
    [[72, 105, 0, 0]]
    """
    pos = torch.arange(x.shape[1], device=x.device)
    cut = (pos[None, :] >= y.long()[:, None]) & (y.long()[:, None] > 0)
    return x.masked_fill(cut, PAD)


def row_bytes(row: Any) -> bytes:
    """A token row's text: its non-padding byte ids as bytes."""
    return bytes(int(v) for v in row if v > 0)


Objective = Classify | NextToken
OBJECTIVES: dict[str, Objective] = {"classify": Classify(), "next-token": NextToken()}
