"""One reconcile of one InferenceDeployment: level-based and idempotent, so a timer can call it forever.

children → engine state → metrics → costpolicy.decide → scale (through the scale subresource) → status.
A spec that cannot be used changes nothing: the last good state stays and a condition and an event say why.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_CEILING, Decimal
from typing import Any

from pydantic import ValidationError

from costpolicy import Decision, ReplicaState, Snapshot, decide
from costpolicy.daily import DailyProfile
from costpolicy.daily import observe as learn_daily
from costpolicy.money import quantize
from costpolicy.reversion import Reversion
from costpolicy.reversion import observe as learn_demand
from costpolicy.snapshot import Demand
from costpolicy.spec import PolicyMode
from crossover.api.v1alpha1 import (
    CostLedger,
    CostStatus,
    DemandStatus,
    HourlyCost,
    InferenceDeploymentSpec,
    InferenceDeploymentStatus,
    ReplicasStatus,
    RoutingStatus,
)
from crossover.contracts import Component, engine_name, name_problem, selector_string
from crossover.manifest import describe_validation_error
from crossover.reconcile import conditions as cond
from crossover.reconcile.api_access import APIAccess, api_access
from crossover.reconcile.children import EngineSettings, Owner, RouterPodSettings, children
from crossover.reconcile.ledger import next_ledger
from crossover.reconcile.observations import Observations, observe
from crossover.reconcile.ports import ChildRejected, Cluster, ClusterError, EngineState, Metrics, MetricsReading
from crossover.reconcile.routing import routing_status
from crossover.reconcile.status import (
    decision_record,
    dump,
    forecast_to_status,
    next_history,
    percent,
    profile_from_status,
    recommendations_from_status,
    recommendations_to_status,
    reversion_from_status,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass(frozen=True)
class Outcome:
    """What one reconcile did and wants written: built once, at the end."""

    status: dict[str, Any]
    events: tuple[Event, ...] = ()
    decision: Decision | None = None
    scaled_to: int | None = None
    observations: Observations | None = None  # signals, capacity and cold start in use, saturation
    error: str | None = None  # set when the reconcile failed: status then carries Degraded=True with this message


@dataclass(frozen=True)
class _Observed:
    """What this reconcile saw: the resource, its parsed spec and last status, the engine, the metrics."""

    resource: Resource
    spec: InferenceDeploymentSpec
    previous: InferenceDeploymentStatus
    engine: EngineState
    reading: MetricsReading
    conflicts: list[str]
    now: datetime
    observations: Observations
    routers_ready: int  # router pods ready
    access: APIAccess  # whether routers may call the API with the key
    router_role: str  # the ClusterRole the routers' RoleBinding grants (the chart creates it)
    reversion: Reversion  # the demand forecast, with this reconcile's reading learned
    profile: DailyProfile  # the daily profile, likewise


@dataclass(frozen=True)
class Resource:
    """The parts of the custom resource reconcile reads (kopf hands them over as plain dicts)."""

    name: str
    namespace: str
    uid: str
    generation: int | None
    spec: dict[str, Any]
    status: dict[str, Any]


def reconcile_or_degrade(
    resource: Resource,
    cluster: Cluster,
    metrics: Metrics,
    router: RouterPodSettings,
    now: datetime,
    engine_settings: EngineSettings | None = None,
) -> Outcome:
    """reconcile(), and when it fails: the last good status plus Degraded=True with the error's message, one event
    when Degraded flips, and a log line naming the object. Never raises: the next interval simply tries again."""
    try:
        return reconcile(resource, cluster, metrics, router, now, engine_settings)
    except Exception as error:  # anything: an API refusal, a bug, arithmetic on absurd input
        message = error_message(error)
        log.warning("%s/%s: reconcile failed: %s", resource.namespace, resource.name, message)
        return _degraded(resource, message, now)


def error_message(error: BaseException) -> str:
    """One line: the cluster's own message when it refused, else the error type and text."""
    if isinstance(error, ClusterError):
        return str(error)
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _degraded(resource: Resource, message: str, now: datetime) -> Outcome:
    previous = _previous_status(resource.status)
    merged, flips = cond.merge(
        previous.conditions,
        [cond.DesiredCondition(cond.DEGRADED, True, "ReconcileFailed", message[:1024])],
        resource.generation,
        now,
    )
    events = tuple(Event("Warning", "ReconcileFailed", message[:1024]) for _ in flips)
    return Outcome(status=dump(previous.model_copy(update={"conditions": merged})), events=events, error=message)


