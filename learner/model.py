"""The served and trained network: a plain ``nn.Module`` with no I/O."""

from __future__ import annotations

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn


class ModelSpec(BaseModel):
    """Architecture of the network; a snapshot only loads into a model built from the same spec."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str = "mlp"
    in_features: int = Field(64, ge=1)
    hidden: int = Field(256, ge=1)
    n_classes: int = Field(10, ge=2)


class MLP(nn.Module):
    """Two-layer perceptron, ``in_features -> hidden -> n_classes``.

    >>> _ = torch.manual_seed(0)
    >>> m = MLP(ModelSpec(in_features=4, hidden=8, n_classes=3))
    >>> m(torch.zeros(2, 4)).shape
    torch.Size([2, 3])
    """

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.spec = spec
        self.fc1 = nn.Linear(spec.in_features, spec.hidden)
        self.fc2 = nn.Linear(spec.hidden, spec.n_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.fc1(x))  # (B, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.embed(x))  # (B, n_classes) logits


def build_model(spec: ModelSpec, seed: int | None = None) -> MLP:
    """Build a model; with ``seed`` its initial weights are reproducible."""
    if spec.kind != "mlp":
        raise ValueError(f"unknown model kind {spec.kind!r}; valid: mlp")
    if seed is None:
        return MLP(spec)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return MLP(spec)
