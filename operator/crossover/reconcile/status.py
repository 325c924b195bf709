"""Turning a Decision into the resource's status: decimals as strings, history kept short."""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from typing import Any

from costpolicy.daily import BIN_SECONDS, BINS, DailyProfile
from costpolicy.decision import Action, Decision, Recommendation
from costpolicy.money import quantize
from costpolicy.reversion import Reversion
from crossover.api.v1alpha1 import (
    DailyProfileStatus,
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
# the daily profile's likewise, its means apart (status keys them by the hour's start and leaves unknown ones out)
PROFILE_STATE = tuple(f.name for f in dataclasses.fields(DailyProfile) if f.name != "means")
HOUR_KEYS = tuple(f"{i * BIN_SECONDS // 3600:02d}:{i * BIN_SECONDS % 3600 // 60:02d}" for i in range(BINS))


def reversion_from_status(status: InferenceDeploymentStatus) -> Reversion:
    """The demand forecast as the last status left it; a fresh one (nothing learned) when there is none."""
    kept = status.forecast
    if kept is None:
        return Reversion()
    return Reversion(**{name: getattr(kept, name) for name in FORECAST_STATE})


def profile_from_status(status: InferenceDeploymentStatus) -> DailyProfile:
    """The daily profile as the last status left it; a fresh one (nothing learned) when there is none."""
    kept = status.forecast.daily if status.forecast is not None else None
    if kept is None:
        return DailyProfile()
    return DailyProfile(
        means=tuple(kept.means.get(key) for key in HOUR_KEYS), **{name: getattr(kept, name) for name in PROFILE_STATE}
    )


def forecast_to_status(reversion: Reversion, profile: DailyProfile | None = None) -> ForecastStatus:
    daily = None
    if profile is not None:
        daily = DailyProfileStatus(
            means={key: mean for key, mean in zip(HOUR_KEYS, profile.means, strict=True) if mean is not None},
            **{name: getattr(profile, name) for name in PROFILE_STATE},
            skill=quantize(profile.skill),
        )
    return ForecastStatus(
        **{name: getattr(reversion, name) for name in FORECAST_STATE},
        persistence=quantize(reversion.persistence),
        drift=quantize(reversion.drift),
        daily=daily,
    )


def percent(fraction: Decimal) -> str:
    return f"{quantize(fraction * 100, 0)}%"


def dump(status: InferenceDeploymentStatus) -> dict[str, Any]:
    """JSON-ready status: camelCase keys, decimals as strings, times as RFC 3339."""
    data: dict[str, Any] = status.model_dump(mode="json", by_alias=True, exclude_none=True)
    return data
