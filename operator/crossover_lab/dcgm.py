"""The lab's dcgm-exporter: a DaemonSet in `gpu-operator` like the GPU operator installs, one pod per GPU node.

The pod harness runs the dcgm-exporter emulator for each of its pods (crossover_lab.emulators.dcgm), so GPU utilisation
reaches Prometheus the way it does in a real cluster: from its own scrape target, with the workload's pod and
namespace as exported labels.
"""

from __future__ import annotations

from typing import Any, cast

from kubernetes import client
from kubernetes.client.exceptions import ApiException

NAMESPACE = "gpu-operator"
NAME = "nvidia-dcgm-exporter"
IMAGE = "nvcr.io/nvidia/k8s/dcgm-exporter:4.2.3-4.1.3-ubuntu22.04"
PORT = 9400
LABELS = {"app": NAME, "app.kubernetes.io/name": "dcgm-exporter"}


def daemonset() -> dict[str, Any]:
    probe = {"httpGet": {"path": "/health", "port": "metrics"}, "periodSeconds": 5}
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": LABELS},
        "spec": {
            "selector": {"matchLabels": {"app": NAME}},
            "template": {
                "metadata": {"labels": LABELS},
                "spec": {
                    "nodeSelector": {"nvidia.com/gpu.present": "true"},
                    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
                    "containers": [
                        {
                            "name": "nvidia-dcgm-exporter",
                            "image": IMAGE,
                            "ports": [{"name": "metrics", "containerPort": PORT, "protocol": "TCP"}],
                            "readinessProbe": probe,
                        }
                    ],
                },
            },
        },
    }


def ensure(api: client.ApiClient) -> None:
    """Create the namespace and the DaemonSet unless they exist."""
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    for create in (
        lambda: core.create_namespace(cast(Any, {"metadata": {"name": NAMESPACE}})),
        lambda: apps.create_namespaced_daemon_set(NAMESPACE, cast(Any, daemonset())),
    ):
        try:
            create()
        except ApiException as error:
            if error.status != 409:
                raise
