"""The Metrics port on Prometheus (prometheus-api-client): demand, API spend and engine signals.

Series are selected by the `namespace` and `pod` labels that Prometheus attaches from the scrape target
(kube-prometheus PodMonitors and the lab's file-based discovery both do): router pods are `<name>-router-*`,
engine pods `<name>-engine-*`. Demand comes from the router, before it splits traffic; the engine's own
counters are the fallback when no router series exist. No series, or no Prometheus, means unknown demand.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

import requests
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from urllib3.util.retry import Retry

from costpolicy.snapshot import Demand
from crossover.api.v1alpha1 import EngineKind, InferenceDeploymentSpec
from crossover.contracts import (
    BACKEND_LABEL,
    DIRECTION_LABEL,
    OUTCOME_LABEL,
    ROUTER_API_SPEND,
    ROUTER_REQUESTS,
    ROUTER_TOKENS,
    Backend,
    Direction,
    Outcome,
    engine_name,
    router_name,
    total,
)
from crossover.reconcile.ports import MetricsReading

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineMetricNames:
    prompt_tokens: str
    generation_tokens: str
    waiting: str | None
    kv_cache: str | None
    ttft_bucket: str | None


ENGINE_METRICS: dict[EngineKind, EngineMetricNames] = {
    EngineKind.VLLM: EngineMetricNames(
        "vllm:prompt_tokens_total",
        "vllm:generation_tokens_total",
        "vllm:num_requests_waiting",
        "vllm:kv_cache_usage_perc",
        "vllm:time_to_first_token_seconds_bucket",
    ),
    EngineKind.SGLANG: EngineMetricNames(
        "sglang:prompt_tokens_total", "sglang:generation_tokens_total", "sglang:num_queue_reqs", None, None
    ),
    # TGI exposes generated tokens only as a histogram; its prompt length comes from the input-length histogram
    EngineKind.TGI: EngineMetricNames(
        "tgi_request_input_length_sum", "tgi_request_generated_tokens_sum", "tgi_queue_size", None, None
    ),
}


class PrometheusMetrics:
    def __init__(self, url: str, rate_window_seconds: int = 120, timeout_seconds: int = 5) -> None:
        self._prom = PrometheusConnect(
            url=url, disable_ssl=True, timeout=timeout_seconds, retry=Retry(total=0, connect=0, read=0)
        )
        self._window = f"{rate_window_seconds}s"

    def read(self, namespace: str, name: str, spec: InferenceDeploymentSpec, now: datetime) -> MetricsReading:
        router = f'namespace="{namespace}",pod=~"{router_name(name)}-.+"'
        engine = f'namespace="{namespace}",pod=~"{engine_name(name)}-.+"'
        names = ENGINE_METRICS[spec.engine.kind]
        try:
            demand, observed_at = self._router_demand(router)
            if demand is None:
                demand, observed_at = self._engine_demand(engine, names)
            if demand is None:
                return MetricsReading(None, None, error="no router or engine series in Prometheus")
            spend = self._scalar(f"sum(increase({total(ROUTER_API_SPEND)}{{{router}}}[{_month_so_far(now)}s]))")
            throttled = self._scalar(
                f'sum(increase({total(ROUTER_REQUESTS)}{{{router},{BACKEND_LABEL}="{Backend.API}",'
                f'{OUTCOME_LABEL}="{Outcome.THROTTLED}"}}[{self._window}]))'
            )
            signals = self._signals(engine, names)
        except (requests.RequestException, PrometheusApiClientException, ValueError) as error:
            log.warning("Prometheus query failed: %s", type(error).__name__)
            return MetricsReading(None, None, error=f"Prometheus unreachable or failing ({type(error).__name__})")
        return MetricsReading(
            demand=demand,
            observed_at=observed_at,
            api_spend_this_month=spend,
            api_throttled=throttled is not None and throttled > 0,
            signals=signals,
        )

    def _router_demand(self, router: str) -> tuple[Demand | None, datetime | None]:
        seen = self._scalar(f"max(timestamp({total(ROUTER_TOKENS)}{{{router}}}))")
        if seen is None:
            return None, None
        tokens = f'rate({total(ROUTER_TOKENS)}{{{router},{DIRECTION_LABEL}="%s"}}[{self._window}])'
        inp = self._scalar(f"sum({tokens % Direction.INPUT})") or Decimal(0)
        out = self._scalar(f"sum({tokens % Direction.OUTPUT})") or Decimal(0)
        return Demand(inp, out), _time(seen)

    def _engine_demand(self, engine: str, names: EngineMetricNames) -> tuple[Demand | None, datetime | None]:
        seen = self._scalar(f"max(timestamp({names.generation_tokens}{{{engine}}}))")
        if seen is None:
            return None, None
        inp = self._scalar(f"sum(rate({names.prompt_tokens}{{{engine}}}[{self._window}]))") or Decimal(0)
        out = self._scalar(f"sum(rate({names.generation_tokens}{{{engine}}}[{self._window}]))") or Decimal(0)
        return Demand(inp, out), _time(seen)

    def _signals(self, engine: str, names: EngineMetricNames) -> dict[str, Decimal]:
        queries = {"gpuUtilization": f"avg(DCGM_FI_DEV_GPU_UTIL{{{engine}}})"}
        if names.waiting:
            queries["requestsWaiting"] = f"sum({names.waiting}{{{engine}}})"
        if names.kv_cache:
            queries["kvCacheUsage"] = f"avg({names.kv_cache}{{{engine}}})"
        if names.ttft_bucket:
            queries["ttftP95Seconds"] = (
                f"histogram_quantile(0.95, sum by (le) (rate({names.ttft_bucket}{{{engine}}}[{self._window}])))"
            )
        out: dict[str, Decimal] = {}
        for key, query in queries.items():
            value = self._scalar(query)
            if value is not None:
                out[key] = value
        return out

    def _scalar(self, query: str) -> Decimal | None:
        """First sample of an instant query as a Decimal; None for no data or NaN."""
        result = self._prom.custom_query(query)
        if not result:
            return None
        try:
            value = Decimal(str(result[0]["value"][1]))
        except (InvalidOperation, KeyError, IndexError):
            return None
        return value if value.is_finite() else None


def _time(unix_seconds: Decimal) -> datetime:
    return datetime.fromtimestamp(float(unix_seconds), tz=UTC)


def _month_so_far(now: datetime) -> int:
    start = now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return max(60, int((now - start).total_seconds()))
