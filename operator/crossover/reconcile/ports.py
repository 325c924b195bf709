"""What reconcile needs from the world, as small Protocols: the Kubernetes and Prometheus adapters implement
them for real, tests implement them with plain objects."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, Protocol

from costpolicy.snapshot import Demand
from crossover.api.v1alpha1 import EngineKind, InferenceDeploymentSpec


@dataclass(frozen=True)
class EngineState:
    """The engine Deployment as the cluster reports it."""

    replicas: int  # .spec.replicas: what the Deployment asks for now
    ready: int
    warming: int  # scheduled, not ready: paid for, serving nothing
    unschedulable: int  # Pending for lack of resources
    started: tuple[tuple[str, Decimal], ...] = ()  # (pod, seconds from scheduled to Ready) of the Ready pods


@dataclass(frozen=True)
class MetricsReading:
    """Demand and spend from Prometheus; `demand` None means unknown (unreachable, no series), never zero."""

    demand: Demand | None
    observed_at: datetime | None
    api_spend_this_month: Decimal | None = None
    tokens_this_month: tuple[Decimal, Decimal] | None = None  # (input, output) the router served, month to date
    api_throttled: bool = False
    error: str | None = None
    signals: dict[str, Decimal] = field(default_factory=dict)  # crossover.adapters.signals.SIGNALS, when known
    # (input, output) tokens/s of each engine pod that had requests waiting all through the rate window
    capacity_samples: tuple[tuple[Decimal, Decimal], ...] = ()


class ChildRejected(Exception):
    """The API server refused a child manifest as invalid (e.g. a merged engine pod template); the message says why."""


class SecretCheck(StrEnum):
    """What the operator found at credentialsSecretRef (the value itself is never read into anything)."""

    READY = "CredentialsReady"
    NOT_FOUND = "SecretNotFound"
    UNREADABLE = "SecretUnreadable"
    NOT_OPTED_IN = "SecretNotOptedIn"
    KEY_MISSING = "SecretKeyMissing"


class ClusterError(Exception):
    """The cluster refused or failed a request; the message is one line for a condition (the API server's own)."""


class Cluster(Protocol):
    def engine_state(self, namespace: str, name: str) -> EngineState | None: ...

    def create(self, manifest: dict[str, Any]) -> None: ...

    def apply(self, manifest: dict[str, Any]) -> None: ...

    def scale(self, namespace: str, deployment: str, replicas: int) -> None: ...

    def autoscalers_targeting(self, namespace: str, deployment: str) -> list[str]: ...

    def engine_pods(self, namespace: str, name: str) -> list[str]:
        """Names of the engine pods that are not terminating."""
        ...

    def set_deletion_cost(self, namespace: str, pod: str, cost: int) -> None:
        """controller.kubernetes.io/pod-deletion-cost: the ReplicaSet removes lower costs first."""
        ...

    def routers_ready(self, namespace: str, name: str) -> int:
        """Router pods of this InferenceDeployment that are ready (0 when there are none yet)."""
        ...

    def check_secret(self, namespace: str, name: str, key: str) -> SecretCheck: ...


class Metrics(Protocol):
    def read(self, namespace: str, name: str, spec: InferenceDeploymentSpec, now: datetime) -> MetricsReading: ...

    def inflight_by_pod(self, namespace: str, name: str, kind: EngineKind) -> dict[str, Decimal] | None:
        """Requests each engine pod holds now, by pod name; None when unknown."""
        ...
