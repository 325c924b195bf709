"""kopf wiring, kept thin: one startup handler with every kopf setting, one reconcile handler per resource.

Handlers are registered on an explicit registry (not at import time) so the timer interval and adapters come
from the operator's configuration, and tests can build an operator against any cluster.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import kopf
from kubernetes import client, config

from crossover import slim_bodies
from crossover.adapters.kubernetes_cluster import KubernetesCluster
from crossover.adapters.prometheus_metrics import PrometheusMetrics
from crossover.adapters.watched_cluster import (
    AppliedChildren,
    SecretChecks,
    WatchedCluster,
    deployment_view,
    pod_view,
)
from crossover.contracts import COMPONENT_LABEL, GROUP, INSTANCE_LABEL, PLURAL, VERSION, Basis, Component
from crossover.liveness import Stuck, Watchdog
from crossover.operator_metrics import (
    ACTIONS,
    BREAK_EVEN_TPS,
    CAPACITY_IN_USE,
    COLD_START_SECONDS,
    COST_PER_HOUR,
    COST_PER_MTOK,
    DECISIONS,
    DESIRED_REPLICAS,
    LEDGER,
    RECONCILE_ERRORS,
    RECONCILE_SECONDS,
    REPLICAS,
    SIGNALS,
    SPILL_FRACTION,
    serve,
)
from crossover.reconcile.step import Outcome, Resource, reconcile_or_degrade
from crossover.settings import OperatorConfig
from crossover.sharding import Shard

log = logging.getLogger("crossover.operator")

FINALIZER = f"{GROUP}/finalizer"
SHARD_ANNOTATION = f"{GROUP}/shard"  # which shard reconciles the resource (sharded operators only)
RESYNC_INTERVALS = 10  # children without a watched generation are re-applied at least this often
HEARTBEAT_INTERVALS = 10  # an unchanged status is still written this often (lastDecision.time shows liveness)


def finalizer_for(shard: Shard) -> str:
    """One finalizer per shard: a shard that does not own a resource must never see (and remove) the owner's."""
    return FINALIZER if not shard.sharded else f"{FINALIZER}-shard-{shard.index}-of-{shard.count}"


class ShardDiffBaseStorage(kopf.AnnotationsDiffBaseStorage):
    """kopf records the last-handled spec even on objects no handler matched; a shard writes it only on its own."""

    def __init__(self, shard: Shard) -> None:
        super().__init__(prefix=GROUP, key="last-handled-configuration")
        self._shard = shard

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: Any) -> None:
        if self._shard.owns(body.metadata.namespace or "", body.metadata.name or ""):
            super().store(body=body, patch=patch, essence=essence)


def narrow_watches(settings: kopf.OperatorSettings) -> None:
    """Watch only crossover's own Deployments and engine Pods, filtered by the API server.

    Why: kopf's handler label filters are client-side, so without these selectors the operator would list and watch
    every Deployment and Pod in the cluster (a per-object worker and a JSON body for each event of each) to index the
    few it made. HorizontalPodAutoscalers stay cluster-wide: they are the user's, with no label of ours.
    """
    settings.watching.label_selectors["apps", "v1", "deployments"] = INSTANCE_LABEL
    settings.watching.label_selectors["v1", "pods"] = f"{INSTANCE_LABEL},{COMPONENT_LABEL}={Component.ENGINE.value}"


def load_kube_config() -> client.ApiClient:
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config()  # type: ignore[no-untyped-call]
    return client.ApiClient()


