"""Issue 17, point 2: the CRD and the models refuse the same decimal strings and the same numbers.

The API server's verdict is checked for real in tests/lab/test_validation_parity.py; here the CRD's own pattern
(ASCII character classes only, so Python's re and Go's RE2 agree) and its exact CEL rules, re-stated in Python,
are compared with the models over the issue's cases and generated strings, in milliseconds.
"""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from costpolicy.spec import DECIMAL_PATTERN, MAX_REPLICAS
from tests.costpolicy.conftest import make_spec

ISSUE_CASES = ["2.4E+4", "2_500", "\u0662\u0665\u0660\u0660", " 2.5", "2.5 ", "2.5\n", "1e30", "1" + "0" * 30, "+2.5"]
PLAIN = ["0", "2.5", "0.000000000001", "999999999999.999999999999", "007.50"]


def crd_accepts_price(value: str) -> bool:
    """pattern + `self.matches('[1-9]')` (a positive decimal) as the CRD says them (RE2's `$` is end of text only,
    which fullmatch mimics; Python's re.search would let `$` match before a trailing newline)."""
    return re.fullmatch(DECIMAL_PATTERN, value, flags=re.ASCII) is not None and re.search("[1-9]", value) is not None


def model_accepts_price(value: str) -> bool:
    try:
        make_spec(**{"selfHosted.pricing.rented.pricePerGPUHour": value})
    except ValidationError:
        return False
    return True


@pytest.mark.parametrize("value", ISSUE_CASES + PLAIN)
def test_price_strings_are_judged_alike(value: str) -> None:
    assert model_accepts_price(value) == crd_accepts_price(value)


@pytest.mark.parametrize("value", ISSUE_CASES)
def test_the_issue_s_strings_are_refused_by_the_model(value: str) -> None:
    """Before: Decimal(value.strip()) took exponents, underscores, other digits and padding; the CRD did not."""
    assert not model_accepts_price(value)


@settings(max_examples=300)
@given(st.one_of(st.text(alphabet="0123456789.eE+-_ \u0660\u0665\u06f5", max_size=30), st.text(max_size=8)))
def test_generated_price_strings_are_judged_alike(value: str) -> None:
    assert model_accepts_price(value) == crd_accepts_price(value)


@pytest.mark.parametrize(
    ("override", "accepted"),
    [
        ({"policy.targetUtilization": "0"}, False),  # the CRD now refuses it too (`self.matches('[1-9]')`)
        ({"policy.targetUtilization": "0.0001"}, True),
        ({"apiPricing.cachedInputPerMillion": "0.30000000000000001", "apiPricing.inputPerMillion": "0.3"}, False),
        ({"apiPricing.cachedInputPerMillion": "0.300000000000", "apiPricing.inputPerMillion": "0.3"}, True),
        ({"apiPricing.cachedInputPerMillion": "0.3", "apiPricing.inputPerMillion": "0.30000000001"}, True),
        ({"replicas.max": 4611686018427387904}, False),
        ({"replicas.max": MAX_REPLICAS}, True),
        ({"replicas.max": "5"}, False),  # the API server refuses a string for an integer; so does the model
        ({"replicas.max": True}, False),
        # 5.0 is an integer to the API server's schema, but its CEL rule over replicas fails on it ("expected int,
        # got float64"): the lab's parity corpus found it, so counts inside a rule refuse 5.0 and others take it.
        ({"replicas.max": 5.0}, False),
        ({"replicas.min": 1.0}, False),
        ({"coldStartSeconds": 5.0}, True),
        ({"replicas.max": 2.5}, False),
        ({"coldStartSeconds": 10**9}, False),
        ({"policy.spill.onColdStart": "yes"}, False),
        ({"policy.scaleDownMaxStep": None}, True),  # null is unset, as the API server prunes it
    ],
)
def test_numbers_are_bounded_and_strict(override: dict, accepted: bool) -> None:
    try:
        make_spec(**override)
    except ValidationError:
        assert not accepted
    else:
        assert accepted


@pytest.mark.parametrize(
    ("pue", "accepted"), [("0", False), ("0.5", False), ("0.999999999999", False), ("1", True), ("1.4", True)]
)
def test_pue_is_at_least_one_in_pattern_and_model(pue: str, accepted: bool) -> None:
    owned = {
        "purchasePricePerGPU": "25000",
        "amortizationMonths": 36,
        "powerWatts": 700,
        "electricityPricePerKWh": "0.12",
        "pue": pue,
    }
    try:
        spec = make_spec(**{"selfHosted.pricing": {"owned": owned}})
    except ValidationError:
        assert not accepted
    else:
        assert accepted and spec.self_hosted.pricing.owned is not None
        assert spec.self_hosted.pricing.owned.pue == Decimal(pue)
