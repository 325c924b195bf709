"""A dcgm-exporter emulator (a test part, not NVIDIA's exporter): one per GPU node, GPU utilisation per GPU.

The real exporter runs as a DaemonSet pod on every GPU node, reads each GPU through DCGM and, with the kubelet's
pod-resources API, labels each GPU's series with the `pod`, `namespace` and `container` using it. It is its own
scrape target, so Prometheus (unless `honor_labels`) renames those to `exported_pod` / `exported_namespace`, the
target's own pod and namespace being the exporter's.

Here the "GPU" is the emulated engine on it: the pod harness writes which engine pods hold which GPUs of which node
(an assignments file), and on every scrape this exporter reads each engine's running batch from its /metrics and
reports the NVML utilisation the measured curve gives for that batch (crossover_lab.emulators.gpu).
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from crossover_lab.emulators.gpu import utilization_percent

log = logging.getLogger(__name__)

UTIL_METRIC = "DCGM_FI_DEV_GPU_UTIL"
RUNNING_METRICS = ("vllm:num_requests_running", "sglang:num_running_reqs", "tgi_batch_current_size")
MODEL_NAMES = {"h100-80gb": "NVIDIA H100 80GB HBM3", "a100-80gb": "NVIDIA A100-SXM4-80GB", "l4": "NVIDIA L4"}


@dataclass(frozen=True)
class Assignment:
    """GPUs of one node held by one engine pod, and where that engine's metrics are."""

    node: str
    gpus: tuple[int, ...]
    namespace: str
    pod: str
    container: str
    metrics_url: str

    @classmethod
    def from_json(cls, item: dict[str, Any]) -> Assignment:
        return cls(
            node=str(item["node"]),
            gpus=tuple(int(g) for g in item["gpus"]),
            namespace=str(item["namespace"]),
            pod=str(item["pod"]),
            container=str(item.get("container", "engine")),
            metrics_url=str(item["metrics_url"]),
        )


def read_assignments(path: Path, node: str) -> list[Assignment]:
    try:
        items = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    return [a for a in (Assignment.from_json(i) for i in items) if a.node == node]


def running_batch(metrics_text: str) -> float | None:
    """The engine's running batch from its exposition text (vLLM, SGLang or TGI names); None if absent."""
    total: float | None = None
    for family in text_string_to_metric_families(metrics_text):
        if family.name in RUNNING_METRICS:
            for sample in family.samples:
                total = (total or 0.0) + sample.value
    return total


def exposition(
    node: str, gpu_count: int, gpu_type: str, assignments: list[Assignment], running: dict[str, float]
) -> str:
    """DCGM_FI_DEV_GPU_UTIL for every GPU of the node, in the Prometheus text format, labelled as dcgm-exporter does.

    `running` maps "namespace/pod" to that engine's running batch; a GPU with no engine, or whose engine did not
    answer, reads 0 (an idle GPU), and only GPUs held by a pod carry pod labels.
    """
    held: dict[int, Assignment] = {gpu: a for a in assignments for gpu in a.gpus}
    model = MODEL_NAMES.get(gpu_type, gpu_type)
    lines = [f"# HELP {UTIL_METRIC} GPU utilization (in %).", f"# TYPE {UTIL_METRIC} gauge"]
    for gpu in range(gpu_count):
        labels = {
            "gpu": str(gpu),
            "UUID": f"GPU-{node}-{gpu:02d}",
            "device": f"nvidia{gpu}",
            "modelName": model,
            "Hostname": node,
        }
        value = 0.0
        owner = held.get(gpu)
        if owner is not None:
            labels.update({"container": owner.container, "namespace": owner.namespace, "pod": owner.pod})
            value = utilization_percent(running.get(f"{owner.namespace}/{owner.pod}", 0.0))
        rendered = ",".join(f'{k}="{v}"' for k, v in labels.items())
        lines.append(f"{UTIL_METRIC}{{{rendered}}} {round(value)}")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class DCGMEmulatorConfig:
    node: str
    assignments: Path
    gpu_count: int = 4
    gpu_type: str = "h100-80gb"


def build_dcgm_app(config: DCGMEmulatorConfig) -> web.Application:
    app = web.Application()
    timeout = aiohttp.ClientTimeout(total=0.5)

    async def batch(session: aiohttp.ClientSession, assignment: Assignment) -> tuple[str, float]:
        key = f"{assignment.namespace}/{assignment.pod}"
        try:
            async with session.get(assignment.metrics_url) as response:
                text = await response.text()
        except (aiohttp.ClientError, TimeoutError, OSError):
            return key, 0.0  # an engine that does not answer is not running kernels
        return key, running_batch(text) or 0.0

    async def scrape(_: web.Request) -> web.Response:
        assignments = read_assignments(config.assignments, config.node)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            running = dict(await asyncio.gather(*(batch(session, a) for a in assignments)))
        text = exposition(config.node, config.gpu_count, config.gpu_type, assignments, running)
        return web.Response(text=text, content_type="text/plain", charset="utf-8")

    async def health(_: web.Request) -> web.Response:
        return web.Response(text="")

    app.router.add_get("/metrics", scrape)
    app.router.add_get("/health", health)
    return app
