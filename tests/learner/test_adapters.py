"""LoRA adapters on any network: which parameters train once the base is frozen, what a state round
trip keeps, and which adapter set a forward pass uses."""

from __future__ import annotations

import threading
from typing import Any

import torch
from torch import nn

from olsim.learner.adapters import (
    LoRALinear,
    adapter_task,
    add_adapters,
    base_frozen,
    freeze_base,
    set_training_task,
)


def _net() -> Any:
    """conv -> batch norm -> linear, with 2 adapter sets of rank 2 on the linear layer."""
    torch.manual_seed(0)
    body = nn.Sequential(nn.Conv1d(1, 2, 3, padding=1), nn.BatchNorm1d(2), nn.Flatten(), nn.Linear(8, 3))
    return add_adapters(body, 2, 2, 1.0)


def test_every_linear_is_wrapped_and_keeps_its_names() -> None:
    net = _net()
    assert isinstance(net[3], LoRALinear)
    assert {"3.weight", "3.bias", "3.a.0", "3.b.1", "lora_base_frozen"} <= set(net.state_dict())


def test_a_frozen_base_trains_only_adapters_and_keeps_its_norm_statistics() -> None:
    net = _net().train()
    x = torch.randn(16, 1, 4)
    net(x).sum().backward()  # before the freeze everything trains
    assert net[0].weight.grad is not None
    freeze_base(net)
    set_training_task(net, 1)
    net.zero_grad(set_to_none=True)
    before = net[1].running_mean.clone()
    net[3].b[1].data.fill_(0.1)  # so that a[1] gets a gradient too
    net.train()(x).sum().backward()
    assert torch.equal(net[1].running_mean, before)  # batch norm statistics stay
    assert net[0].weight.grad is None and net[3].weight.grad is None and net[1].weight.grad is None
    assert net[3].a[1].grad is not None and net[3].b[1].grad is not None
    assert net[3].a[0].grad is None  # another task's adapters: untouched


def test_the_freeze_survives_a_state_round_trip() -> None:
    a = _net()
    freeze_base(a)
    b = _net()
    b.load_state_dict(a.state_dict())
    assert base_frozen(b)
    b(torch.randn(4, 1, 4))  # the first forward applies it
    assert not b[0].weight.requires_grad and b[3].a[0].requires_grad


def test_the_task_of_a_forward_pass_is_per_thread() -> None:
    net = _net().eval()
    net[3].b[1].data.fill_(1.0)  # adapter 1 changes the output, adapter 0 does not
    x = torch.randn(4, 1, 4)
    with torch.no_grad():
        plain, one = net(x), None
        seen: dict[str, torch.Tensor] = {}
        with adapter_task(1):
            one = net(x)
            worker = threading.Thread(target=lambda: seen.setdefault("other", net(x)))
            worker.start()
            worker.join()
    assert not torch.equal(plain, one)
    assert torch.equal(seen["other"], plain)  # another thread is not in this one's task
