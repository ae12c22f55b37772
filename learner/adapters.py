"""Per-task low-rank adapters (LoRA, Hu et al. 2021) on any network's ``nn.Linear`` layers.

:func:`add_adapters` replaces every ``nn.Linear`` of a model with a :class:`LoRALinear` that keeps
the layer's own ``weight`` and ``bias`` (same names in ``state_dict``) and adds, per task ``t``, a
rank-``r`` update ``scale * x @ a[t] @ b[t]`` (``b`` starts at zero, so a new adapter changes
nothing until it trains). Which task's adapters a forward pass uses: the one :func:`adapter_task`
names (per thread and per asyncio task, so concurrent requests never see each other's), else the
one being trained (:func:`set_training_task`). :func:`freeze_base` stops every parameter that is
not an adapter (convolutions and norms too, not only the wrapped layers) from training, and batch
norms from updating their running statistics; the flag is a buffer, so it travels with the weights
and a restored learner stays frozen.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import torch
from torch import nn

_TASK: ContextVar[int | None] = ContextVar("olsim_adapter_task", default=None)
FROZEN = "lora_base_frozen"  # buffer on the root module: 1 once the base is frozen


class LoRALinear(nn.Module):
    """A linear layer plus ``n`` task adapters of rank ``r``.

    >>> _ = torch.manual_seed(0)
    >>> layer = LoRALinear(nn.Linear(3, 2), n=2, rank=1, scale=1.0)
    >>> sorted(layer.state_dict())
    ['a.0', 'a.1', 'active', 'b.0', 'b.1', 'bias', 'weight']
    >>> with adapter_task(1): layer(torch.ones(1, 3)).shape
    torch.Size([1, 2])
    """

    active: torch.Tensor

    def __init__(self, base: nn.Linear, n: int, rank: int, scale: float) -> None:
        super().__init__()
        self.in_features, self.out_features = base.in_features, base.out_features
        self.weight = base.weight
        self.bias = base.bias
        self.n, self.scale = n, scale
        # One Parameter per task and matrix, so an inactive task's adapters get no gradient at all
        # (with one stacked tensor, Adam's momentum would keep moving old tasks' slices).
        self.a = nn.ParameterList(
            nn.Parameter(torch.randn(base.in_features, rank) / base.in_features**0.5) for _ in range(n)
        )
        self.b = nn.ParameterList(nn.Parameter(torch.zeros(rank, base.out_features)) for _ in range(n))
        self.register_buffer("active", torch.zeros((), dtype=torch.long))  # adapter being trained

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = _TASK.get()
        t = int(self.active) if t is None else t
        if not 0 <= t < self.n:
            raise ValueError(f"task {t} out of range: the model has {self.n} adapters")
        return nn.functional.linear(x, self.weight, self.bias) + self.scale * (x @ self.a[t]) @ self.b[t]


def _freeze_hook(module: nn.Module, args: Any) -> None:
    norms = module.__dict__.get("_lora_frozen_norms")  # set once the freeze is applied
    if norms is None:
        if not int(module.get_buffer(FROZEN)):
            return
        adapters = {id(p) for p in adapter_parameters(module)}
        for p in module.parameters():
            if id(p) not in adapters:
                p.requires_grad_(False)
        norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        module.__dict__["_lora_frozen_norms"] = norms
    if module.training:  # a frozen base keeps its normalization statistics too
        for m in norms:
            m.eval()


def add_adapters(model: nn.Module, n: int, rank: int, scale: float) -> nn.Module:
    """Wrap every ``nn.Linear`` in ``model`` (in place) with ``n`` adapters; returns ``model``.

    >>> net = add_adapters(nn.Sequential(nn.Conv1d(1, 1, 1), nn.Flatten(), nn.Linear(3, 2)), 2, 1, 1.0)
    >>> type(net[2]).__name__, adapter_count(net)
    ('LoRALinear', 2)
    """
    linears = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError("lora adapters wrap nn.Linear layers, and the model has none")
    for name, linear in linears:
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        wrapped = LoRALinear(linear, n, rank, scale)
        if name:
            setattr(parent, attr, wrapped)
        else:  # the model is itself one linear layer
            raise ValueError("lora adapters need a model that contains nn.Linear layers, not one")
    model.register_buffer(FROZEN, torch.zeros((), dtype=torch.long))
    model.register_forward_pre_hook(_freeze_hook)
    return model


def adapter_layers(model: nn.Module) -> list[LoRALinear]:
    return [m for m in model.modules() if isinstance(m, LoRALinear)]


def adapter_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Every adapter matrix of ``model`` (what a LoRA step changes; the rest is the frozen base)."""
    return [p for layer in adapter_layers(model) for p in (*layer.a, *layer.b)]


def adapter_count(model: nn.Module) -> int:
    """Adapter sets per layer (0: a model without adapters)."""
    layers = adapter_layers(model)
    return layers[0].n if layers else 0


def set_training_task(model: nn.Module, task: int) -> None:
    """Train (and, without :func:`adapter_task`, serve) adapter set ``task``."""
    for layer in adapter_layers(model):
        layer.active.fill_(task)


def training_task(model: nn.Module) -> int:
    layers = adapter_layers(model)
    return int(layers[0].active) if layers else 0


def freeze_base(model: nn.Module) -> None:
    """From now on only adapters train (the flag is saved with the weights)."""
    model.get_buffer(FROZEN).fill_(1)
    _freeze_hook(model, ())


def base_frozen(model: nn.Module) -> bool:
    return bool(int(model.get_buffer(FROZEN)))


@contextmanager
def adapter_task(task: int | None) -> Iterator[None]:
    """Forward passes inside use adapter set ``task`` (None: the one being trained)."""
    token = _TASK.set(task)
    try:
        yield
    finally:
        _TASK.reset(token)
