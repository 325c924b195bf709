"""status.routing is the router's only source of policy: a spec made invalid later leaves routing as it was.

Issue 17, point 2: after `kubectl patch ... targetUtilization "0"`, a router started later must still route
(spill to the API included), because the operator keeps the last good routing and routers never parse the spec.
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
import pytest_asyncio
from aiohttp import ClientSession

from crossover.reconcile.step import reconcile
from crossover.router.app import build_router_app
from crossover.router.discovery import apply_resource
from crossover.router.proxy import RouterSettings
from crossover.router.state import RouterState
from crossover_lab.emulators.hosted_api import HostedAPIConfig, build_hosted_api_app
from tests.operator.fakes import FakeCluster, FakeMetrics
from tests.operator.test_reconcile import NOW, ROUTER, manifest, reading, resource
from tests.router.test_router import KEY, base, chat, post, serve


def _good_then_bad() -> tuple[dict, dict, dict]:
    """Status after a good reconcile, the spec patched to targetUtilization "0", and the status after that."""
    spec = manifest()["spec"]
    cluster = FakeCluster(ready=0)
    good = reconcile(resource(spec=spec), cluster, FakeMetrics(reading()), ROUTER, NOW).status
    bad_spec = copy.deepcopy(spec)
    bad_spec["policy"]["targetUtilization"] = "0"
    after = reconcile(resource(spec=bad_spec, status=good, generation=2), cluster, FakeMetrics(reading()), ROUTER, NOW)
    return good, bad_spec, after.status


def test_operator_publishes_everything_a_router_needs():
    good, _, _ = _good_then_bad()
    routing = good["routing"]
    spec = manifest()["spec"]
    assert routing["api"] == {
        "baseURL": spec["api"]["baseURL"],
        "model": spec["api"]["model"],
        "inputPerMillion": spec["api"]["pricing"]["inputPerMillion"],
        "outputPerMillion": spec["api"]["pricing"]["outputPerMillion"],
        **(
            {"cachedInputPerMillion": spec["api"]["pricing"]["cachedInputPerMillion"]}
            if "cachedInputPerMillion" in spec["api"]["pricing"]
            else {}
        ),
    }
    assert routing["servedModel"] == "llama-8b"  # spec.model.servedName unset: metadata.name, as the engine serves
    assert routing["observedGeneration"] == 1


def test_a_spec_made_invalid_leaves_routing_exactly_as_it_was():
    good, _, after = _good_then_bad()
    assert after["routing"] == good["routing"]
    assert {c["type"]: c["status"] for c in after["conditions"]}["SpecValid"] == "False"


def test_router_never_reads_the_spec():
    """A resource whose spec does not validate, with a routing status: the router routes by the status."""
    good, bad_spec, after = _good_then_bad()
    state = RouterState()
    apply_resource(state, {"spec": bad_spec, "status": after})
    assert state.ready
    assert state.policy is not None and state.policy.spill_fraction == Decimal(good["routing"]["spillFraction"])
    assert state.api is not None and state.api.base_url == good["routing"]["api"]["baseURL"]
    garbage = RouterState()
    apply_resource(garbage, {"spec": {"nonsense": True}, "status": {}})
    assert not garbage.ready  # no routing published yet: not ready, never a guess from the spec


def test_unreadable_routing_keeps_the_last_good_one():
    good, _, _ = _good_then_bad()
    state = RouterState()
    apply_resource(state, {"status": good})
    before = (state.policy, state.api, state.served_model)
    apply_resource(state, {"status": {"routing": {**good["routing"], "spillFraction": "lots"}}})
    assert (state.policy, state.api, state.served_model) == before


@pytest.mark.parametrize(
    ("field", "value", "attribute", "expected"),
    [
        ("maxFraction", "0.25", "max_spill_fraction", Decimal("0.25")),
        ("onColdStart", False, "spill_on_cold_start", False),
        ("onSaturation", False, "spill_on_saturation", False),
    ],
)
def test_spill_limits_travel_from_the_spec_to_the_router(field, value, attribute, expected):
    """policy.spill.* bounds the spill routers decide on their own, so routers must know it: via status.routing."""
    spec = manifest()["spec"]
    spec.setdefault("policy", {}).setdefault("spill", {})[field] = value
    status = reconcile(resource(spec=spec), FakeCluster(ready=0), FakeMetrics(reading()), ROUTER, NOW).status
    state = RouterState()
    apply_resource(state, {"status": status})
    assert state.policy is not None and getattr(state.policy, attribute) == expected
    default = RouterState()
    apply_resource(default, {"status": _good_then_bad()[0]})
    assert getattr(default.policy, attribute) != expected  # the field alone made the difference


def test_routing_from_an_older_operator_keeps_the_old_spill_behaviour():
    """A router newer than the operator reads a status.routing without the spill limits: spill allowed, no cap."""
    good, _, _ = _good_then_bad()
    old = {
        k: v
        for k, v in good["routing"].items()
        if k not in {"maxSpillFraction", "spillOnColdStart", "spillOnSaturation"}
    }
    state = RouterState()
    apply_resource(state, {"status": {"routing": old}})
    assert state.policy is not None
    assert (state.policy.max_spill_fraction, state.policy.spill_on_cold_start, state.policy.spill_on_saturation) == (
        Decimal(1),
        True,
        True,
    )


@pytest_asyncio.fixture(loop_scope="function")
async def http() -> AsyncIterator[ClientSession]:
    async with ClientSession() as session:
        yield session


async def test_router_started_after_a_bad_patch_still_spills_to_the_api(http: ClientSession):
    """The data path end to end: a fresh router, a resource with an invalid spec, the API emulator as the target."""
    api = await serve(build_hosted_api_app(HostedAPIConfig(api_key=KEY, output_tokens_per_s=1e6)))
    good, bad_spec, after = _good_then_bad()
    status = copy.deepcopy(after)
    status["routing"]["api"]["baseURL"] = f"{base(api)}/v1"  # the lab's loopback stand-in for the provider
    status["routing"]["spillFraction"] = "1"
    state = RouterState()
    apply_resource(state, {"spec": bad_spec, "status": status})
    router = await serve(build_router_app(state, RouterSettings(api_key=KEY)))
    try:
        request = {**chat(), "model": state.served_model}  # clients name the served model (others get 404)
        code, body, _ = await post(http, base(router), request)
        assert code == 200, body
        assert body["model"] == good["routing"]["api"]["model"]
    finally:
        await router.close()
        await api.close()
