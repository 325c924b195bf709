"""The month-to-date cost ledger: status.cost.ledger, the SAVED column's source, and crossover_cost_dollars_total.

It must survive operator restarts, so nothing comes from the operator's memory: replica time accumulates in status
and the API side is the router's counters (Prometheus increase() over the month)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from costpolicy import Demand
from crossover.adapters.prometheus_metrics import PrometheusMetrics, reading
from crossover.api.v1alpha1 import CostLedger, EngineKind
from crossover.contracts import Basis
from crossover.main import ledger_values
from crossover.operator_metrics import LedgerCollector
from crossover.reconcile.ledger import next_ledger
from crossover.reconcile.ports import MetricsReading
from tests.costpolicy.conftest import make_spec
from tests.operator.fakes import FakeCluster, FakeMetrics
from tests.operator.test_prometheus_round import Prometheus, prometheus, read  # noqa: F401 - the fixture
from tests.operator.test_reconcile import NOW, run

# $36/h per replica, $1/h overhead; API $1 in and $5 out per million
SPEC = make_spec(**{"selfHosted.pricing.rented.pricePerGPUHour": "36", "selfHosted.overheadPerMonth": "730"})
TOKENS = (Decimal(2_000_000), Decimal(400_000))  # $2 + $2 at API prices


def test_replica_time_since_the_last_reconcile_is_billed_at_the_spec_prices() -> None:
    first = next_ledger(None, 0, SPEC, Decimal(0), (Decimal(0), Decimal(0)), NOW)
    assert (first.self_hosted, first.actual, first.api_only, first.saved) == (0, 0, 0, 0)  # nothing billed yet
    later = next_ledger(first, 2, SPEC, Decimal("0.50"), TOKENS, NOW + timedelta(minutes=10))
    assert later.replica_hours == Decimal("0.333333")  # two replicas for ten minutes
    assert later.self_hosted == Decimal("12.166667")  # 2 x $36/h x 1/6 h, and 1/6 h of the $1/h overhead
    assert later.api == Decimal("0.50") and later.api_only == Decimal(4)
    assert later.actual == Decimal("12.67")
    assert later.saved == Decimal("-8.67")  # negative: crossover cost more than the API would have
    idle = next_ledger(later, 0, SPEC, Decimal("0.50"), TOKENS, NOW + timedelta(minutes=20))
    assert idle.self_hosted == later.self_hosted  # no replica, no overhead either


def test_a_new_month_starts_from_its_first_second() -> None:
    end_of_month = datetime(2026, 11, 30, 23, 50, tzinfo=UTC)
    old = next_ledger(None, 0, SPEC, Decimal(5), TOKENS, end_of_month)
    new = next_ledger(old, 1, SPEC, Decimal(0), (Decimal(0), Decimal(0)), end_of_month + timedelta(minutes=20))
    assert (old.month, new.month) == ("2026-11", "2026-12")
    assert new.replica_hours == Decimal("0.166667")  # ten minutes of December, not the twenty since asOf
    assert new.api == 0


def test_an_unknown_api_side_keeps_its_last_value_and_is_never_zero() -> None:
    unknown = next_ledger(None, 0, SPEC, None, None, NOW)
    assert unknown.api is None and unknown.actual is None and unknown.api_only is None and unknown.saved is None
    known = next_ledger(unknown, 1, SPEC, Decimal(3), TOKENS, NOW + timedelta(minutes=5))
    gap = next_ledger(known, 1, SPEC, None, None, NOW + timedelta(minutes=10))
    assert (gap.api, gap.api_only) == (known.api, known.api_only)
    assert gap.self_hosted > known.self_hosted  # the replica kept running


def test_the_ledger_survives_an_operator_restart() -> None:
    """A restarted operator has only the status the API server kept: the month's figures continue from it."""
    cluster = FakeCluster()
    metrics = FakeMetrics(
        MetricsReading(
            Demand(Decimal(30000), Decimal(6000)), NOW, api_spend_this_month=Decimal(1), tokens_this_month=TOKENS
        )
    )
    status = run(cluster, metrics).status
    for minute in (1, 2):
        status = run(cluster, metrics, status=status, now=NOW + timedelta(minutes=minute)).status
    before = CostLedger.model_validate(status["cost"]["ledger"])
    assert before.self_hosted > 0 and before.saved is not None
    stored = json.loads(json.dumps(status))  # what the API server keeps; the process and its memory are gone
    restarted = run(FakeCluster(cluster.objects), metrics, status=stored, now=NOW + timedelta(minutes=3)).status
    after = CostLedger.model_validate(restarted["cost"]["ledger"])
    replicas = status["replicas"]["ready"] + status["replicas"]["warming"]
    assert replicas > 0
    assert abs(after.replica_hours - before.replica_hours - replicas * Decimal(1) / 60) < Decimal("0.00001")
    assert after.self_hosted > before.self_hosted
    # the operator's counter shows the same figures from the status alone
    collector = LedgerCollector()
    collector.set("ml", "llama-8b", ledger_values(restarted))
    registry = CollectorRegistry()
    registry.register(collector)
    text = generate_latest(registry).decode()
    assert (
        f'crossover_cost_dollars_total{{basis="actual",name="llama-8b",namespace="ml"}} {float(after.actual or 0)}'
        in text
    )
    assert f'basis="api_only",name="llama-8b",namespace="ml"}} {float(after.api_only or 0)}' in text


def test_unknown_figures_are_not_exposed_as_zero() -> None:
    status = {"cost": {"ledger": {"month": "2026-11", "asOf": "2026-11-22T12:00:00Z", "replicaHours": "1",
                                  "selfHosted": "2.5"}}}  # fmt: skip
    assert ledger_values(status) == {}
    status["cost"]["ledger"].update(actual="3.5", apiOnly="10")
    assert ledger_values(status) == {Basis.ACTUAL: Decimal("3.5"), Basis.API_ONLY: Decimal(10)}


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"tokens.month/input": Decimal(10), "tokens.month/output": Decimal(2)}, (Decimal(10), Decimal(2))),
        ({"tokens.month/input": Decimal(10)}, (Decimal(10), Decimal(0))),  # output never counted: a known zero
        ({}, None),
        ({"tokens.month/input": Decimal("NaN"), "tokens.month/output": Decimal(2)}, None),
    ],
)
def test_month_tokens_from_a_round(values: dict[str, Decimal], expected: tuple[Decimal, Decimal] | None) -> None:
    seen = {"router.seen/input": Decimal(1), "router.rate/input": Decimal(1), "router.seen/output": Decimal(1),
            "router.rate/output": Decimal(1)}  # fmt: skip
    assert reading({**seen, **values}, EngineKind.VLLM, "5s").tokens_this_month == expected


@pytest.mark.lab
def test_month_tokens_are_read_from_a_real_prometheus(prometheus: Prometheus) -> None:  # noqa: F811
    tokens = read(PrometheusMetrics(prometheus.url, rate_window_seconds=5), "team", "llama").tokens_this_month
    assert tokens is not None
    assert tokens[0] > 0 and float(tokens[0]) == pytest.approx(10 * float(tokens[1]), rel=0.05)  # 100 vs 10 tok/s
