"""Reconciles that cost little: reads from the watch, a child applied again only when something changed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from crossover.adapters.watched_cluster import (
    AppliedChildren,
    DeploymentView,
    PodView,
    SecretChecks,
    WatchedCluster,
    deployment_view,
    pod_view,
)
from crossover.main import _unchanged
from crossover.reconcile.ports import EngineState, SecretCheck


class Writer:
    """Counts the API calls the watched cluster makes; generations move as the API server moves them."""

    def __init__(self) -> None:
        self.applies: list[str] = []
        self.reads = 0
        self.generation = 1
        self.costs: dict[str, int] = {}

    def engine_state(self, namespace: str, name: str) -> EngineState | None:
        self.reads += 1
        return EngineState(replicas=3, ready=0, warming=0, unschedulable=0)

    def create(self, manifest: dict[str, Any]) -> None:
        pass

    def apply_returning_generation(self, manifest: dict[str, Any]) -> int | None:
        self.applies.append(manifest["metadata"]["name"])
        return self.generation if manifest["kind"] == "Deployment" else None

    def scale(self, namespace: str, deployment: str, replicas: int) -> None:
        self.generation += 1

    def set_deletion_cost(self, namespace: str, pod: str, cost: int) -> None:
        self.costs[pod] = cost


def deployment(name: str = "llm-engine", image: str = "vllm/vllm-openai:v1") -> dict[str, Any]:
    return {
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "ns", "labels": {"crossover.dev/inference-deployment": "llm"}},
        "spec": {"template": {"spec": {"containers": [{"name": "engine", "image": image}]}}},
    }


def service() -> dict[str, Any]:
    return {"kind": "Service", "metadata": {"name": "llm", "namespace": "ns"}, "spec": {"ports": [{"port": 80}]}}


class World:
    def __init__(self) -> None:
        self.now = 0.0
        self.writer = Writer()
        self.applied = AppliedChildren(resync_seconds=300, clock=lambda: self.now)
        self.deployments: dict[Any, list[DeploymentView]] = {}
        self.pods: dict[Any, list[PodView]] = {}
        self.hpas: dict[Any, list[str]] = {}

    def cluster(self) -> WatchedCluster:
        return WatchedCluster(self.writer, self.applied, self.deployments, self.pods, self.hpas)

    def watch_sees(self, generation: int | None = None) -> None:
        generation = self.writer.generation if generation is None else generation
        self.deployments[("ns", "llm-engine")] = [DeploymentView(generation, 3)]


def test_an_unchanged_child_is_applied_once_then_not_again_until_resync() -> None:
    world = World()
    world.cluster().apply(deployment())
    world.cluster().apply(service())
    world.watch_sees()
    for _ in range(5):
        world.now += 30
        world.cluster().apply(deployment())
        world.cluster().apply(service())
    assert world.writer.applies == ["llm-engine", "llm"]
    world.now += 300
    world.cluster().apply(service())
    assert world.writer.applies[-1] == "llm", "resync puts back children without a watched generation"


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (lambda w: w.cluster().apply(deployment(image="vllm/vllm-openai:v2")), "the manifest changed"),
        (lambda w: w.watch_sees(generation=7), "someone edited it (its generation moved)"),
        (lambda w: w.deployments.clear(), "it is missing from the watch"),
        (lambda w: w.cluster().scale("ns", "llm-engine", 5), "we scaled it"),
    ],
    ids=["manifest", "drift", "missing", "scaled"],
)
def test_a_deployment_is_applied_again_when(change: Any, why: str) -> None:
    world = World()
    world.cluster().apply(deployment())
    world.watch_sees()
    change(world)
    before = len(world.writer.applies)
    world.cluster().apply(deployment())
    assert len(world.writer.applies) == before + 1, why


def test_engine_state_comes_from_the_watch_and_reads_through_only_when_it_has_not_seen_the_deployment() -> None:
    world = World()
    assert world.cluster().engine_state("ns", "llm") == EngineState(3, 0, 0, 0)
    assert world.writer.reads == 1
    world.watch_sees()
    world.pods[("ns", "llm")] = [
        PodView("ready", "b", Decimal(90)),
        PodView("ready", "a", None),
        PodView("warming", "c"),
        PodView("unschedulable", "d"),
        PodView("terminating", "e"),
    ]
    assert world.cluster().engine_state("ns", "llm") == EngineState(
        3, ready=2, warming=1, unschedulable=1, started=(("b", Decimal(90)),)
    )
    assert world.writer.reads == 1
    assert world.cluster().engine_pods("ns", "llm") == ["a", "b", "c", "d"]  # not the terminating one
    world.cluster().set_deletion_cost("ns", "a", -5)
    assert world.writer.costs == {"a": -5}


def test_autoscalers_come_from_the_watch() -> None:
    world = World()
    world.hpas[("ns", "llm-engine")] = ["HorizontalPodAutoscaler/b", "HorizontalPodAutoscaler/a"]
    assert world.cluster().autoscalers_targeting("ns", "llm-engine") == [
        "HorizontalPodAutoscaler/a",
        "HorizontalPodAutoscaler/b",
    ]
    assert world.cluster().autoscalers_targeting("ns", "other-engine") == []


@pytest.mark.parametrize(
    ("body", "state"),
    [
        ({"status": {"conditions": [{"type": "Ready", "status": "True"}]}}, "ready"),
        ({"status": {"conditions": [{"type": "PodScheduled", "status": "False"}]}}, "unschedulable"),
        ({"status": {"conditions": [{"type": "PodScheduled", "status": "True"}]}}, "warming"),
        ({"status": {}}, "warming"),
        ({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}, "status": {}}, "terminating"),
    ],
)
def test_pod_state(body: dict[str, Any], state: str) -> None:
    assert pod_view(body).state == state


def test_a_ready_pod_keeps_its_cold_start_from_the_later_of_creation_and_scheduling() -> None:
    body = {
        "metadata": {"name": "p", "creationTimestamp": "2026-11-23T10:00:00Z"},
        "status": {
            "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-11-23T10:00:30Z"},
                {"type": "Ready", "status": "True", "lastTransitionTime": "2026-11-23T10:02:00Z"},
            ]
        },
    }
    assert pod_view(body) == PodView("ready", "p", Decimal(90))


def test_deployment_view_defaults_replicas_to_one_as_the_api_server_does() -> None:
    assert deployment_view({"metadata": {"generation": 4}, "spec": {}}) == DeploymentView(4, 1)


def _status(at: datetime, replicas: int = 2, **extra: Any) -> dict[str, Any]:
    return {"lastDecision": {"time": at.isoformat(), "action": "Hold", "replicas": replicas}, **extra}


T0 = datetime(2026, 11, 23, tzinfo=UTC)
HEARTBEAT = timedelta(minutes=5)


@pytest.mark.parametrize(
    ("new", "old", "unchanged"),
    [
        (_status(T0 + timedelta(seconds=30)), _status(T0), True),
        (_status(T0 + timedelta(minutes=6)), _status(T0), False),  # heartbeat: written now and then
        (_status(T0 + timedelta(seconds=30), replicas=3), _status(T0), False),
        (_status(T0 + timedelta(seconds=30), demand={"x": "1"}), _status(T0), False),
        (_status(T0), _status(T0, demand={"x": "1"}), False),  # a key that disappeared
        ({"conditions": []}, {"conditions": []}, True),  # no decision at all (invalid spec): equal is equal
        (
            _status(T0 + timedelta(seconds=30), cost={"hourly": "1", "ledger": {"actual": "2.5"}}),
            _status(T0, cost={"hourly": "1", "ledger": {"actual": "2.4"}}),
            True,  # the month-to-date ledger accrues with the clock: written with the heartbeat
        ),
        (
            _status(T0 + timedelta(seconds=30), cost={"hourly": "2", "ledger": {"actual": "2.5"}}),
            _status(T0, cost={"hourly": "1", "ledger": {"actual": "2.4"}}),
            False,
        ),
    ],
    ids=["time-only", "heartbeat", "decision", "new-key", "removed-key", "no-decision", "ledger", "cost"],
)
def test_a_status_that_changed_only_its_decision_time_is_not_written(
    new: dict[str, Any], old: dict[str, Any], unchanged: bool
) -> None:
    assert _unchanged(new, old, HEARTBEAT) is unchanged


@pytest.mark.parametrize(
    "answer", [SecretCheck.READY, SecretCheck.NOT_OPTED_IN, SecretCheck.NOT_FOUND, SecretCheck.KEY_MISSING]
)
def test_a_secret_is_read_once_per_ttl_whatever_the_number_of_resources_naming_it(answer: SecretCheck) -> None:
    now = [0.0]
    asked: list[tuple[str, str, str]] = []

    class SecretWriter(Writer):
        def check_secret(self, namespace: str, name: str, key: str) -> SecretCheck:
            asked.append((namespace, name, key))
            return answer

    checks = SecretChecks(ttl_seconds=60, clock=lambda: now[0])
    views = [WatchedCluster(SecretWriter(), AppliedChildren(60), {}, {}, {}, checks) for _ in range(3)]
    assert views[0].check_secret("ns", "provider", "apiKey") is answer
    now[0] = 59.0
    assert views[1].check_secret("ns", "provider", "apiKey") is answer  # another resource, same Secret
    assert views[1].check_secret("ns", "other", "apiKey") is answer  # another Secret is its own entry
    assert asked == [("ns", "provider", "apiKey"), ("ns", "other", "apiKey")]
    now[0] = 60.0
    assert views[2].check_secret("ns", "provider", "apiKey") is answer
    assert len(asked) == 3


@pytest.mark.parametrize(
    ("before", "after"),
    [
        (SecretCheck.READY, SecretCheck.NOT_OPTED_IN),  # revoked: the label removed
        (SecretCheck.NOT_OPTED_IN, SecretCheck.READY),  # fixed: the label added
    ],
)
def test_a_secret_that_changes_is_noticed_within_the_ttl(before: SecretCheck, after: SecretCheck) -> None:
    now = [0.0]
    state = [before]

    class SecretWriter(Writer):
        def check_secret(self, namespace: str, name: str, key: str) -> SecretCheck:
            return state[0]

    checks = SecretChecks(ttl_seconds=60, clock=lambda: now[0])
    view = WatchedCluster(SecretWriter(), AppliedChildren(60), {}, {}, {}, checks)
    assert view.check_secret("ns", "p", "k") is before
    state[0] = after
    now[0] = 30.0
    assert view.check_secret("ns", "p", "k") is before  # believed for the TTL
    now[0] = 60.0
    assert view.check_secret("ns", "p", "k") is after
