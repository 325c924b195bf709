"""Debian's Prometheus on 127.0.0.1.

Where the binary has Kubernetes service discovery, it discovers its targets itself (role pod, against the lab's API
server) with the relabelling the chart's PodMonitor would get from the Prometheus Operator (crossover_lab.scrape),
reading pods with a token of its own ServiceAccount (`monitoring/prometheus`). Debian's build (2.42.0+ds) leaves
kubernetes_sd out, so there the pod harness lists targets in a file_sd file instead, with `namespace` and `pod` labels
and the pod's own labels with Prometheus' sanitised names (`crossover.dev/inference-deployment` ->
`crossover_dev_inference_deployment`), as a PodMonitor with podTargetLabels attaches them. `CROSSOVER_PROMETHEUS`
points the lab at another build (an upstream release has kubernetes_sd).
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from crossover_lab import binaries, processes, scrape
from crossover_lab.config import LOOPBACK, LabConfig
from crossover_lab.kube import lab_api_client, plain

NAME = "prometheus"
NAMESPACE = "monitoring"
ACCOUNT = "prometheus"
TOKEN_SECONDS = 30 * 24 * 3600


@dataclass(frozen=True)
class Target:
    address: str  # host:port
    namespace: str
    pod: str
    path: str = "/metrics"
    labels: dict[str, str] = field(default_factory=dict)  # the pod's labels, names as Prometheus sanitises them


def chart_dir() -> Path:
    for parent in Path(__file__).resolve().parents:
        if (parent / "charts" / "crossover" / "Chart.yaml").is_file():
            return parent / "charts" / "crossover"
    raise FileNotFoundError("cannot find charts/crossover next to the lab")


def binary() -> str:
    found = os.environ.get("CROSSOVER_PROMETHEUS") or shutil.which("prometheus")
    if found is None:
        raise FileNotFoundError(
            "prometheus is not installed; `make cluster` installs Debian's package (apt-get install prometheus)"
        )
    return found


@functools.cache
def has_kubernetes_sd(prometheus: str) -> bool:
    """Whether this Prometheus build knows kubernetes_sd_configs (Debian's does not), asked of its promtool."""
    promtool = Path(prometheus).with_name("promtool")
    if not promtool.is_file():
        return False
    with tempfile.NamedTemporaryFile("w", suffix=".yml") as probe:
        probe.write("scrape_configs: [{job_name: probe, kubernetes_sd_configs: [{role: pod}]}]\n")
        probe.flush()
        result = subprocess.run([str(promtool), "check", "config", probe.name], capture_output=True, check=False)
    return result.returncode == 0


def chart_podmonitor(helm: Path) -> dict[str, Any]:
    """The PodMonitor the chart renders where the Prometheus Operator's API exists."""
    result = subprocess.run(
        [
            str(helm), "template", "crossover", str(chart_dir()), "--namespace", "crossover-system",
            "--api-versions", "monitoring.coreos.com/v1/PodMonitor", "--show-only", "templates/podmonitor.yaml",
            "--kube-version", binaries.version_of(next(t for t in binaries.TOOLS if t.name == "kube")),
        ],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(f"helm template of the chart's PodMonitor failed: {result.stderr.strip()}")
    monitor: dict[str, Any] = yaml.safe_load(result.stdout)
    return monitor


def ensure_token(cfg: LabConfig) -> Path:
    """A ServiceAccount that may watch pods, and a token of it in .lab/prometheus/token."""
    api = lab_api_client(cfg.kubeconfig)
    core, rbac = client.CoreV1Api(api), client.RbacAuthorizationV1Api(api)
    role = {
        "metadata": {"name": "lab-prometheus"},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}],
    }
    binding = {
        "metadata": {"name": "lab-prometheus"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "lab-prometheus"},
        "subjects": [{"kind": "ServiceAccount", "name": ACCOUNT, "namespace": NAMESPACE}],
    }
    for create in (
        lambda: core.create_namespace(cast(Any, {"metadata": {"name": NAMESPACE}})),
        lambda: core.create_namespaced_service_account(NAMESPACE, cast(Any, {"metadata": {"name": ACCOUNT}})),
        lambda: rbac.create_cluster_role(cast(Any, role)),
        lambda: rbac.create_cluster_role_binding(cast(Any, binding)),
    ):
        try:
            create()
        except ApiException as error:
            if error.status != 409:
                raise
    request = core.create_namespaced_service_account_token(
        ACCOUNT, NAMESPACE, cast(Any, {"spec": {"expirationSeconds": TOKEN_SECONDS}})
    )
    path = cfg.state / "prometheus" / "token"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(str(plain(api, request)["status"]["token"]))
    path.chmod(0o600)
    return path


