"""The pod harness, without a cluster: what it does when kwok hands a deleted pod's IP to a new pod at once.

A kubelet frees a pod IP only after the old sandbox is gone; kwok frees it when the object goes, while the harness is
still draining the old process on that address. A new pod started there at once fails to bind (an operator exits,
then sits in crash back-off while its readiness was answered by the old process): CI saw a shard test's operator
refuse its metrics port this way.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from crossover_lab.config import LabConfig, local_address
from crossover_lab.harness import Harness, PodProcess

KUBECONFIG = """apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
"""
POD_IP = "10.244.0.9"
DRAIN_SECONDS = 1.0


def pod(uid: str, name: str, deleting: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"uid": uid, "name": name, "namespace": "crossover-system"}
    if deleting:
        meta["deletionTimestamp"] = "2026-12-03T00:00:00Z"
    return {
        "metadata": meta,
        "spec": {"nodeName": "node-0", "containers": [{"name": "operator", "image": "ghcr.io/x/crossover:1"}]},
        "status": {"phase": "Running", "podIP": POD_IP},
    }


async def draining_process() -> asyncio.subprocess.Process:
    """A process that takes SIGTERM and drains for a second, as an operator finishing its work; returned once its
    handler is in place (before that, SIGTERM would end it at once)."""
    script = (
        "import signal, sys, time; signal.signal(signal.SIGTERM, lambda *_: None); print('ready', flush=True); "
        f"time.sleep({DRAIN_SECONDS})"
    )
    process = await asyncio.create_subprocess_exec(sys.executable, "-c", script, stdout=asyncio.subprocess.PIPE)
    assert process.stdout is not None
    assert await process.stdout.readline() == b"ready\n"
    return process


async def draining_pod(found: Harness) -> PodProcess:
    """Pod "old" on POD_IP, its process draining, as the harness holds a running pod."""
    old = PodProcess(
        namespace="crossover-system", name="old", uid="u-old", ip=POD_IP, local=local_address(POD_IP),
        kind="crossover", grace_seconds=30,
    )  # fmt: skip
    old.process = await draining_process()
    found._pods[old.uid] = old
    return old


async def until_started(started: list[tuple[str, float]]) -> None:
    """Up to two seconds for a waiting pod to start, once its address is free."""
    for _ in range(100):
        if started:
            return
        await asyncio.sleep(0.02)


@pytest.fixture
def harness(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Harness, list[tuple[str, float]]]:
    (tmp_path / "kubeconfig").write_text(KUBECONFIG)
    found = Harness(LabConfig(state=tmp_path))
    started: list[tuple[str, float]] = []

    async def start_crossover(proc: PodProcess, *_: Any) -> None:
        started.append((proc.name, time.monotonic()))

    async def no_probe(*_: Any) -> None:
        return None

    monkeypatch.setattr(found, "_start_crossover", start_crossover)
    monkeypatch.setattr(found, "_probe", no_probe)
    return found, started


def test_a_new_pod_on_a_draining_pods_address_starts_only_once_that_process_has_stopped(
    harness: tuple[Harness, list[tuple[str, float]]],
) -> None:
    found, started = harness

    async def scenario() -> tuple[float, float]:
        old = await draining_pod(found)
        await found._handle("MODIFIED", pod("u-old", "old", deleting=True))
        await found._handle("DELETED", pod("u-old", "old", deleting=True))
        await found._handle("ADDED", pod("u-new", "new"))
        await asyncio.sleep(0.1)
        assert not started, "the new pod started while the old process still held its address"
        await asyncio.wait_for(old.process.wait(), timeout=10)
        exited = time.monotonic()
        await until_started(started)
        return exited, started[0][1]

    exited, began = asyncio.run(scenario())
    assert began >= exited


def test_a_pod_on_a_free_address_starts_at_once(harness: tuple[Harness, list[tuple[str, float]]]) -> None:
    found, started = harness

    async def scenario() -> None:
        await found._handle("ADDED", pod("u-new", "new"))

    asyncio.run(scenario())
    assert [name for name, _ in started] == ["new"]


def test_a_pod_deleted_while_it_waits_for_its_address_never_starts_and_the_next_one_still_waits(
    harness: tuple[Harness, list[tuple[str, float]]],
) -> None:
    found, started = harness

    async def scenario() -> list[str]:
        old = await draining_pod(found)
        await found._handle("DELETED", pod("u-old", "old", deleting=True))
        await found._handle("ADDED", pod("u-new", "new"))
        await found._handle("DELETED", pod("u-new", "new", deleting=True))  # it never ran: it holds no address
        await found._handle("ADDED", pod("u-third", "third"))
        await asyncio.sleep(0.1)
        assert not started, "a pod started while the old process still held its address"
        await asyncio.wait_for(old.process.wait(), timeout=10)
        await until_started(started)
        return [name for name, _ in started]

    assert asyncio.run(scenario()) == ["third"]
