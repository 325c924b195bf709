"""The whole loop in the lab: router and engine metrics -> Prometheus -> operator -> Deployment scale -> pods."""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
from kubernetes.client.exceptions import ApiException

from crossover.contracts import (
    API_CREDENTIALS_LABEL,
    API_VERSION,
    BACKEND_LABEL,
    COMPONENT_LABEL,
    DIRECTION_LABEL,
    ROUTER_PORT,
    ROUTER_TOKENS,
    Backend,
    Component,
    Direction,
    engine_name,
    selector_string,
    total,
)
from crossover_lab import processes
from crossover_lab import prometheus as lab_prometheus
from crossover_lab.config import local_address
from tests.fixtures.lab import HostedAPI, Lab, Release
from tests.lab.support import condition, create, eventually, get

pytestmark = pytest.mark.lab

# the lab's engines as fast as these tests declare them (the default hardware is an H100 with a 90 s cold start)
LAB_HARDWARE = {
    "lab.crossover.dev/prefill-tps": "8000",
    "lab.crossover.dev/decode-tps": "800",
    "lab.crossover.dev/cold-start-seconds": "3",
}


def small_manifest(name: str, namespace: str, api: HostedAPI, **changes: Any) -> dict[str, Any]:
    """A fast lab-sized deployment: 3 s cold start, short windows, break-even well below the test's load."""
    spec: dict[str, Any] = {
        "model": {"name": "lab/llama", "servedName": "lab-llama"},
        "engine": {
            "kind": "vllm",
            "image": "vllm/vllm-openai:v0.11.0",
            "gpu": {"resourceName": "nvidia.com/gpu", "count": changes.pop("gpus", 1)},
            "coldStartSeconds": 3,
            "capacity": {
                "prefillTokensPerSecond": "8000",
                "decodeTokensPerSecond": changes.pop("declared_decode", "800"),
                **({"calibration": changes.pop("calibration")} if "calibration" in changes else {}),
            },
        },
        "replicas": {"min": changes.pop("min_replicas", 0), "max": changes.pop("max_replicas", 4)},
        "selfHosted": {"pricing": {"rented": {"pricePerGPUHour": "2.50"}}, "overheadPerMonth": "0"},
        "api": {
            "baseURL": api.base_url,
            "model": "hosted-small",
            "credentialsSecretRef": {"name": "provider", "key": "apiKey"},
            "pricing": {"inputPerMillion": "3.00", "outputPerMillion": "15.00"},
        },
        "policy": {
            "mode": changes.pop("mode", "CostOptimized"),
            "targetUtilization": "0.8",
            "breakEvenMargin": "0.05",
            "scaleUpStabilizationSeconds": 0,
            "scaleDownStabilizationSeconds": changes.pop("down_window", 8),
            "metricsMaxAgeSeconds": 15,
        },
    }
    if "slo" in changes:
        spec["slo"] = changes.pop("slo")
    annotations = {**LAB_HARDWARE, **changes.pop("hardware", {})}
    assert not changes, changes
    return {
        "apiVersion": API_VERSION,
        "kind": "InferenceDeployment",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "annotations": annotations,
        },
        "spec": spec,
    }


@dataclass
class Load:
    """Constant-rate chat completions against a router pod, from a thread; counts outcomes."""

    url: str
    rate_per_second: float
    prompt_tokens: int = 200
    output_tokens: int = 100
    outcomes: Counter[int] = field(default_factory=Counter)
    tokens: Counter[str] = field(default_factory=Counter)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _one(self) -> None:
        body = {
            "model": "lab-llama",
            "messages": [{"role": "user", "content": "abc " * self.prompt_tokens}],
            "max_tokens": self.output_tokens,
        }
        try:
            response = requests.post(self.url, json=body, timeout=60)
            self.outcomes[response.status_code] += 1
            if response.status_code == 200:
                usage = response.json()["usage"]
                self.tokens["input"] += usage["prompt_tokens"]
                self.tokens["output"] += usage["completion_tokens"]
        except requests.RequestException:
            self.outcomes[0] += 1

    def _run(self) -> None:
        with ThreadPoolExecutor(max_workers=64) as pool:
            next_at = time.monotonic()
            while not self._stop.is_set():
                pool.submit(self._one)
                next_at += 1 / self.rate_per_second
                time.sleep(max(0.0, next_at - time.monotonic()))

    def start(self) -> Load:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(90)

    @property
    def failed(self) -> int:
        return sum(n for status, n in self.outcomes.items() if status != 200)


