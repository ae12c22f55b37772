"""The one registry of strategies: name -> (config class, strategy class)."""

from __future__ import annotations

import re

from pydantic import BaseModel, ValidationError

from olsim.learner.strategies.base import Strategy
from olsim.learner.strategies.config import (
    DerConfig,
    EwcConfig,
    ImportConfig,
    JointConfig,
    KnnConfig,
    LoraConfig,
    LwfConfig,
    NaiveConfig,
    RagConfig,
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
from olsim.learner.strategies.rag import Rag
from olsim.learner.strategies.replay import Replay
from olsim.learner.strategies.si import Si
from olsim.stream.plugin import PluginError

_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")

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
    "rag": (RagConfig, Rag),
}


def strategy_class(config: BaseModel) -> type[Strategy]:
    """The class a strategy config names: a built-in one, or a subclass of :class:`Strategy` by import."""
    if isinstance(config, ImportConfig):
        cls = config.plugin.load("learner.strategy")
        if not (isinstance(cls, type) and issubclass(cls, Strategy)):
            raise PluginError(
                f"learner.strategy: {config.target} is {cls!r}, not a subclass of olsim.Strategy"
            )
        if not isinstance(cls.name, str) or not _NAME.match(cls.name) or cls.name == Strategy.name:
            raise PluginError(
                f"learner.strategy: {config.target} needs a name (class attribute): lowercase letters, "
                f"digits and - _ . (reports and folders use it), got {cls.name!r}"
            )
        return cls
    kind = getattr(config, "kind", None)
    if kind not in STRATEGIES:
        raise ValueError(f"unknown strategy {kind!r}; valid: {', '.join(sorted(STRATEGIES))}")
    return STRATEGIES[kind][1]


def strategy_name(config: BaseModel) -> str:
    """What reports and metrics call the strategy: its kind, or a plugin's class ``name``."""
    if isinstance(config, ImportConfig):
        return strategy_class(config).name
    return str(getattr(config, "kind", "?"))


def make_strategy(config: BaseModel, *, n_features: int, seed: int = 0) -> Strategy:
    """Build the strategy a config names.

    >>> make_strategy(NaiveConfig(), n_features=64).name
    'naive'
    >>> make_strategy(ImportConfig.model_validate({"import": Replay, "args": {"buffer_size": 1}}),
    ...               n_features=64).memory_fill()
    (0, 1)
    """
    cls = strategy_class(config)
    if isinstance(config, ImportConfig):
        target, settings = config.target, cls.Config
        if settings is Strategy.Config:  # a built-in class (or a subclass of one): the built-in's config
            builtin = {s: c for c, s in STRATEGIES.values()}
            settings = next((builtin[k] for k in cls.__mro__ if k in builtin), settings)
        try:
            validated = settings.model_validate(config.args)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise PluginError(f"learner.strategy: {target} args: {where}: {first['msg']}") from None
        try:
            return cls(validated, n_features=n_features, seed=seed)
        except Exception as exc:
            raise PluginError(f"learner.strategy: {target}(...) raised {type(exc).__name__}: {exc}") from None
    return cls(config, n_features=n_features, seed=seed)
