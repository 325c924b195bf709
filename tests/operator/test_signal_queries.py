"""The engine-signal terms of the Prometheus round: the real metric names per engine, both dcgm label layouts,
and per-pod capacity samples only from pods that had requests waiting the whole window."""

from __future__ import annotations

from decimal import Decimal

import pytest

from crossover.adapters.prometheus_metrics import families, reading
from crossover.adapters.signals import POD_INPUT, POD_OUTPUT, POD_QUEUE_FLOOR, pod_rates
from crossover.api.v1alpha1 import EngineKind


def test_signal_queries_name_every_engines_metrics_and_both_dcgm_layouts() -> None:
    terms = {t.key: t.expr for t in families("30s", 3600)["signals"]}
    assert "vllm:kv_cache_usage_perc" in terms["kvCacheUsage"]
    assert "vllm:gpu_cache_usage_perc" in terms["kvCacheUsage"]  # vLLM before 0.9.2
    assert "sglang:token_usage" in terms["kvCacheUsage"]
    for name in ("vllm:num_requests_waiting", "sglang:num_queue_reqs", "tgi_queue_size"):
        assert name in terms["requestsWaiting"] and name in terms["requestsWaitingGrowthPerSecond"]
    assert "sglang:time_to_first_token_seconds_bucket" in terms["ttftP95Seconds"]
    gpu = terms["gpuUtilization"]
    assert '"exported_pod", "(.+)"' in gpu and '"exported_namespace", "(.+)"' in gpu  # default scrape
    assert "on (namespace, pod)" in gpu  # honorLabels: pod/namespace as they are


def test_capacity_samples_come_only_from_pods_queued_throughout_the_window() -> None:
    values = {
        "router.seen/input": Decimal(1_800_000_000),
        "router.seen/output": Decimal(1_800_000_000),
        "router.rate/input": Decimal(100),
        "router.rate/output": Decimal(10),
        f"{POD_INPUT}/a": Decimal(3000),
        f"{POD_OUTPUT}/a": Decimal(1800),
        f"{POD_QUEUE_FLOOR}/a": Decimal(2),
        f"{POD_INPUT}/b": Decimal(500),
        f"{POD_OUTPUT}/b": Decimal(100),
        f"{POD_QUEUE_FLOOR}/b": Decimal(0),  # emptied at some point: not at its limit
        f"{POD_OUTPUT}/c": Decimal("NaN"),
    }
    assert [p.pod for p in pod_rates(values)] == ["a", "b"]
    assert reading(values, EngineKind.VLLM, "30s").capacity_samples == ((Decimal(3000), Decimal(1800)),)


@pytest.mark.parametrize(("rate_window", "sample_window"), [("120s", "60s"), ("6s", "3s"), ("3s", "2s")])
def test_capacity_samples_are_judged_over_half_the_rate_window(rate_window: str, sample_window: str) -> None:
    # an under-declared fleet queues only until the saturation guard adds a replica: a whole rate window of
    # queueing rarely happens, so the pod terms look at half of it (the demand terms keep the whole window)
    terms = {t.key: t.expr for t in families(rate_window, 3600)["pods"]}
    assert terms, "no per-pod terms"
    for expr in terms.values():
        assert f"[{sample_window}]" in expr and f"[{rate_window}]" not in expr, expr
    demand = {t.key: t.expr for t in families(rate_window, 3600)["demand"]}
    assert f"[{rate_window}]" in demand["router.rate"]
