"""The economics of one InferenceDeployment: what decide() and the break-even model need to know.

These pydantic models are also embedded in the CRD schema (crossover composes them into the resource), so
field names are the manifest's camelCase, money is a quoted decimal string, and every cross-field rule is
written twice on purpose: once as a pydantic validator (for the operator and the CLI) and once as a CEL rule
in `x-kubernetes-validations` (so the API server rejects it before anything runs).
"""

from __future__ import annotations

import re
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema, model_validator
from pydantic.alias_generators import to_camel

from costpolicy.money import ONE, ZERO

# Plain decimal digits only, bounded (12 before and 12 after the point): the same strings are refused by the CRD
# pattern (Go RE2 on the API server) and by the models (re.fullmatch below). Explicit ASCII classes only: `\d`
# and `\s` mean different things in RE2, Rust and Python regexes; exponents, underscores, signs, whitespace and
# non-ASCII digits all fail.
INTEGER_DIGITS = 12
FRACTION_DIGITS = 12
DECIMAL_MAX_LENGTH = INTEGER_DIGITS + 1 + FRACTION_DIGITS
DECIMAL_PATTERN = rf"^[0-9]{{1,{INTEGER_DIGITS}}}(\.[0-9]{{1,{FRACTION_DIGITS}}})?$"
FRACTION_PATTERN = rf"^(0(\.[0-9]{{1,{FRACTION_DIGITS}}})?|1(\.0{{1,{FRACTION_DIGITS}}})?)$"
AT_LEAST_ONE_PATTERN = rf"^[1-9][0-9]{{0,{INTEGER_DIGITS - 1}}}(\.[0-9]{{1,{FRACTION_DIGITS}}})?$"
# Greater than zero is "some digit is not 0": exact in CEL, no conversion to double.
POSITIVE_RULE = {"rule": "self.matches('[1-9]')", "message": "must be greater than zero"}

# Bounds on every count, so no number the API server accepts can make the operator's work unbounded.
MAX_REPLICAS = 1_000_000
MAX_SECONDS = 7 * 86_400  # stabilisation windows, cold start, metrics age: a week at most
MAX_TOKENS_PER_MINUTE = 10**12
MAX_REQUESTS_PER_MINUTE = 10**9


def _decimal_le_rule(low: str, high: str) -> str:
    """CEL for `low <= high` on two DECIMAL_PATTERN strings, exact (integer parts, then fractions padded to 12
    digits, compared as ints): CEL's double() would round 0.30000000000000001 to 0.3."""

    def whole(field: str) -> str:
        return f"int({field}.split('.')[0])"

    def fraction(field: str) -> str:
        pad = "0" * FRACTION_DIGITS
        return f"int((({field} + '.0').split('.')[1] + '{pad}').substring(0, {FRACTION_DIGITS}))"

    return f"{whole(low)} < {whole(high)} || ({whole(low)} == {whole(high)} && {fraction(low)} <= {fraction(high)})"


def _parse_decimal_string(value: Any, pattern: str = DECIMAL_PATTERN, shape: str = "plain decimal digits") -> Decimal:
    """Accept a quoted decimal string of plain digits (or a finite Decimal from code); refuse floats and ints with a
    clear hint, and anything the CRD pattern refuses (exponents, underscores, signs, whitespace, other digits)."""
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"{value!r} is not a finite decimal number")
        return value
    if isinstance(value, bool) or not isinstance(value, str):
        raise ValueError(f'must be a quoted decimal string such as "2.50", not {type(value).__name__} {value!r}')
    if re.fullmatch(pattern, value, flags=re.ASCII) is None:
        raise ValueError(f"{value!r} is not {shape}")
    return Decimal(value)


def _non_negative(value: Decimal) -> Decimal:
    if value < ZERO:
        raise ValueError(f"must not be negative (got {value})")
    return value


def _positive(value: Decimal) -> Decimal:
    if value <= ZERO:
        raise ValueError(f"must be greater than zero (got {value})")
    return value


def _fraction(value: Decimal) -> Decimal:
    if not ZERO <= value <= ONE:
        raise ValueError(f"must be between 0 and 1 (got {value})")
    return value


def _at_least_one(value: Decimal) -> Decimal:
    if value < ONE:
        raise ValueError(f"must be 1.0 or more (got {value})")
    return value


def _whole(value: Any) -> Any:
    """Integers as the API server takes them: a JSON number with no fraction (5 or 5.0), never a string or a bool."""
    if isinstance(value, bool):
        raise ValueError(f"must be a whole number, not {value!r}")
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value  # ints pass; anything else meets the strict int check


