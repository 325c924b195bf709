"""The lab Prometheus' scrape configuration: Kubernetes service discovery (role pod) against the lab's API server.

Router and engine pods are found exactly as the chart's PodMonitor finds them in a cluster with the Prometheus
Operator: the lab renders that PodMonitor from the chart and translates it here into the relabelling the operator
would generate (pod selector, namespace selector, named container port, `namespace`/`pod`/`container` labels and the
podTargetLabels). So a label or port name that drifts breaks the lab, not only production. Three more jobs stand in
for what a cluster also scrapes: the crossover operator (as the chart's ServiceMonitor does, honouring its labels),
the dcgm-exporter pods (as the GPU operator's ServiceMonitor does) and any other pod with a port named `http` or
`metrics` (the lab's bare emulator pods in tests).

One rule is the lab's own: pod IPs 10.244.a.b are served on 127.244.a.b (see config.py), so every job rewrites the
target address through that map, as the harness and the routers do.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from crossover_lab.config import POD_CIDR, LabConfig

OPERATOR_JOB = "crossover-operator"
DCGM_JOB = "dcgm-exporter"
OTHER_JOB = "lab-pods"
DCGM_NAMESPACE = "gpu-operator"


def sanitize(label: str) -> str:
    """Prometheus' name for a Kubernetes label in `__meta_kubernetes_pod_label_<name>`."""
    return re.sub(r"[^a-zA-Z0-9_]", "_", label)


def _address_map() -> dict[str, Any]:
    first, second = POD_CIDR.split(".")[:2]
    return {
        "source_labels": ["__address__"],
        "regex": rf"{first}\.{second}\.(\d+)\.(\d+):(\d+)",
        "replacement": "127.244.${1}.${2}:${3}",
        "target_label": "__address__",
    }


def _kubernetes_sd(cfg: LabConfig, token_file: Path, namespaces: list[str] | None = None) -> dict[str, Any]:
    sd: dict[str, Any] = {
        "role": "pod",
        "api_server": cfg.apiserver_url,
        "tls_config": {"ca_file": str(cfg.state / "pki" / "apiserver.crt")},
        "bearer_token_file": str(token_file),
    }
    if namespaces:
        sd["namespaces"] = {"names": namespaces}
    return sd


