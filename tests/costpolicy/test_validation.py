"""Impossible inputs get a clear error, not a wrong number."""

from __future__ import annotations

from decimal import Decimal as D

import pytest
from pydantic import ValidationError

from costpolicy.pricing import replica_cost_per_hour
from tests.costpolicy.conftest import make_spec


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"replicas.min": 5, "replicas.max": 2}, "replicas.min (5) must be <= replicas.max (2)"),
        ({"capacity.decodeTokensPerSecond": "0"}, "must be greater than zero"),
        ({"capacity.prefillTokensPerSecond": "-5"}, "'-5' is not plain decimal digits"),
        ({"selfHosted.pricing.rented.pricePerGPUHour": "-1"}, "'-1' is not plain decimal digits"),
        ({"selfHosted.pricing.rented.pricePerGPUHour": 2.5}, 'quoted decimal string such as "2.50"'),
        ({"selfHosted.pricing.rented.pricePerGPUHour": "abc"}, "'abc' is not plain decimal digits"),
        ({"selfHosted.overheadPerMonth": "-600"}, "'-600' is not plain decimal digits"),
        ({"apiPricing.cachedInputPerMillion": "9"}, "cachedInputPerMillion must not exceed inputPerMillion"),
        ({"policy.targetUtilization": "1.5"}, "'1.5' is not a decimal string in (0, 1]"),
        ({"policy.targetUtilization": "0"}, "must be greater than zero (got 0)"),
        ({"policy.mode": "Cheapest"}, "CostOptimized"),
        (
            {
                "selfHosted.pricing.owned": {
                    "purchasePricePerGPU": "25000",
                    "amortizationMonths": 36,
                    "powerWatts": 700,
                    "electricityPricePerKWh": "0.12",
                }
            },
            "exactly one of selfHosted.pricing.rented or selfHosted.pricing.owned",
        ),
        ({"replicas.pinned": 9}, "replicas.pinned (9) must lie within"),
        ({"policy.typo": 1}, "Extra inputs are not permitted"),
    ],
)
def test_bad_spec_is_refused_with_a_clear_message(override, message):
    with pytest.raises(ValidationError) as info:
        make_spec(**override)
    assert message in str(info.value)


def test_owned_gpu_cost_is_amortisation_plus_power():
    spec = make_spec(
        **{
            "selfHosted.pricing": {
                "owned": {
                    "purchasePricePerGPU": "25000",
                    "amortizationMonths": 36,
                    "powerWatts": 700,
                    "electricityPricePerKWh": "0.12",
                    "pue": "1.4",
                }
            },
        }
    )
    # 25000 / (36 × 730) + 0.7 kW × 1.4 × $0.12
    assert replica_cost_per_hour(spec) == D(25000) / (36 * D(730)) + D("0.7") * D("1.4") * D("0.12")


def test_pue_below_one_is_refused():
    with pytest.raises(ValidationError, match=r"'0\.9' is not a decimal string of 1\.0 or more"):
        make_spec(
            **{
                "selfHosted.pricing": {
                    "owned": {
                        "purchasePricePerGPU": "1",
                        "amortizationMonths": 1,
                        "powerWatts": 1,
                        "electricityPricePerKWh": "1",
                        "pue": "0.9",
                    }
                }
            }
        )
