"""The bill from cluster facts, as a cloud bill and a provider invoice would come.

Replica time is each engine pod's lifetime as the API server reports it (watched): from scheduled onto a node to
deleted, warming included, because a GPU is paid for from the moment it is allocated until it is released. API
dollars are the router's own spend counter. The fixed overhead is paid while at least one replica exists, as in
the cost model. Times here are wall seconds (monotonic clock); prices are the compressed manifest's, so the dollars
are the real dollars of the replayed period (compression.py).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from crossover_lab.kube import plain

log = logging.getLogger(__name__)

SECONDS_PER_HOUR = Decimal(3600)


@dataclass
class Lifetime:
    scheduled: float
    ready: float | None = None
    deleted: float | None = None


def _overlap(lo: float, hi: float, start: float, end: float) -> float:
    return max(0.0, min(hi, end) - max(lo, start))


def replica_seconds(lifetimes: list[Lifetime], start: float, end: float) -> float:
    """Replica-seconds billed in [start, end): every pod from scheduled to deleted (or `end` if still there)."""
    return sum(_overlap(p.scheduled, p.deleted if p.deleted is not None else end, start, end) for p in lifetimes)


def busy_seconds(lifetimes: list[Lifetime], start: float, end: float) -> float:
    """Seconds in [start, end) with at least one replica (the union of lifetimes): when the overhead is paid."""
    spans = sorted((max(start, p.scheduled), min(end, p.deleted if p.deleted is not None else end)) for p in lifetimes)
    total, cursor = 0.0, start
    for begin, finish in spans:
        lo = max(begin, cursor)
        if finish > lo:
            total += finish - lo
            cursor = finish
    return total


def count_at(lifetimes: list[Lifetime], t: float, ready_only: bool = False) -> int:
    """Pods that exist (or are ready) at wall time t."""
    n = 0
    for p in lifetimes:
        begin = p.ready if ready_only else p.scheduled
        if begin is not None and begin <= t and (p.deleted is None or p.deleted > t):
            n += 1
    return n


@dataclass(frozen=True)
class Bill:
    replicas: Decimal
    overhead: Decimal
    api: Decimal

    @property
    def total(self) -> Decimal:
        return self.replicas + self.overhead + self.api


def bill(
    lifetimes: list[Lifetime],
    start: float,
    end: float,
    replica_per_hour: Decimal,
    overhead_per_hour: Decimal,
    api_dollars: Decimal,
) -> Bill:
    replica_hours = Decimal(f"{replica_seconds(lifetimes, start, end):.6f}") / SECONDS_PER_HOUR
    busy_hours = Decimal(f"{busy_seconds(lifetimes, start, end):.6f}") / SECONDS_PER_HOUR
    return Bill(replica_hours * replica_per_hour, busy_hours * overhead_per_hour, api_dollars)


@dataclass
class PodClock:
    """Watches one label selector's pods and stamps when each was scheduled, turned Ready and was deleted."""

    api: client.ApiClient
    namespace: str
    selector: str
    pods: dict[str, Lifetime] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="pod-clock", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def lifetimes(self) -> list[Lifetime]:
        with self._lock:
            return [Lifetime(p.scheduled, p.ready, p.deleted) for p in self.pods.values()]

    def _observe(self, kind: str, pod: dict[str, Any], now: float) -> None:
        uid = pod["metadata"]["uid"]
        with self._lock:
            known = self.pods.get(uid)
            if kind == "DELETED":
                if known is not None and known.deleted is None:
                    known.deleted = now
                return
            if known is None:
                if not (pod.get("spec") or {}).get("nodeName"):
                    return  # Pending: no GPU allocated yet, nothing billed
                known = self.pods[uid] = Lifetime(scheduled=now)
            conditions = (pod.get("status") or {}).get("conditions") or []
            if known.ready is None and any(c["type"] == "Ready" and c["status"] == "True" for c in conditions):
                known.ready = now

    def _run(self) -> None:
        core = client.CoreV1Api(self.api)
        version = ""
        while not self._stop.is_set():
            try:
                if not version:
                    listing = plain(self.api, core.list_namespaced_pod(self.namespace, label_selector=self.selector))
                    now = time.monotonic()
                    for pod in listing["items"]:
                        self._observe("ADDED", pod, now)
                    version = listing["metadata"]["resourceVersion"]
                stream = watch.Watch().stream(  # type: ignore[no-untyped-call]
                    core.list_namespaced_pod,
                    self.namespace,
                    label_selector=self.selector,
                    resource_version=version,
                    timeout_seconds=5,
                )
                for event in stream:
                    now = time.monotonic()
                    raw = event["raw_object"]
                    version = raw["metadata"].get("resourceVersion", version)
                    self._observe(event["type"], raw, now)
                    if self._stop.is_set():
                        break
            except ApiException as error:
                if error.status == 410:
                    version = ""  # expired: list again
                else:
                    log.warning("pod watch: %s", error.reason)
                    time.sleep(0.5)
            except Exception as error:
                log.warning("pod watch: %s", error)
                time.sleep(0.5)
