"""Joint training: the upper bound. Every step also trains on a batch drawn from all data seen so far."""

from __future__ import annotations

from olsim.learner.buffer import UnboundedMemory
from olsim.learner.strategies.config import JointConfig
from olsim.learner.strategies.replay import Rehearsal


class Joint(Rehearsal):
    """Rehearsal from an unbounded memory (not a fix for forgetting: a reference point).

    >>> import torch
    >>> j = Joint(JointConfig(replay_batch=4), n_features=2)
    >>> j.after_step(torch.zeros(3, 2), torch.tensor([0, 1, 1]), torch.nn.Identity())
    >>> j.prepare_batch(torch.ones(1, 2), torch.tensor([0]))[0].shape
    torch.Size([4, 2])
    """

    name = "joint"

    def __init__(self, config: JointConfig, *, n_features: int, seed: int = 0) -> None:
        memory = UnboundedMemory(n_features, seed=seed)
        super().__init__(config, memory, config.replay_batch, n_features=n_features, seed=seed)
