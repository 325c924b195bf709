"""The Cluster port served from watches: reads what kopf's indexes already hold, writes only what changed.

Why: at 1,000 InferenceDeployments a reconcile that GETs its engine Deployment, LISTs its pods and the namespace's
HorizontalPodAutoscalers and server-side applies six children every interval spends most of its time (and the API
server's) on answers it already has. kopf indexes (watch-fed, in memory) answer the reads; a child is re-applied only
when its manifest changed (a new spec or a new operator), when a watched Deployment's generation moved since our
last write (someone edited it: drift is put back on the next reconcile, as before), when it is missing from the
watch, or after `resync_seconds` (children without a generation, Services, ServiceAccounts and RoleBindings, are
put back then). A restarted operator remembers nothing and applies everything once, as before.

The API-credentials check (does the Secret exist, is it opted in, does it hold the key) was one Secret GET per
reconcile, a fifth of the reconcile's time at 1,000 resources that mostly share a handful of Secrets. An answer is
believed for `SecretChecks.ttl_seconds` (one GET per Secret per minute, whatever the number of resources naming
it), so a Secret created, labelled or revoked shows in APIReady within a minute. A watch on Secrets would need
list/watch on every Secret of the cluster and would hold their values in memory: not worth a minute.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, NamedTuple, Protocol

from crossover.contracts import INSTANCE_LABEL, engine_name, router_name
from crossover.reconcile.ports import EngineState, SecretCheck

READY, WARMING, UNSCHEDULABLE, TERMINATING = "ready", "warming", "unschedulable", "terminating"

ChildKey = tuple[str, str, str]  # kind, namespace, name


class DeploymentView(NamedTuple):
    """What the Deployment index keeps of each crossover Deployment."""

    generation: int | None
    replicas: int
    ready: int = 0  # status.readyReplicas (Ready means a router pod can take traffic)


def deployment_view(body: Mapping[str, Any]) -> DeploymentView:
    replicas = (body.get("spec") or {}).get("replicas")
    ready = int((body.get("status") or {}).get("readyReplicas") or 0)
    return DeploymentView(
        (body.get("metadata") or {}).get("generation"), 1 if replicas is None else int(replicas), ready
    )


class PodView(NamedTuple):
    """What the engine-pod index keeps of each engine pod."""

    state: str
    name: str
    started: Decimal | None = None  # Ready pods: seconds from the later of creation and scheduling to Ready


def pod_view(body: Mapping[str, Any]) -> PodView:
    """An engine pod as reconcile counts it (terminating pods serve no new requests and are not counted)."""
    meta = body.get("metadata") or {}
    name = str(meta.get("name", ""))
    if meta.get("deletionTimestamp"):
        return PodView(TERMINATING, name)
    conditions = {c.get("type"): c for c in ((body.get("status") or {}).get("conditions") or [])}
    scheduled, ready = conditions.get("PodScheduled") or {}, conditions.get("Ready") or {}
    if scheduled.get("status") == "False":
        return PodView(UNSCHEDULABLE, name)
    if ready.get("status") == "True":
        return PodView(READY, name, _start_seconds(meta.get("creationTimestamp"), scheduled, ready))
    return PodView(WARMING, name)


def _start_seconds(created: str | None, scheduled: Mapping[str, Any], ready: Mapping[str, Any]) -> Decimal | None:
    """The cold start, not the wait for a GPU (as KubernetesCluster measures it from the same fields)."""
    try:
        begun = [_time(t) for t in (created, scheduled.get("lastTransitionTime")) if t]
        done = _time(ready["lastTransitionTime"]) if ready.get("lastTransitionTime") else None
    except ValueError:
        return None
    if not begun or done is None:
        return None
    seconds = Decimal(str((done - max(begun)).total_seconds()))
    return seconds if seconds >= 0 else None


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text)


def digest(manifest: Mapping[str, Any]) -> str:
    return hashlib.blake2b(json.dumps(manifest, sort_keys=True).encode(), digest_size=16).hexdigest()


@dataclass(frozen=True)
class _Applied:
    digest: str
    generation: int | None  # a Deployment's metadata.generation after our write; None: unknown
    at: float
    owner: str


class AppliedChildren:
    """This process's memory of what it last applied, shared by every reconcile (one lock, short sections)."""

    def __init__(self, resync_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._resync = resync_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._children: dict[ChildKey, _Applied] = {}

    def fresh(self, key: ChildKey, wanted: str, generation: int | None, watched: bool) -> bool:
        """True if applying `wanted` again would change nothing we know of."""
        with self._lock:
            last = self._children.get(key)
        if last is None or last.digest != wanted or self._clock() - last.at >= self._resync:
            return False
        return not watched or (last.generation is not None and last.generation == generation)

    def record(self, key: ChildKey, wanted: str, generation: int | None, owner: str) -> None:
        with self._lock:
            self._children[key] = _Applied(wanted, generation, self._clock(), owner)

    def moved(self, key: ChildKey) -> None:
        """We changed it ourselves other than by apply (scale): its generation is no longer the one recorded."""
        with self._lock:
            last = self._children.get(key)
            if last is not None:
                self._children[key] = _Applied(last.digest, None, last.at, last.owner)

    def forget(self, namespace: str, owner: str) -> None:
        """The resource is gone (its children go by owner references): drop what we remembered of them."""
        with self._lock:
            for key in [k for k, v in self._children.items() if k[1] == namespace and v.owner == owner]:
                del self._children[key]


class SecretChecks:
    """What each Secret was found to be, remembered for `ttl_seconds` and shared by every reconcile."""

    def __init__(self, ttl_seconds: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_seconds = ttl_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._found: dict[tuple[str, str, str], tuple[float, SecretCheck]] = {}  # (namespace, name, key)

    def check(self, namespace: str, name: str, key: str, ask: Callable[[], SecretCheck]) -> SecretCheck:
        entry = (namespace, name, key)
        now = self._clock()
        with self._lock:
            found = self._found.get(entry)
            if found is not None and now - found[0] >= self.ttl_seconds:
                del self._found[entry]  # expired entries go, so Secrets no longer named are not kept
                found = None
        if found is not None:
            return found[1]
        answer = ask()  # errors (ClusterError) propagate and are not remembered
        with self._lock:
            self._found[entry] = (now, answer)
        return answer


class Writer(Protocol):
    """The writes and the read-through the watched cluster delegates (KubernetesCluster)."""

    def engine_state(self, namespace: str, name: str) -> EngineState | None: ...

    def create(self, manifest: dict[str, Any]) -> None: ...

    def apply_returning_generation(self, manifest: dict[str, Any]) -> int | None: ...

    def scale(self, namespace: str, deployment: str, replicas: int) -> None: ...

    def set_deletion_cost(self, namespace: str, pod: str, cost: int) -> None: ...

    def routers_ready(self, namespace: str, name: str) -> int: ...

    def check_secret(self, namespace: str, name: str, key: str) -> SecretCheck: ...


class WatchedCluster:
    """One reconcile's view of the cluster: kopf's indexes for reads, `AppliedChildren` to skip writes."""

    def __init__(
        self,
        writer: Writer,
        applied: AppliedChildren,
        deployments: Mapping[Any, Iterable[DeploymentView]],
        engine_pods: Mapping[Any, Iterable[PodView]],
        autoscalers: Mapping[Any, Iterable[str]],
        secrets: SecretChecks | None = None,
    ) -> None:
        self._writer = writer
        self._secrets = secrets if secrets is not None else SecretChecks(ttl_seconds=0)
        self._applied = applied
        self._deployments = deployments
        self._pods = engine_pods
        self._autoscalers = autoscalers

    def _deployment(self, namespace: str, name: str) -> DeploymentView | None:
        return next(iter(self._deployments.get((namespace, name)) or ()), None)

    def engine_state(self, namespace: str, name: str) -> EngineState | None:
        view = self._deployment(namespace, engine_name(name))
        if view is None:  # not created yet, or the watch has not seen it yet: ask the API server
            return self._writer.engine_state(namespace, name)
        pods = list(self._pods.get((namespace, name)) or ())
        counts = Counter(p.state for p in pods)
        return EngineState(
            replicas=view.replicas,
            ready=counts[READY],
            warming=counts[WARMING],
            unschedulable=counts[UNSCHEDULABLE],
            started=tuple(sorted((p.name, p.started) for p in pods if p.state == READY and p.started is not None)),
        )

    def create(self, manifest: dict[str, Any]) -> None:
        self._writer.create(manifest)

    def apply(self, manifest: dict[str, Any]) -> None:
        meta = manifest["metadata"]
        key: ChildKey = (manifest["kind"], meta["namespace"], meta["name"])
        wanted = digest(manifest)
        watched = manifest["kind"] == "Deployment"
        view = self._deployment(meta["namespace"], meta["name"]) if watched else None
        if watched and view is None:
            self._applied.moved(key)  # missing from the watch: apply (it may have been deleted)
        if self._applied.fresh(key, wanted, view.generation if view else None, watched):
            return
        owner = (meta.get("labels") or {}).get(INSTANCE_LABEL, "")
        self._applied.record(key, wanted, self._writer.apply_returning_generation(manifest), owner)

    def scale(self, namespace: str, deployment: str, replicas: int) -> None:
        self._writer.scale(namespace, deployment, replicas)
        self._applied.moved(("Deployment", namespace, deployment))

    def autoscalers_targeting(self, namespace: str, deployment: str) -> list[str]:
        return sorted(self._autoscalers.get((namespace, deployment)) or ())

    def engine_pods(self, namespace: str, name: str) -> list[str]:
        return sorted(p.name for p in self._pods.get((namespace, name)) or () if p.state != TERMINATING)

    def set_deletion_cost(self, namespace: str, pod: str, cost: int) -> None:
        self._writer.set_deletion_cost(namespace, pod, cost)

    def routers_ready(self, namespace: str, name: str) -> int:
        view = self._deployment(namespace, router_name(name))
        return view.ready if view is not None else self._writer.routers_ready(namespace, name)

    def check_secret(self, namespace: str, name: str, key: str) -> SecretCheck:
        return self._secrets.check(namespace, name, key, lambda: self._writer.check_secret(namespace, name, key))
