"""The serving half of a run: the registry actor (gate inside) and the Serve application that follows it.

Tests and ``olsim bench swap`` use it without a learner.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from olsim.deploy.run.actors import plugin_env, start_registry_actor
from olsim.deploy.run.cluster import NAMESPACE, get
from olsim.deploy.scenario.spec import Scenario

log = logging.getLogger(__name__)

APP_NAME = "olsim"


@dataclass
class ServingStack:
    """The registry actor (gate inside) and the Serve application that follows it."""

    scenario: Scenario
    admin_token: str | None = None
    app_name: str = APP_NAME
    route_prefix: str = "/"
    gate: bool = True  # False: no gate object at all (checksum only), for benchmarks
    registry: Any = None
    registry_name: str = field(default_factory=lambda: f"olsim-registry-{uuid.uuid4().hex[:8]}")

    def start_registry(self, store: Path | None = None) -> Any:
        """Start the registry actor; with a ``store`` directory it is durable and Ray restarts it
        (from that journal) if its process dies. A new run starts with an empty ``store``."""
        import shutil

        if store is not None:
            shutil.rmtree(store, ignore_errors=True)
        self.registry = start_registry_actor(
            self.scenario, store, self.gate, name=self.registry_name, namespace=NAMESPACE
        )
        return self.registry

    def start_serve(self, user_config: dict[str, int] | None = None) -> None:
        """Deploy (or, with a changed ``user_config``, update in place) the Serve application."""
        from ray import serve

        from olsim.serving.app import build_app

        cfg = self.scenario.serving
        serve.start(
            proxy_location=cfg.proxy_location,
            http_options={"host": cfg.host, "port": cfg.port},
            logging_config={"log_level": "WARNING"},
        )
        app = build_app(
            self.registry_name,
            NAMESPACE,
            self.scenario.learner.model,
            cfg,
            self.admin_token,
            user_config,
            plugin_env(self.scenario),
        )
        serve.run(app, name=self.app_name, route_prefix=self.route_prefix)

    def live_replicas(self) -> dict[str, str]:
        """Replicas Serve is running now, id -> actor name (in Serve's namespace). Serve's replica id is
        the one replicas acknowledge with; killed ones' acknowledgements stay in the registry."""
        import ray

        prefix = f"SERVE_REPLICA::{self.app_name}#"
        actors = ray.util.list_named_actors(all_namespaces=True)
        return {a["name"].rsplit("#", 1)[1]: a["name"] for a in actors if a["name"].startswith(prefix)}

    def replicas_current(self) -> bool:
        """Every live replica serves the registry's current generation."""
        gen = get(self.registry.state.remote())["generation"]
        acked = get(self.registry.replica_generations.remote())
        live = self.live_replicas()
        return len(live) >= self.scenario.serving.replicas and all(acked.get(r, -1) >= gen for r in live)

    def replica_versions(self) -> dict[str, int]:
        """Version each live replica serves."""
        live = self.live_replicas()
        return {r: v for r, v in get(self.registry.replica_versions.remote()).items() if r in live}

    def drain(self) -> bool:
        """Tell every replica the server is going away: from now on they answer 503 + Retry-After.
        False if there was nothing to tell (nothing deployed) or it did not answer in time."""
        from ray import serve

        try:
            handle = serve.get_deployment_handle("Predictor", self.app_name)
            handle.broadcast("drain").results(timeout_s=10)
        except Exception as exc:
            log.warning("drain app=%s error=%r", self.app_name, exc)
            return False
        return True

    def stop(self, delete_app: bool = True) -> None:
        """Drain the replicas, then (``delete_app``) wait ``serving.drain_s`` and remove the application;
        kill the registry. Without ``delete_app`` the caller takes Ray down at once, and clients see
        the port close after the 503s."""
        import ray
        from ray import serve

        if self.drain() and delete_app:
            time.sleep(self.scenario.serving.drain_s)
        if delete_app:
            try:
                serve.delete(self.app_name)
            except Exception as exc:  # nothing deployed yet
                log.debug("serve.delete error=%r", exc)
        if self.registry is not None:
            ray.kill(self.registry)
