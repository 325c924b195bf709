"""Debian's Prometheus on 127.0.0.1, scraping whatever the pod harness lists in a file_sd targets file.

Targets carry `namespace` and `pod` labels and the pod's own labels with Prometheus' sanitised names
(`crossover.dev/inference-deployment` -> `crossover_dev_inference_deployment`), as a PodMonitor with podTargetLabels or
a kubernetes_sd labelmap would attach, so the operator's queries are the same in the lab and in production.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from crossover_lab import processes
from crossover_lab.config import LOOPBACK, LabConfig

NAME = "prometheus"


@dataclass(frozen=True)
class Target:
    address: str  # host:port
    namespace: str
    pod: str
    path: str = "/metrics"
    labels: dict[str, str] = field(default_factory=dict)  # the pod's labels, names as Prometheus sanitises them


def binary() -> str:
    found = os.environ.get("CROSSOVER_PROMETHEUS") or shutil.which("prometheus")
    if found is None:
        raise FileNotFoundError(
            "prometheus is not installed; `make cluster` installs Debian's package (apt-get install prometheus)"
        )
    return found


def _config(cfg: LabConfig) -> dict[str, object]:
    interval = f"{cfg.scrape_interval_seconds}s"
    return {
        "global": {"scrape_interval": interval, "scrape_timeout": interval, "evaluation_interval": interval},
        "scrape_configs": [
            {
                "job_name": "lab-pods",
                "file_sd_configs": [{"files": [str(cfg.targets_file)], "refresh_interval": "5s"}],
            }
        ],
    }


def write_targets(cfg: LabConfig, targets: Iterable[Target]) -> None:
    """Replace the target list atomically; Prometheus notices the file change within a second or so."""
    groups = [
        {
            "targets": [t.address],
            "labels": {**t.labels, "namespace": t.namespace, "pod": t.pod, "__metrics_path__": t.path},
        }
        for t in sorted(targets, key=lambda t: (t.namespace, t.pod, t.address))
    ]
    cfg.targets_file.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=cfg.targets_file.parent, delete=False, suffix=".tmp") as handle:
        json.dump(groups, handle)
    Path(handle.name).replace(cfg.targets_file)


def ready(cfg: LabConfig) -> bool:
    try:
        with urllib.request.urlopen(f"{cfg.prometheus_url}/-/ready", timeout=2) as response:
            return bool(response.status == 200)
    except (OSError, urllib.error.URLError):
        return False


def start(cfg: LabConfig) -> bool:
    """Start Prometheus unless it runs; True if started now."""
    if processes.pid_of(cfg.state, NAME) is not None:
        return False
    home = cfg.state / "prometheus"
    home.mkdir(parents=True, exist_ok=True)
    (home / "prometheus.yml").write_text(yaml.safe_dump(_config(cfg), sort_keys=False))
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
