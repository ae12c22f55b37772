"""A small decoder-only transformer over bytes: causal self-attention with PyTorch's
``scaled_dot_product_attention``, learned positions, pre-norm blocks, tied input/output embeddings.

Token ids are bytes (0..255): nothing to download, any text encodes. ``forward(tokens)`` maps
(B, T) ids to next-byte logits (B, T, 256); :meth:`ByteTransformer.generate` decodes greedily.
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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, w = x.shape
        q, k, v = self.qkv(self.norm1(x)).split(w, dim=2)  # each (B, T, W)
        q, k, v = (z.view(b, t, self.heads, w // self.heads).transpose(1, 2) for z in (q, k, v))
        att = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, H, T, W/H)
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
        if tokens.is_floating_point():
            tokens = tokens.long()
        t = tokens.shape[1]
        if t > self.context:
            raise ValueError(f"{t} tokens exceed the context of {self.context}")
        x = self.embed_tokens(tokens) + self.positions(torch.arange(t, device=tokens.device))
        for block in self.blocks:
            x = block(x)
        return self.norm(x) @ self.embed_tokens.weight.T  # (B, T, 256): tied embeddings

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
) -> list[int]:
    """Greedy next ids after ``prompt`` from a next-token ``model`` ((1, T) ids -> (1, T, V) logits), at
    most ``max_new_tokens``, up to and including ``stop``; the window slides once ``context`` is full."""
    ids = list(prompt)
    out: list[int] = []
    for _ in range(max_new_tokens):
        nxt = int(model(torch.tensor([ids[-context:]]))[0, -1].argmax())
        ids.append(nxt)
        out.append(nxt)
        if nxt == stop:
            break
    return out


def parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
