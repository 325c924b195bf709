from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from costpolicy import CostSpec

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def make_spec(**overrides: Any) -> CostSpec:
    """An 8B-on-H100 spec (the README's example), with dotted-key overrides such as policy.mode."""
    data: dict[str, Any] = {
        "replicas": {"min": 0, "max": 8},
        "gpusPerReplica": 1,
        "coldStartSeconds": 300,
        "capacity": {"prefillTokensPerSecond": "30000", "decodeTokensPerSecond": "3000"},
        "selfHosted": {"pricing": {"rented": {"pricePerGPUHour": "2.50"}}, "overheadPerMonth": "600"},
        "apiPricing": {
            "inputPerMillion": "1.00",
            "outputPerMillion": "5.00",
            "cachedInputPerMillion": "0.10",
        },
        "apiLimits": {},
        "policy": {},
    }
    for dotted, value in overrides.items():
        node = data
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return CostSpec.model_validate(data)


@pytest.fixture
def spec() -> CostSpec:
    return make_spec()


def dec(x: str | int) -> Decimal:
    return Decimal(x)
