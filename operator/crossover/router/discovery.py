"""Where the router's state comes from: the InferenceDeployment's `status.routing` (never its spec) and the
engine's EndpointSlices, watched in Kubernetes; or flags and a manifest file, for local runs and tests."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from costpolicy.spec import APIPricing
from crossover.addressing import AddressMap
from crossover.api.v1alpha1 import RoutingStatus
from crossover.contracts import GROUP, PLURAL, VERSION
from crossover.router.state import APITarget, RouterState, RoutingPolicy

log = logging.getLogger(__name__)


def apply_resource(state: RouterState, resource: dict[str, Any]) -> None:
    """Take API target, served model and policy from `status.routing` only: the operator writes it from the last
    spec that validated, so the router never parses a spec. Missing or unreadable routing keeps what it has."""
    raw = (resource.get("status") or {}).get("routing")
    if not raw:
        return  # the operator has not reconciled this resource yet: stay not ready
    try:
        routing = RoutingStatus.model_validate(raw)
        api = (
            None
            if routing.api is None
            else APITarget(
                routing.api.base_url,
                routing.api.model,
                APIPricing(
                    input_per_million=routing.api.input_per_million,
                    output_per_million=routing.api.output_per_million,
                    cached_input_per_million=routing.api.cached_input_per_million,
                ),
            )
        )
    except ValidationError as error:
        log.warning("status.routing unreadable (%d errors); keeping the last good routing", error.error_count())
        return
    state.api = api
    state.served_model = routing.served_model
    created = (resource.get("metadata") or {}).get("creationTimestamp")
    with contextlib.suppress(TypeError, ValueError):
        state.model_created = int(datetime.fromisoformat(str(created).replace("Z", "+00:00")).timestamp())
    state.policy = RoutingPolicy(
        mode=routing.mode,
        spill_fraction=min(max(routing.spill_fraction, Decimal(0)), Decimal(1)),
        api_available=routing.api_available,
        max_spill_fraction=min(max(routing.max_spill_fraction, Decimal(0)), Decimal(1)),
        spill_on_cold_start=routing.spill_on_cold_start,
        spill_on_saturation=routing.spill_on_saturation,
    )


def endpoints_of(
    slices: dict[str, dict[str, Any]], port_name: str = "http", addresses: AddressMap | None = None
) -> dict[str, str]:
    """Ready, not terminating endpoints of every slice: {pod identity: URL with the engine port} (addresses through
    the address map, if any). The identity is the targetRef's uid (else its namespace/name, else the address), so a
    pod keeps its in-flight count across readiness flaps and address reuse cannot merge two pods."""
    addresses = addresses or AddressMap()
    urls: dict[str, str] = {}
    for item in slices.values():
        ports = item.get("ports") or []
        port = next((p.get("port") for p in ports if p.get("name") == port_name), None)
        if port is None and ports:
            port = ports[0].get("port")
        if port is None:
            continue
        for endpoint in item.get("endpoints") or []:
            conditions = endpoint.get("conditions") or {}
            if conditions.get("ready") is False or conditions.get("terminating"):
                continue
            ref = endpoint.get("targetRef") or {}
            pod = ref.get("uid") or (f"{ref.get('namespace', '')}/{ref['name']}" if ref.get("name") else None)
            for reported in endpoint.get("addresses") or []:
                address = addresses.translate(reported)
                host = f"[{address}]" if ":" in address else address
                url = f"http://{host}:{port}"
                urls[f"{pod}@{port}" if pod else url] = url
    return urls


class KubernetesDiscovery:
    """Two watches in threads (the kubernetes client blocks); every change is applied on the event loop."""

    def __init__(self, state: RouterState, name: str, namespace: str, kubeconfig: Path | None = None) -> None:
        self.state = state
        self.name = name
        self.namespace = namespace
        self.kubeconfig = kubeconfig
        self._stop = threading.Event()
        self._slices: dict[str, dict[str, Any]] = {}
        self._addresses = AddressMap.from_env()

    def _client(self) -> Any:
        from kubernetes import client, config

        if self.kubeconfig is not None:
            return config.new_client_from_config(config_file=str(self.kubeconfig))  # type: ignore[no-untyped-call]
        try:
            config.load_incluster_config()  # type: ignore[no-untyped-call]
        except config.ConfigException:
            config.load_kube_config()  # type: ignore[no-untyped-call]
        return client.ApiClient()

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        from kubernetes import client

        api = self._client()
        custom = client.CustomObjectsApi(api)
        discovery = client.DiscoveryV1Api(api)
        name_selector = f"metadata.name={self.name}"
        slice_selector = f"kubernetes.io/service-name={self.name}-engine"

        def on_resource(kind: str, body: dict[str, Any]) -> None:
            if kind != "DELETED":
                before = self.state.policy
                apply_resource(self.state, body)
                if self.state.policy != before:
                    log.info("routing policy: %s", self.state.policy)

        def on_slice(kind: str, body: dict[str, Any]) -> None:
            key = body["metadata"]["name"]
            if kind == "DELETED":
                self._slices.pop(key, None)
            else:
                self._slices[key] = body
            self._publish_endpoints()

        def reset_slices() -> None:
            self._slices.clear()

        self._thread(
            loop,
            lambda **kw: custom.list_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, **kw),
            {"field_selector": name_selector},
            on_resource,
            api,
            None,
        )
        self._thread(
            loop,
            lambda **kw: discovery.list_namespaced_endpoint_slice(self.namespace, **kw),
            {"label_selector": slice_selector},
            on_slice,
            api,
            reset_slices,
        )

    def _thread(
        self,
        loop: asyncio.AbstractEventLoop,
        list_call: Callable[..., Any],
        selector: dict[str, str],
        handle: Callable[[str, dict[str, Any]], None],
        api: Any,
        on_relist: Callable[[], None] | None,
    ) -> None:
        from kubernetes import watch

        def run() -> None:
            while not self._stop.is_set():
                try:
                    listing = api.sanitize_for_serialization(list_call(**selector))
                    if on_relist is not None:
                        loop.call_soon_threadsafe(on_relist)
                    for item in listing.get("items") or []:
                        loop.call_soon_threadsafe(handle, "ADDED", item)
                    if on_relist is not None:  # an empty listing must still clear the endpoints
                        loop.call_soon_threadsafe(handle_empty)
                    version = (listing.get("metadata") or {}).get("resourceVersion")
                    for event in watch.Watch().stream(  # type: ignore[no-untyped-call]
                        list_call, resource_version=version, timeout_seconds=120, **selector
                    ):
                        if self._stop.is_set():
                            return
                        body = event["object"]
                        if not isinstance(body, dict):
                            body = api.sanitize_for_serialization(body)
                        loop.call_soon_threadsafe(handle, str(event["type"]), body)
                except Exception as error:  # any failure: log without detail that could hold secrets, relist
                    log.warning("watch failed (%s); relisting in 1 s", type(error).__name__)
                    time.sleep(1)

        def handle_empty() -> None:
            self._publish_endpoints()

        threading.Thread(target=run, daemon=True, name="router-watch").start()

    def _publish_endpoints(self) -> None:
        pods = endpoints_of(self._slices, addresses=self._addresses)
        if pods != {identity: e.url for identity, e in self.state.endpoints.items()}:
            log.info("engine endpoints: %s", sorted(pods.values()) or "none ready")
        self.state.set_endpoints(pods)

    def stop(self) -> None:
        self._stop.set()
