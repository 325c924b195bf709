"""The Metrics port on Prometheus (prometheus-api-client): one round of queries per interval for every resource.

Why a round: asking Prometheus six to eight queries per reconcile is over 200 queries a second at 1,000 resources
and a 30 s interval. Instead each term (router token rates, spend, throttling, engine token rates, signals) is asked
once per round for all resources, grouped by the labels the operator sets on its pods as Prometheus sees them
(`namespace`, `crossover_dev_inference_deployment`, `app_kubernetes_io_component`: a PodMonitor's podTargetLabels
and a kubernetes_sd labelmap both sanitise `crossover.dev/inference-deployment` this way). The terms of one family
travel as one PromQL query (`or` of the terms, each tagged with a `crossover_series` label), so a round is a fixed
number of queries whatever the number of resources. Each reconcile reads its slice of the latest round.

The reconcile that finds the round past its interval asks the next one and plans with it, so a decision is never
an interval behind (with a handful of resources every reconcile is that one). Reconciles that arrive while it is
being asked read the last round (if it is under two intervals old) instead of all waiting: a round over 1,000
resources takes a good part of a second, and those waits made the operator's slowest reconciles. A reading carries
the time of its samples, so a round served while the next is asked is as old as it says.

Selection is by those exact labels, never by pod-name prefixes (a resource `llama` must not count the pods of a
resource `llama-router`). Demand comes from the router, before it splits traffic; the engine's own counters are the
fallback when no router series exist. Unknown is never zero: no series, no Prometheus, a failed round, and a rate
that is empty (fewer than two samples in the window), NaN or infinite all make demand unknown, with the reason.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import requests
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from urllib3.util.retry import Retry

from costpolicy.money import ZERO
from costpolicy.snapshot import Demand
from crossover.adapters.signals import POD_LABEL, pod_rates, signals_from
from crossover.adapters.signals import queries as signal_queries
from crossover.api.v1alpha1 import EngineKind, InferenceDeploymentSpec
from crossover.contracts import (
    BACKEND_LABEL,
    DIRECTION_LABEL,
    OUTCOME_LABEL,
    PROMETHEUS_COMPONENT_LABEL,
    PROMETHEUS_INSTANCE_LABEL,
    PROMETHEUS_NAMESPACE_LABEL,
    ROUTER_API_CACHED_INPUT,
    ROUTER_API_SPEND,
    ROUTER_REQUESTS,
    ROUTER_TOKENS,
    Backend,
    Component,
    Direction,
    Outcome,
    total,
)
from crossover.reconcile.ports import MetricsReading

log = logging.getLogger(__name__)

NAMESPACE = PROMETHEUS_NAMESPACE_LABEL
INSTANCE = PROMETHEUS_INSTANCE_LABEL
COMPONENT = PROMETHEUS_COMPONENT_LABEL
SERIES = "crossover_series"  # added by the round's queries: which term a sample answers
DIRECTION = DIRECTION_LABEL
INPUT, OUTPUT = Direction.INPUT.value, Direction.OUTPUT.value
TOKENS = total(ROUTER_TOKENS)
RETRY_FAILED_ROUND_SECONDS = 5.0
# a round is served while the next one is asked until it is this many intervals old; older, reconciles wait for it
SERVE_WHILE_ASKING_INTERVALS = 2


@dataclass(frozen=True)
class EngineMetricNames:
    """Token counters per engine kind (their queue, cache and latency signals: crossover.adapters.signals)."""

    prompt_tokens: str
    generation_tokens: str


ENGINE_METRICS: dict[EngineKind, EngineMetricNames] = {
    EngineKind.VLLM: EngineMetricNames("vllm:prompt_tokens_total", "vllm:generation_tokens_total"),
    EngineKind.SGLANG: EngineMetricNames("sglang:prompt_tokens_total", "sglang:generation_tokens_total"),
    # TGI exposes generated tokens only as a histogram; its prompt length comes from the input-length histogram
    EngineKind.TGI: EngineMetricNames("tgi_request_input_length_sum", "tgi_request_generated_tokens_sum"),
}


@dataclass(frozen=True)
class Term:
    """One PromQL expression asked for every resource at once; `key` names it in a resource's slice."""

    key: str
    expr: str
    by: tuple[str, ...] = ()  # grouping labels beyond namespace and instance, kept in the slice key


Key = tuple[str, str]  # (namespace, InferenceDeployment name)
Slice = Mapping[str, Decimal]  # term key (with its extra labels, e.g. "router.rate/input") -> value, maybe NaN