def reconcile(
    resource: Resource,
    cluster: Cluster,
    metrics: Metrics,
    router: RouterPodSettings,
    now: datetime,
    engine_settings: EngineSettings | None = None,
) -> Outcome:
    previous = _previous_status(resource.status)
    problem = name_problem(resource.name)
    if problem is not None:  # the CRD refuses these; an object from before that rule must still not half-reconcile
        return _invalid_spec(resource, previous, problem, now)
    try:
        spec = InferenceDeploymentSpec.model_validate(resource.spec)
    except ValidationError as error:
        return _invalid_spec(resource, previous, describe_validation_error(error), now)

    owner = Owner(resource.name, resource.namespace, resource.uid)
    access = api_access(spec, resource.namespace, cluster, router.api_base_url_allowlist)
    try:
        engine = _ensure_children(owner, spec, previous, cluster, router, engine_settings, access.usable)
    except ChildRejected as error:  # the merged pod template (say) is something the API server refuses
        return _invalid_spec(resource, previous, str(error), now)
    conflicts = cluster.autoscalers_targeting(resource.namespace, engine_name(resource.name))
    routers = cluster.routers_ready(resource.namespace, resource.name)
    reading = metrics.read(resource.namespace, resource.name, spec, now)
    observations = observe(spec, previous, engine, reading, now)
    snapshot = _snapshot(engine, reading, previous, now, observations.demand, api_blocked=not access.usable)
    reversion, profile = _learn(previous, reading, snapshot.observed_at)
    decision = decide(observations.cost_spec, snapshot, recommendations_from_status(previous), now, reversion, profile)
    seen = _Observed(
        resource,
        spec,
        previous,
        engine,
        reading,
        conflicts,
        now,
        observations,
        routers,
        access,
        router.cluster_role,
        reversion,
        profile,
    )

    scaled_to, events = None, [Event(kind, reason, message) for kind, reason, message in observations.notes]
    if decision.actuate and not conflicts and decision.replicas != engine.replicas:
        if decision.replicas < engine.replicas:
            _rank_for_removal(resource, spec, cluster, metrics)
        cluster.scale(resource.namespace, engine_name(resource.name), decision.replicas)
        scaled_to = decision.replicas
        message = f"{engine.replicas} → {decision.replicas} replicas: {decision.message}"
        events.append(Event("Normal", decision.action.value, message))
    status, flips = _status(seen, decision, engine.replicas if scaled_to is None else scaled_to)
    return Outcome(
        status=dump(status),
        events=(*events, *flips),
        decision=decision,
        scaled_to=scaled_to,
        observations=observations,
    )


# a pod whose load is unknown ranks as the busiest: unknown is never idle
UNKNOWN_LOAD_COST = 1_000_000


def _rank_for_removal(resource: Resource, spec: InferenceDeploymentSpec, cluster: Cluster, metrics: Metrics) -> None:
    """Before scaling down: mark each engine pod with its in-flight requests as pod-deletion-cost, so the ReplicaSet
    removes the least busy first (it ranks not-ready pods before ready ones anyway)."""
    pods = cluster.engine_pods(resource.namespace, resource.name)
    loads = metrics.inflight_by_pod(resource.namespace, resource.name, spec.engine.kind) or {}
    for pod in pods:
        load = loads.get(pod)
        cost = (
            UNKNOWN_LOAD_COST
            if load is None
            else min(UNKNOWN_LOAD_COST - 1, int(load.to_integral_value(ROUND_CEILING)))
        )
        cluster.set_deletion_cost(resource.namespace, pod, cost)


