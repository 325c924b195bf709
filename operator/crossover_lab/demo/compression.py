"""Time compression for the demo: replay an hour in minutes without changing the economics.

Compressing time by `k` multiplies every rate by `k`: tokens per wall second, and what one replica must
process per wall second to stand for one real replica. So capacities are multiplied by `k`, and so is the
price of a replica per wall hour (a wall hour holds `k` real hours); durations (cold start, windows, the
reconcile interval) are divided by `k`. Token prices are unchanged, so every dollar figure in wall time
equals the real-time dollar figure.
"""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any

TIME_COMPRESSION_ANNOTATION = "lab.crossover.dev/time-compression"


def _scale_decimal(value: str, factor: Decimal) -> str:
    return format((Decimal(value) * factor).normalize(), "f")  # plain digits: the CRD pattern has no exponents


def _scale_seconds(value: int, k: Decimal) -> int:
    return max(1, int((Decimal(value) / k).to_integral_value()))


def compress_manifest(manifest: dict[str, Any], k: Decimal) -> dict[str, Any]:
    """A copy of an InferenceDeployment manifest with rates × k and durations ÷ k."""
    out = copy.deepcopy(manifest)
    # the lab's emulated GPUs run k times faster too (the pod harness reads this; nothing else does)
    annotations = out.setdefault("metadata", {}).setdefault("annotations", {})
    annotations[TIME_COMPRESSION_ANNOTATION] = format(k.normalize(), "f")
    spec = out["spec"]
    capacity = spec["engine"]["capacity"]
    for key in ("prefillTokensPerSecond", "decodeTokensPerSecond"):
        capacity[key] = _scale_decimal(capacity[key], k)
    spec["engine"]["coldStartSeconds"] = _scale_seconds(spec["engine"].get("coldStartSeconds", 300), k)
    pricing = spec["selfHosted"]["pricing"]
    if "rented" in pricing:
        pricing["rented"]["pricePerGPUHour"] = _scale_decimal(pricing["rented"]["pricePerGPUHour"], k)
    else:
        raise ValueError("the demo compresses rented pricing only")
    spec["selfHosted"]["overheadPerMonth"] = _scale_decimal(spec["selfHosted"].get("overheadPerMonth", "0"), k)
    limits = spec["api"].get("limits", {})
    if "tokensPerMinute" in limits:
        limits["tokensPerMinute"] = int(limits["tokensPerMinute"] * k)
    if "requestsPerMinute" in limits:
        limits["requestsPerMinute"] = int(limits["requestsPerMinute"] * k)
    policy = spec.setdefault("policy", {})
    for key, default in (
        ("scaleUpStabilizationSeconds", 60),
        ("scaleDownStabilizationSeconds", 900),
        ("metricsMaxAgeSeconds", 180),
    ):
        policy[key] = _scale_seconds(policy.get(key, default), k)
    policy.get("budget", {}).pop("apiPerMonth", None)  # a monthly budget has no meaning in a 5-minute replay
    return out