# Every count in a manifest: strict (no "5", no true) but 5.0 is 5, as on the API server.
Whole = Annotated[int, BeforeValidator(_whole)]


def _integer_in_rule(value: Any) -> Any:
    """The API server stores 5.0 as a float, and its CEL rules over integers then fail ("expected int, got
    float64"), so a count a rule compares must be written 5: refuse 5.0 here too, as the API server does."""
    if isinstance(value, float):
        raise ValueError(f"must be written as an integer (5, not 5.0), got {value!r}")
    return _whole(value)


# A count that a CEL rule compares (replicas.min/max/pinned): no 5.0, because the API server refuses it there.
RuleWhole = Annotated[int, BeforeValidator(_integer_in_rule)]


_DIGITS = f"plain decimal digits (at most {INTEGER_DIGITS} before and {FRACTION_DIGITS} after the point)"
_DECIMAL_SCHEMA = {"type": "string", "pattern": DECIMAL_PATTERN, "maxLength": DECIMAL_MAX_LENGTH}

NonNegativeDecimal = Annotated[
    Decimal,
    BeforeValidator(lambda v: _non_negative(_parse_decimal_string(v, shape=_DIGITS))),
    WithJsonSchema({**_DECIMAL_SCHEMA, "description": "a decimal string, >= 0"}),
]
PositiveDecimal = Annotated[
    Decimal,
    BeforeValidator(lambda v: _positive(_parse_decimal_string(v, shape=_DIGITS))),
    WithJsonSchema(
        {**_DECIMAL_SCHEMA, "x-kubernetes-validations": [POSITIVE_RULE], "description": "a decimal string, > 0"}
    ),
]
_FRACTION_SCHEMA = {"type": "string", "pattern": FRACTION_PATTERN, "maxLength": FRACTION_DIGITS + 2}
Fraction = Annotated[
    Decimal,
    BeforeValidator(lambda v: _fraction(_parse_decimal_string(v, FRACTION_PATTERN, "a decimal string in [0, 1]"))),
    WithJsonSchema({**_FRACTION_SCHEMA, "description": "a decimal string in [0, 1]"}),
]
PositiveFraction = Annotated[
    Decimal,
    BeforeValidator(
        lambda v: _positive(_fraction(_parse_decimal_string(v, FRACTION_PATTERN, "a decimal string in (0, 1]")))
    ),
    WithJsonSchema(
        {**_FRACTION_SCHEMA, "x-kubernetes-validations": [POSITIVE_RULE], "description": "a decimal string in (0, 1]"}
    ),
]
AtLeastOneDecimal = Annotated[
    Decimal,
    BeforeValidator(
        lambda v: _at_least_one(_parse_decimal_string(v, AT_LEAST_ONE_PATTERN, "a decimal string of 1.0 or more"))
    ),
    WithJsonSchema(
        {"type": "string", "pattern": AT_LEAST_ONE_PATTERN, "maxLength": DECIMAL_MAX_LENGTH, "description": ">= 1"}
    ),
]


class SpecModel(BaseModel):
    """Base: camelCase aliases, immutable values, unknown fields refused (a typo must not pass silently)."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, frozen=True, extra="forbid", use_enum_values=False
    )

    @model_validator(mode="before")
    @classmethod
    def _null_is_unset(cls, data: Any) -> Any:
        """`field: null` means unset, as on the API server, which prunes nulls before validating and defaulting."""
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if v is not None}
        return data


class Calibration(StrEnum):
    """Which capacity decide() plans with: the manifest's, or what crossover measured (costpolicy.calibration)."""

    DECLARED = "Declared"
    OBSERVED = "Observed"


class Capacity(SpecModel):
    """What one replica can process per second, per phase: prefill is an order of magnitude cheaper than decode."""

    prefill_tokens_per_second: PositiveDecimal = Field(
        description="Input (prompt) tokens one replica prefills per second when busy, as a decimal string."
    )
    decode_tokens_per_second: PositiveDecimal = Field(
        description="Output tokens one replica generates per second across its whole batch, as a decimal string."
    )
    calibration: Calibration = Field(
        default=Calibration.OBSERVED,
        description=(
            "Observed: plan with the capacity crossover measures on replicas that had requests waiting (once it has "
            "enough samples; status.capacity says which is in use). Declared: always plan with the figures above."
        ),
    )


