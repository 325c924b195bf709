"""The Prometheus adapter against a real Prometheus scraping pods' series with the labels the operator sets.

A small exporter plays the pods: each "pod" is a scrape target whose target labels are the pod's labels as a
PodMonitor (podTargetLabels) or kubernetes_sd attaches them. Needs the lab's Prometheus build (`make lab-deps`),
not the lab's control plane: Prometheus listens on a free loopback port.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from crossover.adapters.prometheus_metrics import PrometheusMetrics, families
from crossover.api.v1alpha1 import InferenceDeploymentSpec
from crossover.contracts import (
    PROMETHEUS_COMPONENT_LABEL,
    PROMETHEUS_INSTANCE_LABEL,
    Component,
)
from crossover_lab import prometheus as lab_prometheus
from tests.lab.support import eventually, http_server

pytestmark = pytest.mark.lab

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "llama-8b-h100-vs-haiku.yaml"
SPEC = InferenceDeploymentSpec.model_validate(yaml.safe_load(EXAMPLE.read_text())["spec"])
STARTED = time.time()
_FIRST_SCRAPE_MS: list[int] = []


def frozen_ms() -> int:
    """The fresh router's one sample: stamped at the first scrape, not at import. In a full run this module is
    imported long before its tests run, and a sample older than Prometheus' 5-minute lookback is no series at all
    (the "absent" case), not a fresh one."""
    if not _FIRST_SCRAPE_MS:
        _FIRST_SCRAPE_MS.append(int(time.time() * 1000))
    return _FIRST_SCRAPE_MS[0]


def router_tokens(input_tps: float, output_tps: float) -> Callable[[float], str]:
    def page(now: float) -> str:
        elapsed = now - STARTED
        return "".join(
            f'crossover_router_tokens_total{{direction="{d}",backend="self",outcome="ok"}} {tps * elapsed}\n'
            for d, tps in (("input", input_tps), ("output", output_tps))
        )

    return page


def engine_tokens(prompt_tps: float, generation_tps: float) -> Callable[[float], str]:
    def page(now: float) -> str:
        elapsed = now - STARTED
        return (
            f'vllm:prompt_tokens_total{{model_name="m"}} {prompt_tps * elapsed}\n'
            f'vllm:generation_tokens_total{{model_name="m"}} {generation_tps * elapsed}\n'
        )

    return page


def fixed(text: str) -> Callable[[float], str]:
    return lambda _now: text


@dataclass(frozen=True)
class Pod:
    namespace: str
    name: str
    owner: str  # the InferenceDeployment, as the operator labels the pod
    component: Component
    page: Callable[[float], str]


PODS = [
    # `llama` and `llama-router`: a name-prefix regex for llama's routers (llama-router-.+) matches both
    Pod("team", "llama-router-7f9c4-a1b2c", "llama", Component.ROUTER, router_tokens(100, 10)),
    Pod("team", "llama-engine-5d6e7-x1y2z", "llama", Component.ENGINE, engine_tokens(50, 5)),
    Pod("team", "llama-router-router-6b8d9-q1w2e", "llama-router", Component.ROUTER, router_tokens(1000, 400)),
    Pod("team", "llama-router-engine-4c5a6-r1t2y", "llama-router", Component.ENGINE, engine_tokens(900, 300)),
    # same name in another namespace
    Pod("other", "llama-router-1a2b3-u1i2o", "llama", Component.ROUTER, router_tokens(7, 3)),
    # a fresh router: its counters have exactly one sample
    Pod(
        "team",
        "fresh-router-1-a",
        "fresh",
        Component.ROUTER,
        lambda _now: (
            f'crossover_router_tokens_total{{direction="input",backend="self",outcome="ok"}} 10 {frozen_ms()}\n'
            f'crossover_router_tokens_total{{direction="output",backend="self",outcome="ok"}} 4 {frozen_ms()}\n'
        ),
    ),
    Pod("team", "fresh-engine-1-b", "fresh", Component.ENGINE, engine_tokens(0, 0)),
    # counters that went NaN
    Pod(
        "team",
        "nan-router-1-a",
        "nan",
        Component.ROUTER,
        fixed(
            'crossover_router_tokens_total{direction="input",backend="self",outcome="ok"} NaN\n'
            'crossover_router_tokens_total{direction="output",backend="self",outcome="ok"} NaN\n'
        ),
    ),
    # no router series: the engine's counters, idle, are a known zero
    Pod("team", "quiet-engine-1-a", "quiet", Component.ENGINE, engine_tokens(0, 0)),
]


@dataclass(frozen=True)
class Prometheus:
    url: str

    def queries_served(self) -> float:
        total = 0.0
        for line in requests.get(f"{self.url}/metrics", timeout=5).text.splitlines():
            if line.startswith("prometheus_http_requests_total{") and 'handler="/api/v1/query' in line:
                total += float(line.rsplit(" ", 1)[1])
        return total


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    binary = lab_prometheus.binary()  # the lab's own build (make lab-deps)
    pages = {f"/{i}": pod.page for i, pod in enumerate(PODS)}

    with http_server(lambda path: ("text/plain; version=0.0.4", pages[path](time.time()).encode())) as exporter:
        home = tmp_path_factory.mktemp("prometheus")
        targets = [
            {
                "targets": [f"127.0.0.1:{exporter.server_address[1]}"],
                "labels": {
                    "__metrics_path__": f"/{i}",
                    "namespace": pod.namespace,
                    "pod": pod.name,
                    PROMETHEUS_INSTANCE_LABEL: pod.owner,
                    PROMETHEUS_COMPONENT_LABEL: pod.component.value,
                },
            }
            for i, pod in enumerate(PODS)
        ]
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
            "scrape_configs": [{"job_name": "pods", "static_configs": targets}],
        }
        (home / "prometheus.yml").write_text(yaml.safe_dump(config))
        port = _free_port()
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={home / 'prometheus.yml'}",
                f"--storage.tsdb.path={home / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=(home / "log").open("w"),
        )
        url = f"http://127.0.0.1:{port}"
        try:

            def enough_samples() -> bool:
                query = "min(count_over_time(vllm:generation_tokens_total[1m]))"
                try:
                    result = requests.get(f"{url}/api/v1/query", params={"query": query}, timeout=2).json()
                except requests.RequestException:
                    return False
                values = result.get("data", {}).get("result", [])
                return bool(values) and float(values[0]["value"][1]) >= 8  # older than the rate window

            eventually(enough_samples, timeout=60)
            yield Prometheus(url)
        finally:
            process.terminate()
            process.wait(timeout=10)


def read(metrics: PrometheusMetrics, namespace: str, name: str) -> Any:
    return metrics.read(namespace, name, SPEC, datetime.now(UTC))


def test_series_are_selected_by_the_operator_labels_never_by_name_prefix(prometheus: Prometheus) -> None:
    """Issue 17 case 12: `llama` counts its own router, not the pods of `llama-router` nor of another namespace."""
    metrics = PrometheusMetrics(prometheus.url, rate_window_seconds=5)
    llama = read(metrics, "team", "llama").demand
    assert llama is not None
    assert float(llama.input_tps) == pytest.approx(100, rel=0.15)
    assert float(llama.output_tps) == pytest.approx(10, rel=0.15)
    other = read(metrics, "team", "llama-router").demand
    assert other is not None and float(other.input_tps) == pytest.approx(1000, rel=0.15)
    elsewhere = read(metrics, "other", "llama").demand
    assert elsewhere is not None and float(elsewhere.input_tps) == pytest.approx(7, rel=0.15)


@pytest.mark.parametrize(
    ("name", "reason"),
    [("fresh", "fewer than two samples"), ("nan", "NaN"), ("absent", "no router or engine series")],
)
def test_a_rate_that_cannot_be_read_is_unknown_demand_never_zero(
    prometheus: Prometheus, name: str, reason: str
) -> None:
    """Issue 17 case 3: a timestamp with an empty or NaN rate() is unknown, with the reason."""
    result = read(PrometheusMetrics(prometheus.url, rate_window_seconds=5), "team", name)
    assert result.demand is None
    assert result.error is not None and reason in result.error


def test_idle_engine_counters_are_a_known_zero(prometheus: Prometheus) -> None:
    result = read(PrometheusMetrics(prometheus.url, rate_window_seconds=5), "team", "quiet")
    assert result.demand is not None
    assert (result.demand.input_tps, result.demand.output_tps) == (0, 0)


def test_one_round_of_queries_serves_every_resource_until_the_interval_passes(prometheus: Prometheus) -> None:
    clock = [0.0]
    metrics = PrometheusMetrics(prometheus.url, rate_window_seconds=5, round_seconds=30, clock=lambda: clock[0])
    before = prometheus.queries_served()
    for _ in range(3):
        for namespace, name in [("team", "llama"), ("team", "llama-router"), ("other", "llama"), ("team", "nan")]:
            read(metrics, namespace, name)
        clock[0] += 10
    asked = prometheus.queries_served() - before
    per_round = len(families("5s", 60))
    assert asked == per_round, "one round for every resource and all three reads within the interval"
    clock[0] += 1  # 31 s after the first round
    read(metrics, "team", "llama")  # this read asks the next round
    assert prometheus.queries_served() - before == 2 * per_round


def test_prometheus_down_is_unknown_for_every_resource_and_retried_soon() -> None:
    clock = [0.0]
    metrics = PrometheusMetrics(f"http://127.0.0.1:{_free_port()}", round_seconds=30, clock=lambda: clock[0])
    first = read(metrics, "team", "llama")
    assert first.demand is None and first.error is not None and "unreachable" in first.error
    assert metrics.rounds == 1
    read(metrics, "team", "other")
    assert metrics.rounds == 1  # the failed round answers everyone until it is retried
    clock[0] += 6
    read(metrics, "team", "llama")
    assert metrics.rounds == 2  # retried after seconds, not a whole interval
