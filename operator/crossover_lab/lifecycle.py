"""Bring the whole lab up (idempotently) or down, and say what runs."""

from __future__ import annotations

import logging
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from crossover_lab import binaries, control_plane, dcgm, monitoring_crds, processes, prometheus
from crossover_lab.config import LabConfig
from crossover_lab.kube import lab_api_client

log = logging.getLogger(__name__)

HARNESS = "harness"


@dataclass(frozen=True)
class LabInfo:
    kubeconfig: Path
    prometheus_url: str
    bins: dict[str, Path]
    started: list[str]  # empty when everything was already running
    seconds: float


def _ensure_nodes(cfg: LabConfig) -> None:
    core = client.CoreV1Api(lab_api_client(cfg.kubeconfig))
    for index, name in enumerate(control_plane.node_names(cfg)):
        body = control_plane.fake_gpu_node(name, cfg.gpus_per_node, cfg.gpu_product(index))
        try:
            core.create_node(cast(Any, body))
        except ApiException as error:
            if error.status != 409:
                raise
            core.patch_node(name, {"metadata": {"labels": body["metadata"]["labels"]}})  # a lab from before
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        nodes = core.list_node(label_selector="type=kwok").items
        ready = [
            n
            for n in nodes
            if any(c.type == "Ready" and c.status == "True" for c in (n.status.conditions if n.status else None) or [])
        ]
        if len(ready) >= cfg.nodes:
            return
        time.sleep(0.25)
    raise control_plane.LabError(f"fake nodes did not become Ready; see {processes.log_file(cfg.state, 'kwok')}")


def up(cfg: LabConfig) -> LabInfo:
    """Build what is missing, start what is not running, create the fake GPU nodes and install the Prometheus
    Operator's CRDs; reuse whatever runs."""
    began = time.monotonic()
    bins = binaries.ensure()
    started = control_plane.start(cfg, bins)
    _ensure_nodes(cfg)
    api = lab_api_client(cfg.kubeconfig)
    monitoring_crds.install(api)  # PodMonitor/ServiceMonitor: the chart's monitors meet the real schemas
    dcgm.ensure(api)
    if prometheus.start(cfg, bins["helm"]):
        started.append(prometheus.NAME)
    if processes.pid_of(cfg.state, HARNESS) is None:
        processes.start(cfg.state, HARNESS, [sys.executable, "-m", "crossover.cli", "lab", "harness"])
        started.append(HARNESS)
    (cfg.state / "bin").mkdir(exist_ok=True)
    for name, path in bins.items():  # stable paths for users: .lab/bin/kubectl, .lab/bin/helm
        link = cfg.state / "bin" / name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(path)
    return LabInfo(cfg.kubeconfig, cfg.prometheus_url, bins, started, time.monotonic() - began)


def down(cfg: LabConfig) -> list[str]:
    """Stop everything the lab started and remove its state (the binary cache stays)."""
    stopped = [name for name in (HARNESS, prometheus.NAME) if processes.stop(cfg.state, name)]
    stopped += control_plane.stop(cfg)
    for leftover in processes.running(cfg.state):  # anything else recorded (the demo's load generator, say)
        processes.stop(cfg.state, leftover)
        stopped.append(leftover)
    shutil.rmtree(cfg.state, ignore_errors=True)
    return stopped


def status(cfg: LabConfig) -> dict[str, bool]:
    names = [*control_plane.CONTROL_PLANE, prometheus.NAME, HARNESS]
    return {name: processes.pid_of(cfg.state, name) is not None for name in names}