@dataclass(frozen=True)
class Round:
    """One answer from Prometheus for every resource; `error` set means the whole round is unknown."""

    taken: float  # monotonic clock
    slices: dict[Key, dict[str, Decimal]] = field(default_factory=dict)
    error: str | None = None


def _names(pick: Callable[[EngineMetricNames], str | None]) -> str:
    return "|".join(sorted({n for names in ENGINE_METRICS.values() if (n := pick(names))}))


def _sel(component: Component) -> str:
    return f'{COMPONENT}="{component.value}",{INSTANCE}!=""'


def _by(*extra: str) -> str:
    return ", ".join((NAMESPACE, INSTANCE, *extra))


def families(window: str, month_seconds: int) -> dict[str, list[Term]]:
    """The round's queries: each family one PromQL query, its terms tagged by `crossover_series`."""
    router = _sel(Component.ROUTER)
    engine = _sel(Component.ENGINE)

    def engine_names(pick: Callable[[EngineMetricNames], str | None]) -> str:
        return f'{{__name__=~"{_names(pick)}",{engine}}}'

    demand = [
        Term("router.seen", f"max by ({_by(DIRECTION)}) (timestamp({TOKENS}{{{router}}}))", (DIRECTION,)),
        Term("router.rate", f"sum by ({_by(DIRECTION)}) (rate({TOKENS}{{{router}}}[{window}]))", (DIRECTION,)),
        Term(
            "spend",
            f"sum by ({_by()}) (increase({total(ROUTER_API_SPEND)}{{{router}}}[{month_seconds}s]))",
        ),
        Term(
            "tokens.month",
            f'sum by ({_by(DIRECTION)}) (increase({TOKENS}{{{router},{OUTCOME_LABEL}="{Outcome.OK}"}}'
            f"[{month_seconds}s]))",
            (DIRECTION,),
        ),
        Term(
            "throttled",
            f'sum by ({_by()}) (increase({total(ROUTER_REQUESTS)}{{{router},{BACKEND_LABEL}="{Backend.API}",'
            f'{OUTCOME_LABEL}="{Outcome.THROTTLED}"}}[{window}]))',
        ),
        # client requests (an attempt that failed and was retried elsewhere counts once, as its final outcome):
        # with the token rates, the tokens per request that api.limits.requestsPerMinute turns into a token limit
        Term(
            "router.requests",
            f'sum by ({_by()}) (rate({total(ROUTER_REQUESTS)}{{{router},{OUTCOME_LABEL}!="{Outcome.ERROR}"}}'
            f"[{window}]))",
        ),
        # the API's own cache hits on what was spilled: the share of input it bills at cachedInputPerMillion
        Term(
            "api.input",
            f'sum by ({_by()}) (rate({TOKENS}{{{router},{BACKEND_LABEL}="{Backend.API}",{DIRECTION}="{INPUT}"}}'
            f"[{window}]))",
        ),
        Term("api.cached", f"sum by ({_by()}) (rate({total(ROUTER_API_CACHED_INPUT)}{{{router}}}[{window}]))"),
    ]
    for direction, pick in ((INPUT, _prompt), (OUTPUT, _generation)):
        demand += [
            Term(f"engine.seen/{direction}", f"max by ({_by()}) (timestamp({engine_names(pick)}))"),
            Term(f"engine.rate/{direction}", f"sum by ({_by()}) (rate({engine_names(pick)}[{window}]))"),
        ]
    ask = signal_queries(engine, (NAMESPACE, INSTANCE, COMPONENT), window, _names(_prompt), _names(_generation))
    signals = [Term(key, expr) for key, expr in ask.signals.items()]
    pods = [Term(key, expr, (POD_LABEL,)) for key, expr in ask.pods.items()]
    return {"demand": demand, "signals": signals, "pods": pods}


def _prompt(names: EngineMetricNames) -> str:
    return names.prompt_tokens


def _generation(names: EngineMetricNames) -> str:
    return names.generation_tokens


def promql(terms: Iterable[Term]) -> str:
    """One query for several terms: each tagged with its key, joined by `or` (tags keep their label sets apart)."""
    return " or ".join(f'label_replace({t.expr}, "{SERIES}", "{t.key}", "", "")' for t in terms)


