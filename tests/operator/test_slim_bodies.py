"""kopf keeps every watched body without managedFields (crossover.slim_bodies)."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import pytest
from kopf._core.reactor import processing, running

from crossover import slim_bodies
from crossover.main import build_registry
from crossover.settings import OperatorConfig


def _event() -> dict[str, Any]:
    return {
        "type": "MODIFIED",
        "object": {
            "metadata": {
                "name": "llm",
                "namespace": "default",
                "resourceVersion": "7",
                "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {"f:replicas": {}}}}],
            },
            "spec": {"replicas": 1},
        },
    }


@pytest.fixture
def received(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """kopf's processor replaced by one that records what it is given (restored after the test)."""
    seen: list[dict[str, Any]] = []

    async def original(*_: Any, raw_event: dict[str, Any], **__: Any) -> str | None:
        seen.append(raw_event)
        return "8"

    monkeypatch.setattr(processing, "process_resource_event", original)
    return seen


def test_events_reach_kopf_without_managed_fields(received: list[dict[str, Any]]) -> None:
    slim_bodies.install()
    result = asyncio.run(processing.process_resource_event(raw_event=_event(), resource=None))
    assert result == "8"
    [event] = received
    assert "managedFields" not in event["object"]["metadata"]
    assert event["object"]["metadata"]["resourceVersion"] == "7"
    assert event["object"]["spec"] == {"replicas": 1}


def test_install_wraps_once(received: list[dict[str, Any]]) -> None:
    slim_bodies.install()
    wrapped = processing.process_resource_event
    slim_bodies.install()
    assert processing.process_resource_event is wrapped
    asyncio.run(processing.process_resource_event(raw_event=_event()))
    assert len(received) == 1


def test_the_operator_installs_it(received: list[dict[str, Any]]) -> None:
    build_registry(OperatorConfig(), serve_metrics=False)
    asyncio.run(processing.process_resource_event(raw_event=_event()))
    assert "managedFields" not in received[0]["object"]["metadata"]


@pytest.mark.parametrize("event", [{}, {"object": None}, {"object": {}}, {"object": {"metadata": None}}])
def test_events_without_metadata_pass_untouched(event: dict[str, Any]) -> None:
    before = repr(event)
    slim_bodies.slim(event)
    assert repr(event) == before


def test_kopf_looks_the_processor_up_by_name_when_it_starts() -> None:
    """The wrapper works only while kopf finds its processor on the module at start-up: a kopf upgrade that binds
    it otherwise must fail here, not silently keep the fat bodies."""
    assert "processing.process_resource_event" in inspect.getsource(running.spawn_tasks)