def _config(cfg: LabConfig, helm: Path | None) -> dict[str, object]:
    interval = f"{cfg.scrape_interval_seconds}s"  # the lab's clock; the chart's monitors say 15 s
    jobs: list[dict[str, Any]]
    if helm is not None and has_kubernetes_sd(binary()):
        jobs = scrape.lab_jobs(cfg, ensure_token(cfg), chart_podmonitor(helm))
    else:
        jobs = [
            {"job_name": "lab-pods", "file_sd_configs": [{"files": [str(cfg.targets_file)], "refresh_interval": "5s"}]},
            {
                "job_name": "crossover-operator",
                "honor_labels": True,
                "file_sd_configs": [{"files": [str(honor_targets_file(cfg))], "refresh_interval": "5s"}],
            },
        ]
    return {
        "global": {"scrape_interval": interval, "scrape_timeout": interval, "evaluation_interval": interval},
        "scrape_configs": jobs,
    }


def discovery(cfg: LabConfig) -> str:
    """ "kubernetes_sd" or "file_sd": how the running lab's Prometheus finds its targets."""
    config = (cfg.state / "prometheus" / "prometheus.yml").read_text()
    return "kubernetes_sd" if "kubernetes_sd_configs" in config else "file_sd"


def _honours_labels(target: Target) -> bool:
    """The crossover operator is scraped with honor_labels (as the chart's ServiceMonitor does): its gauges carry the
    InferenceDeployment's own `namespace` label."""
    return target.labels.get("app_kubernetes_io_name") == "crossover" and (
        target.labels.get("app_kubernetes_io_component") == "operator"
    )


def honor_targets_file(cfg: LabConfig) -> Path:
    return cfg.targets_file.with_name("honor-labels.json")


def write_targets(cfg: LabConfig, targets: Iterable[Target]) -> None:
    """Replace the target lists atomically; Prometheus notices the file change within a second or so."""
    ordered = sorted(targets, key=lambda t: (t.namespace, t.pod, t.address))
    for path, honour in ((cfg.targets_file, False), (honor_targets_file(cfg), True)):
        groups = [
            {
                "targets": [t.address],
                "labels": {**t.labels, "namespace": t.namespace, "pod": t.pod, "__metrics_path__": t.path},
            }
            for t in ordered
            if _honours_labels(t) == honour
        ]
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as handle:
            json.dump(groups, handle)
        Path(handle.name).replace(path)


def ready(cfg: LabConfig) -> bool:
    try:
        with urllib.request.urlopen(f"{cfg.prometheus_url}/-/ready", timeout=2) as response:
            return bool(response.status == 200)
    except (OSError, urllib.error.URLError):
        return False


def start(cfg: LabConfig, helm: Path | None = None) -> bool:
    """Start Prometheus unless it runs; True if started now. With `helm` (and a build that has kubernetes_sd) the
    configuration is (re)written from the chart's PodMonitor; without, a restart keeps the one written before."""
    if processes.pid_of(cfg.state, NAME) is not None:
        return False
    home = cfg.state / "prometheus"
    home.mkdir(parents=True, exist_ok=True)
    config = home / "prometheus.yml"
    if helm is not None or not config.exists():
        config.write_text(yaml.safe_dump(_config(cfg, helm), sort_keys=False))
    if not cfg.targets_file.exists():
        write_targets(cfg, [])
    processes.start(
        cfg.state,
        NAME,
        [
            binary(),
            f"--config.file={home / 'prometheus.yml'}",
            f"--storage.tsdb.path={home / 'data'}",
            "--storage.tsdb.retention.time=1d",
            f"--web.listen-address={LOOPBACK}:{cfg.prometheus_port}",
        ],
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if ready(cfg):
            return True
        if processes.pid_of(cfg.state, NAME) is None:
            break
        time.sleep(0.25)
    raise RuntimeError(f"Prometheus did not become ready; see {processes.log_file(cfg.state, NAME)}")
