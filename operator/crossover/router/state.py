"""What the router knows: the routing policy (from the InferenceDeployment) and the engine endpoints.

Discovery (Kubernetes watches, or static flags) writes it; the request path only reads it. Everything here is
touched from the event loop only.
"""

from __future__ import annotations

import time
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
class Policy:
    mode: str = PolicyMode.COST_OPTIMIZED
    spill_fraction: Decimal = Decimal(0)
    api_available: bool = True  # False: the operator says the budget is spent or the provider throttles


@dataclass
class Endpoint:
    """One Ready engine pod. `inflight` counts requests this router has open on it."""

    url: str  # http://10.1.2.3:8000
    inflight: int = 0


@dataclass
class RouterState:
    policy: Policy | None = None  # None until the first read of the resource: not ready
    api: APITarget | None = None
    endpoints: dict[str, Endpoint] = field(default_factory=dict)
    served_model: str | None = None  # what /v1/models lists: the model name clients use
    api_backoff_until: float = 0.0  # monotonic time before which the API is not tried (after its 429)
    draining: bool = False
    _credit: Decimal = Decimal(0)

    @property
    def ready(self) -> bool:
        return self.policy is not None and not self.draining

    def set_endpoints(self, urls: set[str]) -> None:
        """Pods that left get no new requests; their open requests finish on their own connections."""
        for url in list(self.endpoints):
            if url not in urls:
                del self.endpoints[url]
        for url in urls:
            self.endpoints.setdefault(url, Endpoint(url))

    def api_usable(self, api_key: str | None) -> bool:
        return (
            self.api is not None
            and api_key is not None
            and self.policy is not None
            and self.policy.mode != PolicyMode.SELF_HOSTED_ONLY
            and self.policy.api_available
            and time.monotonic() >= self.api_backoff_until
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
            if endpoint.url in exclude or (limit is not None and endpoint.inflight >= limit):
                continue
            if best is None or endpoint.inflight < best.inflight:
                best = endpoint
        return best
