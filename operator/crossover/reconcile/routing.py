"""status.routing: the one place a router learns how to route, published by the operator from a valid spec.

Routers never parse the spec. The operator writes this only after the spec validated, and keeps the previous
routing when it does not, so a bad `kubectl patch` cannot stop or change traffic, even for routers started later.
"""

from __future__ import annotations

from decimal import Decimal

from crossover.api.v1alpha1 import InferenceDeploymentSpec, RoutingAPIStatus, RoutingStatus
from crossover.reconcile.status import percent

SPILL_PLACES = Decimal("0.0001")


def routing_status(
    spec: InferenceDeploymentSpec,
    name: str,
    spill_fraction: Decimal,
    api_available: bool,
    generation: int | None,
) -> RoutingStatus:
    """What routers apply per request: policy from the decision, API target and prices from the spec."""
    spill = min(max(spill_fraction, Decimal(0)), Decimal(1)).quantize(SPILL_PLACES)
    pricing = spec.api.pricing
    return RoutingStatus(
        mode=spec.policy.mode.value,
        spill_fraction=spill,
        spill_percent=percent(spill),
        api_available=api_available,
        served_model=spec.model.served_name or name,
        api=RoutingAPIStatus(
            base_url=spec.api.base_url,
            model=spec.api.model,
            input_per_million=pricing.input_per_million,
            output_per_million=pricing.output_per_million,
            cached_input_per_million=pricing.cached_input_per_million,
        ),
        max_spill_fraction=spec.policy.spill.max_fraction,
        spill_on_cold_start=spec.policy.spill.on_cold_start,
        spill_on_saturation=spec.policy.spill.on_saturation,
        observed_generation=generation,
    )
