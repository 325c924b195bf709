"""Issue 17, points 4, 6 and 7: failures are visible (Degraded, one event per transition, a log line naming the
object), invalid specs post one event rather than one per loop, the object's status beats a stale cache, and a
stuck reconcile fails liveness."""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from typing import Any

import pytest

from crossover.liveness import Stuck, Watchdog
from crossover.main import status_to_use
from crossover.reconcile.ports import ClusterError
from crossover.reconcile.step import Resource, reconcile_or_degrade
from tests.operator.fakes import FakeCluster, FakeMetrics
from tests.operator.test_reconcile import NOW, ROUTER, conditions, manifest, reading

REFUSAL = 'Service llama-8b-engine: 422 Unprocessable Entity: Service "x" is invalid: metadata.name: Invalid value'


@dataclass
class RefusingCluster(FakeCluster):
    """Refuses to apply one kind, as the API server refuses an invalid Service."""

    refuse: set[str] = field(default_factory=lambda: {"Service"})

    def apply(self, manifest: dict[str, Any]) -> None:
        if manifest["kind"] in self.refuse:
            raise ClusterError(REFUSAL)
        super().apply(manifest)


def loop(cluster: FakeCluster, times: int, spec: dict | None = None, status: dict | None = None, generation: int = 1):
    """Reconcile `times` times, each run starting from the status the previous one wrote; all events."""
    events = []
    status = status or {}
    for _ in range(times):
        out = reconcile_or_degrade(
            Resource("llama-8b", "ml", "uid-1", generation, spec or manifest()["spec"], status),
            cluster,
            FakeMetrics(reading()),
            ROUTER,
            NOW,
        )
        status = out.status
        events.extend(out.events)
    return status, events


def test_a_refused_child_is_a_degraded_condition_with_the_api_message_one_event_and_a_named_log(caplog):
    cluster = RefusingCluster()
    with caplog.at_level(logging.WARNING):
        status, events = loop(cluster, 5)
    degraded = conditions(status)["Degraded"]
    assert (degraded["status"], degraded["reason"]) == ("True", "ReconcileFailed")
    assert REFUSAL in degraded["message"]
    assert [(e.type, e.reason) for e in events] == [("Warning", "ReconcileFailed")]  # one, not five
    assert all("ml/llama-8b" in r.getMessage() for r in caplog.records if "reconcile failed" in r.getMessage())
    assert any("ml/llama-8b" in r.getMessage() and REFUSAL in r.getMessage() for r in caplog.records)

    cluster.refuse = set()
    status, events = loop(cluster, 2, status=status)
    assert conditions(status)["Degraded"]["status"] == "False"
    assert [(e.type, e.reason) for e in events if "Degraded" in e.message] == [("Normal", "Reconciled")]


def test_an_arithmetic_error_is_degraded_too():
    class Exploding(FakeCluster):
        def engine_state(self, namespace: str, name: str):  # type: ignore[override]
            raise ArithmeticError("[<class 'decimal.InvalidOperation'>]")

    status, events = loop(Exploding(), 3)
    assert conditions(status)["Degraded"]["message"].startswith("ArithmeticError")
    assert len(events) == 1


@pytest.mark.parametrize("name", ["a" * 60, "llama.v1", "Llama"])
def test_a_name_whose_children_cannot_exist_creates_nothing_and_says_why(name: str):
    cluster = FakeCluster()
    out = reconcile_or_degrade(
        Resource(name, "ml", "uid-1", 1, manifest()["spec"], {}), cluster, FakeMetrics(reading()), ROUTER, NOW
    )
    assert cluster.objects == {}  # before: the Deployment was created, then the Service refused forever
    valid = conditions(out.status)["SpecValid"]
    assert valid["status"] == "False" and "metadata.name" in valid["message"]


def test_an_invalid_spec_posts_one_event_not_one_per_loop():
    good, _ = loop(FakeCluster(), 1)
    bad = copy.deepcopy(manifest()["spec"])
    bad["replicas"]["min"] = 9  # above max
    status, events = loop(FakeCluster(), 10, spec=bad, status=good, generation=2)
    assert [e.reason for e in events] == ["InvalidSpec"]  # before: one per loop (63 in 5 minutes at 5 s)
    bad["replicas"]["max"] = 0  # another invalid edit: a new generation, one new event
    _, events = loop(FakeCluster(), 3, spec=bad, status=status, generation=3)
    assert [e.reason for e in events] == ["InvalidSpec"]


OURS = {
    "lastDecision": {"time": "2026-11-22T11:10:00.500000Z"},
    "recommendations": [{"since": "2026-11-22T11:00:00Z", "replicas": 3}],
}
THEIRS = {
    "lastDecision": {"time": "2026-11-22T11:50:00.000000Z"},
    "recommendations": [{"since": "2026-11-22T11:50:00Z", "replicas": 5}],
}
OLDER = {"lastDecision": {"time": "2026-11-22T11:10:00.250000Z"}, "recommendations": []}


@pytest.mark.parametrize(
    ("body_status", "body_version", "latest", "expected"),
    [
        (THEIRS, "150", (OURS, "100"), THEIRS),  # another replica wrote since (failover and back): the object wins
        (OURS, "101", (OURS, "100"), OURS),  # our own patch landed: the object has it
        ({}, "100", (OURS, "100"), OURS),  # a queued handler's body from before our patch: our write is newer
        # before: a body older than the one our write was computed from (the creation's, run by the change handler
        # after the timer's first reconcile) replaced our status and its history started again
        ({}, "90", (OURS, "100"), OURS),
        (OLDER, "90", (OURS, "100"), OURS),  # its decision is older than ours
        (THEIRS, "100", None, THEIRS),  # nothing written by this process
        (THEIRS, None, (OURS, None), THEIRS),  # no version to compare, and the object's decision is newer
        ({"lastDecision": {"time": "yesterday"}}, "90", (OURS, "100"), {"lastDecision": {"time": "yesterday"}}),
    ],
)
def test_the_object_s_status_wins_unless_our_write_is_newer(body_status, body_version, latest, expected):
    assert status_to_use(body_status, body_version, latest) == expected


def test_a_stuck_reconcile_fails_liveness():
    now = [0.0]
    watchdog = Watchdog(bound_seconds=300, clock=lambda: now[0])
    with watchdog.watching("ml/quick"):
        assert watchdog.check() == 1
    assert watchdog.check() == 0
    with watchdog.watching("ml/stuck"):
        now[0] = 299.0
        assert watchdog.check() == 1
        now[0] = 301.0
        with pytest.raises(Stuck, match="ml/stuck"):
            watchdog.check()
    assert watchdog.check() == 0  # it returned: healthy again


def test_local_runs_listen_on_loopback(monkeypatch: pytest.MonkeyPatch):
    """Point 10: liveness on 0.0.0.0:8080 took port 8080 on every lab pod address (routers died, "address in use")."""
    from crossover.cli import build_parser
    from crossover.settings import OperatorConfig

    monkeypatch.delenv("CROSSOVER_METRICS_LISTEN", raising=False)
    monkeypatch.delenv("CROSSOVER_PEERING", raising=False)
    args = build_parser().parse_args(["operator"])
    assert args.liveness.startswith("http://127.0.0.1:")
    assert args.peering is None  # standalone unless peering is configured
    assert OperatorConfig.from_env().metrics_listen.startswith("127.0.0.1:")
