"""Issue 17, points 5, 6 and 10 in the lab: plain `crossover operator` reconciles; the chart with two replicas and
watchNamespaces installs on a fresh release, keeps exactly one operator active and fails over continuing from the
object's status; the pod harness shows a crashing container as the kubelet would."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from crossover.api.crd import build_crd
from crossover.contracts import API_CREDENTIALS_LABEL
from tests.fixtures.lab import CHART, OPERATOR_NAMESPACE, Lab, Release, helm
from tests.lab.support import condition, create, eventually, get

pytestmark = pytest.mark.lab

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "llama-8b-h100-vs-haiku.yaml"


def manifest(name: str, namespace: str) -> dict[str, Any]:
    body: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    body["metadata"] = {"name": name, "namespace": namespace}
    body["spec"]["replicas"] = {"min": 0, "max": 2}
    return body


def install_crd(lab: Lab) -> None:
    """The current CRD, applied over the one the tests' Helm release installed (its ownership metadata stays:
    creating it here instead would stop later `helm install`s from adopting it)."""
    crd = build_crd()
    client.ApiextensionsV1Api(lab.api).patch_custom_resource_definition(
        crd["metadata"]["name"], crd, field_manager="defaults-test", force=True,
        _content_type="application/apply-patch+yaml",
    )  # fmt: skip


@contextlib.contextmanager
def chart_operator_paused(lab: Lab) -> Iterator[None]:
    """The tests' cluster-wide release (if installed) would reconcile the same objects: hold it at 0 replicas."""
    try:
        before = lab.apps.read_namespaced_deployment("crossover", OPERATOR_NAMESPACE).spec.replicas
    except ApiException:
        before = None
    if before:
        lab.apps.patch_namespaced_deployment_scale("crossover", OPERATOR_NAMESPACE, {"spec": {"replicas": 0}})
        eventually(lambda: not lab.core.list_namespaced_pod(OPERATOR_NAMESPACE).items or None, timeout=60)
    try:
        yield
    finally:
        if before:
            lab.apps.patch_namespaced_deployment_scale("crossover", OPERATOR_NAMESPACE, {"spec": {"replicas": before}})
            _wait_until_reconciling(lab)


def _wait_until_reconciling(lab: Lab) -> None:
    """The unpaused chart operator is back only once it reconciles: a canary resource gets a status."""
    canary = f"canary-{uuid.uuid4().hex[:6]}"
    lab.core.create_namespace({"metadata": {"name": canary}})  # type: ignore[arg-type]
    try:
        create(lab, manifest("canary", canary))
        eventually(lambda: get(lab, canary, "canary").get("status", {}).get("conditions"), timeout=120)
    finally:
        lab.core.delete_namespace(canary)


def test_plain_crossover_operator_reconciles(
    lab: Lab, crossover_release: Release, namespace: str, tmp_path: Path
) -> None:
    """Before: kopf paused on "peering CRD is missing" and said nothing at INFO; nothing was reconciled."""
    install_crd(lab)
    log_path = tmp_path / "operator.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CROSSOVER_")}
    env["KUBECONFIG"] = str(lab.kubeconfig)
    with chart_operator_paused(lab), log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "crossover.cli", "operator"], stdout=log, stderr=subprocess.STDOUT, env=env
        )
        try:
            create(lab, manifest("plain", namespace))
            resource = eventually(lambda: condition(get(lab, namespace, "plain"), "SpecValid"), timeout=60)
            assert resource["status"] == "True"
        finally:
            process.terminate()
            process.wait(timeout=30)
    text = log_path.read_text()
    assert "standalone" in text
    assert "0.0.0.0" not in text  # its own endpoints stay on loopback


def _pods(lab: Lab, namespace: str, release: str) -> list[Any]:
    selector = f"app.kubernetes.io/instance={release},app.kubernetes.io/component=operator"
    return [
        p
        for p in lab.core.list_namespaced_pod(namespace, label_selector=selector).items
        if not p.metadata.deletion_timestamp
    ]


def _log(lab: Lab, pod: Any) -> str:
    path = Path(lab.cfg.state) / "logs" / "pods" / f"{pod.metadata.namespace}_{pod.metadata.name}.log"
    return path.read_text() if path.exists() else ""


