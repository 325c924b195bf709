"""The month-to-date cost ledger in status: actual dollars against what the same tokens would have cost on the API.

Nothing here lives in the operator's memory, so a restart loses nothing: replica time accumulates in status (the
replicas the previous status saw, ready or warming, for the time since its `asOf`, at the prices now in force), and
the API side is read from the router's counters in Prometheus (`increase()` over the month) each time. While
Prometheus cannot say, the API-side figures keep their last known values for the month (never a made-up zero).
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from costpolicy.pricing import api_bill, replica_bill
from costpolicy.spec import CostSpec
from crossover.api.v1alpha1 import CostLedger

MICRO = Decimal("0.000001")  # what accumulates is kept to the micro-dollar: a month of reconciles does not drift
CENTS = Decimal("0.01")  # what is shown
SECONDS_PER_HOUR = Decimal(3600)


def month_of(now: datetime) -> str:
    return now.astimezone(UTC).strftime("%Y-%m")


def month_start(now: datetime) -> datetime:
    return now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def next_ledger(
    previous: CostLedger | None,
    billed_since: int,
    spec: CostSpec,
    api_spend_this_month: Decimal | None,
    tokens_this_month: tuple[Decimal, Decimal] | None,
    now: datetime,
) -> CostLedger:
    """The ledger after this reconcile. `billed_since`: replicas (ready + warming) that existed since `asOf`."""
    month = month_of(now)
    if previous is not None and previous.month == month:
        since, hours, self_hosted = previous.as_of, previous.replica_hours, previous.self_hosted
        api, api_only = previous.api, previous.api_only
    else:
        # first reconcile ever: nothing to bill yet; a new month: bill from its first second
        since = now if previous is None else max(month_start(now), previous.as_of)
        hours, self_hosted, api, api_only = Decimal(0), Decimal(0), None, None
    seconds = Decimal(str(max(0.0, (now - since).total_seconds())))
    replicas, overhead = replica_bill(spec, billed_since, seconds)
    hours += billed_since * seconds / SECONDS_PER_HOUR
    self_hosted += replicas + overhead
    if api_spend_this_month is not None:
        api = api_spend_this_month
    if tokens_this_month is not None:
        api_only = api_bill(spec.api_pricing, *tokens_this_month)
    actual = None if api is None else self_hosted + api
    return CostLedger(
        month=month,
        as_of=now,
        replica_hours=hours.quantize(MICRO),
        self_hosted=self_hosted.quantize(MICRO),
        api=None if api is None else api.quantize(CENTS),
        actual=None if actual is None else actual.quantize(CENTS),
        api_only=None if api_only is None else api_only.quantize(CENTS),
        saved=None if actual is None or api_only is None else (api_only - actual).quantize(CENTS),
    )