def deploy(lab: Lab, namespace: str, api: HostedAPI, name: str, **changes: Any) -> str:
    """Secret + InferenceDeployment; returns the router pod's chat URL once it is Ready."""
    opted_in = {"name": "provider", "labels": {API_CREDENTIALS_LABEL: "true"}}
    try:
        lab.core.create_namespaced_secret(namespace, {"metadata": opted_in, "stringData": {"apiKey": api.key}})  # type: ignore[arg-type]
    except ApiException as error:
        if error.status != 409:  # a second deployment in the namespace shares the Secret
            raise
    create(lab, small_manifest(name, namespace, api, **changes))

    def router() -> str | None:
        pods = lab.core.list_namespaced_pod(namespace, label_selector=selector_string(name, Component.ROUTER)).items
        for pod in pods:
            if any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or []):
                return f"http://{local_address(pod.status.pod_ip)}:{ROUTER_PORT}/v1/chat/completions"
        return None

    return eventually(router, timeout=60)


def status(lab: Lab, namespace: str, name: str) -> dict[str, Any]:
    return dict(get(lab, namespace, name).get("status") or {})


def engine_replicas(lab: Lab, namespace: str, name: str) -> int:
    return int(lab.apps.read_namespaced_deployment(engine_name(name), namespace).spec.replicas or 0)


def test_demand_above_break_even_scales_up_from_zero_then_back_down(
    lab: Lab, crossover_release: Release, hosted_api: HostedAPI, namespace: str
) -> None:
    url = deploy(lab, namespace, hosted_api, "up")
    # 2 req/s x (200 in + 100 out): about $16/h on the API against $2.50/h for one replica; needs one replica
    load = Load(url, rate_per_second=2).start()
    try:
        eventually(lambda: status(lab, namespace, "up").get("replicas", {}).get("ready", 0) >= 1, timeout=90)
        assert engine_replicas(lab, namespace, "up") == 1

        def self_served() -> bool:  # the router sends traffic to the engine once it is ready
            query = (
                f'sum({total(ROUTER_TOKENS)}{{namespace="{namespace}",{BACKEND_LABEL}="{Backend.SELF}",'
                f'{DIRECTION_LABEL}="{Direction.OUTPUT}"}})'
            )
            result = requests.get(f"{lab.prometheus_url}/api/v1/query", params={"query": query}, timeout=5).json()
            values = result["data"]["result"]
            return bool(values) and float(values[0]["value"][1]) > 0

        eventually(self_served, timeout=60)
        spill = eventually(
            lambda: (
                (s := status(lab, namespace, "up")).get("routing", {}).get("spillFraction") in ("0", "0.0000") and s
            ),
            timeout=60,
        )
        assert condition(get(lab, namespace, "up"), "Spilling")["status"] == "False", spill
    finally:
        load.stop()
    assert load.failed == 0, load.outcomes
    # demand falls below break-even (0.2 req/s: ~$1.60/h on the API) but keeps coming: after the 8 s down-window
    # the engine goes back to zero while requests are in flight, and none fails (they move to the API)
    trickle = Load(url, rate_per_second=0.2).start()
    try:
        eventually(lambda: engine_replicas(lab, namespace, "up") == 0, timeout=90)
        eventually(
            lambda: (
                not lab.core.list_namespaced_pod(
                    namespace, label_selector=f"{COMPONENT_LABEL}={Component.ENGINE}"
                ).items
            ),
            timeout=60,
        )
        time.sleep(6)  # requests after the last pod left
    finally:
        trickle.stop()
    assert trickle.failed == 0 and sum(trickle.outcomes.values()) >= 3, trickle.outcomes
    history = status(lab, namespace, "up")["history"]
    assert [h["replicas"] for h in history if h["action"] != "Hold"][-1] == 0