class RentedPricing(SpecModel):
    price_per_gpu_hour: PositiveDecimal = Field(
        alias="pricePerGPUHour", description="Rental price of one GPU for one hour, in dollars."
    )


class OwnedPricing(SpecModel):
    """Owned hardware: purchase price amortised linearly, plus the electricity it burns (with the facility's PUE)."""

    purchase_price_per_gpu: PositiveDecimal = Field(
        alias="purchasePricePerGPU",
        description="Purchase price of one GPU (with its share of the server), dollars.",
    )
    amortization_months: Whole = Field(
        gt=0, le=1200, strict=True, description="Months over which the purchase price is written off."
    )
    power_watts: Whole = Field(
        ge=0,
        le=1_000_000,
        strict=True,
        description="Average electrical draw of one GPU (with its share of the server).",
    )
    electricity_price_per_kwh: NonNegativeDecimal = Field(
        alias="electricityPricePerKWh", description="Price of one kilowatt-hour, in dollars."
    )
    pue: AtLeastOneDecimal = Field(
        default=Decimal("1.0"),
        description="Power usage effectiveness of the facility (1.0 or more), as a decimal string.",
    )


class SelfHostedPricing(SpecModel):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "has(self.rented) != has(self.owned)",
                    "message": "set exactly one of selfHosted.pricing.rented or selfHosted.pricing.owned",
                }
            ]
        }
    )
    rented: RentedPricing | None = Field(default=None, description="GPUs rented by the hour.")
    owned: OwnedPricing | None = Field(default=None, description="GPUs bought and amortised.")

    @model_validator(mode="after")
    def _exactly_one(self) -> SelfHostedPricing:
        if (self.rented is None) == (self.owned is None):
            raise ValueError("set exactly one of selfHosted.pricing.rented or selfHosted.pricing.owned")
        return self


class SelfHosted(SpecModel):
    pricing: SelfHostedPricing = Field(description="How self-hosted GPUs are paid for: rented or owned.")
    overhead_per_month: NonNegativeDecimal = Field(
        default=Decimal(0),
        description=(
            "Fixed engineering and operations cost per month, paid while self-hosting is in use "
            "(any replica running), in dollars."
        ),
    )


class APIPricing(SpecModel):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.cachedInputPerMillion) || "
                    + _decimal_le_rule("self.cachedInputPerMillion", "self.inputPerMillion"),
                    "message": "cachedInputPerMillion must not exceed inputPerMillion",
                }
            ]
        }
    )
    input_per_million: PositiveDecimal = Field(description="Price of one million input tokens, in dollars.")
    output_per_million: PositiveDecimal = Field(description="Price of one million output tokens, in dollars.")
    cached_input_per_million: NonNegativeDecimal | None = Field(
        default=None,
        description="Price of one million cached input tokens, in dollars (defaults to the input price).",
    )

    @model_validator(mode="after")
    def _cached_not_dearer(self) -> APIPricing:
        if self.cached_input_per_million is not None and self.cached_input_per_million > self.input_per_million:
            raise ValueError("cachedInputPerMillion must not exceed inputPerMillion")
        return self


class APILimits(SpecModel):
    tokens_per_minute: Annotated[Whole, Field(gt=0, le=MAX_TOKENS_PER_MINUTE, strict=True)] | None = Field(
        default=None, description="The provider's token rate limit (input + output per minute)."
    )
    requests_per_minute: Annotated[Whole, Field(gt=0, le=MAX_REQUESTS_PER_MINUTE, strict=True)] | None = Field(
        default=None, description="The provider's request rate limit."
    )


class ReplicaBounds(SpecModel):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {"rule": "self.min <= self.max", "message": "replicas.min must be <= replicas.max"},
                {
                    "rule": "!has(self.pinned) || (self.pinned >= self.min && self.pinned <= self.max)",
                    "message": "replicas.pinned must lie within replicas.min..max",
                },
            ]
        }
    )
    min: RuleWhole = Field(
        default=0,
        ge=0,
        le=MAX_REPLICAS,
        strict=True,
        description="Fewest engine replicas, even when the API is cheaper.",
    )
    max: RuleWhole = Field(
        ge=1, le=MAX_REPLICAS, strict=True, description="Most engine replicas crossover will pay for."
    )
    pinned: Annotated[RuleWhole, Field(ge=0, le=MAX_REPLICAS, strict=True)] | None = Field(
        default=None,
        description=(
            "Hold exactly this many replicas, bypassing the cost policy (spill still follows readiness). "
            "Set by `kubectl scale`; remove the field to hand control back to the policy."
        ),
    )

    @model_validator(mode="after")
    def _ordered(self) -> ReplicaBounds:
        if self.min > self.max:
            raise ValueError(f"replicas.min ({self.min}) must be <= replicas.max ({self.max})")
        if self.pinned is not None and not self.min <= self.pinned <= self.max:
            raise ValueError(f"replicas.pinned ({self.pinned}) must lie within replicas.min..max")
        return self