def parse(terms: Iterable[Term], result: Iterable[Mapping[str, Any]]) -> dict[Key, dict[str, Decimal]]:
    """Prometheus' vector result -> per-resource slices. Values that are not numbers become NaN (unknown)."""
    extra = {t.key: t.by for t in terms}
    slices: dict[Key, dict[str, Decimal]] = {}
    for sample in result:
        labels = sample.get("metric") or {}
        key = labels.get(SERIES)
        namespace, name = labels.get(NAMESPACE), labels.get(INSTANCE)
        if key not in extra or not namespace or not name:
            continue
        suffix = "".join(f"/{labels.get(label, '')}" for label in extra[key])
        slices.setdefault((namespace, name), {})[f"{key}{suffix}"] = _number(sample.get("value"))
    return slices


def _number(value: object) -> Decimal:
    try:
        return Decimal(str(value[1]))  # type: ignore[index]
    except (InvalidOperation, TypeError, IndexError, KeyError):
        return Decimal("NaN")


def reading(values: Slice, kind: EngineKind, window: str) -> MetricsReading:
    """One resource's MetricsReading from its slice of a round (pure: property-tested)."""
    names = ENGINE_METRICS[kind]
    demand, observed, problem = _demand(values, "router", (TOKENS, TOKENS), window)
    if demand is None and problem is None:
        metrics = (names.prompt_tokens, names.generation_tokens)
        demand, observed, problem = _demand(values, "engine", metrics, window)
    elif demand is not None:
        demand = _with_requests_and_cache(demand, values)
    if demand is None:
        return MetricsReading(None, None, error=problem or "no router or engine series in Prometheus")
    spend = values.get("spend")
    throttled = values.get("throttled")
    return MetricsReading(
        demand=demand,
        observed_at=observed,
        api_spend_this_month=spend if spend is not None and spend.is_finite() and spend >= 0 else None,
        tokens_this_month=_month_tokens(values),
        api_throttled=throttled is not None and throttled.is_finite() and throttled > 0,
        signals=signals_from(values),
        capacity_samples=tuple((p.input_tps, p.output_tps) for p in pod_rates(values) if p.queued_throughout),
    )


def _finite(value: Decimal | None) -> Decimal | None:
    return value if value is not None and value.is_finite() and value >= 0 else None


def _with_requests_and_cache(demand: Demand, values: Slice) -> Demand:
    """The router's demand plus its request rate and the input share the API bills as cached. Both stay unknown
    (None, 0 cached) without their series: the API limit then applies to tokens only, and input is priced in full,
    as it was before the router saw any cache hits."""
    rps = _finite(values.get("router.requests"))
    cached = ZERO
    api_input, api_cached = _finite(values.get("api.input")), _finite(values.get("api.cached"))
    if api_input and api_cached is not None:
        cached = demand.input_tps * min(Decimal(1), api_cached / api_input)
    return Demand(demand.input_tps, demand.output_tps, cached, rps if rps else None)


def _month_tokens(values: Slice) -> tuple[Decimal, Decimal] | None:
    """(input, output) tokens the router served this month; a direction never counted is 0 if the other was."""
    found = {d: values.get(f"tokens.month/{d}") for d in (INPUT, OUTPUT)}
    if all(v is None for v in found.values()):
        return None
    if any(v is not None and (not v.is_finite() or v < 0) for v in found.values()):
        return None
    return found[INPUT] or Decimal(0), found[OUTPUT] or Decimal(0)


def _demand(
    values: Slice, source: str, metrics: tuple[str, str], window: str
) -> tuple[Demand | None, datetime | None, str | None]:
    """Token rates of one source; (None, None, None) if it has no series, (None, None, why) if it is unknown."""
    seen = {d: values.get(f"{source}.seen/{d}") for d in (INPUT, OUTPUT)}
    stamps = [s for s in seen.values() if s is not None and s.is_finite()]
    if not stamps:
        return None, None, None
    rates: dict[str, Decimal] = {}
    for direction, metric in zip((INPUT, OUTPUT), metrics, strict=True):
        rate = values.get(f"{source}.rate/{direction}")
        if seen[direction] is None:
            rates[direction] = Decimal(0)  # the other direction is counted, this one never was (lazy counters)
        elif rate is None:
            return None, None, f"{metric} ({direction}) has fewer than two samples in the {window} rate window"
        elif not rate.is_finite() or rate < 0:
            return None, None, f"rate of {metric} ({direction}) is {rate}"
        else:
            rates[direction] = rate
    return Demand(rates[INPUT], rates[OUTPUT]), datetime.fromtimestamp(float(max(stamps)), tz=UTC), None


