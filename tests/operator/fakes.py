"""In-memory adapters for reconcile's ports: enough cluster to watch what reconcile does."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from crossover.api.v1alpha1 import EngineKind, InferenceDeploymentSpec
from crossover.reconcile.ports import EngineState, MetricsReading, SecretCheck


@dataclass
class FakeCluster:
    objects: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    ready: int | None = None  # None: every requested replica is ready
    warming: int = 0
    unschedulable: int = 0
    started: tuple[tuple[str, Decimal], ...] = ()  # (pod, seconds scheduled -> Ready) of Ready pods
    hpas: list[str] = field(default_factory=list)
    scale_calls: list[int] = field(default_factory=list)
    creates: int = 0
    pods: list[str] = field(default_factory=list)  # engine pod names engine_pods() reports
    deletion_costs: dict[str, int] = field(default_factory=dict)
    routers: int | None = None  # ready router pods; None: as many as the router Deployment asks for
    secrets: dict[str, SecretCheck] | None = None  # by name; None: every named Secret is ready

    def _key(self, manifest: dict[str, Any]) -> tuple[str, str, str]:
        meta = manifest["metadata"]
        return manifest["kind"], meta["namespace"], meta["name"]

    def engine_state(self, namespace: str, name: str) -> EngineState | None:
        deployment = self.objects.get(("Deployment", namespace, f"{name}-engine"))
        if deployment is None:
            return None
        replicas = deployment["spec"]["replicas"]
        ready = replicas if self.ready is None else min(self.ready, replicas)
        return EngineState(
            replicas=replicas,
            ready=ready,
            warming=self.warming,
            unschedulable=self.unschedulable,
            started=self.started,
        )

    def create(self, manifest: dict[str, Any]) -> None:
        self.creates += 1
        self.objects[self._key(manifest)] = copy.deepcopy(manifest)

    def apply(self, manifest: dict[str, Any]) -> None:
        key = self._key(manifest)
        old = self.objects.get(key)
        new = copy.deepcopy(manifest)
        if old is not None and "replicas" in old.get("spec", {}) and "replicas" not in new.get("spec", {}):
            new["spec"]["replicas"] = old["spec"]["replicas"]  # the field belongs to the scaler, apply leaves it
        self.objects[key] = new

    def scale(self, namespace: str, deployment: str, replicas: int) -> None:
        self.scale_calls.append(replicas)
        self.objects[("Deployment", namespace, deployment)]["spec"]["replicas"] = replicas

    def autoscalers_targeting(self, namespace: str, deployment: str) -> list[str]:
        return list(self.hpas)

    def engine_pods(self, namespace: str, name: str) -> list[str]:
        return list(self.pods)

    def set_deletion_cost(self, namespace: str, pod: str, cost: int) -> None:
        self.deletion_costs[pod] = cost

    def routers_ready(self, namespace: str, name: str) -> int:
        deployment = self.objects.get(("Deployment", namespace, f"{name}-router"))
        if deployment is None:
            return 0
        return int(deployment["spec"]["replicas"]) if self.routers is None else self.routers

    def check_secret(self, namespace: str, name: str, key: str) -> SecretCheck:
        if self.secrets is None:
            return SecretCheck.READY
        return self.secrets.get(name, SecretCheck.NOT_FOUND)


@dataclass
class FakeMetrics:
    reading: MetricsReading
    inflight: dict[str, Decimal] | None = None  # per engine pod; None: Prometheus cannot say

    def read(self, namespace: str, name: str, spec: InferenceDeploymentSpec, now: datetime) -> MetricsReading:
        return self.reading

    def inflight_by_pod(self, namespace: str, name: str, kind: EngineKind) -> dict[str, Decimal] | None:
        return self.inflight