def _common(port_names: str) -> list[dict[str, Any]]:
    """Running pods with an IP, on their named port; namespace/pod/container labels as the Prometheus Operator sets."""
    return [
        {"source_labels": ["__meta_kubernetes_pod_phase"], "regex": "(Failed|Succeeded)", "action": "drop"},
        {"source_labels": ["__meta_kubernetes_pod_ip"], "regex": ".+", "action": "keep"},
        {"source_labels": ["__meta_kubernetes_pod_container_port_name"], "regex": port_names, "action": "keep"},
        {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
        {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
        {"source_labels": ["__meta_kubernetes_pod_container_name"], "target_label": "container"},
        {"source_labels": ["__meta_kubernetes_pod_container_port_name"], "target_label": "endpoint"},
    ]


def _selector_rules(selector: dict[str, Any]) -> list[dict[str, Any]]:
    """A label selector as keep/drop rules (what the Prometheus Operator generates for a monitor's selector)."""
    rules: list[dict[str, Any]] = []
    for key, value in (selector.get("matchLabels") or {}).items():
        rules.append(
            {
                "source_labels": [f"__meta_kubernetes_pod_label_{sanitize(key)}"],
                "regex": re.escape(str(value)),
                "action": "keep",
            }
        )
    for expression in selector.get("matchExpressions") or []:
        name = sanitize(expression["key"])
        values = "|".join(re.escape(v) for v in expression.get("values") or [])
        operator = expression["operator"]
        if operator == "In":
            rules.append(
                {"source_labels": [f"__meta_kubernetes_pod_label_{name}"], "regex": f"({values})", "action": "keep"}
            )
        elif operator == "NotIn":
            rules.append(
                {"source_labels": [f"__meta_kubernetes_pod_label_{name}"], "regex": f"({values})", "action": "drop"}
            )
        elif operator == "Exists":
            rules.append(
                {"source_labels": [f"__meta_kubernetes_pod_labelpresent_{name}"], "regex": "true", "action": "keep"}
            )
        elif operator == "DoesNotExist":
            rules.append(
                {"source_labels": [f"__meta_kubernetes_pod_labelpresent_{name}"], "regex": "true", "action": "drop"}
            )
        else:
            raise ValueError(f"unknown selector operator {operator!r}")
    return rules


def podmonitor_job(monitor: dict[str, Any], cfg: LabConfig, token_file: Path) -> dict[str, Any]:
    """The scrape job a Prometheus Operator would generate for this PodMonitor (one endpoint: the chart has one)."""
    spec = monitor["spec"]
    endpoints = spec["podMetricsEndpoints"]
    if len(endpoints) != 1 or "port" not in endpoints[0]:
        raise ValueError("the lab translates PodMonitors with one named-port endpoint")
    endpoint = endpoints[0]
    namespaces = spec.get("namespaceSelector") or {}
    relabel = _selector_rules(spec.get("selector") or {}) + _common(re.escape(endpoint["port"]))
    for label in spec.get("podTargetLabels") or []:
        relabel.append(
            {"source_labels": [f"__meta_kubernetes_pod_label_{sanitize(label)}"], "target_label": sanitize(label)}
        )
    relabel.append(_address_map())
    meta = monitor["metadata"]
    return {
        "job_name": f"podMonitor/{meta.get('namespace', 'default')}/{meta['name']}/0",
        "metrics_path": endpoint.get("path", "/metrics"),
        "kubernetes_sd_configs": [
            _kubernetes_sd(cfg, token_file, None if namespaces.get("any") else namespaces.get("matchNames"))
        ],
        "relabel_configs": relabel,
    }


def lab_jobs(cfg: LabConfig, token_file: Path, podmonitor: dict[str, Any]) -> list[dict[str, Any]]:
    workloads = podmonitor_job(podmonitor, cfg, token_file)
    operator = {
        "job_name": OPERATOR_JOB,
        "honor_labels": True,  # the operator's gauges carry the InferenceDeployment's namespace (chart: honorLabels)
        "kubernetes_sd_configs": [_kubernetes_sd(cfg, token_file)],
        "relabel_configs": [
            {
                "source_labels": ["__meta_kubernetes_pod_label_app_kubernetes_io_name"],
                "regex": "crossover",
                "action": "keep",
            },
            {
                "source_labels": ["__meta_kubernetes_pod_label_app_kubernetes_io_component"],
                "regex": "operator",
                "action": "keep",
            },
            *_common("metrics"),
            _address_map(),
        ],
    }
    dcgm = {
        "job_name": DCGM_JOB,
        "kubernetes_sd_configs": [_kubernetes_sd(cfg, token_file, [DCGM_NAMESPACE])],
        "relabel_configs": [
            {"source_labels": ["__meta_kubernetes_namespace"], "regex": DCGM_NAMESPACE, "action": "keep"},
            *_common("metrics"),
            _address_map(),
        ],
    }
    other = {
        "job_name": OTHER_JOB,
        "kubernetes_sd_configs": [_kubernetes_sd(cfg, token_file)],
        "relabel_configs": [
            # everything the jobs above own is theirs alone
            {
                "source_labels": ["__meta_kubernetes_pod_label_app_kubernetes_io_name"],
                "regex": "crossover",
                "action": "drop",
            },
            {
                "source_labels": ["__meta_kubernetes_pod_label_app_kubernetes_io_managed_by"],
                "regex": "crossover",
                "action": "drop",
            },
            {"source_labels": ["__meta_kubernetes_namespace"], "regex": DCGM_NAMESPACE, "action": "drop"},
            *_common("(http|metrics)"),
            _address_map(),
        ],
    }
    return [workloads, operator, dcgm, other]