def test_two_replicas_with_watch_namespaces_one_active_and_failover_continues_from_status(
    lab: Lab, namespace: str
) -> None:
    """Before: watchNamespaces with replicaCount 2 needed a namespaced KopfPeering the chart never created, and a
    first install with replicas put the peering CRD and its object in one release."""
    release, home = f"ha{uuid.uuid4().hex[:5]}", f"ha-{uuid.uuid4().hex[:6]}"
    install_crd(lab)
    with chart_operator_paused(lab):
        result = helm(
            lab, "install", release, str(CHART), "--namespace", home, "--create-namespace",
            "--set", "replicaCount=2", "--set", f"watchNamespaces={{{namespace}}}", "--set", "crds.install=false",
            "--set", "reconcileIntervalSeconds=1", "--set", "router.replicas=1",
            "--wait", "--timeout", "90s",
        )  # fmt: skip
        try:
            assert result.returncode == 0, result.stderr
            peering = client.CustomObjectsApi(lab.api).get_namespaced_custom_object(
                "kopf.dev", "v1", namespace, "kopfpeerings", f"{release}-crossover"
            )
            assert peering["metadata"]["namespace"] == namespace
            secret = {"name": "provider-key", "labels": {API_CREDENTIALS_LABEL: "true"}}
            lab.core.create_namespaced_secret(namespace, {"metadata": secret, "stringData": {"apiKey": "k"}})  # type: ignore[arg-type]
            create(lab, manifest("ha", namespace))
            eventually(lambda: (r := get(lab, namespace, "ha")).get("status", {}).get("lastDecision") and r, timeout=90)

            def ticks(pod: Any) -> int:
                return _log(lab, pod).count("Timer 'build_registry.<locals>.tick' succeeded")

            def one_active() -> tuple[Any, Any] | None:
                """Exactly one of the two reconciles: over 3 s (three intervals) only one pod's timer runs."""
                pods = _pods(lab, home, release)
                if len(pods) != 2:
                    return None
                before = [ticks(p) for p in pods]
                time.sleep(3)
                grew = [ticks(p) > b for p, b in zip(pods, before, strict=True)]
                return (pods[grew.index(True)], pods[grew.index(False)]) if grew.count(True) == 1 else None

            try:
                active, _ = eventually(one_active, timeout=90)
            except AssertionError:
                tails = {p.metadata.name: _log(lab, p)[-1500:] for p in _pods(lab, home, release)}
                raise AssertionError(f"not exactly one active operator; logs: {tails}") from None

            def events() -> list[Any]:
                return lab.core.list_namespaced_event(namespace, field_selector="involvedObject.name=ha").items

            def posted() -> list[tuple[str, int]]:
                return sorted((f"{e.reason}: {e.message}", e.count or 1) for e in events())

            def quiet_for(seconds: float) -> list[tuple[str, int]] | None:
                """The events, once `seconds` of reconciles at 1 s post none: a per-loop event never gets there."""
                before = posted()
                time.sleep(seconds)
                return before if posted() == before else None

            # the first reconciles post their transitions (router ready, metrics known); then, in a steady state,
            # events come only on transitions, none per loop
            settled = eventually(lambda: quiet_for(4), timeout=40, interval=0)
            assert not [m for m, _ in settled if "succeeded" in m], settled
            # what the failover must continue from: the status as the active operator left it (not the first one:
            # two replicas starting together may both reconcile once before peering pauses one, kopf's startup race)
            left = get(lab, namespace, "ha")
            lab.core.delete_namespaced_pod(active.metadata.name, home, grace_period_seconds=0)

            def stopped() -> bool:
                before = ticks(active)
                time.sleep(2)
                return ticks(active) == before

            eventually(stopped, timeout=60)
            gone_at = datetime.now(UTC)

            def reconciled_again() -> dict[str, Any] | None:
                """Another operator (the standby, or the Deployment's new pod) reconciles after the active one left."""
                current = get(lab, namespace, "ha")
                decided = datetime.fromisoformat(current["status"]["lastDecision"]["time"].replace("Z", "+00:00"))
                return current if decided > gone_at else None

            after = eventually(reconciled_again, timeout=60)
            # continued from the object's status: history and recommendation windows kept, not restarted from empty
            assert after["status"]["history"][0] == left["status"]["history"][0]
            kept = left["status"].get("recommendations") or []
            assert (after["status"].get("recommendations") or [])[: len(kept)][:1] == kept[:1]
        finally:
            helm(lab, "uninstall", release, "--namespace", home, "--wait")
            with contextlib.suppress(ApiException):
                lab.core.delete_namespace(home)


def test_a_crashing_container_is_reported_as_the_kubelet_would(lab: Lab, namespace: str) -> None:
    """Before: a process that exited left its pod Running 0/1 with 0 restarts, never restarted."""
    pod = {
        "metadata": {"name": "crasher", "namespace": namespace},
        "spec": {
            "containers": [
                {"name": "main", "image": "ghcr.io/crossover-dev/crossover:lab", "args": ["no-such-command"]}
            ],
            "terminationGracePeriodSeconds": 1,
        },
    }
    lab.core.create_namespaced_pod(namespace, pod)  # type: ignore[arg-type]

    def crash_looping() -> dict[str, Any] | None:
        status = lab.core.read_namespaced_pod_status("crasher", namespace).status
        item = (status.container_statuses or [None])[0]
        if item is None or not item.restart_count or item.last_state.terminated is None:
            return None
        return {"restarts": item.restart_count, "terminated": item.last_state.terminated, "state": item.state}

    seen = eventually(crash_looping, timeout=60, interval=0.5)
    assert seen["terminated"].exit_code == 2 and seen["terminated"].reason == "Error"

    def backing_off() -> Any:
        item = lab.core.read_namespaced_pod_status("crasher", namespace).status.container_statuses[0]
        return item.state.waiting if item.state.waiting and item.state.waiting.reason == "CrashLoopBackOff" else None

    assert "back-off" in eventually(backing_off, timeout=60, interval=0.5).message
