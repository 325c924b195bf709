"""Issue 17, points 9, 10 and 11: Ready means traffic can flow; the credentials Secret must exist and opt in; the
operator may restrict API base URLs; a refused reference is a condition and an event, never a request."""

from __future__ import annotations

import copy
from dataclasses import replace
from decimal import Decimal

import pytest

from costpolicy import Demand
from crossover.contracts import ENV_API_KEY
from crossover.reconcile.api_access import base_url_allowed
from crossover.reconcile.ports import SecretCheck
from crossover.reconcile.step import Resource, reconcile_or_degrade
from tests.operator.fakes import FakeCluster, FakeMetrics
from tests.operator.test_reconcile import HIGH, NOW, ROUTER, conditions, manifest, reading

LOW = Demand(Decimal(0), Decimal(0))  # no demand: no engine replicas, the API is the only backend


def run(cluster: FakeCluster, spec: dict | None = None, router=ROUTER, demand: Demand | None = LOW):
    resource = Resource("llama-8b", "ml", "uid-1", 1, spec or manifest()["spec"], {})
    return reconcile_or_degrade(resource, cluster, FakeMetrics(reading(demand)), router, NOW)


def router_env(cluster: FakeCluster) -> dict[str, dict]:
    pod = cluster.objects[("Deployment", "ml", "llama-8b-router")]["spec"]["template"]["spec"]
    return {e["name"]: e for e in pod["containers"][0].get("env", [])}


@pytest.mark.parametrize(
    ("check", "words"),
    [
        (SecretCheck.NOT_FOUND, "does not exist"),
        (SecretCheck.NOT_OPTED_IN, 'crossover.dev/api-credentials="true"'),
        (SecretCheck.KEY_MISSING, "has no key 'apiKey'"),
        (SecretCheck.UNREADABLE, "cannot be read"),
    ],
)
def test_a_refused_secret_is_a_condition_an_event_and_no_key(check: SecretCheck, words: str):
    """Before: the example's missing `provider-key` left routers Ready and the resource Ready=True while spilling
    100 % to an API it had no key for; and any Secret of the namespace could be named and sent anywhere."""
    cluster = FakeCluster(secrets={"provider-key": check})
    out = run(cluster)
    api = conditions(out.status)["APIReady"]
    assert (api["status"], api["reason"]) == ("False", check.value)
    assert words in api["message"]
    assert ENV_API_KEY not in router_env(cluster)  # the router never holds it, so no request carries it
    assert out.status["routing"]["apiAvailable"] is False
    ready = conditions(out.status)["Ready"]
    assert (ready["status"], ready["reason"]) == ("False", "NoBackend")
    assert [(e.type, e.reason) for e in out.events if "APIReady" in e.message] == [("Warning", check.value)]


def test_an_opted_in_secret_is_used():
    cluster = FakeCluster(secrets={"provider-key": SecretCheck.READY})
    out = run(cluster)
    assert conditions(out.status)["APIReady"]["status"] == "True"
    assert router_env(cluster)[ENV_API_KEY]["valueFrom"]["secretKeyRef"] == {"name": "provider-key", "key": "apiKey"}
    assert conditions(out.status)["Ready"]["status"] == "True"


def test_a_base_url_outside_the_allowlist_is_refused():
    cluster = FakeCluster()
    spec = copy.deepcopy(manifest()["spec"])
    spec["api"]["baseURL"] = "https://collector.attacker.example/v1"
    out = run(cluster, spec, replace(ROUTER, api_base_url_allowlist=("https://api.example-provider.com/v1",)))
    api = conditions(out.status)["APIReady"]
    assert (api["status"], api["reason"]) == ("False", "BaseURLNotAllowed")
    assert ENV_API_KEY not in router_env(cluster)
    assert out.status["routing"]["apiAvailable"] is False


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://api.example-provider.com/v1", True),
        ("https://api.example-provider.com/v1/", True),
        ("https://api.example-provider.com/v1beta", False),
        ("https://api.example-provider.com.evil.example/v1", False),
        ("http://api.example-provider.com/v1", False),
        ("https://api.example-provider.com:8443/v1", False),
        ("https://other.example/v1", False),
    ],
)
def test_allowlist_matches_origin_and_path_prefix(url: str, allowed: bool):
    assert base_url_allowed(url, ("https://api.example-provider.com/v1",)) is allowed
    assert base_url_allowed(url, ()) is True


def test_ready_needs_a_ready_router():
    """Before: Ready=True ("1 ready replica(s)") while every router pod failed to read its policy."""
    cluster = FakeCluster(routers=0)
    out = run(cluster, demand=HIGH)
    out = run(cluster, demand=HIGH)  # engine replicas exist and are ready now
    ready = conditions(out.status)["Ready"]
    assert (ready["status"], ready["reason"]) == ("False", "NoRouterReady")
    assert conditions(out.status)["RoutersReady"]["status"] == "False"
    cluster.routers = 1
    assert conditions(run(cluster, demand=HIGH).status)["Ready"]["status"] == "True"
