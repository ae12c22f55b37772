"""olsim on a multi-node Ray cluster on this machine (``ray.cluster_utils.Cluster``: a head, a learner
node and three serving nodes), unchanged: placement is the scenario's Ray resources. A serving node is
removed under load; the run must finish, lose no version, and every replica converge.

The cluster runs in a subprocess (tests/integration/multinode_driver.py) so that the session's own
Ray stays untouched; it gets a Ray temp dir of its own (``RAY_TMPDIR``) so that the address file a
Cluster writes cannot steer another ``ray.init``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def facts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("multinode")
    # the session's ingress settings (its HAProxy ports) stay with it: the driver sets its own
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_SERVE_") and k != "RAY_ADDRESS"}
    with tempfile.TemporaryDirectory(prefix="olsim-mn-") as ray_tmp:  # short: Ray's socket paths
        env.update(RAY_TMPDIR=ray_tmp, PYTHONPATH=str(ROOT))
        log = out / "driver.log"
        with log.open("w") as f:
            proc = subprocess.run(
                [sys.executable, str(Path(__file__).with_name("multinode_driver.py")), str(out)],
                cwd=ROOT,
                env=env,
                stdout=f,
                stderr=subprocess.STDOUT,
                timeout=480,
            )
    tail = log.read_text()[-4000:]
    assert proc.returncode == 0, tail
    result: dict[str, Any] = json.loads((out / "multinode.json").read_text())
    assert "report" in result, tail
    return result


def test_replicas_and_learner_run_on_their_own_nodes(facts: dict[str, Any]) -> None:
    nodes, before = facts["nodes"], facts["replicas_before"]
    assert len(before) == 2 and len(set(before.values())) == 2, before  # two replicas, two nodes
    assert set(before.values()) <= set(nodes["serving"])
    assert facts["learner_node"] == nodes["learner"]
    assert nodes["learner"] not in before.values() and nodes["head"] not in before.values()


def test_removing_a_serving_node_under_load_loses_nothing(facts: dict[str, Any]) -> None:
    report, removed = facts["report"], facts["removed"]
    assert removed is not None and removed["node"] in facts["replicas_before"].values()
    after = facts["replicas_after"]
    assert len(after) == 2 and removed["node"] not in after.values(), after  # replaced on the spare
    assert set(after.values()) <= set(facts["nodes"]["serving"])
    assert not report["truncated"] and report["learner"]["offset"] == report["learner"]["total"]
    assert report["versions"]["lost"] == 0
    assert report["versions_published"] > removed["versions"] + 3  # learning went on after
    assert report["replicas_converged"]
    assert set(report["replica_versions"]) == set(after)
    assert set(report["replica_versions"].values()) == {report["served_version"]}
    req = report["requests"]
    assert req["count"] > 200
    # requests may fail only while Serve replaces the replica: each failed one was under way at some
    # moment between the node's removal and the replacement's first answer
    (new,) = set(after) - set(facts["replicas_before"])
    rows = sorted(req["samples"])  # [sent, latency ms, status, version, replica, rows, retried]
    replaced_at = next(r[0] for r in rows if r[4] == new)
    failed = [r for r in rows if r[2] != 200]
    assert all(r[0] + r[1] / 1e3 >= removed["at"] and r[0] <= replaced_at for r in failed), failed


def test_every_replica_converges_to_each_published_version(facts: dict[str, Any]) -> None:
    """Each version reached every replica that was serving: both original replicas before the
    removal, the survivor throughout, and the replacement from its first version on."""
    before, after, removed = facts["replicas_before"], facts["replicas_after"], facts["removed"]
    gone = next(r for r, n in before.items() if n == removed["node"])
    (survivor,) = set(before) & set(after)
    (new,) = set(after) - set(before)
    rows = [r for r in facts["report"]["swaps"] if r["kind"] == "publish"]
    assert [r["version"] for r in rows] == list(range(1, len(rows) + 1))
    assert all(survivor in r["applied"] for r in rows)
    assert all(gone in r["applied"] for r in rows[: removed["versions"]])
    first_new = next(i for i, r in enumerate(rows) if new in r["applied"])
    assert all(new in r["applied"] for r in rows[first_new:])
    assert first_new <= len(rows) - 3  # it loaded one at start, then swapped in at least two more live
