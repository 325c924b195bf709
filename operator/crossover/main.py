"""kopf wiring, kept thin: one startup handler with every kopf setting, one reconcile handler per resource.

Handlers are registered on an explicit registry (not at import time) so the timer interval and adapters come
from the operator's configuration, and tests can build an operator against any cluster.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import kopf
from kubernetes import client, config

from crossover.adapters.kubernetes_cluster import KubernetesCluster
from crossover.adapters.prometheus_metrics import PrometheusMetrics
from crossover.contracts import GROUP, PLURAL, VERSION, Basis
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
from crossover.reconcile.step import Outcome, Resource, reconcile
from crossover.settings import OperatorConfig

log = logging.getLogger("crossover.operator")

FINALIZER = f"{GROUP}/finalizer"


def load_kube_config() -> client.ApiClient:
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config()  # type: ignore[no-untyped-call]
    return client.ApiClient()


def build_registry(cfg: OperatorConfig, serve_metrics: bool = True) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()
    # locks: one reconcile per resource at a time; latest: the status each resource was last given, by uid, because
    # a handler queued behind another still holds the body (and status) from before the other one patched it
    state: dict[str, Any] = {"locks": {}, "latest": {}, "guard": threading.Lock(), "reconciles": 0}

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        """A private registry gets none of kopf's default login handlers: in-cluster token first, then kubeconfig."""
        return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
        settings.persistence.finalizer = FINALIZER
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
            prefix=GROUP, key="last-handled-configuration"
        )
        settings.watching.server_timeout = 270
        settings.watching.client_timeout = 300
        settings.watching.connect_timeout = 10
        settings.posting.level = logging.INFO
        settings.execution.max_workers = 8
        settings.networking.request_timeout = 30
        api = load_kube_config()
        memo.cluster = KubernetesCluster(api)
        memo.metrics = PrometheusMetrics(
            cfg.prometheus_url, rate_window_seconds=cfg.rate_window_seconds, round_seconds=cfg.interval_seconds
        )
        if serve_metrics:
            serve(cfg.metrics_listen)
        log.info("crossover operator: Prometheus %s, every %ss", cfg.prometheus_url, cfg.interval_seconds)

    @kopf.on.probe(id="reconciles", registry=registry)
    def reconciles(**_: Any) -> int:
        return int(state["reconciles"])

    def run(body: kopf.Body, memo: kopf.Memo, patch: kopf.Patch) -> None:
        key = f"{body.metadata.namespace}/{body.metadata.name}"
        with state["guard"]:
            lock = state["locks"].setdefault(key, threading.Lock())
        with lock:  # the timer and change handlers never reconcile one resource at once
            started = time.perf_counter()
            try:
                outcome = reconcile(
                    Resource(
                        name=body.metadata.name or "",
                        namespace=body.metadata.namespace or "",
                        uid=body.metadata.uid or "",
                        generation=body.metadata.get("generation"),
                        spec=dict(body.spec),
                        status=state["latest"].get(body.metadata.uid) or dict(body.status),
                    ),
                    memo.cluster,
                    memo.metrics,
                    cfg.router,
                    datetime.now(UTC),
                    cfg.engine,
                )
            except Exception as error:
                RECONCILE_ERRORS.labels(kind=type(error).__name__).inc()
                raise kopf.TemporaryError(
                    f"reconcile failed: {type(error).__name__}", delay=cfg.interval_seconds
                ) from error
            finally:
                RECONCILE_SECONDS.observe(time.perf_counter() - started)
                state["reconciles"] += 1
            state["latest"][body.metadata.uid] = outcome.status
            _publish(body, patch, outcome)

    @kopf.timer(GROUP, VERSION, PLURAL, interval=cfg.interval_seconds, sharp=True, registry=registry)
    def tick(body: kopf.Body, memo: kopf.Memo, patch: kopf.Patch, **_: Any) -> None:
        run(body, memo, patch)

    @kopf.on.create(GROUP, VERSION, PLURAL, registry=registry)
    @kopf.on.update(GROUP, VERSION, PLURAL, field="spec", registry=registry)
    def changed(body: kopf.Body, memo: kopf.Memo, patch: kopf.Patch, **_: Any) -> None:
        run(body, memo, patch)

    @kopf.on.delete(GROUP, VERSION, PLURAL, optional=True, registry=registry)
    def forget(body: kopf.Body, **_: Any) -> None:
        """Children go by owner references; only this process's memory of the resource needs dropping."""
        with state["guard"]:
            state["latest"].pop(body.metadata.uid, None)
            state["locks"].pop(f"{body.metadata.namespace}/{body.metadata.name}", None)
        LEDGER.forget(body.metadata.namespace or "", body.metadata.name or "")

    return registry


def ledger_values(status: dict[str, Any]) -> dict[Basis, Decimal]:
    """The month-to-date figures of a status, by basis; unknown ones are left out."""
    ledger = (status.get("cost") or {}).get("ledger") or {}
    found = {Basis.ACTUAL: ledger.get("actual"), Basis.API_ONLY: ledger.get("apiOnly")}
    return {basis: Decimal(value) for basis, value in found.items() if value is not None}


def _publish(body: kopf.Body, patch: kopf.Patch, outcome: Outcome) -> None:
    """Status as one merge patch (keys that disappeared are nulled), events, and the operator's gauges."""
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
        return
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
