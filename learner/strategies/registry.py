"""The one registry of strategies: name -> (config class, strategy class)."""

from __future__ import annotations

from pydantic import BaseModel

from olsim.learner.strategies.base import Strategy
from olsim.learner.strategies.config import (
    DerConfig,
    EwcConfig,
    JointConfig,
    KnnConfig,
    LoraConfig,
    LwfConfig,
    NaiveConfig,
    ReplayConfig,
    SiConfig,
)
from olsim.learner.strategies.der import Der
from olsim.learner.strategies.ewc import Ewc
from olsim.learner.strategies.joint import Joint
from olsim.learner.strategies.knn import Knn
from olsim.learner.strategies.lora import Lora
from olsim.learner.strategies.lwf import Lwf
from olsim.learner.strategies.naive import Naive
from olsim.learner.strategies.replay import Replay
from olsim.learner.strategies.si import Si

STRATEGIES: dict[str, tuple[type[BaseModel], type[Strategy]]] = {
    "naive": (NaiveConfig, Naive),
    "joint": (JointConfig, Joint),
    "replay": (ReplayConfig, Replay),
    "der": (DerConfig, Der),
    "ewc": (EwcConfig, Ewc),
    "si": (SiConfig, Si),
    "lwf": (LwfConfig, Lwf),
    "knn": (KnnConfig, Knn),
    "lora": (LoraConfig, Lora),
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
