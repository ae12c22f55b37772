"""Drive one ``olsim run`` on a multi-node Ray cluster on this machine; ``test_multinode`` runs it.

It runs in its own process (``python tests/integration/multinode_driver.py OUT``) because it starts a
Ray cluster of its own (``ray.cluster_utils.Cluster``: a head and four worker nodes, each its own
raylet, object store and workers) while the test session's Ray stays up. Placement is plain Ray:
each node offers a custom resource and olsim's scenario asks for it (``placement``, ``serving.resources``):

- head: registry and evaluator (``olsim_head``), Serve's controller and its HTTP ingress (HeadOnly);
- one learner node (``olsim_learner``);
- three serving nodes (``olsim_replica: 1`` each): the two replicas land on two of them, the third
  is spare.

Under load, once the learner has published a few versions, the driver removes a node that hosts a
replica (all of that node's processes die). Serve replaces the replica on the spare node; the run
must finish. ``OUT/multinode.json`` holds what the test checks: the report, where each replica and
the learner ran before and after the removal, and which node was removed.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

from olsim.deploy.net import free_port
from olsim.deploy.run.cluster import keep_ray_on_loopback
from olsim.deploy.run.ingress import DEFAULT_INGRESS, use_ingress
from olsim.deploy.run.options import RunOptions

log = logging.getLogger("multinode")

REMOVE_AFTER_VERSIONS = 3


def replica_nodes(url: str, replicas: int, timeout_s: float = 30.0) -> dict[str, str]:
    """Replica id -> Ray node id, from ``/version`` answers, until ``replicas`` replicas answered."""
    import httpx

    seen: dict[str, str] = {}
    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=5) as c:
        while len(seen) < replicas and time.monotonic() < deadline:
            try:
                v = c.get(f"{url}/version").json()
            except httpx.HTTPError:
                time.sleep(0.1)
                continue
            seen[v["replica"]] = v["node"]
    return seen


def main(out: Path) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    use_ingress(DEFAULT_INGRESS)
    keep_ray_on_loopback()
    from ray.cluster_utils import Cluster

    from olsim.deploy.run.driver import run
    from olsim.deploy.scenario.spec import load_scenario

    t0 = time.monotonic()
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "resources": {"olsim_head": 1}, "include_dashboard": False},
    )
    learner_node = cluster.add_node(num_cpus=1, resources={"olsim_learner": 1})
    serving = [cluster.add_node(num_cpus=1, resources={"olsim_replica": 1}) for _ in range(3)]
    cluster.wait_for_nodes()
    log.info("cluster of %d nodes up in %.1fs", len(cluster.list_all_nodes()), time.monotonic() - t0)

    base = load_scenario("split-digits")
    port = free_port()
    scenario = base.model_copy(
        update={
            # ~36 s of stream (default ~27 s): room for many versions after the replacement is up
            "stream": base.stream.model_copy(update={"rate": 300}),
            "serving": base.serving.model_copy(
                update={
                    "replicas": 2,
                    "resources": {"olsim_replica": 1},
                    "proxy_location": "HeadOnly",  # one ingress: every node here shares 127.0.0.1
                    "port": port,
                }
            ),
            # every candidate becomes a version: many swaps after the removal too
            "gate": base.gate.model_copy(update={"mode": "off"}),
            "placement": base.placement.model_copy(
                update={
                    "registry": {"olsim_head": 0.1},
                    "evaluator": {"olsim_head": 0.1},
                    "learner": {"olsim_learner": 1},
                }
            ),
        }
    )
    url = f"http://127.0.0.1:{port}"
    opts = RunOptions(
        address=cluster.address,
        report_dir=out / "run",
        metrics_port=free_port(),
        ray_metrics_port=0,
        load_rps=20,
        settle_timeout_s=60,
    )
    facts: dict[str, Any] = {
        "nodes": {
            "head": cluster.list_all_nodes()[0].node_id,  # the head comes first
            "learner": learner_node.node_id,
            "serving": [n.node_id for n in serving],
        },
        "removed": None,
    }

    def progress(p: dict[str, Any]) -> None:
        if facts["removed"] is not None or len(p["versions"]) < REMOVE_AFTER_VERSIONS:
            return
        before = replica_nodes(url, 2)
        facts["replicas_before"] = before
        facts["learner_node"] = p["node"]
        victim = next(n for n in serving if n.node_id in before.values())
        facts["removed"] = {
            "node": victim.node_id,
            "at": time.time(),
            "at_offset": p["offset"],
            "versions": len(p["versions"]),
        }
        log.info("removing node %s (replicas %s) at offset %d", victim.node_id[:8], before, p["offset"])
        cluster.remove_node(victim)

    def finished(report: dict[str, Any]) -> None:
        facts["replicas_after"] = replica_nodes(url, 2)

    try:
        facts["report"] = run(scenario, opts, progress=progress, on_finished=finished)
    finally:
        (out / "multinode.json").write_text(json.dumps(facts, indent=2, default=str))
        import ray

        ray.shutdown()
        cluster.shutdown()
    log.info("done in %.1fs", time.monotonic() - t0)
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
