"""Index handlers and probes answer while every executor thread is busy reconciling.

kopf runs a sync handler in its thread pool (8 threads, shared with the reconciles) and an async one on the event
loop. An index handler holds its watch event's body until it runs, so sync index handlers queued behind the first
pass's reconciles kept thousands of Deployment bodies alive at once: at 1,000 new InferenceDeployments the operator
peaked at 368 MiB instead of 209 (docs/operator-scale.md). A sync probe would likewise leave the liveness endpoint
waiting for a free thread during a burst, and a kubelet would restart a healthy operator.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import kopf
import pytest
from kopf._core.actions import invocation
from kopf._core.intents.causes import Activity

from crossover.adapters.watched_cluster import DeploymentView, PodView
from crossover.contracts import COMPONENT_LABEL, INSTANCE_LABEL, Component
from crossover.main import build_registry
from crossover.settings import OperatorConfig

DEPLOYMENT = {
    "metadata": {"name": "llm-engine", "namespace": "ml", "generation": 3, "labels": {INSTANCE_LABEL: "llm"}},
    "spec": {"replicas": 2},
    "status": {"readyReplicas": 1},
}
POD = {
    "metadata": {
        "name": "llm-engine-abc",
        "namespace": "ml",
        "labels": {INSTANCE_LABEL: "llm", COMPONENT_LABEL: Component.ENGINE.value},
    },
    "status": {"conditions": [{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "False"}]},
}
HPA = {
    "metadata": {"name": "llm-hpa", "namespace": "ml"},
    "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "llm-engine"}},
}


def _kwargs(raw: dict[str, Any]) -> dict[str, Any]:
    body = kopf.Body(raw)
    return {
        "body": body,
        "spec": body.spec,
        "meta": body.metadata,
        "name": body.metadata.name,
        "namespace": body.metadata.namespace,
        "labels": body.metadata.labels,
    }


@pytest.fixture
def busy() -> Iterator[tuple[kopf.OperatorSettings, threading.Event]]:
    """Operator settings whose executor's only thread is held by a 'reconcile' until the event is set."""
    settings = kopf.OperatorSettings()
    settings.execution.executor = ThreadPoolExecutor(max_workers=1)
    release = threading.Event()
    settings.execution.executor.submit(release.wait)
    yield settings, release
    release.set()
    settings.execution.executor.shutdown(wait=True)


async def _invoked_while_busy(
    busy: tuple[kopf.OperatorSettings, threading.Event], fn: Any, kwargs: dict[str, Any]
) -> tuple[bool, Any]:
    """Whether kopf's invocation of `fn` finished within 2 s with the executor busy, and its result.

    kopf postpones cancelling a sync call until its thread ends, so the busy thread is released before awaiting."""
    settings, release = busy
    call = asyncio.ensure_future(invocation.invoke(fn, settings=settings, kwargs=kwargs))
    done, _ = await asyncio.wait({call}, timeout=2)
    release.set()
    return call in done, await call


@pytest.mark.parametrize(
    ("handler_id", "raw", "expected"),
    [
        ("crossover_deployments", DEPLOYMENT, {("ml", "llm-engine"): DeploymentView(3, 2, 1)}),
        ("engine_pods", POD, {("ml", "llm"): PodView("warming", "llm-engine-abc")}),
        ("autoscalers", HPA, {("ml", "llm-engine"): "HorizontalPodAutoscaler/llm-hpa"}),
    ],
)
async def test_an_index_handler_indexes_while_the_executor_is_busy(
    busy: tuple[kopf.OperatorSettings, threading.Event], handler_id: str, raw: dict[str, Any], expected: Any
) -> None:
    registry = build_registry(OperatorConfig(), serve_metrics=False)
    (handler,) = [h for h in registry._indexing.get_all_handlers() if h.id == handler_id]
    in_time, result = await _invoked_while_busy(busy, handler.fn, _kwargs(raw))
    assert result == expected
    assert in_time, f"index handler {handler_id} waited for an executor thread"


@pytest.mark.parametrize("probe_id", ["reconciles", "inflight"])
async def test_a_liveness_probe_answers_while_the_executor_is_busy(
    busy: tuple[kopf.OperatorSettings, threading.Event], probe_id: str
) -> None:
    registry = build_registry(OperatorConfig(), serve_metrics=False)
    (probe,) = [h for h in registry._activities.get_handlers(activity=Activity.PROBE) if h.id == probe_id]
    in_time, result = await _invoked_while_busy(busy, probe.fn, {})
    assert result == 0
    assert in_time, f"probe {probe_id} waited for an executor thread"
