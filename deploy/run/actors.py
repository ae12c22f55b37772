"""The three learning-side actors (registry, evaluator, learner), built in one place for ``olsim run``
and the Serve config's builder (:mod:`olsim.deploy.serve_config`); ``options`` adds or overrides Ray
actor options (names, detached lifetime)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from olsim.deploy.run.cluster import SHIPPED
from olsim.deploy.scenario.plugins import runtime_env
from olsim.deploy.scenario.spec import Scenario
from olsim.learner.gate import Gate, GateConfig
from olsim.learner.model import ModelSpec
from olsim.serving.config import KEEP_BYTES
from olsim.serving.registry import Registry
from olsim.stream.spec import StreamSpec

RESTARTS: dict[str, Any] = {"max_restarts": -1, "max_task_retries": -1}


def plugin_env(scenario: Scenario) -> dict[str, Any] | None:
    """The ``runtime_env`` an actor or replica needs to import the scenario's plugin code, beyond
    the job's: None when this process started or joined Ray with that code shipped (``connect_ray``),
    else the code's folders on ``PYTHONPATH``, which holds on this machine only (Ray uploads local
    folders only for a whole job, when ``ray.init`` starts it)."""
    env = runtime_env(scenario)
    paths = [] if env is None else [p for p in env["py_modules"] if p not in SHIPPED]
    if not paths:
        return None
    dirs = dict.fromkeys(str(Path(p).parent) for p in paths)
    inherited = os.environ.get("PYTHONPATH")
    return {"env_vars": {"PYTHONPATH": os.pathsep.join([*dirs, *([inherited] if inherited else [])])}}


def _actor(cls: type, scenario: Scenario, **options: Any) -> Any:
    """``cls`` as a Ray actor class with ``options``, able to import the scenario's plugin code."""
    import ray

    env = plugin_env(scenario)
    if env is not None:
        options = {"runtime_env": env, **options}
    return ray.remote(cls).options(**options)


def start_registry_actor(scenario: Scenario, store: Path | None, gate: bool = True, **options: Any) -> Any:
    """The registry (gate inside unless ``gate`` is False); with a ``store`` directory it is durable
    and Ray restarts it from that journal if its process dies."""
    s = scenario
    source = GateSource(s.stream, s.seed, s.learner.model, s.gate) if gate else None
    base = {
        "num_cpus": 0,
        "max_concurrency": 1000,
        "resources": dict(s.placement.registry),
        **(RESTARTS if store is not None else {}),
    }
    return _actor(RegistryActor, s, **{**base, **options}).remote(
        gate=source,
        store=None if store is None else str(store.resolve()),
        keep_bytes=s.serving.keep_bytes,
        transfer=s.serving.transfer,
    )


def start_evaluator_actor(
    scenario: Scenario, registry: Any, host: str, port: int, state: Path, **options: Any
) -> Any:
    """The evaluator: scores every published version, serves the olsim_* scrape endpoint at
    ``host:port`` and keeps what a restarted one needs in ``state``."""
    from olsim.learner.actors.evaluator import EvaluatorActor

    s = scenario
    base = {"num_cpus": 0, "max_concurrency": 8, "resources": dict(s.placement.evaluator), **RESTARTS}
    return _actor(EvaluatorActor, s, **{**base, **options}).remote(
        s.stream,
        s.seed,
        registry,
        host,
        port,
        s.gate.rollback_floor,
        str(state.resolve()),
        s.learner.model.objective,
    )


def learner_gpu(scenario: Scenario) -> Scenario:
    """``scenario`` with one GPU for the learner actor when its device resolves to CUDA on this
    machine (Ray hides GPUs from an actor that asks for none). Raises DeviceError for ``cuda``
    without a CUDA device."""
    from olsim.learner.device import choose_device

    learner, placement = scenario.learner, scenario.placement
    device = choose_device(learner.device, learner.model, learner.batch_size)
    if device.type != "cuda" or placement.learner_gpus > 0:
        return scenario
    return scenario.model_copy(update={"placement": placement.model_copy(update={"learner_gpus": 1})})


def start_learner_actor(
    scenario: Scenario,
    registry: Any,
    evaluator: Any,
    checkpoint: Path,
    holds: list[int] | None = None,
    **options: Any,
) -> Any:
    """The learner (not yet consuming: call its ``start``); a restarted one resumes from ``checkpoint``.
    ``holds``: stream positions where it waits to be released (a fault injector's)."""
    from olsim.learner.actors.learner import LearnerActor

    s = scenario
    base = {
        "num_cpus": 0,
        "num_gpus": s.placement.learner_gpus,
        "max_concurrency": 4,
        "resources": dict(s.placement.learner),
        **RESTARTS,
    }
    return _actor(LearnerActor, s, **{**base, **options}).remote(
        s.stream, s.learner, s.seed, registry, evaluator, str(checkpoint.resolve()), holds
    )


class RegistryActor(Registry):
    """The registry as deploy runs it (``ray.remote(RegistryActor)``): one torch thread for the gate."""

    def __init__(
        self,
        keep: int = 1000,
        gate: GateSource | None = None,
        store: str | None = None,
        keep_bytes: int = KEEP_BYTES,
        transfer: str = "reference",
    ) -> None:
        import ray
        import torch

        torch.set_num_threads(1)
        built = None if gate is None else Gate(gate.stream.build_tasks(gate.seed), gate.model, gate.config)
        put = ray.put if transfer == "reference" else None  # this actor owns the weights it puts
        super().__init__(keep, built, None if store is None else Path(store), keep_bytes, put, ray.get)


@dataclass(frozen=True)
class GateSource:
    """What the registry actor builds its gate from: small configs travel to Ray inline (a built
    gate holds the held-out data, which Ray would keep in its object store and warn that a restart
    depends on it), and a restarted actor rebuilds the same gate from the same seed."""

    stream: StreamSpec
    seed: int
    model: ModelSpec
    config: GateConfig
