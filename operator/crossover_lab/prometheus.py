"""Debian's Prometheus on 127.0.0.1, discovering its targets itself: Kubernetes service discovery (role pod) against
the lab's API server, with the relabelling the chart's PodMonitor would get from the Prometheus Operator
(crossover_lab.scrape). It reads pods with a token of its own ServiceAccount (`monitoring/prometheus`, allowed to
get, list and watch pods), as an in-cluster Prometheus would.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
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


def _config(cfg: LabConfig, token: Path, podmonitor: dict[str, Any]) -> dict[str, object]:
    interval = f"{cfg.scrape_interval_seconds}s"  # the lab's clock; the chart's monitors say 15 s
    return {
        "global": {"scrape_interval": interval, "scrape_timeout": interval, "evaluation_interval": interval},
        "scrape_configs": scrape.lab_jobs(cfg, token, podmonitor),
    }


def ready(cfg: LabConfig) -> bool:
    try:
        with urllib.request.urlopen(f"{cfg.prometheus_url}/-/ready", timeout=2) as response:
            return bool(response.status == 200)
    except (OSError, urllib.error.URLError):
        return False


def start(cfg: LabConfig, helm: Path | None = None) -> bool:
    """Start Prometheus unless it runs; True if started now. With `helm`, (re)write its configuration from the
    chart's PodMonitor and a fresh token first; without, restart on the configuration written before."""
    if processes.pid_of(cfg.state, NAME) is not None:
        return False
    home = cfg.state / "prometheus"
    home.mkdir(parents=True, exist_ok=True)
    config = home / "prometheus.yml"
    if helm is not None or not config.exists():
        if helm is None:
            raise RuntimeError("the first start of the lab's Prometheus needs helm to render the chart's PodMonitor")
        config.write_text(yaml.safe_dump(_config(cfg, ensure_token(cfg), chart_podmonitor(helm)), sort_keys=False))
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
