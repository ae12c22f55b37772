"""The scenario's serving block becomes the Predictor deployment's options (placement included)."""

from __future__ import annotations

from typing import Any

from olsim.learner.model import ModelSpec
from olsim.serving.app import build_app
from olsim.serving.config import ServeConfig


def _deployment(config: ServeConfig) -> Any:
    return build_app("registry", "olsim", ModelSpec(), config)._bound_deployment


def test_replica_placement_reaches_the_deployment() -> None:
    d = _deployment(
        ServeConfig(replicas=3, num_cpus=0.5, resources={"olsim_replica": 1}, max_replicas_per_node=1)
    )
    assert d.num_replicas == 3
    assert d.ray_actor_options == {"num_cpus": 0.5, "resources": {"olsim_replica": 1.0}}
    assert d._replica_config.max_replicas_per_node == 1


def test_without_placement_replicas_go_anywhere() -> None:
    d = _deployment(ServeConfig())
    assert d.ray_actor_options == {"num_cpus": 0.25, "resources": {}}
    assert d._replica_config.max_replicas_per_node is None
