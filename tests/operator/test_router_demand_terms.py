"""The router's request rate and the API's cache hits reach decide(): `api.limits.requestsPerMinute` and
`api.pricing.cachedInputPerMillion` act on live demand (issue 13, item 6: before, the operator never filled either,
so both fields were accepted and ignored)."""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any

import pytest

from crossover.adapters.prometheus_metrics import reading
from crossover.api.v1alpha1 import EngineKind
from crossover.reconcile.step import reconcile
from tests.operator.fakes import FakeCluster, FakeMetrics
from tests.operator.test_reconcile import NOW, ROUTER, manifest, resource

STAMP = Decimal(int(NOW.timestamp()))
ROUTER_DEMAND = {
    "router.seen/input": STAMP,
    "router.seen/output": STAMP,
    "router.rate/input": Decimal(3000),
    "router.rate/output": Decimal(600),
}


@pytest.mark.parametrize(
    ("extra", "rps", "cached"),
    [
        ({}, None, Decimal(0)),  # no series: request rate unknown, input priced in full
        ({"router.requests": Decimal(12)}, Decimal(12), Decimal(0)),
        ({"api.input": Decimal(100), "api.cached": Decimal(40)}, None, Decimal(1200)),  # 40 % of 3000 in
        ({"api.input": Decimal(0), "api.cached": Decimal(0)}, None, Decimal(0)),  # nothing spilled: no share yet
        ({"api.input": Decimal(10), "api.cached": Decimal(50)}, None, Decimal(3000)),  # capped at all input
        ({"router.requests": Decimal("NaN"), "api.input": Decimal(10), "api.cached": Decimal("NaN")}, None, 0),
    ],
)
def test_request_rate_and_the_api_cache_share_reach_demand(
    extra: dict[str, Decimal], rps: Decimal | None, cached: Decimal
) -> None:
    demand = reading({**ROUTER_DEMAND, **extra}, EngineKind.VLLM, "120s").demand
    assert demand is not None
    assert demand.requests_per_second == rps
    assert demand.cached_input_tps == cached


def _status(spec: dict[str, Any], extra: dict[str, Decimal]) -> dict[str, Any]:
    metrics = FakeMetrics(reading({**ROUTER_DEMAND, **extra}, EngineKind.VLLM, "120s"))
    return reconcile(resource(spec=spec), FakeCluster(ready=0), metrics, ROUTER, NOW).status


def test_requests_per_minute_caps_spill_once_the_router_reports_requests() -> None:
    """No replica is ready, so everything would spill; a 60 requests/minute API limit at 12 requests/s caps it."""
    spec = manifest()["spec"]
    limited = copy.deepcopy(spec)
    limited["api"]["limits"] = {"requestsPerMinute": 60}
    requests = {"router.requests": Decimal(12)}
    unlimited_spill = Decimal(_status(spec, requests)["routing"]["spillFraction"])
    limited_spill = Decimal(_status(limited, requests)["routing"]["spillFraction"])
    assert unlimited_spill == 1
    assert limited_spill < Decimal("0.1")  # at most ~1 of 12 requests a second


def test_cached_input_price_prices_the_api_by_the_cache_share_the_api_reports() -> None:
    spec = manifest()["spec"]
    dearer_cache = copy.deepcopy(spec)
    dearer_cache["api"]["pricing"]["cachedInputPerMillion"] = spec["api"]["pricing"]["inputPerMillion"]
    hits = {"api.input": Decimal(100), "api.cached": Decimal(80)}
    cheap = Decimal(_status(spec, hits)["cost"]["apiPerMillionTokens"])
    full = Decimal(_status(dearer_cache, hits)["cost"]["apiPerMillionTokens"])
    assert cheap < full
    without_hits = Decimal(_status(spec, {})["cost"]["apiPerMillionTokens"])
    assert without_hits == full  # no cache reported: input at its full price, whatever the cached price
