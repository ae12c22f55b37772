"""A small CNN over square images given as flat rows (the 8x8 digits: 64 features)."""

from __future__ import annotations

import math

import torch
from torch import nn


class SmallCNN(nn.Module):
    """Two 3x3 convolutions, a 2x2 max-pool, then a hidden linear layer and the class head.

    ``embed(x)`` is the hidden layer: kNN over network embeddings reads it.

    >>> _ = torch.manual_seed(0)
    >>> SmallCNN(side=8, n_classes=10)(torch.zeros(2, 64)).shape
    torch.Size([2, 10])
    """

    def __init__(self, side: int, n_classes: int, channels: int = 8, hidden: int = 64) -> None:
        super().__init__()
        self.side = side
        self.features = nn.Sequential(
            nn.Conv2d(1, channels, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(channels, 2 * channels, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
        )
        self.hidden = nn.Linear(2 * channels * (side // 2) ** 2, hidden)
        self.head = nn.Linear(hidden, n_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        images = x.view(-1, 1, self.side, self.side)  # (B, side*side) -> (B, 1, side, side)
        return torch.relu(self.hidden(self.features(images)))  # (B, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))  # (B, n_classes) logits


def small_cnn(in_features: int, n_classes: int, channels: int = 8, hidden: int = 64) -> SmallCNN:
    """The factory olsim calls: ``in_features`` must be a square number of pixels."""
    side = math.isqrt(in_features)
    if side * side != in_features or side % 2:
        raise ValueError(f"small_cnn needs square images of even side, got {in_features} features")
    return SmallCNN(side, n_classes, channels, hidden)
