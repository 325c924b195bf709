"""The Prometheus adapter's parsing, as properties: whatever a round returns, a resource's demand is either a
finite, non-negative reading of its own series or unknown with a reason, never zero by accident (issue 17 case 3)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crossover.adapters.prometheus_metrics import (
    INSTANCE,
    SERIES,
    Term,
    families,
    parse,
    promql,
    reading,
)
from crossover.api.v1alpha1 import EngineKind

WINDOW = "120s"
SOURCES = ("router", "engine")
DIRECTIONS = ("input", "output")
TERMS = [t for terms in families(WINDOW, 3600).values() for t in terms]

# what Prometheus may put in a sample's value: numbers, NaN, infinities, and (defensively) garbage
raw_values = st.one_of(
    st.decimals(min_value=0, max_value=10**9, places=3, allow_nan=False, allow_infinity=False).map(str),
    st.sampled_from(["NaN", "+Inf", "-Inf", "-1", "", "x", "1e400"]),
)
finite = st.decimals(min_value=0, max_value=10**6, places=2, allow_nan=False, allow_infinity=False)
any_value = st.one_of(finite, st.sampled_from([Decimal("NaN"), Decimal("Infinity"), Decimal("-Infinity"), Decimal(-1)]))
stamp = st.decimals(min_value=1_700_000_000, max_value=1_900_000_000, places=3, allow_nan=False)


@st.composite
def slices(draw: st.DrawFn) -> dict[str, Decimal]:
    values: dict[str, Decimal] = {}
    for source in SOURCES:
        for direction in DIRECTIONS:
            if draw(st.booleans()):
                values[f"{source}.seen/{direction}"] = draw(st.one_of(stamp, st.just(Decimal("NaN"))))
            if draw(st.booleans()):
                values[f"{source}.rate/{direction}"] = draw(any_value)
    for key in ("spend", "throttled", "gpuUtilization", "kvCacheUsage"):
        if draw(st.booleans()):
            values[key] = draw(any_value)
    return values


def _source(values: dict[str, Decimal]) -> str | None:
    for source in SOURCES:
        if any(values.get(f"{source}.seen/{d}", Decimal("NaN")).is_finite() for d in DIRECTIONS):
            return source
    return None


@given(slices(), st.sampled_from(list(EngineKind)))
def test_demand_is_its_own_finite_rates_or_unknown_with_a_reason(values: dict[str, Decimal], kind: EngineKind) -> None:
    result = reading(values, kind, WINDOW)
    source = _source(values)
    if result.demand is None:
        assert result.error, "unknown demand must say why"
        assert result.observed_at is None
        return
    assert source is not None, "demand from a source with no series"
    for direction, got in zip(DIRECTIONS, (result.demand.input_tps, result.demand.output_tps), strict=True):
        assert got.is_finite() and got >= 0
        if f"{source}.seen/{direction}" in values:
            assert got == values[f"{source}.rate/{direction}"], "a counted direction reads its own rate"
        else:
            assert got == 0  # a lazily created counter that never counted
    assert result.observed_at is not None
    assert result.api_spend_this_month is None or result.api_spend_this_month.is_finite()
    assert all(v.is_finite() for v in result.signals.values())


@pytest.mark.parametrize("rate", [None, Decimal("NaN"), Decimal("Infinity"), Decimal(-1)], ids=str)
@pytest.mark.parametrize("direction", DIRECTIONS)
def test_a_counted_direction_without_a_finite_rate_is_unknown_never_zero(rate: Decimal | None, direction: str) -> None:
    values = {f"router.seen/{d}": Decimal(1_800_000_000) for d in DIRECTIONS}
    values |= {f"router.rate/{d}": Decimal(5) for d in DIRECTIONS}
    # the engine's counters say zero: the router being unknown must not fall back to them
    values |= {f"engine.seen/{d}": Decimal(1_800_000_000) for d in DIRECTIONS}
    values |= {f"engine.rate/{d}": Decimal(0) for d in DIRECTIONS}
    if rate is None:
        del values[f"router.rate/{direction}"]
    else:
        values[f"router.rate/{direction}"] = rate
    result = reading(values, EngineKind.VLLM, WINDOW)
    assert result.demand is None
    expected = "fewer than two samples" if rate is None else str(rate)
    assert result.error is not None and expected in result.error and direction in result.error


def _sample(labels: dict[str, str], value: Any) -> dict[str, Any]:
    return {"metric": labels, "value": [1_800_000_000.0, value]}


@given(
    st.lists(
        st.tuples(
            st.sampled_from(TERMS),
            st.sampled_from(["ns-a", "ns-b", ""]),
            st.sampled_from(["llama", "llama-router", ""]),
            raw_values,
        ),
        max_size=40,
    )
)
def test_parse_never_raises_and_keys_slices_by_exact_labels(rows: list[tuple[Term, str, str, str]]) -> None:
    result = [
        _sample({SERIES: t.key, "namespace": ns, INSTANCE: name, **{b: "input" for b in t.by}}, value)
        for t, ns, name, value in rows
    ]
    slices = parse(TERMS, result)
    expected_keys = {(ns, name) for _, ns, name, _ in rows if ns and name}
    assert set(slices) == expected_keys
    for (ns, name), values in slices.items():
        for key, value in values.items():
            assert isinstance(value, Decimal)
            matching = [
                r for r in rows if (r[1], r[2]) == (ns, name) and key == r[0].key + "".join("/input" for _ in r[0].by)
            ]
            assert matching, f"{key} in {(ns, name)} came from another resource's sample"


def test_samples_of_unknown_series_or_without_the_instance_label_are_ignored() -> None:
    result = [
        _sample({SERIES: "router.rate", "namespace": "a", "direction": "input"}, "5"),  # no instance label
        _sample({SERIES: "somebody-else", "namespace": "a", INSTANCE: "x"}, "5"),
        _sample({"namespace": "a", INSTANCE: "x"}, "5"),
    ]
    assert parse(TERMS, result) == {}


def test_a_round_is_a_fixed_number_of_queries_each_grouped_by_the_operator_labels() -> None:
    queries = {name: promql(terms) for name, terms in families(WINDOW, 3600).items()}
    assert len(queries) <= 10
    for text in queries.values():
        assert "pod=~" not in text, "selection by pod-name prefix"
        assert f"by (namespace, {INSTANCE}" in text
