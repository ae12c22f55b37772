"""olsim's Grafana dashboards, defined once here and written as JSON to grafana/dashboards/ beside it.

Regenerate after editing: ``python -m olsim.deploy.observability.dashboards`` (a test fails when
the JSON is stale).
Panels query Prometheus only; ``$__rate_interval`` is Grafana's own rate window.

>>> [d.uid for d in DASHBOARDS]
['olsim-drift', 'olsim-freshness', 'olsim-serving', 'olsim-learner']
>>> sum(len(d.panels) for d in DASHBOARDS) > 20
True
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
DATASOURCE_UID = "olsim-prometheus"  # deploy/observability/grafana/provisioning/datasources/olsim.yml
OUT = Path(__file__).parent / "grafana" / "dashboards"
RATE = "$__rate_interval"
APP = 'application="olsim"'


@dataclass(frozen=True)
class Panel:
    title: str
    targets: tuple[tuple[str, str], ...]  # (PromQL, legend)
    unit: str = "short"
    kind: str = "timeseries"  # timeseries | stat
    description: str = ""
    bounds: tuple[float, float] | None = None  # fixed y range
    bars: bool = False  # draw as bars (counts per interval)


@dataclass(frozen=True)
class Annotation:
    name: str  # Grafana titles each event with the query's labels
    expr: str  # an event wherever this has a value
    color: str


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    description: str
    panels: tuple[Panel, ...]
    annotations: tuple[Annotation, ...] = field(default=())


SWAPS = Annotation("swaps", "changes(olsim_model_version[1m]) > 0", "blue")
ROLLBACKS = Annotation("rollbacks", "sum by (trigger) (increase(olsim_rollbacks_total[1m])) > 0", "red")
DRIFTS = Annotation("drift alarms", "increase(olsim_drift_detections_total[1m]) > 0", "orange")
CHAOS = Annotation("chaos", "sum by (kind) (increase(olsim_chaos_events_total[1m])) > 0", "purple")


def _q(metric: str, q: float) -> str:
    return f"histogram_quantile({q}, sum by (le) (rate({metric}[{RATE}])))"


DASHBOARDS: tuple[Dashboard, ...] = (
    Dashboard(
        "olsim-drift",
        "olsim / drift",
        "Catastrophic forgetting, live: the served version's held-out accuracy on every task seen so far.",
        (
            Panel(
                "Held-out accuracy per task (served version)",
                (("olsim_task_accuracy", "task {{task}}"),),
                "percentunit",
                description="Test-split accuracy of the version replicas serve, one line per task seen.",
                bounds=(0, 1),
            ),
            Panel(
                "Forgetting per task (best so far - now)",
                (("olsim_task_forgetting", "task {{task}}"),),
                "percentunit",
                description="How far each task's accuracy is below its best (alert at 0.3).",
                bounds=(0, 1),
            ),
            Panel(
                "ACC and BWT (served version)",
                (("olsim_average_accuracy", "ACC"), ("olsim_backward_transfer", "BWT")),
                "percentunit",
                description="Mean accuracy over seen tasks; backward transfer against each task's "
                "just-learned accuracy (negative = forgetting).",
                bounds=(-1, 1),
            ),
            Panel(
                "Prequential accuracy (test-then-train)",
                (("olsim_prequential_accuracy", "prequential"),),
                "percentunit",
                description="Accuracy on each stream batch before training on it, over recent batches.",
                bounds=(0, 1),
            ),
            Panel(
                "Drift detector firings",
                (("increase(olsim_drift_detections_total[1m])", "alarms per minute"),),
                description="Page-Hinkley alarms on the prequential error (detected boundaries).",
                bars=True,
            ),
            Panel(
                "Worst forgetting now",
                (("olsim:task_forgetting:max", "max over tasks"),),
                "percentunit",
                "stat",
            ),
            Panel(
                "Facts the served version knows (facts scenarios)",
                (("olsim_facts_ratio", "{{kind}}"),),
                "percentunit",
                description="Exact-match share: earlier periods' facts still true (old_kept), changed facts "
                "with the new value (updated_fresh) or the superseded one (stale_answers), new facts.",
                bounds=(0, 1),
            ),
            Panel(
                "Bits per byte per task (language models)",
                (("olsim_task_bits_per_byte", "task {{task}}"),),
                "short",
                description="Held-out next-byte cross-entropy of the served version, in bits, one line per "
                "task seen: an earlier task's line rising is forgetting (8 is a uniform guess).",
            ),
            Panel(
                "Fact freshness: arrival to first right answer",
                (
                    (_q("olsim_fact_freshness_seconds_bucket", 0.5), "p50"),
                    (_q("olsim_fact_freshness_seconds_bucket", 0.9), "p90"),
                ),
                "s",
                description="From a fact's first event in the stream to the first version that answers "
                "it right (retrieval: the next publication; fine-tuning: once it is learned).",
            ),
        ),
        (SWAPS, ROLLBACKS, DRIFTS, CHAOS),
    ),
    Dashboard(
        "olsim-freshness",
        "olsim / freshness",
        "How fast learning reaches users: versions, swaps, staleness, the promotion gate, rollbacks.",
        (
            Panel("Served version", (("olsim_model_version", "version"),), kind="stat"),
            Panel(
                "Served model age",
                (("olsim:model_age_seconds", "age"),),
                "s",
                "stat",
                description="Since the served version was accepted; alert OlsimServedModelStale.",
            ),
            Panel("Served version over time", (("olsim_model_version", "version"),)),
            Panel(
                "Replica swaps per second",
                (("sum(rate(olsim_swap_staleness_seconds_count[1m]))", "swaps/s (all replicas)"),),
                "ops",
            ),
            Panel(
                "Swap staleness (registry accept to replica serving)",
                (
                    (_q("olsim_swap_staleness_seconds_bucket", 0.5), "p50"),
                    (_q("olsim_swap_staleness_seconds_bucket", 0.99), "p99"),
                    ("olsim:swap_staleness_seconds:p99_5m", "p99 (5m)"),
                ),
                "s",
            ),
            Panel(
                "Gate decisions per minute",
                (
                    (
                        "sum by (decision, reason) (increase(olsim_gate_decisions_total[1m]))",
                        "{{decision}} ({{reason}})",
                    ),
                ),
                bars=True,
            ),
            Panel(
                "Last candidate's old-task accuracy drop",
                (("olsim_gate_old_task_accuracy_drop", "drop vs served"),),
                "percentunit",
                description="Mean over old tasks of max(0, served - candidate) validation accuracy; "
                "the gate rejects above its forgetting budget.",
            ),
            Panel(
                "Rollbacks",
                (("sum by (trigger) (increase(olsim_rollbacks_total[5m]))", "{{trigger}} (5m)"),),
                bars=True,
            ),
        ),
        (SWAPS, ROLLBACKS, CHAOS),
    ),
    Dashboard(
        "olsim-serving",
        "olsim / serving",
        "The Serve application from Ray's own metrics (Ray's metrics export port).",
        (
            Panel(
                "Requests per second by status",
                (
                    (
                        f"sum by (status_code) (rate(ray_serve_num_http_requests_total{{{APP}}}[{RATE}]))",
                        "{{status_code}}",
                    ),
                ),
                "reqps",
            ),
            Panel(
                "Latency",
                tuple(
                    (_q(f"ray_serve_http_request_latency_ms_bucket{{{APP}}}", q), f"p{round(q * 100)}")
                    for q in (0.5, 0.95, 0.99)
                ),
                "ms",
            ),
            Panel(
                "Server errors (5xx share, 5m)",
                (("olsim:predict_errors:ratio_rate5m", "5xx share"),),
                "percentunit",
                description="Alert OlsimPredictErrors above 1%.",
            ),
            Panel(
                "Client errors (4xx) per second",
                (
                    (
                        "sum by (status_code) (rate(ray_serve_num_http_requests_total"
                        f'{{{APP},status_code=~"4.."}}[{RATE}]))',
                        "{{status_code}}",
                    ),
                ),
                "reqps",
                description="Rejected input (422), auth failures on /admin (401/403); not counted as errors.",
            ),
            Panel(
                "Healthy replicas",
                ((f"sum(ray_serve_deployment_replica_healthy{{{APP}}})", "healthy"),),
                kind="stat",
            ),
            Panel(
                "Requests in flight at replicas",
                ((f"sum(ray_serve_num_ongoing_requests_at_replicas{{{APP}}})", "ongoing"),),
            ),
        ),
        (SWAPS, CHAOS),
    ),
    Dashboard(
        "olsim-learner",
        "olsim / learner and stream",
        "The background learner and the stream it consumes.",
        (
            Panel(
                "Samples trained per second",
                (("sum(rate(olsim_learner_samples_total[$__rate_interval]))", "samples/s"),),
            ),
            Panel("Training loss (recent batches)", (("olsim_learner_loss", "loss"),)),
            Panel(
                "Rehearsal memory",
                (
                    ("olsim_learner_memory_samples", "held"),
                    ("olsim_learner_memory_capacity_samples", "capacity"),
                ),
                description="Samples in the replay buffer / kNN memory (0 for strategies without one).",
            ),
            Panel(
                "Stream lag",
                (("olsim_stream_lag_seconds", "oldest untrained event waiting"),),
                "s",
                description="Paced streams only; alert when events wait and nothing trains.",
            ),
            Panel(
                "Stream events by outcome",
                (("sum by (kind) (rate(olsim_stream_events_total[$__rate_interval]))", "{{kind}}"),),
                "ops",
                description="trained, and (chaos scenarios) duplicates, dead letters and other outcomes.",
            ),
            Panel(
                "Dead letters by reason",
                (("sum by (reason) (increase(olsim_dead_letters_total[1m]))", "{{reason}}"),),
                description="Records refused at ingest (wrong shape, NaN, missing field, ...), per minute.",
                bars=True,
            ),
            Panel(
                "Chaos windows entered",
                (("sum by (kind) (increase(olsim_chaos_events_total[5m]))", "{{kind}}"),),
                description="Delivery faults from the scenario's timeline as the stream reaches them.",
                bars=True,
            ),
            Panel(
                "Learner heartbeat age",
                (("time() - olsim_learner_heartbeat_timestamp_seconds", "since last report"),),
                "s",
                description="The learner reports every 0.5 s while alive.",
            ),
            Panel("Learner running", (("olsim_learner_running", "running"),), kind="stat"),
            Panel(
                "Versions scored per minute",
                (("rate(olsim_versions_evaluated_total[1m]) * 60", "versions/min"),),
            ),
        ),
        (SWAPS, DRIFTS, CHAOS),
    ),
)


def _panel_json(p: Panel, pid: int, x: int, y: int, w: int, h: int) -> dict[str, Any]:
    defaults: dict[str, Any] = {"unit": p.unit}
    if p.bounds is not None:
        defaults["min"], defaults["max"] = p.bounds
    if p.kind == "timeseries":
        defaults["custom"] = {
            "drawStyle": "bars" if p.bars else "line",
            "lineWidth": 1,
            "fillOpacity": 60 if p.bars else 10,
            "showPoints": "never",
        }
    panel: dict[str, Any] = {
        "id": pid,
        "type": p.kind,
        "title": p.title,
        "description": p.description,
        "datasource": DATASOURCE,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "targets": [
            {"refId": chr(ord("A") + i), "datasource": DATASOURCE, "expr": expr, "legendFormat": legend}
            for i, (expr, legend) in enumerate(p.targets)
        ],
        "fieldConfig": {"defaults": defaults, "overrides": []},
    }
    if p.kind == "timeseries":
        panel["options"] = {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "none"},
        }
    else:
        panel["options"] = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}}
    return panel


def to_json(d: Dashboard) -> dict[str, Any]:
    """Grafana dashboard JSON (schema version 39: Grafana 10.4+ and 11)."""
    panels, x, y, row_h = [], 0, 0, 0
    for i, p in enumerate(d.panels, start=1):
        w, h = (6, 4) if p.kind == "stat" else (12, 8)
        if x + w > 24:
            x, y, row_h = 0, y + row_h, 0
        panels.append(_panel_json(p, i, x, y, w, h))
        x, row_h = x + w, max(row_h, h)
    return {
        "uid": d.uid,
        "title": d.title,
        "description": d.description,
        "tags": ["olsim"],
        "editable": True,
        "graphTooltip": 1,
        "refresh": "5s",
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-15m", "to": "now"},
        "timezone": "browser",
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Prometheus",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {"text": "olsim Prometheus", "value": DATASOURCE_UID},
                    "hide": 0,
                }
            ]
        },
        "annotations": {  # Grafana adds its built-in "Annotations & Alerts" entry itself
            "list": [
                {
                    "name": a.name,
                    "datasource": DATASOURCE,
                    "enable": True,
                    "hide": False,
                    "iconColor": a.color,
                    "expr": a.expr,
                }
                for a in d.annotations
            ]
        },
        "links": [
            {"title": o.title, "type": "link", "url": f"/d/{o.uid}", "targetBlank": False}
            for o in DASHBOARDS
            if o.uid != d.uid
        ],
        "panels": panels,
    }


def render(d: Dashboard) -> str:
    return json.dumps(to_json(d), indent=2) + "\n"


DOC = Path(__file__).resolve().parents[2] / "docs" / "observability.md"  # the repository's docs/
DOC_START, DOC_END = "<!-- olsim dashboards: start -->", "<!-- olsim dashboards: end -->"


def markdown() -> str:
    """The panel list for docs/observability.md (between its markers)."""
    lines = [
        DOC_START,
        "<!-- written by `python -m olsim.deploy.observability.dashboards`; do not edit by hand -->",
    ]
    for d in DASHBOARDS:
        file = f"deploy/observability/grafana/dashboards/{d.uid.removeprefix('olsim-')}.json"
        lines += ["", f"### {d.title} (`{d.uid}`, `{file}`)", "", d.description, ""]
        if d.annotations:
            lines += ["Annotations: " + "; ".join(f"{a.name} (`{a.expr}`)" for a in d.annotations) + ".", ""]
        lines += ["| panel | type | unit | PromQL (legend) |", "|---|---|---|---|"]
        for p in d.panels:
            queries = "<br>".join(f"`{e}` ({legend})" for e, legend in p.targets)  # PromQL here has no |
            lines.append(f"| {p.title} | {'bars' if p.bars else p.kind} | {p.unit} | {queries} |")
    lines.append(DOC_END)
    return "\n".join(lines)


def main(out: Path = OUT, doc: Path = DOC) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for d in DASHBOARDS:
        (out / f"{d.uid.removeprefix('olsim-')}.json").write_text(render(d))
    from olsim.deploy.markdown import write_section

    write_section(doc, markdown(), title="Dashboards")
    sys.stdout.write(f"{len(DASHBOARDS)} dashboards written to {out}, panel list to {doc}\n")


if __name__ == "__main__":
    main()