class PolicyMode(StrEnum):
    COST_OPTIMIZED = "CostOptimized"
    ADVISORY = "Advisory"
    SELF_HOSTED_ONLY = "SelfHostedOnly"
    API_ONLY = "APIOnly"


class SpillPolicy(SpecModel):
    on_saturation: bool = Field(
        default=True, strict=True, description="Send demand beyond replicas.max (at the target utilisation) to the API."
    )
    on_cold_start: bool = Field(
        default=True, strict=True, description="Send demand to the API while replicas warm up or cannot be scheduled."
    )
    max_fraction: Fraction = Field(default=Decimal(1), description="Largest share of demand ever sent to the API.")


class BudgetPolicy(SpecModel):
    api_per_month: NonNegativeDecimal | None = Field(
        default=None,
        description=(
            "Most to spend on the API per calendar month (UTC), in dollars. crossover paces spill so the budget "
            "lasts the month and prefers self-hosting, even when dearer, once it would be exceeded."
        ),
    )


class Policy(SpecModel):
    mode: PolicyMode = Field(
        default=PolicyMode.COST_OPTIMIZED,
        description=(
            "CostOptimized: scale and spill at the live break-even. Advisory: compute and report, change nothing. "
            "SelfHostedOnly: scale for demand, never spill. APIOnly: keep replicas.min, send everything to the API."
        ),
    )
    target_utilization: PositiveFraction = Field(
        default=Decimal("0.8"),
        description="Busy fraction (prefill + decode time) a replica is planned to run at, in (0, 1].",
    )
    break_even_margin: NonNegativeDecimal = Field(
        default=Decimal("0.10"),
        description=(
            "Change the replica count only when the change saves more than this fraction of the hourly cost of the "
            "replicas it adds or removes (hysteresis in dollars)."
        ),
    )
    scale_up_stabilization_seconds: Whole = Field(
        default=120,
        ge=0,
        le=MAX_SECONDS,
        strict=True,
        description=(
            "Scale up only to the lowest count recommended over this window. The default matches the operator's "
            "default 120 s rate window: a new replica costs its cold start and is then held for the down-window, "
            "so it is started only for demand that has asked for it over a whole rate window."
        ),
    )
    scale_down_stabilization_seconds: Whole = Field(
        default=900,
        ge=0,
        le=MAX_SECONDS,
        strict=True,
        description=(
            "Scale down only to the highest count recommended over this window; the one exception is a trusted "
            "demand forecast whose usual demand needs fewer replicas for long enough to repay restarting them "
            "(decision stage trough, reason TroughRepaysRestart; see docs/cost-model.md)."
        ),
    )
    scale_up_max_step: Whole = Field(
        default=4,
        ge=1,
        le=MAX_REPLICAS,
        strict=True,
        description="Most replicas added per decision (or 100 % of current, if larger).",
    )
    scale_down_max_step: Annotated[Whole, Field(ge=1, le=MAX_REPLICAS, strict=True)] | None = Field(
        default=None,
        description="Most replicas removed per decision; unset means no limit.",
    )
    metrics_max_age_seconds: Whole = Field(
        default=180,
        gt=0,
        le=MAX_SECONDS,
        strict=True,
        description="Metrics older than this are stale: replicas are held, never read as zero.",
    )
    spill: SpillPolicy = Field(default_factory=SpillPolicy, description="When traffic may go to the hosted API.")
    budget: BudgetPolicy = Field(default_factory=BudgetPolicy, description="Limits on API spend.")


class CostSpec(SpecModel):
    """Everything decide() and the break-even model read, gathered from one InferenceDeployment spec."""

    replicas: ReplicaBounds
    gpus_per_replica: Whole = Field(default=1, ge=1, le=64, strict=True)
    cold_start_seconds: Whole = Field(default=300, ge=0, le=MAX_SECONDS, strict=True)
    capacity: Capacity
    self_hosted: SelfHosted
    api_pricing: APIPricing
    api_limits: APILimits = Field(default_factory=APILimits)
    policy: Policy = Field(default_factory=Policy)
