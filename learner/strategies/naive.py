"""Naive fine-tuning: every hook is the default no-op."""

from __future__ import annotations

from olsim.learner.strategies.base import Strategy


class Naive(Strategy):
    """Trains on the stream batch alone.

    >>> from olsim.learner.strategies.config import NaiveConfig
    >>> Naive(NaiveConfig(), n_features=64).state_dict()
    {}
    """

    name = "naive"