def build_registry(cfg: OperatorConfig, serve_metrics: bool = True) -> kopf.OperatorRegistry:
    slim_bodies.install()  # before kopf starts: it looks its event processor up then
    registry = kopf.OperatorRegistry()
    shard = cfg.shard
    # locks: one reconcile per resource at a time; latest: by uid, the status this process last wrote (or kept) and
    # the resourceVersion of the body it was computed from (see status_to_use)
    state: dict[str, Any] = {"locks": {}, "latest": {}, "guard": threading.Lock(), "reconciles": 0}
    applied = AppliedChildren(resync_seconds=RESYNC_INTERVALS * cfg.interval_seconds)
    secrets = SecretChecks()
    heartbeat = timedelta(seconds=HEARTBEAT_INTERVALS * cfg.interval_seconds)
    watchdog = Watchdog(cfg.stuck_after_seconds)

    def owned(namespace: str | None, name: str | None, **_: Any) -> bool:
        return shard.owns(namespace or "", name or "")

    def owner_owned(namespace: str | None, labels: kopf.Labels, **_: Any) -> bool:
        return shard.owns(namespace or "", labels.get(INSTANCE_LABEL, ""))

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        """A private registry gets none of kopf's default login handlers: in-cluster token first, then kubeconfig."""
        return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
        settings.persistence.finalizer = finalizer_for(shard)
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
        settings.persistence.diffbase_storage = ShardDiffBaseStorage(shard)
        settings.watching.server_timeout = 270
        settings.watching.client_timeout = 300
        settings.watching.connect_timeout = 10
        narrow_watches(settings)
        # kopf's own per-handler INFO lines ("Timer 'tick' succeeded") would be posted as an Event on every
        # reconcile; crossover posts its events itself (kopf.event, on transitions), so only warnings go as events
        settings.posting.level = logging.WARNING
        settings.execution.max_workers = 8
        settings.networking.request_timeout = 30
        api = load_kube_config()
        memo.cluster = KubernetesCluster(api)
        memo.metrics = PrometheusMetrics(
            cfg.prometheus_url, rate_window_seconds=cfg.rate_window_seconds, round_seconds=cfg.interval_seconds
        )
        if serve_metrics:
            serve(cfg.metrics_listen)
        log.info(
            "crossover operator: Prometheus %s, every %ss%s",
            cfg.prometheus_url,
            cfg.interval_seconds,
            f", shard {shard}" if shard.sharded else "",
        )

    # what the reconciles read, kept current by watches instead of asked for on every reconcile
    @kopf.index(
        "apps",
        "v1",
        "deployments",
        id="crossover_deployments",
        labels={INSTANCE_LABEL: kopf.PRESENT},
        when=owner_owned,
        registry=registry,
    )
    async def crossover_deployments(body: kopf.Body, namespace: str | None, name: str, **_: Any) -> dict[Any, Any]:
        return {(namespace, name): deployment_view(body)}

    @kopf.index(
        "v1",
        "pods",
        id="engine_pods",
        labels={INSTANCE_LABEL: kopf.PRESENT, COMPONENT_LABEL: Component.ENGINE.value},
        when=owner_owned,
        registry=registry,
    )
    async def engine_pods(
        body: kopf.Body, namespace: str | None, labels: Mapping[str, str], **_: Any
    ) -> dict[Any, Any]:
        return {(namespace, labels[INSTANCE_LABEL]): pod_view(body)}

    @kopf.index("autoscaling", "v2", "horizontalpodautoscalers", id="autoscalers", registry=registry)
    async def autoscalers(spec: kopf.Spec, namespace: str | None, name: str, **_: Any) -> dict[Any, Any]:
        target = spec.get("scaleTargetRef") or {}
        if target.get("kind") != "Deployment":
            return {}
        return {(namespace, target.get("name")): f"HorizontalPodAutoscaler/{name}"}

    @kopf.on.probe(id="reconciles", registry=registry)
    async def reconciles(**_: Any) -> int:
        return int(state["reconciles"])

    @kopf.on.probe(id="inflight", registry=registry)
    async def inflight(**_: Any) -> int:
        """Fails (so liveness fails) while a reconcile has run longer than the bound."""
        try:
            return watchdog.check()
        except Stuck as error:
            log.error("liveness: %s", error)
            raise kopf.PermanentError(str(error)) from None

    def run(body: kopf.Body, memo: kopf.Memo, patch: kopf.Patch, indexes: dict[str, Any]) -> None:
        key = f"{body.metadata.namespace}/{body.metadata.name}"
        with state["guard"]:
            lock = state["locks"].setdefault(key, threading.Lock())
        with lock, watchdog.watching(key):  # the timer and change handlers never reconcile one resource at once
            started = time.perf_counter()
            uid = body.metadata.uid or ""
            version = body.metadata.get("resourceVersion")
            previous = status_to_use(dict(body.status), version, state["latest"].get(uid))
            cluster = WatchedCluster(
                memo.cluster,
                applied,
                indexes["crossover_deployments"],
                indexes["engine_pods"],
                indexes["autoscalers"],
                secrets,
            )
            try:
                outcome = reconcile_or_degrade(
                    Resource(
                        name=body.metadata.name or "",
                        namespace=body.metadata.namespace or "",
                        uid=uid,
                        generation=body.metadata.get("generation"),
                        spec=dict(body.spec),
                        status=previous,
                    ),
                    cluster,
                    memo.metrics,
                    cfg.router,
                    datetime.now(UTC),
                    cfg.engine,
                )
            finally:
                RECONCILE_SECONDS.observe(time.perf_counter() - started)
                state["reconciles"] += 1
            if outcome.error is not None:
                RECONCILE_ERRORS.labels(kind="reconcile").inc()
            written = _publish(body, patch, outcome, previous, heartbeat)
            state["latest"][uid] = (outcome.status if written else previous, version)
            _claim(body, patch, shard)

    @kopf.timer(GROUP, VERSION, PLURAL, interval=cfg.interval_seconds, sharp=True, when=owned, registry=registry)
    def tick(body: kopf.Body, memo: kopf.Memo, patch: kopf.Patch, **kwargs: Any) -> None:
        run(body, memo, patch, kwargs)

    @kopf.on.create(GROUP, VERSION, PLURAL, when=owned, registry=registry)
    @kopf.on.update(GROUP, VERSION, PLURAL, field="spec", when=owned, registry=registry)
    def changed(body: kopf.Body, memo: kopf.Memo, patch: kopf.Patch, **kwargs: Any) -> None:
        run(body, memo, patch, kwargs)

    @kopf.on.delete(GROUP, VERSION, PLURAL, optional=True, when=owned, registry=registry)
    def forget(body: kopf.Body, **_: Any) -> None:
        """Children go by owner references; only this process's memory of the resource needs dropping."""
        with state["guard"]:
            state["latest"].pop(body.metadata.uid, None)
            state["locks"].pop(f"{body.metadata.namespace}/{body.metadata.name}", None)
        LEDGER.forget(body.metadata.namespace or "", body.metadata.name or "")
        applied.forget(body.metadata.namespace or "", body.metadata.name or "")

    return registry


