"""What the router knows: the routing policy (from the InferenceDeployment) and the engine endpoints.

Discovery (Kubernetes watches, or static flags) writes it; the request path only reads it, apart from in-flight
counts and the queue of requests waiting for a pod slot. Everything here is touched from the event loop only.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from costpolicy.spec import APIPricing
from crossover.contracts import PolicyMode


@dataclass(frozen=True)
class APITarget:
    base_url: str  # e.g. https://api.example.com/v1
    model: str  # requests are rewritten to this model name
    pricing: APIPricing


@dataclass(frozen=True)
class RoutingPolicy:
    mode: str = PolicyMode.COST_OPTIMIZED
    spill_fraction: Decimal = Decimal(0)
    api_available: bool = True  # False: the operator says the budget is spent or the provider throttles
    max_spill_fraction: Decimal = Decimal(1)  # policy.spill.maxFraction: cap on every kind of spill together
    spill_on_cold_start: bool = True  # policy.spill.onColdStart: spill when no pod is Ready
    spill_on_saturation: bool = True  # policy.spill.onSaturation: spill when every pod is full


@dataclass
class APIShare:
    """Requests routed, and those sent to the API, over the last `window_seconds`, in one-second buckets.

    The operator's spillFraction already respects maxFraction, but routers also spill on their own (no Ready pod,
    every pod full, a pod that failed); this window is what keeps all of it together under maxFraction.
    """

    window_seconds: int = 60
    _buckets: deque[list[int]] = field(default_factory=deque)  # [second, routed, to the API]
    _routed: int = 0
    _api: int = 0

    def _bucket(self, now: float) -> list[int]:
        second = int(now)
        while self._buckets and self._buckets[0][0] <= second - self.window_seconds:
            _, routed, api = self._buckets.popleft()
            self._routed -= routed
            self._api -= api
        if not self._buckets or self._buckets[-1][0] != second:
            self._buckets.append([second, 0, 0])
        return self._buckets[-1]

    def routed(self, now: float) -> None:
        """One more request to route (counted once, however many places it is tried)."""
        self._bucket(now)[1] += 1
        self._routed += 1

    def to_api(self, now: float) -> None:
        self._bucket(now)[2] += 1
        self._api += 1

    def allows(self, fraction: Decimal, now: float) -> bool:
        """Whether one more request may go to the API without the window's API share exceeding `fraction`."""
        if fraction >= 1:
            return True
        self._bucket(now)
        return Decimal(self._api + 1) <= fraction * self._routed


@dataclass
class Endpoint:
    """One engine pod. `inflight` counts requests this router has open on it.

    Keyed by the pod's identity (the EndpointSlice's targetRef uid or name; the URL in static mode), not its URL,
    so a pod that flaps out of readiness and back keeps its count and never gets twice its limit.
    """

    url: str  # http://10.1.2.3:8000
    inflight: int = 0
    identity: str = ""

    def __post_init__(self) -> None:
        self.identity = self.identity or self.url


class QueueFull(Exception):
    """Too many requests already wait for a pod slot."""


@dataclass
class RouterState:
    policy: RoutingPolicy | None = None  # None until the first read of the resource: not ready
    api: APITarget | None = None
    endpoints: dict[str, Endpoint] = field(default_factory=dict)  # Ready pods, by identity
    served_model: str | None = None  # what /v1/models lists: the model name clients use
    model_created: int = 0  # Unix time for /v1/models (the resource's creation); 0: the router's start
    api_backoff_until: float = 0.0  # monotonic time before which the API is not tried (after its 429)
    draining: bool = False
    share: APIShare = field(default_factory=APIShare)
    _credit: Decimal = Decimal(0)
    _leaving: dict[str, Endpoint] = field(default_factory=dict)  # not Ready, requests still open on them
    _waiters: deque[asyncio.Future[None]] = field(default_factory=deque)

    @property
    def ready(self) -> bool:
        return self.policy is not None and not self.draining

    def set_endpoints(self, pods: Mapping[str, str] | Iterable[str]) -> None:
        """Ready pods ({identity: url}, or URLs that are their own identity). Pods that left get no new requests;
        their open requests finish on their own connections, and their count is kept until then."""
        ready = dict(pods) if isinstance(pods, Mapping) else {url: url for url in pods}
        for identity in list(self.endpoints):
            if identity not in ready:
                endpoint = self.endpoints.pop(identity)
                if endpoint.inflight > 0:
                    self._leaving[identity] = endpoint
        for identity, url in ready.items():
            endpoint = self.endpoints.get(identity) or self._leaving.pop(identity, None) or Endpoint(url, 0, identity)
            endpoint.url = url
            self.endpoints[identity] = endpoint
        self._wake(len(self._waiters))  # new pods may have room for everyone waiting

    def acquire(self, endpoint: Endpoint) -> None:
        endpoint.inflight += 1

    def release(self, endpoint: Endpoint) -> None:
        """A request on `endpoint` finished: its slot goes to the longest waiting request, if any."""
        endpoint.inflight -= 1
        if endpoint.inflight <= 0 and self._leaving.get(endpoint.identity) is endpoint:
            del self._leaving[endpoint.identity]
        self._wake(1)

    def _wake(self, count: int) -> None:
        while count > 0 and self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                count -= 1

    @property
    def queued(self) -> int:
        return len(self._waiters)

    async def wait_for_slot(self, limit: int, exclude: set[str], timeout: float, max_queue: int) -> Endpoint | None:
        """A pod under `limit`, waiting (woken by releases and new pods, no polling) up to `timeout` seconds; None
        when none freed in time. Raises QueueFull when `max_queue` requests already wait."""
        pod = self.least_loaded(limit, exclude)
        if pod is not None:
            return pod
        if len(self._waiters) >= max_queue:
            raise QueueFull
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        first = True
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            waiter: asyncio.Future[None] = loop.create_future()
            if first:
                self._waiters.append(waiter)
            else:
                self._waiters.appendleft(waiter)  # woken but beaten to the slot: keep the place in line
            first = False
            handle = loop.call_at(deadline, _expire, waiter)
            try:
                await waiter
            finally:
                handle.cancel()
                if not waiter.done():
                    waiter.cancel()
                with contextlib.suppress(ValueError):  # already taken off by _wake
                    self._waiters.remove(waiter)
            pod = self.least_loaded(limit, exclude)
            if pod is not None:
                return pod

    def api_usable(self, api_key: str | None) -> bool:
        """Whether the API may take this request: configured, allowed by the operator, not pushing back, and under
        policy.spill.maxFraction over the recent window."""
        now = time.monotonic()
        return (
            self.api is not None
            and api_key is not None
            and self.policy is not None
            and self.policy.mode != PolicyMode.SELF_HOSTED_ONLY
            and self.policy.api_available
            and now >= self.api_backoff_until
            and self.share.allows(self.policy.max_spill_fraction, now)
        )

    def take_spill_turn(self) -> bool:
        """Deterministic share: over n requests, the API gets fraction × n of them, give or take one."""
        fraction = self.policy.spill_fraction if self.policy else Decimal(0)
        self._credit += min(max(fraction, Decimal(0)), Decimal(1))
        if self._credit >= 1:
            self._credit -= 1
            return True
        return False

    def least_loaded(self, limit: int | None, exclude: set[str]) -> Endpoint | None:
        """Least outstanding requests among pods under `limit` (None: no limit)."""
        best: Endpoint | None = None
        for endpoint in self.endpoints.values():
            if endpoint.identity in exclude or (limit is not None and endpoint.inflight >= limit):
                continue
            if best is None or endpoint.inflight < best.inflight:
                best = endpoint
        return best


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
