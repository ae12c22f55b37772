"""Grafana dashboards: the committed JSON is what deploy/observability/dashboards.py generates, and it
survives Grafana's own schema (grafana-foundation-sdk's dashboard model) without losing a field."""

from __future__ import annotations

import json
from typing import Any

import pytest

from olsim.deploy.observability.dashboards import DASHBOARDS, OUT, render, to_json


@pytest.mark.parametrize("d", DASHBOARDS, ids=lambda d: d.uid)
def test_committed_json_is_up_to_date(d: Any) -> None:
    path = OUT / f"{d.uid.removeprefix('olsim-')}.json"
    assert path.read_text() == render(d), (
        "stale dashboard JSON: run `python -m olsim.deploy.observability.dashboards`"
    )


def _lost(ours: Any, theirs: Any, path: str = "") -> list[str]:
    """Every key or value in ``ours`` that ``theirs`` does not carry."""
    if isinstance(ours, dict):
        if not isinstance(theirs, dict):
            return [path]
        return [
            p
            for k, v in ours.items()
            for p in (_lost(v, theirs[k], f"{path}/{k}") if k in theirs else [f"{path}/{k}"])
        ]
    if isinstance(ours, list):
        if not isinstance(theirs, list) or len(ours) != len(theirs):
            return [path]
        return [
            p for i, (a, b) in enumerate(zip(ours, theirs, strict=True)) for p in _lost(a, b, f"{path}[{i}]")
        ]
    return [] if ours == theirs else [f"{path}: {ours!r} -> {theirs!r}"]


@pytest.mark.parametrize("d", DASHBOARDS, ids=lambda d: d.uid)
def test_dashboard_round_trips_through_grafanas_schema(d: Any) -> None:
    from grafana_foundation_sdk.cog import plugins
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.models.dashboard import Dashboard

    plugins.register_default_plugins()  # decodes targets as Prometheus queries, options per panel type
    ours = to_json(d)
    theirs = json.loads(json.dumps(Dashboard.from_json(ours), cls=JSONEncoder))
    assert _lost(ours, theirs) == []


def test_the_schema_check_notices_an_unknown_field() -> None:
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.models.dashboard import Dashboard

    bad = to_json(DASHBOARDS[0])
    bad["panels"][0]["gridPosition"] = bad["panels"][0].pop("gridPos")  # a typo Grafana would ignore
    theirs = json.loads(json.dumps(Dashboard.from_json(bad), cls=JSONEncoder))
    assert "/panels[0]/gridPosition" in _lost(bad, theirs)


@pytest.mark.parametrize("d", DASHBOARDS, ids=lambda d: d.uid)
def test_panels_are_laid_out_and_query_prometheus(d: Any) -> None:
    j = to_json(d)
    ids = [p["id"] for p in j["panels"]]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for p in j["panels"]:
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not mine & cells, f"{p['title']} overlaps another panel"
        cells |= mine
        assert p["targets"] and all(
            t["expr"] and t["datasource"]["type"] == "prometheus" for t in p["targets"]
        )
    assert j["templating"]["list"][0]["current"]["value"] == "olsim-prometheus"  # the provisioned uid


def test_provisioning_and_compose_agree_with_the_dashboards() -> None:
    import yaml

    from olsim.deploy.observability.dashboards import DATASOURCE_UID

    grafana = OUT.parent
    ds = yaml.safe_load((grafana / "provisioning" / "datasources" / "olsim.yml").read_text())["datasources"]
    assert [d["uid"] for d in ds] == [DATASOURCE_UID] and ds[0]["url"] == "http://127.0.0.1:9090"
    provider = yaml.safe_load((grafana / "provisioning" / "dashboards" / "olsim.yml").read_text())[
        "providers"
    ][0]
    compose = yaml.safe_load((grafana.parent / "docker-compose.yml").read_text())["services"]
    mounts = dict(v.removesuffix(":ro").split(":") for v in compose["grafana"]["volumes"])
    assert mounts["./grafana/dashboards"] == provider["options"]["path"]
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    assert "--web.listen-address=127.0.0.1:9090" in compose["prometheus"]["command"]
    assert compose["grafana"]["environment"]["GF_SERVER_HTTP_ADDR"] == "127.0.0.1"


def test_docs_list_every_panel() -> None:
    from olsim.deploy.observability.dashboards import DOC, markdown

    text = DOC.read_text()
    assert markdown() in text, (
        "stale panel list in docs/observability.md: run `python -m olsim.deploy.observability.dashboards`"
    )
    assert all(p.title in text for d in DASHBOARDS for p in d.panels)
