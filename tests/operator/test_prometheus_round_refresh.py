"""A round past its interval: the reconcile that finds it asks the next and plans with it; the others read the last.

Against a real HTTP server that speaks Prometheus' query API and holds its answers until the test lets them go, so
the test sees who waits for a round and who does not (no Prometheus needed: every answer is an empty vector).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest

from crossover.adapters.prometheus_metrics import PrometheusMetrics, families
from tests.lab.support import http_server

PER_ROUND = len(families("120s", 60))
EMPTY = json.dumps({"status": "success", "data": {"resultType": "vector", "result": []}}).encode()


@dataclass
class HeldPrometheus:
    """Answers /api/v1/query once `release` is set; counts the queries it was asked."""

    url: str = ""
    release: threading.Event = field(default_factory=threading.Event)
    queries: int = 0


@pytest.fixture
def held() -> Iterator[HeldPrometheus]:
    state = HeldPrometheus()
    lock = threading.Lock()

    def answer(_: str) -> tuple[str, bytes]:
        with lock:
            state.queries += 1
        state.release.wait(timeout=30)
        return "application/json", EMPTY

    with http_server(answer) as server:
        state.url = f"http://127.0.0.1:{server.server_address[1]}"
        try:
            yield state
        finally:
            state.release.set()  # let held answers go before the server shuts down


def first_round(held: HeldPrometheus, clock: list[float]) -> PrometheusMetrics:
    metrics = PrometheusMetrics(held.url, round_seconds=30, clock=lambda: clock[0])
    held.release.set()
    metrics.round(datetime.now(UTC))
    held.release.clear()
    assert (metrics.rounds, held.queries) == (1, PER_ROUND)
    return metrics


def test_the_reader_that_finds_the_round_past_its_interval_plans_with_the_next_one(held: HeldPrometheus) -> None:
    # one resource reconciled once per interval: every reconcile finds the round expired, and must not plan with it
    clock = [0.0]
    metrics = first_round(held, clock)
    last = metrics.round(datetime.now(UTC))
    clock[0] = 31.0
    held.release.set()
    fresh = metrics.round(datetime.now(UTC))
    assert fresh is not last and fresh.taken == 31.0, "planned with the round of an interval ago"
    assert metrics.rounds == 2


def test_readers_while_the_next_round_is_asked_keep_the_last_one(held: HeldPrometheus) -> None:
    clock = [0.0]
    metrics = first_round(held, clock)
    last = metrics.round(datetime.now(UTC))
    clock[0] = 31.0
    with ThreadPoolExecutor(9) as pool:
        asker = pool.submit(metrics.round, datetime.now(UTC))
        assert not metrics.asked(timeout=0.5), "the first reader is asking, Prometheus holds its answer"
        served = list(pool.map(lambda _: metrics.round(datetime.now(UTC)), range(8)))  # eight reconciles meanwhile
        assert all(r is last for r in served), "every reader meanwhile had the last round at once, none waited"
        assert not asker.done()
        held.release.set()
        fresh = asker.result(timeout=10)
    assert fresh is not last
    assert metrics.rounds == 2 and held.queries == 2 * PER_ROUND, "one round for all nine readers"
    assert metrics.round(datetime.now(UTC)) is fresh


@pytest.mark.parametrize("age", [60.0, 600.0])
def test_a_round_too_old_to_serve_is_waited_for(held: HeldPrometheus, age: float) -> None:
    clock = [0.0]
    metrics = first_round(held, clock)
    last = metrics.round(datetime.now(UTC))
    clock[0] = age
    with ThreadPoolExecutor(1) as pool:
        reader = pool.submit(metrics.round, datetime.now(UTC))
        assert not metrics.asked(timeout=0.5), "the reader is asking, holding for Prometheus"
        assert not reader.done()
        held.release.set()
        fresh = reader.result(timeout=10)
    assert fresh is not last and metrics.rounds == 2