def ledger_values(status: dict[str, Any]) -> dict[Basis, Decimal]:
    """The month-to-date figures of a status, by basis; unknown ones are left out."""
    ledger = (status.get("cost") or {}).get("ledger") or {}
    found = {Basis.ACTUAL: ledger.get("actual"), Basis.API_ONLY: ledger.get("apiOnly")}
    return {basis: Decimal(value) for basis, value in found.items() if value is not None}


def status_to_use(
    body_status: dict[str, Any], body_version: str | None, latest: tuple[dict[str, Any], str | None] | None
) -> dict[str, Any]:
    """The object's own status, unless this process wrote a newer one the body cannot show yet.

    A handler queued behind another holds a body from before the other patched status: the resourceVersion the last
    write was computed from, or an older one (kopf's change handler for a creation ran after the timer's first
    reconcile, with the creation's body and no status, and started the history again). Our write wins then. A body
    whose decision is as new as ours or newer shows our patch, or another replica's reconcile after a peering
    failover: the object's status is the truth, and a stale cache must never replace fresher recommendations.
    Decision times order the two (resourceVersions are opaque and must not be compared).
    """
    if latest is None:
        return body_status
    ours, computed_from = latest
    if body_version is not None and computed_from == body_version:
        return ours
    theirs_at, ours_at = _decided_at(body_status), _decided_at(ours)
    if ours_at is not None and "lastDecision" not in body_status:
        return ours
    if ours_at is not None and theirs_at is not None and theirs_at < ours_at:
        return ours
    return body_status


def _decided_at(status: dict[str, Any]) -> datetime | None:
    """When the status's decision was taken; None when it has none or its time cannot be read."""
    at = (status.get("lastDecision") or {}).get("time")
    try:
        return datetime.fromisoformat(str(at).replace("Z", "+00:00")) if at else None
    except ValueError:
        return None


def _claim(body: kopf.Body, patch: kopf.Patch, shard: Shard) -> None:
    """Sharded: name the shard on the resource (once), and drop finalizers another shard layout left behind."""
    own = finalizer_for(shard)
    finalizers = list(body.metadata.get("finalizers") or [])
    kept = [f for f in finalizers if f == own or not f.startswith(FINALIZER)]
    if kept != finalizers:
        patch.metadata["finalizers"] = kept
    if shard.sharded and body.metadata.annotations.get(SHARD_ANNOTATION) != str(shard):
        patch.metadata.annotations[SHARD_ANNOTATION] = str(shard)


