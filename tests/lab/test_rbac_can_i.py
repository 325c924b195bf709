"""Issue 17, point 9: what the chart's operator ServiceAccount may do, asked of the real API server (the same
SubjectAccessReview `kubectl auth can-i --as=system:serviceaccount:...` sends), cluster-wide and with
watchNamespaces. Prints the table the closing note and docs/security.md quote."""

from __future__ import annotations

import contextlib
import uuid

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.fixtures.lab import CHART, Lab, helm

pytestmark = pytest.mark.lab

WATCHED = "team-a"
# (verb, group, resource, namespace, name): the questions, in the table's order
QUESTIONS = [
    ("create", "apps", "deployments", WATCHED, None),
    ("create", "apps", "deployments", "kube-system", None),
    ("patch", "apps", "deployments", "kube-system", None),
    ("update", "apps", "deployments", WATCHED, None),
    ("delete", "apps", "deployments", WATCHED, None),
    ("get", "", "secrets", WATCHED, None),
    ("list", "", "secrets", WATCHED, None),
    ("get", "", "secrets", "kube-system", None),
    ("create", "rbac.authorization.k8s.io", "rolebindings", "kube-system", None),
    ("bind", "rbac.authorization.k8s.io", "clusterroles", WATCHED, "cluster-admin"),
    ("patch", "crossover.dev", "inferencedeployments/status", WATCHED, None),
    ("patch", "crossover.dev", "inferencedeployments/status", "kube-system", None),
    ("list", "", "namespaces", None, None),
    ("get", "apiextensions.k8s.io", "customresourcedefinitions", None, None),
]


def can_i(lab: Lab, user: str, verb: str, group: str, resource: str, namespace: str | None, name: str | None) -> bool:
    plural, _, sub = resource.partition("/")
    attributes = {"verb": verb, "group": group, "resource": plural, "subresource": sub or None, "name": name}
    if namespace:
        attributes["namespace"] = namespace
    review = client.AuthorizationV1Api(lab.api).create_subject_access_review(
        {"spec": {"user": user, "groups": ["system:serviceaccounts"], "resourceAttributes": attributes}}  # type: ignore[arg-type]
    )
    return bool(review.status.allowed)


def install(lab: Lab, release: str, home: str, *sets: str) -> None:
    extra = [arg for item in sets for arg in ("--set", item)]
    result = helm(
        lab, "install", release, str(CHART), "--namespace", home, "--create-namespace",
        "--set", "replicaCount=1", "--set", "image.repository=registry.invalid/rbac-only",  # never run by the lab
        "--set", "crds.install=false", *extra,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


def test_can_i_table_cluster_wide_and_with_watch_namespaces(lab: Lab) -> None:
    releases = {"cluster-wide": f"rw{uuid.uuid4().hex[:5]}", "watchNamespaces": f"rn{uuid.uuid4().hex[:5]}"}
    home = f"rbac-{uuid.uuid4().hex[:6]}"
    with contextlib.suppress(ApiException):
        lab.core.create_namespace({"metadata": {"name": WATCHED}})  # type: ignore[arg-type]
    try:
        install(lab, releases["cluster-wide"], home)
        install(lab, releases["watchNamespaces"], home, f"watchNamespaces={{{WATCHED}}}")
        table: dict[str, dict[str, bool]] = {}
        for mode, release in releases.items():
            user = f"system:serviceaccount:{home}:{release}-crossover"
            for question in QUESTIONS:
                verb, group, resource, namespace, name = question
                label = f"{verb} {resource}{'/' + name if name else ''} -n {namespace or '(cluster)'}"
                table.setdefault(label, {})[mode] = can_i(lab, user, verb, group, resource, namespace, name)
        lines = ["| kubectl auth can-i ... | cluster-wide | watchNamespaces=[team-a] |", "|---|---|---|"]
        lines += [
            f"| {q} | {'yes' if a['cluster-wide'] else 'no'} | {'yes' if a['watchNamespaces'] else 'no'} |"
            for q, a in table.items()
        ]
        print("\n" + "\n".join(lines))
        scoped = {q: a["watchNamespaces"] for q, a in table.items()}
        wide = {q: a["cluster-wide"] for q, a in table.items()}
        # least privilege with watchNamespaces: nothing outside the watched namespace, never secrets by list
        assert not scoped["create deployments -n kube-system"] and not scoped["get secrets -n kube-system"]
        assert not scoped["create rolebindings -n kube-system"]
        assert scoped["create deployments -n team-a"] and scoped["patch inferencedeployments/status -n team-a"]
        for mode in (scoped, wide):
            assert not mode["update deployments -n team-a"] and not mode["delete deployments -n team-a"]
            assert not mode["list secrets -n team-a"] and not mode["bind clusterroles/cluster-admin -n team-a"]
        assert wide["create deployments -n kube-system"]  # cluster-wide needs it everywhere: docs/security.md says so
    finally:
        for release in releases.values():
            helm(lab, "uninstall", release, "--namespace", home)
        with contextlib.suppress(ApiException):
            lab.core.delete_namespace(home)
