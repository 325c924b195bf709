"""Writes charts/crossover/files/dashboards/crossover.json, the Grafana dashboard the chart ships.

Kept as code so every panel's PromQL is in one readable list (the lab test runs each one against Prometheus):
    .venv/bin/python tools/chart/dashboard.py
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parents[2] / "charts" / "crossover" / "files" / "dashboards" / "crossover.json"

ROUTER = 'namespace="$namespace", crossover_dev_inference_deployment="$name"'  # router pods (PodMonitor labels)
OPERATOR = 'namespace="$namespace", name="$name"'  # the operator's own gauges (scraped with honor_labels)
DS = {"type": "prometheus", "uid": "${datasource}"}

# (title, unit, kind, [(PromQL, legend)], what the panel waits for when its series come from elsewhere)
PANELS: list[tuple[str, str, str, list[tuple[str, str]], str]] = [
    (
        "Demand (tokens/s, before the split)",
        "short",
        "timeseries",
        [(f"sum by (direction) (rate(crossover_router_tokens_total{{{ROUTER}}}[$__rate_interval]))", "{{direction}}")],
        "",
    ),
    (
        "Engine replicas",
        "short",
        "timeseries",
        [(f"crossover_operator_replicas{{{OPERATOR}}}", "{{state}}")],
        "",
    ),
    (
        "Spill share (requests to the API)",
        "percentunit",
        "timeseries",
        [
            (
                f'sum(rate(crossover_router_requests_total{{{ROUTER}, backend="api"}}[$__rate_interval])) / '
                f"sum(rate(crossover_router_requests_total{{{ROUTER}}}[$__rate_interval]))",
                "served by the API",
            ),
            (f"crossover_operator_spill_fraction{{{OPERATOR}}}", "decided"),
        ],
        "",
    ),
    (
        "$/Mtok: self-hosted vs API",
        "currencyUSD",
        "timeseries",
        [(f"crossover_operator_cost_per_million_tokens{{{OPERATOR}}}", "{{side}}")],
        "",
    ),
    (
        "Demand vs break-even (tokens/s)",
        "short",
        "timeseries",
        [
            (f"sum(rate(crossover_router_tokens_total{{{ROUTER}}}[$__rate_interval]))", "demand"),
            (f"crossover_operator_break_even_tokens_per_second{{{OPERATOR}}}", "break-even"),
        ],
        "",
    ),
    (
        "Spend per hour",
        "currencyUSD",
        "timeseries",
        [
            (f"crossover_operator_cost_per_hour_dollars{{{OPERATOR}}}", "{{side}} (current mix)"),
            (f"sum(rate(crossover_router_api_spend_dollars_total{{{ROUTER}}}[$__rate_interval])) * 3600", "API, billed"),
        ],
        "",
    ),
    (
        "Spend, month to date",
        "currencyUSD",
        "stat",
        [
            (f"sum(increase(crossover_router_api_spend_dollars_total{{{ROUTER}}}[$__range]))", "API"),
            (
                f'sum_over_time(crossover_operator_cost_per_hour_dollars{{{OPERATOR}, side="selfHosted"}}[$__range:1m])'
                " / 60",
                "self-hosted",
            ),
        ],
        "",
    ),
    (
        "GPU utilisation (engine pods)",
        "percent",
        "timeseries",
        [
            (
                'avg(DCGM_FI_DEV_GPU_UTIL{exported_namespace="$namespace", exported_pod=~"$name-engine-.+"})',
                "NVML utilisation",
            )
        ],
        "dcgm-exporter with pod attribution (the GPU operator's default), scraped with its own namespace/pod labels",
    ),
]

ANNOTATION = (
    f'sum by (action, reason) (increase(crossover_operator_actions_total{{{OPERATOR}, action!="Hold"}}[2m])) > 0'
)


def panel(index: int, title: str, unit: str, kind: str, targets: list[tuple[str, str]], waits: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": index + 1,
        "type": kind,
        "title": title,
        "datasource": DS,
        "gridPos": {"h": 8, "w": 12, "x": 12 * (index % 2), "y": 8 * (index // 2)},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "targets": [
            {"refId": chr(ord("A") + i), "datasource": DS, "expr": expr, "legendFormat": legend}
            for i, (expr, legend) in enumerate(targets)
        ],
    }
    if kind == "stat":
        body["timeFrom"] = "now/M"  # month so far, whatever the dashboard's range
        body["options"] = {"reduceOptions": {"calcs": ["lastNotNull"]}}
    if waits:
        body["description"] = f"Needs {waits}."
    return body


def dashboard() -> dict[str, Any]:
    variables = [
        {"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Prometheus"},
        {
            "name": "namespace",
            "type": "query",
            "datasource": DS,
            "query": {"query": "label_values(crossover_operator_replicas, namespace)", "refId": "namespace"},
            "refresh": 2,
        },
        {
            "name": "name",
            "type": "query",
            "label": "InferenceDeployment",
            "datasource": DS,
            "query": {"query": 'label_values(crossover_operator_replicas{namespace="$namespace"}, name)', "refId": "name"},
            "refresh": 2,
        },
    ]
    return {
        "uid": "crossover-inference",
        "title": "crossover / InferenceDeployment",
        "description": "Demand, replicas, spill, cost per token against the API, spend and GPU use of one "
        "InferenceDeployment; scale decisions as annotations.",
        "tags": ["crossover", "llm", "cost"],
        "schemaVersion": 39,
        "time": {"from": "now-6h", "to": "now"},
        "refresh": "30s",
        "templating": {"list": variables},
        "annotations": {
            "list": [
                {
                    "name": "Decisions",
                    "datasource": DS,
                    "enable": True,
                    "expr": ANNOTATION,
                    "titleFormat": "{{action}}",
                    "textFormat": "{{reason}}",
                    "iconColor": "orange",
                    "step": "30s",
                }
            ]
        },
        "panels": [panel(i, *p) for i, p in enumerate(PANELS)],
    }


if __name__ == "__main__":
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(dashboard(), indent=2) + "\n")
    print(f"wrote {OUT}")
