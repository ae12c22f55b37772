"""olsim as a Ray Serve config: ``serve run deploy/serve.yaml`` serves *and* learns.

The application builder (``import_path: olsim.deploy.serve_config:build``, typed args
:class:`LearningAppArgs`) starts what ``olsim run`` starts besides Serve: the registry (gate
inside, durable journal), the evaluator (scrape endpoint) and the learner, as detached named actors
in namespace ``olsim``, then returns the Predictor application that follows the registry. Serve may
call a builder again (a config update): the actors are looked up by name first, so a second call
reuses them instead of starting a second learner. ``python -m olsim.deploy.serve_config stop`` removes them
(``serve shutdown`` removes only the application; a local Ray that ``serve run`` started takes
them down with it).

When the actors are not running (first start, or after Ray or its head node restarted), they are
started over ``state_dir`` and carry on from what it holds: the registry replays its journal
(version numbers continue, every accepted version is kept), the evaluator rebuilds its scores from
the registry, and the learner resumes from its checkpoint. Only ``fresh: true`` empties it first.

Serve config fields override the builder's deployment options (``num_replicas``,
``autoscaling_config``, ``max_ongoing_requests``, ``ray_actor_options``); see deploy/serve.yaml.
"""

# No ``from __future__ import annotations``: Serve reads ``build``'s parameter annotation at run time
# to validate the config's ``args`` into LearningAppArgs (a string annotation would pass a dict).
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from ray.serve import Application

from olsim.deploy.run.actors import (
    plugin_env,
    start_evaluator_actor,
    start_learner_actor,
    start_registry_actor,
)
from olsim.deploy.run.cluster import NAMESPACE
from olsim.deploy.run.options import TOKEN_ENV
from olsim.deploy.scenario.plugins import resolve
from olsim.deploy.scenario.spec import Placement, Scenario, load_scenario
from olsim.learner.actors.names import ActorName

log = logging.getLogger(__name__)

ACTORS = ("registry", "evaluator", "learner")


class LearningAppArgs(BaseModel):
    """The ``args:`` of deploy/serve.yaml's application.

    >>> LearningAppArgs(strategy="replay").scenario
    'split-digits'
    """

    model_config = ConfigDict(extra="forbid")

    scenario: str = Field("split-digits", description="built-in scenario name or a YAML path")
    strategy: str | None = Field(None, description="override the scenario's strategy")
    seed: int | None = Field(None, ge=0, description="override the scenario's seed")
    name: str = Field("olsim-serve", description="prefix of the detached actors' names")
    state_dir: str | None = Field(
        None,
        description="registry journal, evaluator state and learner checkpoint (absolute path; default "
        "$TMPDIR/<name>); the actors resume from what it holds",
    )
    fresh: bool = Field(
        False, description="empty state_dir before starting the actors: a new history instead of resuming"
    )
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(9464, ge=0, le=65535, description="the evaluator's olsim_* scrape endpoint")
    placement: Placement | None = Field(
        None, description="Ray resources for the registry, evaluator and learner (replaces the scenario's)"
    )

    def load(self) -> Scenario:
        s = load_scenario(self.scenario)
        if self.strategy is not None:
            s = s.with_strategy(self.strategy)
        if self.seed is not None:
            s = s.model_copy(update={"seed": self.seed})
        if self.placement is not None:
            s = s.model_copy(update={"placement": self.placement})
        return resolve(s)

    def state(self) -> Path:
        return Path(self.state_dir or Path(tempfile.gettempdir()) / self.name).resolve()


def _existing(name: str) -> Any:
    import ray

    try:
        return ray.get_actor(name, namespace=NAMESPACE)
    except ValueError:
        return None


def prepare_state(args: LearningAppArgs) -> Path:
    """The state directory the actors start over: kept as it is (they resume from it) unless
    ``args.fresh``, which empties it.

    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp()); _ = (d / "registry").mkdir()
    >>> prepare_state(LearningAppArgs(state_dir=str(d))) == d, (d / "registry").exists()
    (True, True)
    >>> _ = prepare_state(LearningAppArgs(state_dir=str(d), fresh=True)); (d / "registry").exists()
    False
    """
    state = args.state()
    if args.fresh and state.exists():
        log.warning("fresh: emptying the state directory %s", state)
        shutil.rmtree(state)
    state.mkdir(parents=True, exist_ok=True)
    if any(state.iterdir()):
        log.warning("resuming from the state in %s", state)
    return state


def start_actors(args: LearningAppArgs, scenario: Scenario) -> dict[str, Any]:
    """The registry, evaluator and learner of this app: the running ones if they exist, else new."""
    import ray

    names = {k: f"{args.name}-{k}" for k in ACTORS}
    found = {k: _existing(n) for k, n in names.items()}
    if all(a is not None for a in found.values()):
        log.info("reusing the running actors %s", ", ".join(names.values()))
        return found
    if any(a is not None for a in found.values()):
        raise RuntimeError(
            f"some of {', '.join(names.values())} are running and some not: "
            "`python -m olsim.deploy.serve_config stop` first"
        )
    state = prepare_state(args)
    opts: dict[str, Any] = {"namespace": NAMESPACE, "lifetime": "detached"}
    registry = start_registry_actor(scenario, state / "registry", name=names["registry"], **opts)
    by_name = {k: ActorName(n, NAMESPACE) for k, n in names.items()}  # actors look each other up
    evaluator = start_evaluator_actor(
        scenario,
        by_name["registry"],
        args.metrics_host,
        args.metrics_port,
        state / "evaluator",
        name=names["evaluator"],
        **opts,
    )
    ray.get(evaluator.port.remote())  # the scrape endpoint is up (a busy port raises here)
    learner = start_learner_actor(
        scenario,
        by_name["registry"],
        by_name["evaluator"],
        state / "learner.npz",
        name=names["learner"],
        **opts,
    )
    ray.get(learner.start.remote())
    log.info("started %s (state in %s)", ", ".join(names.values()), state)
    return {"registry": registry, "evaluator": evaluator, "learner": learner}


def build(args: LearningAppArgs) -> Application:
    """Serve's application builder: start (or find) the learning side, return the Predictor app."""
    from olsim.serving.app import build_app

    scenario = args.load()
    start_actors(args, scenario)
    token = os.environ.get(TOKEN_ENV) or None  # admin routes only with a token in the environment
    return build_app(
        f"{args.name}-registry",
        NAMESPACE,
        scenario.learner.model,
        scenario.serving,
        token,
        runtime_env=plugin_env(scenario),
    )


def stop(name: str = "olsim-serve") -> list[str]:
    """Kill this app's detached actors (in the connected Ray); returns the names it found."""
    import ray

    killed = []
    for k in ACTORS:
        actor = _existing(f"{name}-{k}")
        if actor is not None:
            ray.kill(actor, no_restart=True)
            killed.append(f"{name}-{k}")
    return killed


def main() -> int:
    """``python -m olsim.deploy.serve_config stop [NAME]``: remove the detached actors from the Ray at
    $RAY_ADDRESS (or the local one)."""
    args = sys.argv[1:]
    if not args or args[0] != "stop" or len(args) > 2:
        print("usage: python -m olsim.deploy.serve_config stop [NAME]", file=sys.stderr)
        return 2
    import ray

    address = os.environ.get("RAY_ADDRESS", "auto")
    ray.init(address=address, namespace=NAMESPACE, logging_level=logging.WARNING)
    killed = stop(*args[1:])
    print("stopped " + (", ".join(killed) if killed else "nothing (no such actors)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
