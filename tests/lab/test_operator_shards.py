"""Shards in the lab: the chart with `shards: 2` and two replicas per shard, over 400 InferenceDeployments.

Every resource is reconciled by exactly one shard (the one its hash names: its annotation and its only crossover
finalizer say so), and when the active operator of shard 0 goes, its standby carries on with shard 0's resources.
Resources are cheap (routers off, `replicas.min` 0): what is exercised is the operators.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from crossover.contracts import GROUP, PLURAL, VERSION
from crossover.main import FINALIZER, SHARD_ANNOTATION, finalizer_for
from crossover.sharding import Shard, shard_of
from crossover_lab.config import local_address
from tests.fixtures.lab import CHART, OPERATOR_NAMESPACE, Lab, helm
from tests.lab.support import eventually

pytestmark = pytest.mark.lab

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "llama-8b-h100-vs-haiku.yaml"
COUNT = 400
SHARDS = 2


@pytest.fixture
def sharded(lab: Lab) -> Iterator[None]:
    """The chart installed with two shards of two replicas each; uninstalled afterwards (other tests' fixture
    installs its own release again)."""
    values = {
        "prometheus": {"url": lab.prometheus_url, "rateWindowSeconds": 6},
        "reconcileIntervalSeconds": 5,
        "router": {"replicas": 0},
        "shards": SHARDS,
        "replicaCount": 2,
    }
    path = Path(lab.cfg.state) / "shard-values.json"
    path.write_text(json.dumps(values))
    _peering_crd_first(lab, path)
    result = helm(
        lab, "upgrade", "--install", "crossover", str(CHART), "--namespace", OPERATOR_NAMESPACE,
        "--create-namespace", "--values", str(path), "--wait", "--timeout", "120s",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    try:
        yield
    finally:
        helm(lab, "uninstall", "crossover", "--namespace", OPERATOR_NAMESPACE, "--wait")


def _peering_crd_first(lab: Lab, values: Path) -> None:
    """A first install with replicaCount > 1 cannot create the peering CRD and its objects in one go (Helm
    resolves every kind first); create the chart's CRD beforehand, labelled so that Helm adopts it."""
    rendered = helm(
        lab, "template", "crossover", str(CHART), "--namespace", OPERATOR_NAMESPACE, "--values", str(values),
        "--kube-version", "1.36.0",
    )  # fmt: skip
    assert rendered.returncode == 0, rendered.stderr
    extensions = client.ApiextensionsV1Api(lab.api)
    for doc in yaml.safe_load_all(rendered.stdout):
        if doc and doc["kind"] == "CustomResourceDefinition" and doc["spec"]["group"] == "kopf.dev":
            doc["metadata"].setdefault("labels", {})["app.kubernetes.io/managed-by"] = "Helm"
            doc["metadata"].setdefault("annotations", {}).update(
                {"meta.helm.sh/release-name": "crossover", "meta.helm.sh/release-namespace": OPERATOR_NAMESPACE}
            )
            try:
                extensions.create_custom_resource_definition(doc)
            except ApiException as error:
                assert error.status == 409, error  # there already (kept by an earlier release)
            eventually(functools.partial(_established, extensions, doc["metadata"]["name"]))


def _established(extensions: client.ApiextensionsV1Api, name: str) -> bool:
    conditions = extensions.read_custom_resource_definition(name).status.conditions or []
    return any(c.type == "Established" and c.status == "True" for c in conditions)


def reconciles(pod: Any) -> float:
    """The operator's own reconcile count, from its /metrics on the pod's address."""
    url = f"http://{local_address(pod.status.pod_ip)}:9102/metrics"
    for line in requests.get(url, timeout=5).text.splitlines():
        if line.startswith("crossover_operator_reconcile_seconds_count"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def is_ready(pod: Any) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in (pod.status.conditions or []))


def shard_pods(lab: Lab, shard: int) -> list[Any]:
    pods = lab.core.list_namespaced_pod(OPERATOR_NAMESPACE, label_selector=f"crossover.dev/shard={shard}").items
    return [p for p in pods if p.metadata.deletion_timestamp is None and p.status.pod_ip]


