"""Continual-learning strategies: one module each, one registry (:mod:`learner.strategies.registry`)."""

from learner.strategies.base import Strategy
from learner.strategies.config import NaiveConfig, ReplayConfig, StrategyConfig
from learner.strategies.registry import STRATEGIES, make_strategy

__all__ = ["STRATEGIES", "NaiveConfig", "ReplayConfig", "Strategy", "StrategyConfig", "make_strategy"]