def _previous_status(raw: dict[str, Any]) -> InferenceDeploymentStatus:
    try:
        return InferenceDeploymentStatus.model_validate(raw or {})
    except ValidationError:
        log.warning("status could not be parsed; starting from an empty status")
        return InferenceDeploymentStatus()


def _ensure_children(
    owner: Owner,
    spec: InferenceDeploymentSpec,
    previous: InferenceDeploymentStatus,
    cluster: Cluster,
    router: RouterPodSettings,
    engine_settings: EngineSettings | None,
    credentials: bool,
) -> EngineState:
    manifests = children(owner, spec, router, engine_settings, credentials)
    engine = cluster.engine_state(owner.namespace, owner.name)
    if engine is None:
        initial = (
            spec.replicas.pinned
            if spec.replicas.pinned is not None
            else max(spec.replicas.min, min(previous.replicas.desired, spec.replicas.max))
        )
        first = {**manifests[0], "spec": {**manifests[0]["spec"], "replicas": initial}}
        cluster.create(first)
        engine = EngineState(replicas=initial, ready=0, warming=0, unschedulable=0)
    for manifest in manifests:
        cluster.apply(manifest)
    return engine


def _snapshot(
    engine: EngineState,
    reading: MetricsReading,
    previous: InferenceDeploymentStatus,
    now: datetime,
    demand: Demand | None,
    api_blocked: bool,
) -> Snapshot:
    current_spill = previous.routing.spill_fraction if previous.routing is not None else None
    return Snapshot(
        observed_at=reading.observed_at or now,
        replicas=ReplicaState(
            current=engine.replicas, ready=engine.ready, warming=engine.warming, unschedulable=engine.unschedulable
        ),
        demand=demand,  # as measured, or raised by the saturation guard
        api_spend_this_month=reading.api_spend_this_month,
        api_throttled=reading.api_throttled or api_blocked,  # an API routers may not call takes nothing
        current_spill_fraction=current_spill,
    )


def _learn(
    previous: InferenceDeploymentStatus, reading: MetricsReading, observed_at: datetime
) -> tuple[Reversion, DailyProfile]:
    """The demand forecast and the daily profile as status kept them, having learned the demand Prometheus measured
    (not the saturation guard's raised planning figure, which is a guess about queued demand, not traffic), at the
    snapshot's time, only when it is known (unknown is never zero); a reading two reconciles share (one Prometheus
    round) counts once."""
    reversion, profile = reversion_from_status(previous), profile_from_status(previous)
    if reading.demand is None:
        return reversion, profile
    total = reading.demand.total_tps
    return learn_demand(reversion, observed_at, total), learn_daily(profile, observed_at, total)


def _ready(seen: _Observed, decision: Decision) -> cond.DesiredCondition:
    """Ready means traffic can flow now: a router can take it, and an engine replica or the API can serve it."""
    engine = seen.engine
    api_serves = (
        _api_available(decision, seen.reading, seen.access) and seen.spec.policy.mode is not PolicyMode.SELF_HOSTED_ONLY
    )
    backends = f"{engine.ready} ready engine replica(s), API {'available' if api_serves else 'not available'}"
    if seen.conflicts:
        return cond.DesiredCondition(cond.READY, False, "AutoscalerConflict", f"another autoscaler; {backends}")
    if seen.routers_ready == 0:
        return cond.DesiredCondition(
            cond.READY,
            False,
            "NoRouterReady",
            f"no router pod is ready ({backends}): routers wait until they can read status.routing and the engine's "
            f"EndpointSlices, which their RoleBinding grants through ClusterRole {seen.router_role} (the chart "
            "creates it); see the router pods' logs",
        )
    if engine.ready == 0 and not api_serves:
        return cond.DesiredCondition(cond.READY, False, "NoBackend", f"{backends}: nothing can serve a request")
    message = f"{seen.routers_ready} router(s) ready, {backends}, spilling {percent(decision.spill_fraction)}"
    return cond.DesiredCondition(cond.READY, True, "Serving", message)


