"""metav1.Condition bookkeeping: lastTransitionTime moves only when a condition's status flips."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from crossover.api.v1alpha1 import Condition

READY = "Ready"
METRICS_AVAILABLE = "MetricsAvailable"
SPILLING = "Spilling"
CAPACITY_LIMITED = "CapacityLimited"
BUDGET_EXCEEDED = "BudgetExceeded"
AUTOSCALER_CONFLICT = "AutoscalerConflict"
SPEC_VALID = "SpecValid"
API_READY = "APIReady"  # the API may be called: base URL allowed, credentials Secret present and opted in
ROUTERS_READY = "RoutersReady"
DEGRADED = "Degraded"  # True: the last reconcile failed (the message is the API server's, or the error's)

# Conditions whose True is the healthy state: for these, even a first False is worth an event.
HEALTHY_WHEN_TRUE = frozenset({READY, METRICS_AVAILABLE, SPEC_VALID, API_READY, ROUTERS_READY})


@dataclass(frozen=True)
class DesiredCondition:
    type: str
    status: bool
    reason: str
    message: str


@dataclass(frozen=True)
class Transition:
    type: str
    status: str
    reason: str
    message: str


def merge(
    existing: list[Condition], desired: list[DesiredCondition], generation: int | None, now: datetime
) -> tuple[list[Condition], list[Transition]]:
    """New conditions list (order of `desired`, then any others kept) and the flips worth an event."""
    by_type = {c.type: c for c in existing}
    merged: list[Condition] = []
    flips: list[Transition] = []
    for want in desired:
        status = "True" if want.status else "False"
        old = by_type.pop(want.type, None)
        changed = old is None or old.status != status
        merged.append(
            Condition(
                type=want.type,
                status=status,
                reason=want.reason,
                message=want.message,
                observed_generation=generation,
                last_transition_time=now if changed or old is None else old.last_transition_time,
            )
        )
        quiet_start = old is None and not want.status and want.type not in HEALTHY_WHEN_TRUE
        if changed and not quiet_start:  # a new False is news only where False means trouble
            flips.append(Transition(want.type, status, want.reason, want.message))
    merged.extend(by_type.values())
    return merged, flips
