"""Continual-learning strategies: one module each, one registry (:mod:`olsim.learner.strategies.registry`)."""

from olsim.learner.strategies.base import Strategy
from olsim.learner.strategies.config import NaiveConfig, ReplayConfig, StrategyConfig
from olsim.learner.strategies.registry import STRATEGIES, make_strategy

__all__ = ["STRATEGIES", "NaiveConfig", "ReplayConfig", "Strategy", "StrategyConfig", "make_strategy"]
