"""Helpers shared by the lab tests: polling, and the InferenceDeployment's coordinates."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from crossover.contracts import GROUP, PLURAL, VERSION
from tests.fixtures.lab import Lab

T = TypeVar("T")


def eventually(check: Callable[[], T | None], timeout: float = 30.0, interval: float = 0.25) -> T:
    """Poll until `check` returns something truthy; fail with the last value after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s (last: {last!r})")


def create(lab: Lab, body: dict[str, Any]) -> Any:
    return lab.custom.create_namespaced_custom_object(GROUP, VERSION, body["metadata"]["namespace"], PLURAL, body)


def get(lab: Lab, namespace: str, name: str) -> dict[str, Any]:
    found: dict[str, Any] = lab.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    return found


def condition(resource: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for item in (resource.get("status") or {}).get("conditions") or []:
        if item["type"] == kind:
            return dict(item)
    return None
