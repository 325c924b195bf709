"""Turning a Decision into the resource's status: decimals as strings, history kept short."""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from typing import Any

from costpolicy.decision import Action, Decision, Recommendation
from costpolicy.money import quantize
from costpolicy.reversion import Reversion
from crossover.api.v1alpha1 import (
    DecisionRecord,
    ForecastStatus,
    InferenceDeploymentStatus,
    RecommendationRecord,
    StageRecord,
)

HISTORY_LENGTH = 10


def decision_record(decision: Decision, stages: bool = False) -> DecisionRecord:
    """The decision as status keeps it; `stages` only for lastDecision (history stays short)."""
    return DecisionRecord(
        stages=[
            StageRecord(name=s.name, replicas=s.replicas, reason=s.reason.value, message=s.message)
            for s in decision.stages
        ]
        if stages
        else [],
        time=decision.time,
        action=decision.action.value,
        reason=decision.reason.value,
        message=decision.message,
        replicas=decision.replicas,
        spill_fraction=quantize(decision.spill_fraction, 4),
    )


def next_history(previous: list[DecisionRecord], decision: Decision) -> list[DecisionRecord]:
    """Keep decisions that did something or changed their reason; a steady hold is one entry, not ten."""
    record = decision_record(decision)
    last = previous[-1] if previous else None
    if last is not None and decision.action is Action.HOLD and last.reason == record.reason:
        return previous
    return [*previous, record][-HISTORY_LENGTH:]


def recommendations_from_status(status: InferenceDeploymentStatus) -> tuple[Recommendation, ...]:
    return tuple(Recommendation(r.since, r.replicas) for r in status.recommendations)


def recommendations_to_status(history: tuple[Recommendation, ...]) -> list[RecommendationRecord]:
    return [RecommendationRecord(since=r.since, replicas=r.replicas) for r in history]


# the forecast's state, field by field: Reversion's fields are ForecastStatus's (status adds two derived ones)
FORECAST_STATE = tuple(f.name for f in dataclasses.fields(Reversion))


def reversion_from_status(status: InferenceDeploymentStatus) -> Reversion:
    """The demand forecast as the last status left it; a fresh one (nothing learned) when there is none."""
    kept = status.forecast
    if kept is None:
        return Reversion()
    return Reversion(**{name: getattr(kept, name) for name in FORECAST_STATE})


def reversion_to_status(reversion: Reversion) -> ForecastStatus:
    return ForecastStatus(
        **{name: getattr(reversion, name) for name in FORECAST_STATE},
        persistence=quantize(reversion.persistence),
        drift=quantize(reversion.drift),
    )


def percent(fraction: Decimal) -> str:
    return f"{quantize(fraction * 100, 0)}%"


def dump(status: InferenceDeploymentStatus) -> dict[str, Any]:
    """JSON-ready status: camelCase keys, decimals as strings, times as RFC 3339."""
    data: dict[str, Any] = status.model_dump(mode="json", by_alias=True, exclude_none=True)
    return data
