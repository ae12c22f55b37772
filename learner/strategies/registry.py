"""The one registry of strategies: name -> (config class, strategy class)."""

from __future__ import annotations

from pydantic import BaseModel

from learner.strategies.base import Strategy
from learner.strategies.config import NaiveConfig, ReplayConfig
from learner.strategies.naive import Naive
from learner.strategies.replay import Replay

STRATEGIES: dict[str, tuple[type[BaseModel], type[Strategy]]] = {
    "naive": (NaiveConfig, Naive),
    "replay": (ReplayConfig, Replay),
}


def make_strategy(config: BaseModel, *, n_features: int, seed: int = 0) -> Strategy:
    """Build the strategy a config names.

    >>> make_strategy(NaiveConfig(), n_features=64).name
    'naive'
    """
    kind = getattr(config, "kind", None)
    if kind not in STRATEGIES:
        raise ValueError(f"unknown strategy {kind!r}; valid: {', '.join(sorted(STRATEGIES))}")
    _, cls = STRATEGIES[kind]
    return cls(config, n_features=n_features, seed=seed)