class PrometheusMetrics:
    """Reads each resource's slice of the latest round; the first reader to find it older than `round_seconds` asks
    the next one and waits for it, readers meanwhile keep the last round; with no round, or one too old, they wait."""

    def __init__(
        self,
        url: str,
        rate_window_seconds: int = 120,
        timeout_seconds: int = 10,
        round_seconds: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._prom = PrometheusConnect(
            url=url, disable_ssl=True, timeout=timeout_seconds, retry=Retry(total=0, connect=0, read=0)
        )
        self._window = f"{rate_window_seconds}s"
        self._round_seconds = round_seconds
        self._clock = clock
        self._lock = threading.Condition()
        self._round: Round | None = None
        self._asking = False  # a round is being asked (by a reader or in the background)
        self.rounds = 0  # rounds asked (for the operator's own metrics and tests)

    def read(self, namespace: str, name: str, spec: InferenceDeploymentSpec, now: datetime) -> MetricsReading:
        current = self.round(now)
        if current.error is not None:
            return MetricsReading(None, None, error=current.error)
        return reading(current.slices.get((namespace, name), {}), spec.engine.kind, self._window)

    def inflight_by_pod(self, namespace: str, name: str, kind: EngineKind) -> dict[str, Decimal] | None:
        """Requests each engine pod holds now, asked fresh (only a scale-down needs it); None: Prometheus can't say."""
        try:
            result = self._prom.custom_query(inflight_query(namespace, name, kind))
        except (requests.RequestException, PrometheusApiClientException, ValueError) as error:
            log.warning("Prometheus in-flight query failed: %s", type(error).__name__)
            return None
        out: dict[str, Decimal] = {}
        for item in result:
            try:
                value = Decimal(str(item["value"][1]))
            except (InvalidOperation, KeyError, IndexError):
                continue
            pod = item.get("metric", {}).get("pod")
            if pod and value.is_finite() and value >= 0:
                out[pod] = value
        return out

    def round(self, now: datetime) -> Round:
        with self._lock:
            while True:
                current = self._round
                if current is not None:
                    age = self._clock() - current.taken
                    if age < (self._round_seconds if current.error is None else RETRY_FAILED_ROUND_SECONDS):
                        return current
                    if self._asking and age < SERVE_WHILE_ASKING_INTERVALS * self._round_seconds:
                        return current  # the next round is on its way: plan with this one meanwhile
                if not self._asking:
                    break
                self._lock.wait()  # no round fit to serve: wait for the one being asked
            self._asking = True
        fresh: Round | None = None
        try:
            fresh = self._ask(now)
            return fresh
        finally:
            with self._lock:
                if fresh is not None:
                    self._round = fresh
                    self.rounds += 1
                self._asking = False
                self._lock.notify_all()

    def asked(self, timeout: float | None = None) -> bool:
        """Wait until no round is being asked (for tests); False on timeout."""
        with self._lock:
            return self._lock.wait_for(lambda: not self._asking, timeout)

    def _ask(self, now: datetime) -> Round:
        taken = self._clock()
        slices: dict[Key, dict[str, Decimal]] = {}
        try:
            for terms in families(self._window, _month_so_far(now)).values():
                for key, values in parse(terms, self._prom.custom_query(promql(terms))).items():
                    slices.setdefault(key, {}).update(values)
        except (requests.RequestException, PrometheusApiClientException, ValueError) as error:
            log.warning("Prometheus round failed: %s", type(error).__name__)
            return Round(taken, error=f"Prometheus unreachable or failing ({type(error).__name__})")
        return Round(taken, slices)


# each engine's own count of the requests it holds (running + queued), per pod: what a scale-down would cut short
INFLIGHT_METRICS: dict[EngineKind, tuple[str, str]] = {
    EngineKind.VLLM: ("vllm:num_requests_running", "vllm:num_requests_waiting"),
    EngineKind.SGLANG: ("sglang:num_running_reqs", "sglang:num_queue_reqs"),
    EngineKind.TGI: ("tgi_batch_current_size", "tgi_queue_size"),
}


def inflight_query(namespace: str, name: str, kind: EngineKind) -> str:
    selector = f'{NAMESPACE}="{namespace}",{INSTANCE}="{name}",{COMPONENT}="{Component.ENGINE.value}"'
    return " + ".join(f"sum by (pod) ({metric}{{{selector}}})" for metric in INFLIGHT_METRICS[kind])


def _month_so_far(now: datetime) -> int:
    start = now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return max(60, int((now - start).total_seconds()))