def test_two_shards_split_400_resources_and_a_standby_covers_a_lost_shard(
    lab: Lab, sharded: None, namespace: str
) -> None:
    base = yaml.safe_load(EXAMPLE.read_text())
    names = [f"m-{i:03d}" for i in range(COUNT)]
    for name in names:
        lab.custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, {**base, "metadata": {"name": name, "namespace": namespace}}
        )

    def items() -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = lab.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)[
            "items"
        ]
        return found

    def settled(item: dict[str, Any]) -> bool:
        """Reconciled and carrying only crossover finalizers of the current layout: the unsharded operator this
        release replaced may still be stopping, and add its own finalizer to a new resource, which the owning shard
        drops at its next reconcile."""
        meta = item["metadata"]
        ours = [f for f in meta.get("finalizers", []) if f.startswith(FINALIZER)]
        return (
            bool((item.get("status") or {}).get("lastDecision"))
            and SHARD_ANNOTATION in meta.get("annotations", {})
            and FINALIZER not in ours
        )

    def all_reconciled() -> list[dict[str, Any]] | None:
        found = items()
        return found if sum(settled(i) for i in found) == COUNT else None

    resources = eventually(all_reconciled, timeout=180, interval=2)
    owners = {0: 0, 1: 0}
    for item in resources:
        meta = item["metadata"]
        owner = shard_of(namespace, meta["name"], SHARDS)
        owners[owner] += 1
        assert meta["annotations"][SHARD_ANNOTATION] == f"{owner}/{SHARDS}", meta["name"]
        ours = [f for f in meta.get("finalizers", []) if f.startswith(FINALIZER)]
        assert ours == [finalizer_for(Shard(owner, SHARDS))], (meta["name"], ours)
    assert min(owners.values()) > COUNT // 4, owners  # both shards have a real share

    # exactly one active operator per shard (its reconcile count moves; the standby's does not); lose shard 0's
    before = {s: {p.metadata.name: reconciles(p) for p in shard_pods(lab, s)} for s in range(SHARDS)}
    time.sleep(12)  # a bit over two intervals
    active = {}
    for shard in range(SHARDS):
        after = {p.metadata.name: reconciles(p) for p in shard_pods(lab, shard)}
        working = [name for name, count in after.items() if count > before[shard].get(name, 0)]
        assert len(working) == 1 and len(after) == 2, (shard, before[shard], after)
        active[shard] = working[0]
    standby = {p.metadata.name: reconciles(p) for p in shard_pods(lab, 0) if p.metadata.name != active[0]}
    lab.core.delete_namespaced_pod(active[0], OPERATOR_NAMESPACE)

    def standby_took_over() -> bool:
        return any(
            reconciles(p) > standby.get(p.metadata.name, 0) for p in shard_pods(lab, 0) if p.metadata.name in standby
        )

    eventually(standby_took_over, timeout=120, interval=2)

    # the Deployment's replacement joins behind the standby (ranked by start time) instead of taking the shard again
    def replacement_serving() -> str | None:
        """Ready, then answering: until the pod is Ready its address may still be answered by the old process
        (kwok gives the deleted pod's IP to its replacement at once; the harness starts the new process, and its
        readiness probe, only once the old one has stopped)."""
        for pod in shard_pods(lab, 0):
            if pod.metadata.name not in standby and is_ready(pod):
                try:
                    reconciles(pod)
                except requests.RequestException:
                    return None  # still starting
                return str(pod.metadata.name)
        return None

    replacement = eventually(replacement_serving, timeout=90, interval=2)
    time.sleep(12)
    counts = {p.metadata.name: reconciles(p) for p in shard_pods(lab, 0)}
    assert counts[replacement] == 0 and all(counts[name] > standby[name] for name in standby), (counts, standby)
    # and it acts on shard 0's resources: a spec change is reconciled (observedGeneration catches up)
    changed = [n for n in names if shard_of(namespace, n, SHARDS) == 0][:5]
    for name in changed:
        lab.custom.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name, {"spec": {"replicas": {"min": 0, "max": 7}}}
        )

    def observed() -> bool:
        got = [lab.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, n) for n in changed]
        return all(g["status"].get("observedGeneration") == g["metadata"]["generation"] for g in got)

    eventually(observed, timeout=60, interval=1)

    # leave nothing behind: the operators release their finalizers before they go
    lab.custom.delete_collection_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)

    def gone() -> bool:
        try:
            return not items()
        except ApiException:
            return False

    eventually(gone, timeout=120, interval=2)