def _comparable(status: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    """A status without what moves with the clock alone (the decision's time, the month-to-date ledger), and that
    time."""
    decision = dict(status.get("lastDecision") or {})
    at = decision.pop("time", None)
    cost = {k: v for k, v in (status.get("cost") or {}).items() if k != "ledger"}
    return {**status, "lastDecision": decision, "cost": cost}, at


def _unchanged(new: dict[str, Any], old: dict[str, Any], heartbeat: timedelta) -> bool:
    """Equal but for what moves with the clock, and the status on the object is younger than the heartbeat."""
    (new_rest, new_time), (old_rest, old_time) = _comparable(new), _comparable(old)
    if new_rest != old_rest:
        return False
    if new_time == old_time:
        return True
    try:
        age = datetime.fromisoformat(str(new_time)) - datetime.fromisoformat(str(old_time))
    except ValueError:
        return False
    return age < heartbeat


def _publish(
    body: kopf.Body, patch: kopf.Patch, outcome: Outcome, previous: dict[str, Any], heartbeat: timedelta
) -> bool:
    """Status as one merge patch (keys that disappeared are nulled) unless only what moves with the clock changed;
    events; the operator's gauges. True if the status was written."""
    write = not _unchanged(outcome.status, previous, heartbeat)
    if write:
        for key in body.status:
            if key not in outcome.status:
                patch.status[key] = None
        for key, value in outcome.status.items():
            patch.status[key] = value
    for event in outcome.events:
        kopf.event(body, type=event.type, reason=event.reason, message=event.message)
    ns, name = body.metadata.namespace or "", body.metadata.name or ""
    LEDGER.set(ns, name, ledger_values(outcome.status))
    decision = outcome.decision
    if decision is None:
        return write
    DECISIONS.labels(reason=decision.reason.value, action=decision.action.value).inc()
    DESIRED_REPLICAS.labels(ns, name).set(decision.replicas)
    SPILL_FRACTION.labels(ns, name).set(float(decision.spill_fraction))  # metrics are floats by nature
    _publish_observations(ns, name, outcome)
    for side, value in (
        ("selfHosted", decision.costs.self_hosted_per_million_tokens),
        ("api", decision.costs.api_per_million_tokens),
    ):
        if value is not None:
            COST_PER_MTOK.labels(ns, name, side).set(float(value))
    ACTIONS.labels(ns, name, decision.action.value, decision.reason.value).inc()
    replicas = outcome.status.get("replicas") or {}
    for state, key in (
        ("desired", "desired"),
        ("ready", "ready"),
        ("warming", "warming"),
        ("pending", "unschedulable"),
    ):
        REPLICAS.labels(ns, name, state).set(int(replicas.get(key, 0)))
    if decision.costs.break_even_tokens_per_second is not None:
        BREAK_EVEN_TPS.labels(ns, name).set(float(decision.costs.break_even_tokens_per_second))
    if decision.flags.metrics_available:  # unknown demand is not zero cost: leave the last known value
        COST_PER_HOUR.labels(ns, name, "selfHosted").set(float(decision.costs.self_hosted_hourly))
        COST_PER_HOUR.labels(ns, name, "api").set(float(decision.costs.api_hourly))
    return write


SIGNAL_NAMES = ("gpuUtilization", "requestsWaiting", "kvCacheUsage", "ttftP95Seconds")


def _publish_observations(ns: str, name: str, outcome: Outcome) -> None:
    """Signals, capacity and cold start in use as gauges; an unknown signal's series goes (unknown is not zero)."""
    seen = outcome.observations
    if seen is None:
        return
    values = seen.signals.model_dump(by_alias=True) if seen.signals is not None else {}
    for signal in SIGNAL_NAMES:
        value = values.get(signal)
        if value is None:
            with contextlib.suppress(KeyError):
                SIGNALS.remove(ns, name, signal)
        else:
            SIGNALS.labels(ns, name, signal).set(float(value))  # metrics are floats by nature
    in_use = seen.capacity.in_use
    for source in ("Declared", "Observed"):
        for phase, value in (
            ("prefill", in_use.prefill_tokens_per_second),
            ("decode", in_use.decode_tokens_per_second),
        ):
            if source == in_use.source:
                CAPACITY_IN_USE.labels(ns, name, phase, source).set(float(value))
            else:
                with contextlib.suppress(KeyError):
                    CAPACITY_IN_USE.remove(ns, name, phase, source)
    COLD_START_SECONDS.labels(ns, name).set(seen.cold_start.in_use_seconds)
