"""deploy/k8s: the RayService and the monitoring manifests.

Schemas: Kubernetes' own resources (the Service, and every Ray pod template wrapped as a core
``PodTemplate``) are validated with kubernetes-validate (the Kubernetes OpenAPI schemas it ships,
strict: unknown fields fail). The embedded Serve config is validated with Ray's own
``ServeDeploySchema`` and its application args with olsim's ``LearningAppArgs``. The RayService and
ServiceMonitor custom resources have no schema that installs here (their CRDs ship with KubeRay and
the Prometheus Operator, not as packages): their cross-references are checked instead.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from ray.serve.schema import ServeDeploySchema

from olsim.deploy.scenario.spec import load_scenario
from olsim.deploy.serve_config import LearningAppArgs

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
KUBERNETES = "1.33"


def _docs(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((K8S / name).read_text()) if d]


@pytest.fixture(scope="module")
def service() -> dict[str, Any]:
    (rs,) = _docs("rayservice.yaml")
    assert (rs["apiVersion"], rs["kind"]) == ("ray.io/v1", "RayService")
    return rs


def _groups(rs: dict[str, Any]) -> dict[str, dict[str, Any]]:
    cluster = rs["spec"]["rayClusterConfig"]
    return {"head": cluster["headGroupSpec"], **{g["groupName"]: g for g in cluster["workerGroupSpecs"]}}


def _offered(group: dict[str, Any]) -> dict[str, float]:
    """Custom resources a group's `ray start` offers (KubeRay's quoted-JSON string)."""
    raw = group["rayStartParams"].get("resources")
    return {} if raw is None else dict(json.loads(json.loads(raw)))


def test_pod_templates_pass_the_kubernetes_schema(service: dict[str, Any]) -> None:
    for name, group in _groups(service).items():
        pod = {
            "apiVersion": "v1",
            "kind": "PodTemplate",
            "metadata": {"name": name},
            "template": group["template"],
        }
        kubernetes_validate.validate(pod, KUBERNETES, strict=True)


def test_a_broken_pod_template_is_caught(service: dict[str, Any]) -> None:
    """The validator really looks: a misspelt field and a wrong type both fail."""
    template = _groups(service)["head"]["template"]
    misspelt = {**template, "spec": {**template["spec"], "containres": []}}
    bad_port = {
        **template,
        "spec": {
            **template["spec"],
            "containers": [{**template["spec"]["containers"][0], "ports": [{"containerPort": "x"}]}],
        },
    }
    for t in (misspelt, bad_port):
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(
                {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "x"}, "template": t},
                KUBERNETES,
                strict=True,
            )


def test_embedded_serve_config_is_valid_and_placed_on_offered_resources(service: dict[str, Any]) -> None:
    config = ServeDeploySchema.model_validate(yaml.safe_load(service["spec"]["serveConfigV2"]))
    assert config.http_options.host == "0.0.0.0"  # reachable through KubeRay's serve Service
    (app,) = config.applications
    assert app.import_path == "olsim.deploy.serve_config:build"
    args = LearningAppArgs.model_validate(app.args)
    assert args.placement is not None
    scenario = args.load()
    groups = _groups(service)
    offered = {name: _offered(g) for name, g in groups.items()}
    # every actor's resources are offered by some group, the head's by the head
    for actor in ("registry", "evaluator", "learner"):
        wanted = getattr(scenario.placement, actor)
        assert any(set(wanted) <= set(o) for o in offered.values()), (actor, wanted)
    assert set(scenario.placement.registry) <= set(offered["head"])
    (predictor,) = app.deployments
    replica = predictor.ray_actor_options.resources or {}
    hosts = [n for n, o in offered.items() if set(replica) <= set(o)]
    assert replica and hosts == ["serving"]
    max_pods = groups["serving"]["maxReplicas"]
    assert predictor.num_replicas <= max_pods * offered["serving"]["olsim_replica"]
    # both learner groups offer the learner's resource; the GPU one also asks Kubernetes for a GPU
    gpu = groups["learner-gpu"]
    assert (
        set(scenario.placement.learner) <= set(offered["learner-gpu"])
        and gpu["rayStartParams"]["num-gpus"] == "1"
    )
    assert gpu["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert load_scenario(args.scenario).name == scenario.name


def test_metrics_are_scraped_where_the_evaluator_serves_them(service: dict[str, Any]) -> None:
    svc, monitor = _docs("monitoring.yaml")
    kubernetes_validate.validate(svc, KUBERNETES, strict=True)
    args = LearningAppArgs.model_validate(
        ServeDeploySchema.model_validate(yaml.safe_load(service["spec"]["serveConfigV2"]))
        .applications[0]
        .args
    )
    head = _groups(service)["head"]["template"]
    ports = {p["name"]: p["containerPort"] for p in head["spec"]["containers"][0]["ports"]}
    assert ports["olsim-metrics"] == args.metrics_port and args.metrics_host == "0.0.0.0"
    assert head["metadata"]["annotations"]["prometheus.io/port"] == str(args.metrics_port)
    # the Service selects the head pod and maps onto its named ports
    assert svc["spec"]["selector"].items() <= head["metadata"]["labels"].items()
    assert {p["targetPort"] for p in svc["spec"]["ports"]} <= set(ports)
    # the ServiceMonitor selects the Service and scrapes its ports by name
    assert (monitor["apiVersion"], monitor["kind"]) == ("monitoring.coreos.com/v1", "ServiceMonitor")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert {e["port"] for e in monitor["spec"]["endpoints"]} == {p["name"] for p in svc["spec"]["ports"]}
