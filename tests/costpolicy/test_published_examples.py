"""The cost model reproduces the worked examples of the public cost analyses crossover grew from.

Each row carries its source figures. Where a source rounds with a 30-day month, the row says so: crossover's
month is 730 hours (30.42 days), and both figures are checked.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from costpolicy.money import MILLION
from costpolicy.pricing import (
    api_bill,
    api_cost_per_second,
    self_hosted_per_million_at_utilization,
)
from costpolicy.snapshot import Demand
from costpolicy.spec import APIPricing
from tests.costpolicy.conftest import make_spec

D = Decimal


def pricing(inp: str, out: str) -> APIPricing:
    return APIPricing.model_validate({"inputPerMillion": inp, "outputPerMillion": out})


@pytest.mark.parametrize(
    ("source", "inp", "out", "in_tokens", "out_tokens", "per_call"),
    [
        ("Claude Haiku 3.5 at $0.80/$4.00, 800 in + 400 out", "0.80", "4.00", 800, 400, D("0.00224")),
        ("Claude Sonnet at $3/$15, 800 in + 400 out", "3", "15", 800, 400, D("0.0084")),
    ],
)
def test_api_cost_per_call(source: str, inp: str, out: str, in_tokens: int, out_tokens: int, per_call: Decimal):
    assert api_bill(pricing(inp, out), D(in_tokens), D(out_tokens)) == per_call, source


def test_haiku_breaks_even_with_1000_a_month_at_446429_calls():
    """Source: $1,000/month of infrastructure vs Haiku 3.5 at $0.00224/call → 446,429 calls/month, 17.9M tok/day."""
    per_call = api_bill(pricing("0.80", "4.00"), D(800), D(400))
    calls = D(1000) / per_call  # calls a month whose API bill is the $1,000 (the spreadsheet figure)
    assert calls.quantize(D(1)) == D(446429)
    tokens_per_month = calls * 1200
    # the source divides by 30 days: 17.9M tokens/day
    assert (tokens_per_month / 30 / MILLION).quantize(D("0.1")) == D("17.9")
    # crossover's 730-hour month has 30.42 days: 17.6M tokens/day for the same monthly volume
    assert (tokens_per_month / (D(730) / 24) / MILLION).quantize(D("0.1")) == D("17.6")


@pytest.mark.parametrize(
    ("source", "inp", "out", "monthly_bill"),
    [
        ("Claude Sonnet $3/$15", "3", "15", D(780)),
        ("GPT-4o $5/$15", "5", "15", D(900)),
        ("Llama 3 70B hosted at $0.59/$0.79", "0.59", "0.79", D(67)),
    ],
)
def test_100m_tokens_a_month_at_60_40(source: str, inp: str, out: str, monthly_bill: Decimal):
    """Source: 100M tokens/month split 60/40 input/output."""
    month_seconds = D(730 * 3600)
    demand = Demand(D(60_000_000) / month_seconds, D(40_000_000) / month_seconds)
    bill = api_cost_per_second(demand, pricing(inp, out)) * month_seconds
    assert bill.quantize(D(1)) == monthly_bill, source


def _gpu_spec(price_per_hour: str | D, tokens_per_second: int):
    # one token/s figure, as the sources use: make prefill and decode equal so any mix gives that throughput
    return make_spec(
        **{
            "selfHosted.pricing.rented.pricePerGPUHour": price_per_hour,
            "selfHosted.overheadPerMonth": "0",
            "capacity.prefillTokensPerSecond": str(tokens_per_second),
            "capacity.decodeTokensPerSecond": str(tokens_per_second),
        }
    )


@pytest.mark.parametrize(
    ("source", "price_per_hour", "tps", "utilization", "per_mtok"),
    [
        ("$6/hour H100 at 3,000 tok/s, 20 % utilisation", "6", 3000, "0.20", D("2.78")),
        ("$6/hour H100 at 3,000 tok/s, 10 % utilisation", "6", 3000, "0.10", D("5.56")),
    ],
)
def test_self_hosted_per_million_tokens(
    source: str, price_per_hour: str, tps: int, utilization: str, per_mtok: Decimal
):
    spec = _gpu_spec(price_per_hour, tps)
    got = self_hosted_per_million_at_utilization(spec, D(utilization), D(1), D(1))
    assert got.quantize(D("0.01")) == per_mtok, source


def test_a100_at_1000_a_month_serving_1500_tps_at_half_utilisation():
    """Source: one A100 at $1,000/month serving 1,500 tok/s at 50 % utilisation costs "about $0.52" per Mtok.

    With a 730-hour month the model gives $0.507 (a 30-day month gives $0.514): within 3 % of the source.
    The same source's "$5.16 at 10 %" is not reproducible: cost per token is inversely proportional to
    utilisation, so 10 % costs 5 × the 50 % figure ($2.54), not 10 ×; that row is pinned to the model instead.
    """
    spec = _gpu_spec(D(1000) / 730, 1500)  # a Decimal from code: 27 digits a manifest could not hold
    at_half = self_hosted_per_million_at_utilization(spec, D("0.5"), D(1), D(1))
    assert abs(at_half - D("0.52")) / D("0.52") < D("0.03")
    at_tenth = self_hosted_per_million_at_utilization(spec, D("0.1"), D(1), D(1))
    assert at_tenth == at_half * 5
    assert at_tenth.quantize(D("0.01")) == D("2.54")