def _conditions(seen: _Observed, decision: Decision) -> list[cond.DesiredCondition]:
    spec, engine, reading, conflicts, access = seen.spec, seen.engine, seen.reading, seen.conflicts, seen.access
    flags = decision.flags
    metrics_msg = (
        "demand read from Prometheus"
        if flags.metrics_available
        else f"{reading.error or 'no metrics'}; holding {decision.replicas} replica(s)"
    )
    capacity_msg = (
        f"{engine.unschedulable} replica(s) cannot be scheduled (no free {spec.engine.gpu.resource_name})"
        if engine.unschedulable
        else ("demand exceeds replicas.max" if flags.capacity_limited else "capacity available")
    )
    desired = [
        _ready(seen, decision),
        cond.DesiredCondition(
            cond.ROUTERS_READY,
            seen.routers_ready > 0,
            "RoutersReady" if seen.routers_ready > 0 else "NoRouterReady",
            f"{seen.routers_ready} router pod(s) ready",
        ),
        cond.DesiredCondition(cond.API_READY, access.usable, access.reason, access.message),
        cond.DesiredCondition(
            cond.METRICS_AVAILABLE,
            flags.metrics_available,
            "MetricsRead" if flags.metrics_available else decision.reason.value,
            metrics_msg,
        ),
        cond.DesiredCondition(
            cond.SPILLING,
            flags.spilling,
            decision.reason.value if flags.spilling else "NotSpilling",
            f"{percent(decision.spill_fraction)} of requests go to the API",
        ),
        cond.DesiredCondition(
            cond.CAPACITY_LIMITED,
            flags.capacity_limited,
            "Unschedulable"
            if engine.unschedulable
            else ("MaxReplicas" if flags.capacity_limited else "CapacityAvailable"),
            capacity_msg,
        ),
        cond.DesiredCondition(
            cond.BUDGET_EXCEEDED,
            flags.budget_exceeded,
            "BudgetExceeded" if flags.budget_exceeded else "WithinBudget",
            "monthly API budget spent: self-hosting only" if flags.budget_exceeded else "API spend within budget",
        ),
        cond.DesiredCondition(cond.SPEC_VALID, True, "Valid", "spec accepted"),
        cond.DesiredCondition(cond.DEGRADED, False, "Reconciled", "children applied and status written"),
    ]
    if conflicts:
        desired.append(
            cond.DesiredCondition(
                cond.AUTOSCALER_CONFLICT,
                True,
                "HorizontalPodAutoscaler",
                f"{', '.join(conflicts)} also scales the engine Deployment: crossover reports but does not scale",
            )
        )
    else:
        desired.append(cond.DesiredCondition(cond.AUTOSCALER_CONFLICT, False, "NoConflict", "no other autoscaler"))
    return desired


