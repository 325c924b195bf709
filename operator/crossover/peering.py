"""kopf peering, checked before the operator starts: several replicas need the peering CRD and a peering object,
or kopf pauses silently ("peering CRD is missing") or, with the object missing, cannot see its peers at all.

A single operator needs none of this: `crossover operator` runs standalone unless a peering name is given.

Which replica is active is kopf's rule: the live peer with the highest priority. crossover derives the priority
from when the replica started, earlier first (`seniority_priority`), so a replica that joins never pauses one
already working. With random priorities, a Deployment's replacement for a lost active pod outranked the standby
that had taken over half the time, and the shard changed hands twice (the second time after the lost pod's
peering record expired, up to a minute later).
"""

from __future__ import annotations

from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

PEERING_GROUP = "kopf.dev"
PEERING_VERSION = "v1"
CLUSTER_PLURAL = "clusterkopfpeerings"
NAMESPACED_PLURAL = "kopfpeerings"
CRDS_HINT = "kubectl apply -f charts/crossover/crds/ (the chart installs them), or run without --peering"


SENIORITY_HORIZON = 10**10  # seconds since the epoch (year 2286): any start before it has a positive priority
TIE_BREAKS = 100_000  # replicas started within the same second are ordered at random among themselves


def seniority_priority(started_at: float, tie_break: int) -> int:
    """kopf's peering priority for a replica started at `started_at` (epoch seconds): higher for an earlier start;
    `tie_break` in [0, TIE_BREAKS) keeps replicas started in the same second distinct (kopf runs peers of equal
    priority side by side, with a warning). Under 2**53, so it survives JSON exactly."""
    if not 0 <= tie_break < TIE_BREAKS:
        raise ValueError(f"tie_break must be in [0, {TIE_BREAKS}), got {tie_break}")
    return (SENIORITY_HORIZON - int(started_at)) * TIE_BREAKS + tie_break


def peering_problems(api: client.ApiClient, name: str, namespaces: list[str]) -> list[str]:
    """What is missing for peering `name` (cluster-wide when `namespaces` is empty), each with what to do."""
    ext = client.ApiextensionsV1Api(api)
    custom = client.CustomObjectsApi(api)
    plural = NAMESPACED_PLURAL if namespaces else CLUSTER_PLURAL
    try:
        ext.read_custom_resource_definition(f"{plural}.{PEERING_GROUP}")
    except ApiException as error:
        if error.status != 404:
            return [f"cannot check the peering CRD {plural}.{PEERING_GROUP} ({error.status} {error.reason})"]
        return [f"peering CRD {plural}.{PEERING_GROUP} is missing: kopf pauses until it exists; {CRDS_HINT}"]
    problems: list[str] = []
    targets: list[str | None] = [*namespaces] if namespaces else [None]
    for namespace in targets:
        try:
            if namespace is None:
                custom.get_cluster_custom_object(PEERING_GROUP, PEERING_VERSION, plural, name)
            else:
                custom.get_namespaced_custom_object(PEERING_GROUP, PEERING_VERSION, namespace, plural, name)
        except ApiException as error:
            where = "cluster-wide" if namespace is None else f"in namespace {namespace}"
            if error.status != 404:
                problems.append(f"cannot read peering {name!r} {where} ({error.status} {error.reason})")
                continue
            kind = "KopfPeering" if namespace else "ClusterKopfPeering"
            meta: dict[str, Any] = {"name": name, **({"namespace": namespace} if namespace else {})}
            problems.append(
                f"{kind} {name!r} {where} is missing: replicas cannot see each other, so more than one may be active; "
                f"create it (apiVersion: {PEERING_GROUP}/{PEERING_VERSION}, kind: {kind}, metadata: {meta}) "
                "or run without --peering"
            )
    return problems
