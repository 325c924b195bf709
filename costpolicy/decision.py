"""The value decide() returns: a frozen record of what to do, why, and at each pipeline stage how."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from costpolicy.spec import PolicyMode


class Reason(StrEnum):
    """CamelCase reasons, as they appear in status, events and metrics labels."""

    SELF_HOSTED_CHEAPER = "SelfHostedCheaper"
    API_CHEAPER = "APICheaper"
    NO_DEMAND = "NoDemand"
    WITHIN_MARGIN = "WithinMargin"  # the margin kept the current count: the change would not save enough
    BEYOND_MARGIN = "BeyondMargin"  # the change saves more than the margin: it goes ahead
    PEAK_TOO_SHORT = "PeakTooShort"  # the forecast: the peak is expected to end before it repays the cold start
    DAILY_RAMP = "DailyRamp"  # the daily profile: replicas start a cold start ahead of the ramp this time of day brings
    TROUGH_REPAYS_RESTART = "TroughRepaysRestart"  # the forecast: a scale-down within the window pays for a restart
    UNCHANGED = "Unchanged"  # a stage that had nothing to do (stable, within rate limits, within bounds)
    SCALE_UP_STABILIZING = "ScaleUpStabilizing"
    SCALE_DOWN_STABILIZING = "ScaleDownStabilizing"
    SCALE_UP_RATE_LIMITED = "ScaleUpRateLimited"
    SCALE_DOWN_RATE_LIMITED = "ScaleDownRateLimited"
    CLAMPED_TO_MIN = "ClampedToMin"
    CLAMPED_TO_MAX = "ClampedToMax"
    METRICS_UNAVAILABLE = "MetricsUnavailable"
    METRICS_STALE = "MetricsStale"
    BUDGET_EXCEEDED = "BudgetExceeded"
    API_RATE_LIMITED = "APIRateLimited"
    SELF_HOSTED_ONLY = "SelfHostedOnly"
    API_ONLY = "APIOnly"
    PINNED = "Pinned"


class Action(StrEnum):
    SCALE_UP = "ScaleUp"
    SCALE_DOWN = "ScaleDown"
    HOLD = "Hold"


class StageName(StrEnum):
    """The pipeline's steps, in order (as the HPA's: recommend, stabilise, rate-limit, clamp; with forecasts)."""

    RAW = "raw"
    MARGIN = "margin"
    FORECAST = "forecast"
    PREWARM = "prewarm"
    STABILIZATION = "stabilization"
    TROUGH = "trough"
    RATE_LIMIT = "rateLimit"
    CLAMP = "clamp"


@dataclass(frozen=True, slots=True)
class Stage:
    """One step of the pipeline: the replica count after it, and why it changed (or not)."""

    name: StageName
    replicas: int
    reason: Reason
    message: str


@dataclass(frozen=True, slots=True)
class Recommendation:
    """A raw (pre-stabilisation) recommendation, kept only when it changes: the stabilisation windows read
    these intervals, so a constant input keeps a one-entry history however long it lasts."""

    since: datetime
    replicas: int


@dataclass(frozen=True, slots=True)
class Costs:
    """The live economics behind a decision, in dollars; None where a price is undefined (no tokens flow)."""

    replica_per_hour: Decimal
    overhead_per_hour: Decimal
    api_per_million_tokens: Decimal | None
    self_hosted_per_million_tokens: Decimal | None
    break_even_tokens_per_second: Decimal | None
    self_hosted_hourly: Decimal
    api_hourly: Decimal


@dataclass(frozen=True, slots=True)
class Flags:
    """Facts the operator turns into conditions."""

    metrics_available: bool
    capacity_limited: bool
    budget_exceeded: bool
    api_rate_limited: bool
    spilling: bool


@dataclass(frozen=True, slots=True)
class Decision:
    time: datetime
    mode: PolicyMode
    current_replicas: int
    replicas: int
    recommended_replicas: int
    spill_fraction: Decimal
    action: Action
    reason: Reason
    message: str
    actuate: bool
    stages: tuple[Stage, ...]
    costs: Costs
    flags: Flags
    history: tuple[Recommendation, ...]
