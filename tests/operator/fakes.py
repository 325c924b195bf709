"""In-memory adapters for reconcile's ports: enough cluster to watch what reconcile does."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from crossover.api.v1alpha1 import InferenceDeploymentSpec
from crossover.reconcile.ports import EngineState, MetricsReading


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


@dataclass
class FakeMetrics:
    reading: MetricsReading

    def read(self, namespace: str, name: str, spec: InferenceDeploymentSpec, now: datetime) -> MetricsReading:
        return self.reading
