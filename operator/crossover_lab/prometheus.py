"""Prometheus on 127.0.0.1, built from its Go module like the lab's other tools (crossover_lab.binaries).

It discovers its targets itself, the way a cluster's Prometheus does: Kubernetes service discovery (role pod) against
the lab's API server, with the relabelling the chart's PodMonitor gets from the Prometheus Operator
(crossover_lab.scrape), reading pods with a token of its own ServiceAccount (`monitoring/prometheus`). Nothing writes
a target list for it. `CROSSOVER_PROMETHEUS` points the lab at another Prometheus binary (it needs kubernetes_sd).
"""

from __future__ import annotations

import os
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


def promtool() -> str:
    """The promtool built beside the Prometheus in use (backfilling a TSDB, checking configurations)."""
    return str(Path(binary()).with_name("promtool"))


def chart_dir() -> Path:
    for parent in Path(__file__).resolve().parents:
        if (parent / "charts" / "crossover" / "Chart.yaml").is_file():
            return parent / "charts" / "crossover"
    raise FileNotFoundError("cannot find charts/crossover next to the lab")


def binary() -> str:
    explicit = os.environ.get("CROSSOVER_PROMETHEUS")
    if explicit:
        return explicit
    built = binaries.binary_dir(binaries.tool(NAME)) / NAME
    if not built.is_file():
        raise FileNotFoundError(f"{built} is missing; `crossover lab build` (run by `make cluster`) builds it")
    return str(built)


def chart_podmonitor(helm: Path) -> dict[str, Any]:
    """The PodMonitor the chart renders where the Prometheus Operator's API exists."""
    result = subprocess.run(
        [
            str(helm), "template", "crossover", str(chart_dir()), "--namespace", "crossover-system",
            "--api-versions", "monitoring.coreos.com/v1/PodMonitor", "--show-only", "templates/podmonitor.yaml",
            "--kube-version", binaries.version_of(binaries.tool("kube")),
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


def _config(cfg: LabConfig, helm: Path) -> dict[str, object]:
    interval = f"{cfg.scrape_interval_seconds}s"  # the lab's clock; the chart's monitors say 15 s
    return {
        "global": {"scrape_interval": interval, "scrape_timeout": interval, "evaluation_interval": interval},
        "scrape_configs": scrape.lab_jobs(cfg, ensure_token(cfg), chart_podmonitor(helm)),
    }


def ready(cfg: LabConfig) -> bool:
    try:
        with urllib.request.urlopen(f"{cfg.prometheus_url}/-/ready", timeout=2) as response:
            return bool(response.status == 200)
    except (OSError, urllib.error.URLError):
        return False


def start(cfg: LabConfig, helm: Path | None = None) -> bool:
    """Start Prometheus unless it runs; True if started now. With `helm` the configuration is (re)written from the
    chart's PodMonitor; without, a restart keeps the one written before."""
    if processes.pid_of(cfg.state, NAME) is not None:
        return False
    home = cfg.state / "prometheus"
    home.mkdir(parents=True, exist_ok=True)
    config = home / "prometheus.yml"
    if helm is not None:
        config.write_text(yaml.safe_dump(_config(cfg, helm), sort_keys=False))
    elif not config.exists():
        raise RuntimeError(f"{config} does not exist: start the lab (`crossover lab up`) first")
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