def _status(seen: _Observed, decision: Decision, applied: int) -> tuple[InferenceDeploymentStatus, list[Event]]:
    """The status to write, and an event for each condition that flipped; `applied` is the engine's count now."""
    resource, spec, previous, engine, reading, conflicts, now = (
        seen.resource, seen.spec, seen.previous, seen.engine, seen.reading, seen.conflicts, seen.now
    )  # fmt: skip
    merged, flips = cond.merge(previous.conditions, _conditions(seen, decision), resource.generation, now)
    events = []
    for flip in flips:
        warning = (
            flip.type in (cond.CAPACITY_LIMITED, cond.BUDGET_EXCEEDED, cond.AUTOSCALER_CONFLICT, cond.DEGRADED)
            and flip.status == "True"
        ) or (flip.type in cond.HEALTHY_WHEN_TRUE and flip.status == "False")
        events.append(
            Event("Warning" if warning else "Normal", flip.reason, f"{flip.type}={flip.status}: {flip.message}")
        )
    demand = reading.demand if decision.flags.metrics_available else None
    costs = decision.costs
    status = InferenceDeploymentStatus(
        observed_generation=resource.generation,
        selector=selector_string(resource.name, Component.ENGINE),
        replicas=ReplicasStatus(
            desired=decision.replicas if decision.actuate and not conflicts else applied,
            ready=engine.ready,
            warming=engine.warming,
            unschedulable=engine.unschedulable,
        ),
        routing=_routing(resource, spec, decision, reading, seen.access),
        demand=None
        if demand is None
        else DemandStatus(
            input_tokens_per_second=_round(demand.input_tps), output_tokens_per_second=_round(demand.output_tps)
        ),
        cost=(
            CostStatus(
                self_hosted_per_million_tokens=_status_amount(costs.self_hosted_per_million_tokens),
                api_per_million_tokens=_status_amount(costs.api_per_million_tokens),
                break_even_tokens_per_second=_round(costs.break_even_tokens_per_second),
                hourly=HourlyCost(self_hosted=quantize(costs.self_hosted_hourly), api=quantize(costs.api_hourly)),
            )
            if decision.flags.metrics_available
            else (previous.cost or CostStatus())
        ).model_copy(update={"ledger": _ledger(spec, previous, reading, now)}),
        last_decision=decision_record(decision, stages=True),
        history=next_history(previous.history, decision),
        recommendations=recommendations_to_status(decision.history),
        conditions=merged,
        signals=seen.observations.signals,
        capacity=seen.observations.capacity,
        cold_start=seen.observations.cold_start,
        forecast=forecast_to_status(seen.reversion, seen.profile),
    )
    return status, events


def _ledger(
    spec: InferenceDeploymentSpec, previous: InferenceDeploymentStatus, reading: MetricsReading, now: datetime
) -> CostLedger:
    """Month to date; the replicas billed since the last reconcile are those the previous status saw."""
    return next_ledger(
        previous.cost.ledger if previous.cost is not None else None,
        previous.replicas.ready + previous.replicas.warming,
        spec.cost_spec(),
        reading.api_spend_this_month,
        reading.tokens_this_month,
        now,
    )


def _api_available(decision: Decision, reading: MetricsReading, access: APIAccess) -> bool:
    """Routers may spill: the API is usable (allowed URL, opted-in Secret), within budget and not throttling."""
    return access.usable and not (decision.flags.budget_exceeded or reading.api_throttled)


def _routing(
    resource: Resource, spec: InferenceDeploymentSpec, decision: Decision, reading: MetricsReading, access: APIAccess
) -> RoutingStatus:
    # Advisory computes and reports (lastDecision.spillFraction) but changes nothing, routing included: routers
    # keep to their fast path (overflow, no ready pod) and never apply the computed spill
    advisory = spec.policy.mode is PolicyMode.ADVISORY
    return routing_status(
        spec,
        resource.name,
        Decimal(0) if advisory else decision.spill_fraction,
        api_available=_api_available(decision, reading, access),
        generation=resource.generation,
    )


def _status_amount(value: Decimal | None) -> Decimal | None:
    """Status carries four decimal places."""
    return None if value is None else quantize(value)


def _round(value: Decimal | None) -> Decimal | None:
    return None if value is None else value.quantize(Decimal("0.1"))


def _invalid_spec(resource: Resource, previous: InferenceDeploymentStatus, problem: str, now: datetime) -> Outcome:
    """Keep the last good state (routing included); say what is wrong on a condition, and in one event per spec
    generation: a timer re-reading the same bad spec every interval posts nothing new."""
    before = next((c for c in previous.conditions if c.type == cond.SPEC_VALID), None)
    merged, flips = cond.merge(
        previous.conditions,
        [cond.DesiredCondition(cond.SPEC_VALID, False, "InvalidSpec", problem)],
        resource.generation,
        now,
    )
    status = previous.model_copy(update={"conditions": merged})
    new_generation = before is not None and before.observed_generation != resource.generation
    events = (Event("Warning", "InvalidSpec", problem),) if flips or new_generation else ()
    return Outcome(status=dump(status), events=events)
