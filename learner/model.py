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
    adapters: int = Field(0, ge=0, description="per-task low-rank adapter sets (parameter isolation)")
    lora_rank: int = Field(8, ge=1)
    lora_scale: float = Field(8.0, gt=0, description="adapter output multiplier (LoRA's alpha / r)")


class MLP(nn.Module):
    """Two-layer perceptron, ``in_features -> hidden -> n_classes``.

    >>> _ = torch.manual_seed(0)
    >>> m = MLP(ModelSpec(in_features=4, hidden=8, n_classes=3))
    >>> m(torch.zeros(2, 4)).shape
    torch.Size([2, 3])
    """

    active: torch.Tensor  # buffers, present when spec.adapters > 0
    base_frozen: torch.Tensor

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.spec = spec
        self.fc1 = nn.Linear(spec.in_features, spec.hidden)
        self.fc2 = nn.Linear(spec.hidden, spec.n_classes)
        n, r = spec.adapters, spec.lora_rank
        if n:
            # LoRA (Hu et al. 2021) per task t: W + A[t] @ B[t], rank r; B starts at zero. One Parameter
            # per task and matrix, so an inactive task's adapters get no gradient at all (with one
            # stacked tensor, Adam's momentum would keep moving old tasks' slices).
            def mats(rows: int, cols: int, zero: bool) -> nn.ParameterList:
                return nn.ParameterList(
                    nn.Parameter(torch.zeros(rows, cols) if zero else torch.randn(rows, cols) / rows**0.5)
                    for _ in range(n)
                )

            self.a1 = mats(spec.in_features, r, zero=False)
            self.b1 = mats(r, spec.hidden, zero=True)
            self.a2 = mats(spec.hidden, r, zero=False)
            self.b2 = mats(r, spec.n_classes, zero=True)
            self.register_buffer("active", torch.zeros((), dtype=torch.long))  # adapter being trained
            # 1 once the base is frozen: it then enters the graph detached and gets no gradient. A buffer,
            # not requires_grad, so the freeze travels with state_dict() like the weights do.
            self.register_buffer("base_frozen", torch.zeros((), dtype=torch.long))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.fc1(x))  # (B, hidden)

    def forward(self, x: torch.Tensor, task: int | None = None) -> torch.Tensor:
        if not self.spec.adapters:
            return self.fc2(self.embed(x))  # (B, n_classes) logits
        t = int(self.active) if task is None else task
        if not 0 <= t < self.spec.adapters:
            raise ValueError(f"task {t} out of range: the model has {self.spec.adapters} adapters")
        fc1, fc2 = (self.fc1, self.fc2)
        if int(self.base_frozen):
            base1 = nn.functional.linear(x, fc1.weight.detach(), fc1.bias.detach())
        else:
            base1 = fc1(x)
        k = self.spec.lora_scale
        h = torch.relu(base1 + k * (x @ self.a1[t]) @ self.b1[t])  # (B, hidden)
        base2 = (
            nn.functional.linear(h, fc2.weight.detach(), fc2.bias.detach())
            if int(self.base_frozen)
            else fc2(h)
        )
        return base2 + k * (h @ self.a2[t]) @ self.b2[t]  # (B, n_classes)


def build_model(spec: ModelSpec, seed: int | None = None) -> MLP:
    """Build a model; with ``seed`` its initial weights are reproducible."""
    if spec.kind != "mlp":
        raise ValueError(f"unknown model kind {spec.kind!r}; valid: mlp")
    if seed is None:
        return MLP(spec)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return MLP(spec)
