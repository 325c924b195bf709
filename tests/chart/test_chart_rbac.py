"""Issue 17, points 5 and 9: the chart's peering and RBAC. Rendered with `helm template`; the lab tests install it."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.test_chart import CHART, KUBE_VERSION, by_kind, helm, template

pytestmark = pytest.mark.lab  # needs the helm binary the lab builds
__all__ = ["helm"]  # the fixture


def with_crds(helm: Path, *sets: str) -> list[dict[str, Any]]:
    args = [str(helm), "template", "crossover", str(CHART), "--namespace", "crossover-system", "--include-crds"]
    args += ["--kube-version", KUBE_VERSION]
    for item in sets:
        args += ["--set", item]
    result = subprocess.run(args, capture_output=True, text=True, check=True)
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def test_peering_crds_ship_in_crds_so_a_first_install_with_replicas_works(helm: Path) -> None:
    """Before: the peering CRD and its ClusterKopfPeering were templates of one release ("ensure CRDs are installed
    first"); and watchNamespaces needed a namespaced KopfPeering nobody created."""
    crds = {d["metadata"]["name"] for d in with_crds(helm) if d["kind"] == "CustomResourceDefinition"}
    assert {"clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev"} <= crds
    assert not [
        d
        for d in template(helm, "replicaCount=2")
        if d["kind"] == "CustomResourceDefinition" and "kopf" in d["metadata"]["name"]
    ]
    clusterwide = template(helm, "replicaCount=2")
    assert [d["metadata"]["name"] for d in by_kind(clusterwide, "ClusterKopfPeering")] == ["crossover"]
    args = by_kind(clusterwide, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--peering=crossover" in args and "--standalone" not in args
    scoped = template(helm, "replicaCount=2", "watchNamespaces={team-a,team-b}")
    assert not by_kind(scoped, "ClusterKopfPeering")
    assert sorted(d["metadata"]["namespace"] for d in by_kind(scoped, "KopfPeering")) == ["team-a", "team-b"]


def _bound_roles(docs: list[dict[str, Any]], kind: str) -> dict[str, list[str]]:
    """Binding kind -> [role name @ namespace] for the operator's ServiceAccount."""
    return {
        f"{b['roleRef']['name']}@{b['metadata'].get('namespace', '*')}": [s["name"] for s in b["subjects"]]
        for b in by_kind(docs, kind)
    }


def test_watch_namespaces_grants_namespaced_rights_only_there(helm: Path) -> None:
    docs = template(helm, "watchNamespaces={team-a,team-b}")
    assert set(_bound_roles(docs, "ClusterRoleBinding")) == {"crossover-cluster@*"}  # before: crossover@* too
    assert set(_bound_roles(docs, "RoleBinding")) == {"crossover@team-a", "crossover@team-b"}
    cluster_rules = next(r for r in by_kind(docs, "ClusterRole") if r["metadata"]["name"] == "crossover-cluster")
    assert [r["resources"] for r in cluster_rules["rules"]] == [["customresourcedefinitions"], ["namespaces"]]
    assert all(r["verbs"] == ["get", "list", "watch"] for r in cluster_rules["rules"])


def test_cluster_wide_binds_the_operator_role_cluster_wide(helm: Path) -> None:
    docs = template(helm)
    assert set(_bound_roles(docs, "ClusterRoleBinding")) == {"crossover@*", "crossover-cluster@*"}
    assert not by_kind(docs, "RoleBinding")


def test_operator_never_updates_or_deletes_and_reads_secrets_by_name_only(helm: Path) -> None:
    operator = next(r for r in by_kind(template(helm), "ClusterRole") if r["metadata"]["name"] == "crossover")
    for rule in operator["rules"]:
        assert not {"update", "delete", "deletecollection", "escalate", "impersonate"} & set(rule["verbs"]), rule
        if "secrets" in rule["resources"]:
            assert rule["verbs"] == ["get"]
    router = next(r for r in by_kind(template(helm), "ClusterRole") if r["metadata"]["name"] == "crossover-router")
    assert not any("secrets" in r["resources"] for r in router["rules"])


def test_api_allowlist_reaches_the_operator(helm: Path) -> None:
    docs = template(helm, "api.allowedBaseURLs={https://api.openai.com/v1,https://api.anthropic.com}")
    env = {
        e["name"]: e.get("value")
        for e in by_kind(docs, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["CROSSOVER_API_BASE_URL_ALLOWLIST"] == "https://api.openai.com/v1,https://api.anthropic.com"
