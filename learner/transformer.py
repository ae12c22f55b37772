"""A small decoder-only transformer over bytes: causal self-attention with PyTorch's
``scaled_dot_product_attention``, learned positions, pre-norm blocks, tied input/output embeddings.

Token ids are bytes (0..255): nothing to download, any text encodes. ``forward(tokens)`` maps
(B, T) ids to next-byte logits (B, T, 256); :meth:`ByteTransformer.generate` decodes greedily, with a
KV cache: each block keeps the keys and values of the positions it has seen, so a new byte costs one
position's forward pass, not the window's, until the window is full.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

VOCAB = 256


class Block(nn.Module):
    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not a multiple of heads {heads}")
        self.heads = heads
        self.norm1 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.norm2 = nn.LayerNorm(width)
        self.up = nn.Linear(width, 4 * width)
        self.down = nn.Linear(4 * width, width)

    def forward(self, x: torch.Tensor, cache: list[torch.Tensor] | None = None) -> torch.Tensor:
        """``cache``: this block's keys and values so far ([] at first), extended in place with ``x``'s;
        ``x`` is then either the first positions (causal among themselves) or one new position, which
        attends to every cached one."""
        b, t, w = x.shape
        q, k, v = self.qkv(self.norm1(x)).split(w, dim=2)  # each (B, T, W)
        q, k, v = (z.view(b, t, self.heads, w // self.heads).transpose(1, 2) for z in (q, k, v))
        if cache:
            if t != 1:
                raise ValueError("a cached block takes one new position at a time")
            k, v = torch.cat([cache[0], k], dim=2), torch.cat([cache[1], v], dim=2)
        if cache is not None:
            cache[:] = [k, v]
        att = F.scaled_dot_product_attention(q, k, v, is_causal=t > 1)  # (B, H, T, W/H)
        x = x + self.proj(att.transpose(1, 2).reshape(b, t, w))
        return x + self.down(F.gelu(self.up(self.norm2(x))))


class ByteTransformer(nn.Module):
    """``layers`` blocks of ``width`` with ``heads`` heads over at most ``context`` bytes.

    >>> _ = torch.manual_seed(0)
    >>> m = ByteTransformer(layers=1, heads=2, width=16, context=8)
    >>> m(torch.zeros(2, 5, dtype=torch.long)).shape
    torch.Size([2, 5, 256])
    >>> len(m.generate(torch.tensor([65, 66]), max_new_tokens=3))
    3
    """

    def __init__(self, layers: int = 2, heads: int = 4, width: int = 128, context: int = 48) -> None:
        super().__init__()
        self.context = context
        self.embed_tokens = nn.Embedding(VOCAB, width)
        self.positions = nn.Embedding(context, width)
        self.blocks = nn.ModuleList(Block(width, heads) for _ in range(layers))
        self.norm = nn.LayerNorm(width)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Next-byte logits (B, T, 256) for token ids (B, T); float ids (stream rows) are taken as ids."""
        return self.head(self.hidden(tokens))

    def head(self, hidden: torch.Tensor) -> torch.Tensor:
        """Logits (..., 256) from :meth:`hidden` states: the input embeddings, tied."""
        return hidden @ self.embed_tokens.weight.T

    def hidden(self, tokens: torch.Tensor, cache: list[list[torch.Tensor]] | None = None) -> torch.Tensor:
        """The last layer's normalised states (B, T, width): what the logits are read from, and a
        kNN-LM's keys and queries. With ``cache`` (one list per block, from :meth:`new_cache`),
        ``tokens`` continue the cached positions and only their states are computed."""
        if tokens.is_floating_point():
            tokens = tokens.long()
        start = 0 if not cache or not cache[0] else int(cache[0][0].shape[2])
        t = tokens.shape[1]
        if start + t > self.context:
            raise ValueError(f"{start + t} tokens exceed the context of {self.context}")
        x = self.embed_tokens(tokens) + self.positions(torch.arange(start, start + t, device=tokens.device))
        for i, block in enumerate(self.blocks):
            x = block(x, None if cache is None else cache[i])
        return self.norm(x)

    def new_cache(self) -> list[list[torch.Tensor]]:
        """An empty KV cache for :meth:`hidden`: one (keys, values) list per block."""
        return [[] for _ in self.blocks]

    def generate(self, prompt: torch.Tensor, max_new_tokens: int, stop: int | None = None) -> list[int]:
        """Greedy bytes after ``prompt`` (1-D ids): :func:`greedy` over this model."""
        return greedy(self, prompt.tolist(), max_new_tokens, self.context, stop)


@torch.no_grad()
def greedy(
    model: Callable[[torch.Tensor], torch.Tensor],
    prompt: list[int],
    max_new_tokens: int,
    context: int,
    stop: int | None = None,
    read: Callable[[torch.Tensor], torch.Tensor] | None = None,
    cached: bool = True,
) -> list[int]:
    """Greedy next ids after ``prompt`` from a next-token ``model`` ((1, T) ids -> (1, T, V) logits), at
    most ``max_new_tokens``, up to and including ``stop``; the window slides once ``context`` is full.

    A :class:`ByteTransformer` decodes with its KV cache while the window has room (once it slides,
    every position moves and each step reads the whole window again), and ``read`` maps its last
    position's hidden state (1, 1, width) to the scores the next byte is chosen by (default: its
    logits). ``cached=False`` reads the whole window every step: the same bytes, more work.

    >>> _ = torch.manual_seed(0)
    >>> m = ByteTransformer(layers=1, heads=2, width=16, context=8)
    >>> greedy(m, [1, 2, 3], 9, 8) == greedy(m, [1, 2, 3], 9, 8, cached=False)
    True
    """
    ids = list(prompt)
    out: list[int] = []
    net = model if isinstance(model, ByteTransformer) else None
    cache, seen = (net.new_cache() if net is not None and cached else None), 0
    for _ in range(max_new_tokens):
        window = torch.tensor([ids[-context:]])
        if read is None and net is None:  # a model of users' own: its logits
            scores = model(window)[:, -1:]
        else:
            if net is not None and cache is not None and len(ids) <= context:  # room: the new positions
                h = net.hidden(torch.tensor([ids[seen:]]), cache)
                seen = len(ids)
            else:
                h = model.hidden(window)  # type: ignore[attr-defined]
            scores = (read or model.head)(h[:, -1:])  # type: ignore[attr-defined]
        nxt = int(scores[0, -1].argmax())
        ids.append(nxt)
        out.append(nxt)
        if nxt == stop:
            break
    return out


def parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
