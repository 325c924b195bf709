"""The lab itself: GPU scheduling on fake nodes, emulators on pod IPs, Prometheus scraping them, loopback only."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
import requests

from crossover_lab import control_plane, dcgm, processes
from crossover_lab.config import local_address
from tests.fixtures.lab import Lab
from tests.lab.support import eventually

pytestmark = pytest.mark.lab


def vllm_deployment(name: str, replicas: int, gpus: int, decode_tps: int = 5000) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {
                    "labels": {"app": name},
                    "annotations": {
                        "lab.crossover.dev/decode-tps": str(decode_tps),
                        "lab.crossover.dev/cold-start-seconds": "0",
                    },
                },
                "spec": {
                    "terminationGracePeriodSeconds": 2,
                    "containers": [
                        {
                            "name": "vllm",
                            "image": "vllm/vllm-openai:v0.11.0",
                            "args": ["--model", "m", "--served-model-name", "lab-model", "--port", "8000"],
                            "ports": [{"name": "http", "containerPort": 8000}],
                            "readinessProbe": {"httpGet": {"path": "/health", "port": "http"}},
                            "resources": {"limits": {"nvidia.com/gpu": str(gpus)}},
                        }
                    ],
                },
            },
        },
    }


def pods(lab: Lab, namespace: str, app: str) -> list[Any]:
    return list(lab.core.list_namespaced_pod(namespace, label_selector=f"app={app}").items)


def is_ready(pod: Any) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in (pod.status.conditions or []))


def test_gpu_pods_run_emulators_on_their_pod_ips_and_extra_pods_stay_pending(lab: Lab, namespace: str) -> None:
    gpus_total = lab.cfg.nodes * lab.cfg.gpus_per_node
    per_pod = lab.cfg.gpus_per_node  # one pod fills a node
    fits = gpus_total // per_pod
    lab.apps.create_namespaced_deployment(namespace, vllm_deployment("engine", fits + 1, per_pod))  # type: ignore[arg-type]

    def settled() -> list[Any] | None:
        found = pods(lab, namespace, "engine")
        ready = [p for p in found if is_ready(p)]
        return found if len(found) == fits + 1 and len(ready) == fits else None

    found = eventually(settled, timeout=60)
    running = [p for p in found if is_ready(p)]
    pending = [p for p in found if not is_ready(p)]
    assert len(pending) == 1
    assert pending[0].status.phase == "Pending"
    scheduled = [c for c in pending[0].status.conditions or [] if c.type == "PodScheduled"]
    assert scheduled and scheduled[0].status == "False" and "nvidia.com/gpu" in (scheduled[0].message or "")
    pod_ips = {p.status.pod_ip for p in running}
    assert len(pod_ips) == fits and all(ip.startswith("10.244.") for ip in pod_ips)
    for ip in map(local_address, pod_ips):
        models = requests.get(f"http://{ip}:8000/v1/models", timeout=5).json()
        assert [m["id"] for m in models["data"]] == ["lab-model"]
        completion = requests.post(
            f"http://{ip}:8000/v1/completions",
            json={"model": "lab-model", "prompt": "hello there", "max_tokens": 5},
            timeout=10,
        ).json()
        assert completion["usage"]["completion_tokens"] == 5


def test_pod_going_away_stops_its_emulator(lab: Lab, namespace: str) -> None:
    lab.apps.create_namespaced_deployment(namespace, vllm_deployment("short", 1, 1))  # type: ignore[arg-type]
    pod = eventually(lambda: next((p for p in pods(lab, namespace, "short") if is_ready(p)), None), timeout=60)
    url = f"http://{local_address(pod.status.pod_ip)}:8000/health"
    assert requests.get(url, timeout=5).status_code == 200
    lab.apps.delete_namespaced_deployment("short", namespace)

    def refused() -> bool:
        try:
            requests.get(url, timeout=1)
        except requests.ConnectionError:
            return True
        return False

    eventually(refused, timeout=30)


def test_prometheus_scrapes_emulator_token_rates_under_load(lab: Lab, namespace: str) -> None:
    lab.apps.create_namespaced_deployment(namespace, vllm_deployment("scraped", 1, 1))  # type: ignore[arg-type]
    pod = eventually(lambda: next((p for p in pods(lab, namespace, "scraped") if is_ready(p)), None), timeout=60)
    url = f"http://{local_address(pod.status.pod_ip)}:8000/v1/completions"
    query = f'sum(rate(vllm:generation_tokens_total{{namespace="{namespace}",pod="{pod.metadata.name}"}}[10s]))'

    def rate_seen() -> float | None:
        for _ in range(5):  # keep load on while waiting for scrapes
            requests.post(url, json={"model": "lab-model", "prompt": "x" * 40, "max_tokens": 20}, timeout=10)
        result = requests.get(f"{lab.prometheus_url}/api/v1/query", params={"query": query}, timeout=5).json()
        values = result["data"]["result"]
        return float(values[0]["value"][1]) if values and float(values[0]["value"][1]) > 0 else None

    rate = eventually(rate_seen, timeout=60, interval=0.5)
    assert rate > 0


def test_dcgm_exporter_per_gpu_node_reports_engine_utilisation_as_exported_pod(lab: Lab, namespace: str) -> None:
    """The lab's dcgm-exporter DaemonSet: one pod per GPU node, its own scrape target, the engine pod it measures
    in exported_pod/exported_namespace (Prometheus renames them: the target's own pod is the exporter's)."""
    exporters = eventually(
        lambda: (
            (found := lab.core.list_namespaced_pod(dcgm.NAMESPACE, label_selector=f"app={dcgm.NAME}").items)
            and len([p for p in found if is_ready(p)]) == lab.cfg.nodes
            and found
        ),
        timeout=60,
    )
    assert sorted(p.spec.node_name for p in exporters) == sorted(control_plane.node_names(lab.cfg))
    lab.apps.create_namespaced_deployment(namespace, vllm_deployment("hot", 1, 1))  # type: ignore[arg-type]
    pod = eventually(lambda: next((p for p in pods(lab, namespace, "hot") if is_ready(p)), None), timeout=60)
    url = f"http://{local_address(pod.status.pod_ip)}:8000/v1/completions"
    stop = threading.Event()

    def busy() -> None:
        while not stop.is_set():
            try:
                requests.post(url, json={"model": "lab-model", "prompt": "x", "max_tokens": 2_000}, timeout=30)
            except requests.RequestException:
                return  # the pod went with the test's namespace

    workers = [threading.Thread(target=busy, daemon=True) for _ in range(16)]
    for worker in workers:
        worker.start()
    query = f'DCGM_FI_DEV_GPU_UTIL{{exported_namespace="{namespace}",exported_pod="{pod.metadata.name}"}}'
    try:

        def hot() -> list[Any] | None:
            result = requests.get(f"{lab.prometheus_url}/api/v1/query", params={"query": query}, timeout=5).json()
            series = result["data"]["result"]
            return series if series and float(series[0]["value"][1]) >= 80 else None

        series = eventually(hot, timeout=60, interval=0.5)
    finally:
        stop.set()
        for worker in workers:
            worker.join(30)
    labels = series[0]["metric"]
    assert labels["namespace"] == dcgm.NAMESPACE and labels["pod"].startswith(dcgm.NAME)
    assert labels["Hostname"] == pod.spec.node_name
    assert float(series[0]["value"][1]) <= 100


def _listeners() -> dict[int, list[str]]:
    """Listening TCP sockets by inode -> local addresses, from /proc/net/tcp{,6}."""
    found: dict[int, list[str]] = {}
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A":  # LISTEN
                continue
            address = fields[1].split(":")[0]
            v4 = ".".join(str(int(address[i : i + 2], 16)) for i in (6, 4, 2, 0)) if width == 8 else None
            ip = v4 or "v6:" + address
            found.setdefault(int(fields[9]), []).append(ip)
    return found


def test_nothing_the_lab_runs_listens_outside_loopback(lab: Lab, namespace: str) -> None:
    lab.apps.create_namespaced_deployment(namespace, vllm_deployment("loop", 1, 1))  # type: ignore[arg-type]
    eventually(lambda: any(is_ready(p) for p in pods(lab, namespace, "loop")), timeout=60)
    groups = {processes.pid_of(lab.cfg.state, name) for name in processes.running(lab.cfg.state)}
    listeners = _listeners()
    checked = 0
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            pgid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[2])
            if pgid not in groups:
                continue
            inodes = {
                int(link.readlink().name[len("socket:[") : -1])
                for link in (proc / "fd").iterdir()
                if link.readlink().name.startswith("socket:[")
            }
        except (OSError, ValueError, IndexError):
            continue
        for inode in inodes & listeners.keys():
            for ip in listeners[inode]:
                checked += 1
                assert ip.startswith("127."), f"{proc.name} listens on {ip}"
    assert checked >= 6  # etcd, apiserver, controller-manager, scheduler, Prometheus, an emulator at least
