"""The Helm chart: lints clean and renders what a platform team expects (least privilege, secure pods, HA)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from crossover.contracts import ENV_PROMETHEUS_URL, ENV_RECONCILE_INTERVAL
from crossover_lab import binaries

pytestmark = pytest.mark.lab  # needs the helm binary the lab builds

CHART = Path(__file__).resolve().parents[2] / "charts" / "crossover"
KUBE_VERSION = "1.36.3"


@pytest.fixture(scope="module")
def helm() -> Path:
    return binaries.ensure()["helm"]


def render(helm: Path, *sets: str, api_versions: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    args = [str(helm), "template", "crossover", str(CHART), "--namespace", "crossover-system"]
    args += ["--kube-version", KUBE_VERSION]
    for item in sets:
        args += ["--set", item]
    for version in api_versions:
        args += ["--api-versions", version]
    return subprocess.run(args, capture_output=True, text=True, check=False)


def template(helm: Path, *sets: str, api_versions: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    result = render(helm, *sets, api_versions=api_versions)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def test_lint_is_clean_in_strict_mode(helm: Path) -> None:
    result = subprocess.run([str(helm), "lint", "--strict", str(CHART)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


def test_renders_operator_crd_and_rbac_without_wildcards(helm: Path) -> None:
    docs = template(helm)
    kinds = {d["kind"] for d in docs}
    assert {"CustomResourceDefinition", "Deployment", "ServiceAccount", "ClusterRole", "ClusterRoleBinding"} <= kinds
    crd = by_kind(docs, "CustomResourceDefinition")[0]
    assert crd["metadata"]["name"] == "inferencedeployments.crossover.dev"
    assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    for role in by_kind(docs, "ClusterRole") + by_kind(docs, "Role"):
        for rule in role["rules"]:
            for field in ("verbs", "resources", "apiGroups"):
                assert "*" not in rule.get(field, []), (role["metadata"]["name"], rule)
    assert "ServiceMonitor" not in kinds


def test_operator_pod_is_locked_down(helm: Path) -> None:
    deployment = by_kind(template(helm), "Deployment")[0]
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    container = pod["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert "--standalone" in container["args"]
    assert "livenessProbe" in container


def test_values_flow_into_the_operator_environment(helm: Path) -> None:
    docs = template(helm, "prometheus.url=http://prom.example:9090", "reconcileIntervalSeconds=15")
    env = {
        e["name"]: e.get("value")
        for e in by_kind(docs, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env[ENV_PROMETHEUS_URL] == "http://prom.example:9090"  # the names the operator reads
    assert env[ENV_RECONCILE_INTERVAL] == "15"


def test_two_replicas_use_kopf_peering_instead_of_standalone(helm: Path) -> None:
    docs = template(helm, "replicaCount=2")
    container = by_kind(docs, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]
    assert "--standalone" not in container["args"]
    assert any(d["kind"] == "ClusterKopfPeering" for d in docs)


def test_service_monitor_is_optional(helm: Path) -> None:
    docs = template(helm, "serviceMonitor.enabled=true")
    assert len(by_kind(docs, "ServiceMonitor")) == 1


def test_gpu_product_label_flows_into_the_operator_environment(helm: Path) -> None:
    docs = template(helm, "engine.gpuProductLabel=cloud.google.com/gke-accelerator")
    env = {
        e["name"]: e.get("value")
        for e in by_kind(docs, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["CROSSOVER_GPU_PRODUCT_LABEL"] == "cloud.google.com/gke-accelerator"


# ---- discovery: the PodMonitor ---------------------------------------------------------------------------------

PODMONITOR_API = ("monitoring.coreos.com/v1/PodMonitor",)


def test_pod_monitor_renders_only_where_the_prometheus_operator_api_exists(helm: Path) -> None:
    assert by_kind(template(helm), "PodMonitor") == []  # a plain cluster: no CRD, nothing to apply
    assert len(by_kind(template(helm, api_versions=PODMONITOR_API), "PodMonitor")) == 1
    assert by_kind(template(helm, "podMonitor.enabled=false", api_versions=PODMONITOR_API), "PodMonitor") == []


def test_pod_monitor_selects_every_pod_crossover_creates_on_its_named_port(helm: Path) -> None:
    from crossover.api.v1alpha1 import InferenceDeploymentSpec
    from crossover.contracts import PROMETHEUS_COMPONENT_LABEL, PROMETHEUS_INSTANCE_LABEL, prometheus_label
    from crossover.reconcile.children import Owner, RouterPodSettings, children

    monitor = by_kind(template(helm, api_versions=PODMONITOR_API), "PodMonitor")[0]["spec"]
    spec = yaml.safe_load((CHART.parents[1] / "examples/llama-8b-h100-vs-haiku.yaml").read_text())["spec"]
    manifests = children(Owner("m", "ns", "u"), InferenceDeploymentSpec.model_validate(spec), RouterPodSettings("x"))
    pods = [m["spec"]["template"] for m in manifests if m["kind"] == "Deployment"]
    assert len(pods) == 2  # engine and router
    for pod in pods:
        labels = pod["metadata"]["labels"]
        for expression in monitor["selector"]["matchExpressions"]:
            if expression["operator"] == "In":
                assert labels.get(expression["key"]) in expression["values"], (labels, expression)
            else:
                assert expression["key"] in labels
        ports = {p["name"] for c in pod["spec"]["containers"] for p in c.get("ports", [])}
        for endpoint in monitor["podMetricsEndpoints"]:
            assert endpoint["port"] in ports
    attached = {prometheus_label(label) for label in monitor["podTargetLabels"]}
    assert attached == {PROMETHEUS_INSTANCE_LABEL, PROMETHEUS_COMPONENT_LABEL}  # what the operator queries by
    assert monitor["namespaceSelector"] == {"any": True}
    scoped = by_kind(template(helm, "watchNamespaces={ml}", api_versions=PODMONITOR_API), "PodMonitor")[0]
    assert scoped["spec"]["namespaceSelector"] == {"matchNames": ["ml"]}


def test_service_monitor_keeps_the_operator_gauges_own_namespace_label(helm: Path) -> None:
    monitor = by_kind(template(helm, "serviceMonitor.enabled=true"), "ServiceMonitor")[0]
    assert monitor["spec"]["endpoints"][0]["honorLabels"] is True


# ---- the dashboard ---------------------------------------------------------------------------------------------


def test_dashboard_is_off_by_default_and_a_labelled_config_map_when_on(helm: Path) -> None:
    assert by_kind(template(helm), "ConfigMap") == []
    maps = by_kind(template(helm, "dashboard.enabled=true", "dashboard.namespace=monitoring"), "ConfigMap")
    assert len(maps) == 1
    config_map = maps[0]
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["metadata"]["namespace"] == "monitoring"
    board = json.loads(config_map["data"]["crossover.json"])
    assert {v["name"] for v in board["templating"]["list"]} >= {"namespace", "name"}
    assert all(t["expr"] for p in board["panels"] for t in p["targets"])
    assert board["annotations"]["list"][0]["expr"]


def test_dashboard_json_is_what_its_generator_writes() -> None:
    sys.path.insert(0, str(CHART.parents[1] / "tools" / "chart"))
    try:
        import dashboard
    finally:
        sys.path.pop(0)
    committed = json.loads((CHART / "files" / "dashboards" / "crossover.json").read_text())
    assert committed == dashboard.dashboard(), "run .venv/bin/python tools/chart/dashboard.py"


# ---- hygiene: schema, helm test, README, metadata --------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    ["metrics.port=notaport", "podMonitor.interval=often", "replicaCount=0", "prometheus.url=prom:9090", "typo=1"],
)
def test_values_schema_refuses_bad_values(helm: Path, bad: str) -> None:
    result = render(helm, bad)
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr, result.stderr


def test_helm_test_hook_checks_the_operator_health_through_its_service(helm: Path) -> None:
    docs = template(helm)
    hooks = [d for d in by_kind(docs, "Pod") if d["metadata"]["annotations"].get("helm.sh/hook") == "test"]
    assert len(hooks) == 1
    url = hooks[0]["spec"]["containers"][0]["command"][-1]
    service = next(d for d in by_kind(docs, "Service") if d["metadata"]["name"] == "crossover-metrics")
    assert url == "http://crossover-metrics.crossover-system.svc:8080/healthz"
    assert {"name": "health", "port": 8080, "targetPort": "health", "protocol": "TCP"} in service["spec"]["ports"]
    operator = by_kind(docs, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]
    assert "--liveness=http://0.0.0.0:8080/healthz" in operator["args"]


def test_chart_readme_is_generated_from_the_values_comments() -> None:
    result = subprocess.run(
        [sys.executable, str(CHART.parents[1] / "tools" / "chart" / "readme.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout
    readme = (CHART / "README.md").read_text()
    assert "`podMonitor.enabled`" in readme and "`engine.gpuProductLabel`" in readme


def test_chart_has_home_and_icon() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["home"].startswith("https://")
    assert chart["icon"].startswith("https://")
    assert (CHART.parents[1] / "docs" / "img" / "icon.svg").is_file()


# ---- the lab's Prometheus scrapes as the Prometheus Operator would for this PodMonitor -------------------------


def _relabel(labels: dict[str, str], rules: list[dict[str, Any]]) -> dict[str, str] | None:
    """Prometheus' relabelling (keep, drop, replace; regexes fully anchored), enough to run the lab's jobs."""
    import re

    out = dict(labels)
    for rule in rules:
        value = ";".join(out.get(name, "") for name in rule.get("source_labels", []))
        regex = re.compile(f"^(?:{rule.get('regex', '(.*)')})$")
        action = rule.get("action", "replace")
        match = regex.match(value)
        if action == "keep" and not match:
            return None
        if action == "drop" and match:
            return None
        if action == "replace" and match:
            replacement = rule.get("replacement", "$1")
            groups = match.groups()
            out[rule["target_label"]] = re.sub(
                r"\$\{?(\d+)\}?", lambda m, g=groups: (g[int(m.group(1)) - 1] or "") if g else "", replacement
            )
    return out


def _discovered(namespace: str, pod: str, labels: dict[str, str], port: str, ip: str = "10.244.0.7") -> dict[str, str]:
    from crossover_lab.scrape import sanitize

    found = {
        "__address__": f"{ip}:8000",
        "__meta_kubernetes_namespace": namespace,
        "__meta_kubernetes_pod_name": pod,
        "__meta_kubernetes_pod_ip": ip,
        "__meta_kubernetes_pod_phase": "Running",
        "__meta_kubernetes_pod_container_name": "c",
        "__meta_kubernetes_pod_container_port_name": port,
    }
    for key, value in labels.items():
        found[f"__meta_kubernetes_pod_label_{sanitize(key)}"] = value
        found[f"__meta_kubernetes_pod_labelpresent_{sanitize(key)}"] = "true"
    return found


def test_lab_scrape_jobs_select_what_the_pod_monitor_selects_and_label_it_alike(helm: Path, tmp_path: Path) -> None:
    from crossover.contracts import Component, labels
    from crossover_lab.config import LabConfig
    from crossover_lab.scrape import lab_jobs

    monitor = by_kind(template(helm, api_versions=PODMONITOR_API), "PodMonitor")[0]
    jobs = {j["job_name"]: j["relabel_configs"] for j in lab_jobs(LabConfig(state=tmp_path), tmp_path / "t", monitor)}
    workloads = "podMonitor/crossover-system/crossover-workloads/0"
    engine = _discovered("ml", "m-engine-1", labels("m", Component.ENGINE), "http")
    router = _discovered("ml", "m-router-1", labels("m", Component.ROUTER), "http")
    operator = _discovered("crossover-system", "op", {"app.kubernetes.io/name": "crossover",
                           "app.kubernetes.io/component": "operator"}, "metrics")  # fmt: skip
    bare = _discovered("t", "vllm-1", {"app": "vllm"}, "http")
    dcgm = _discovered("gpu-operator", "dcgm-1", {"app": "nvidia-dcgm-exporter"}, "metrics")

    def owner(target: dict[str, str]) -> list[str]:
        return [name for name, rules in jobs.items() if _relabel(target, rules) is not None]

    assert owner(engine) == [workloads] and owner(router) == [workloads]
    assert (
        owner(operator) == ["crossover-operator"] and owner(dcgm) == ["dcgm-exporter"] and owner(bare) == ["lab-pods"]
    )
    assert owner(_discovered("ml", "m-engine-1", labels("m", Component.ENGINE), "grpc")) == []  # only port http
    scraped = _relabel(engine, jobs[workloads])
    assert scraped is not None
    assert scraped["namespace"] == "ml" and scraped["pod"] == "m-engine-1"
    assert scraped["crossover_dev_inference_deployment"] == "m" and scraped["app_kubernetes_io_component"] == "engine"
    assert scraped["__address__"] == "127.244.0.7:8000"  # the lab's pod-network map


def test_shards_give_one_deployment_each_with_its_own_selector_and_peering(helm: Path) -> None:
    docs = template(helm, "shards=3", "replicaCount=2")
    deployments = by_kind(docs, "Deployment")
    assert [d["metadata"]["name"] for d in deployments] == [f"crossover-shard-{i}" for i in range(3)]
    selectors = [tuple(sorted(d["spec"]["selector"]["matchLabels"].items())) for d in deployments]
    assert len(set(selectors)) == 3, "a shard's Deployment must not adopt another shard's pods"
    for i, deployment in enumerate(deployments):
        pod = deployment["spec"]["template"]
        assert pod["metadata"]["labels"].items() >= deployment["spec"]["selector"]["matchLabels"].items()
        assert f"--shard={i}/3" in pod["spec"]["containers"][0]["args"]
        assert deployment["spec"]["replicas"] == 2
    peerings = {d["metadata"]["name"] for d in by_kind(docs, "ClusterKopfPeering")}
    assert peerings == {f"crossover-shard-{i}" for i in range(3)}  # --peering crossover + -shard-i


def test_one_shard_renders_the_unsharded_operator(helm: Path) -> None:
    (deployment,) = by_kind(template(helm), "Deployment")
    assert deployment["metadata"]["name"] == "crossover"
    assert not any(a.startswith("--shard") for a in deployment["spec"]["template"]["spec"]["containers"][0]["args"])


def test_router_replicas_may_be_zero_for_an_operator_alone(helm: Path) -> None:
    env = {
        e["name"]: e.get("value")
        for e in by_kind(template(helm, "router.replicas=0"), "Deployment")[0]["spec"]["template"]["spec"][
            "containers"
        ][0]["env"]
    }
    assert env["CROSSOVER_ROUTER_REPLICAS"] == "0"
