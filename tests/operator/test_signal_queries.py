"""The engine-signal terms of the Prometheus round: the real metric names per engine, both dcgm label layouts,
and per-pod capacity samples only from pods that had requests waiting the whole window."""

from __future__ import annotations

from decimal import Decimal

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