def test_gpus_exhausted_reports_capacity_limited_and_spills_without_failures(
    lab: Lab, crossover_release: Release, hosted_api: HostedAPI, namespace: str
) -> None:
    # each replica takes a whole node (4 GPUs): only `nodes` fit; the load needs more
    url = deploy(lab, namespace, hosted_api, "big", gpus=lab.cfg.gpus_per_node, max_replicas=lab.cfg.nodes + 2)
    # 20 req/s x (200 in + 100 out) keeps 3 replicas busy: a third beats spilling but cannot be scheduled
    load = Load(url, rate_per_second=20, prompt_tokens=200, output_tokens=100).start()
    try:

        def limited() -> dict[str, Any] | None:
            found = condition(get(lab, namespace, "big"), "CapacityLimited")
            return found if found and found["status"] == "True" else None

        found = eventually(limited, timeout=120)
        current = status(lab, namespace, "big")
        assert current["replicas"]["unschedulable"] >= 1, current["replicas"]
        assert float(current["routing"]["spillFraction"]) > 0
        assert "cannot be scheduled" in found["message"]
    finally:
        load.stop()
    assert load.failed == 0, load.outcomes


def test_prometheus_unreachable_holds_replicas_and_says_so(
    lab: Lab, crossover_release: Release, hosted_api: HostedAPI, namespace: str
) -> None:
    url = deploy(lab, namespace, hosted_api, "hold")
    load = Load(url, rate_per_second=2).start()
    try:
        eventually(lambda: engine_replicas(lab, namespace, "hold") >= 1, timeout=90)
        held = engine_replicas(lab, namespace, "hold")
        processes.stop(lab.cfg.state, lab_prometheus.NAME)
        try:

            def unavailable() -> dict[str, Any] | None:
                found = condition(get(lab, namespace, "hold"), "MetricsAvailable")
                return found if found and found["status"] == "False" else None

            eventually(unavailable, timeout=30)
            for _ in range(10):  # several reconciles with no metrics: nothing moves
                assert engine_replicas(lab, namespace, "hold") == held
                time.sleep(1)
            assert status(lab, namespace, "hold")["lastDecision"]["reason"] == "MetricsUnavailable"
        finally:
            lab_prometheus.start(lab.cfg)  # restarts on the configuration the lab wrote
        eventually(lambda: condition(get(lab, namespace, "hold"), "MetricsAvailable")["status"] == "True", timeout=60)
    finally:
        load.stop()


def test_advisory_mode_recommends_but_never_scales(
    lab: Lab, crossover_release: Release, hosted_api: HostedAPI, namespace: str
) -> None:
    url = deploy(lab, namespace, hosted_api, "advice", mode="Advisory")
    load = Load(url, rate_per_second=2).start()
    try:
        eventually(  # what it would do
            lambda: (d := status(lab, namespace, "advice").get("lastDecision")) and d["replicas"] >= 1 and d,
            timeout=60,
        )
        time.sleep(3)
        assert engine_replicas(lab, namespace, "advice") == 0  # what it does
        assert status(lab, namespace, "advice")["replicas"]["desired"] == 0  # and what it says it does
    finally:
        load.stop()
    assert load.failed == 0


def test_operator_restart_mid_scale_resumes_without_flapping(
    lab: Lab, crossover_release: Release, hosted_api: HostedAPI, namespace: str
) -> None:
    url = deploy(lab, namespace, hosted_api, "restart", down_window=30)
    load = Load(url, rate_per_second=2).start()
    seen: list[int] = []
    try:
        eventually(lambda: engine_replicas(lab, namespace, "restart") >= 1, timeout=90)
        load.stop()  # demand gone: a fresh operator with no memory would be tempted to scale down at once
        operator_pods = lab.core.list_namespaced_pod(crossover_release.namespace).items
        for pod in operator_pods:
            lab.core.delete_namespaced_pod(pod.metadata.name, crossover_release.namespace)

        def new_operator_running() -> bool:
            pods = lab.core.list_namespaced_pod(crossover_release.namespace).items
            fresh = [p for p in pods if p.metadata.name not in {o.metadata.name for o in operator_pods}]
            return any(any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or []) for p in fresh)

        eventually(new_operator_running, timeout=60)
        for _ in range(15):  # inside the 30 s down-window: the restarted operator must hold
            seen.append(engine_replicas(lab, namespace, "restart"))
            time.sleep(1)
        assert min(seen) >= 1, seen
        restarted = status(lab, namespace, "restart")["lastDecision"]
        assert restarted["replicas"] >= 1
    finally:
        load.stop()
