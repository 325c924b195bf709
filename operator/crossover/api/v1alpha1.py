"""crossover.dev/v1alpha1 InferenceDeployment.

The cost-bearing parts of the spec (pricing, capacity, replicas, policy) are costpolicy's own models, embedded
as they are, so the manifest, the CRD schema and the decision engine cannot drift apart.
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema, model_validator
from pydantic.alias_generators import to_camel

from costpolicy.spec import (
    MAX_SECONDS,
    APILimits,
    APIPricing,
    Capacity,
    CostSpec,
    Policy,
    PositiveDecimal,
    ReplicaBounds,
    SelfHosted,
    SpecModel,
    Whole,
)
from crossover.api.podtemplate import LABEL_VALUE_PATTERN, EngineTemplate
from crossover.contracts import GROUP, KIND, MAX_NAME_LENGTH, NAME_PATTERN, VERSION, name_problem

DNS_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS_SUBDOMAIN_PATTERN = rf"^{DNS_LABEL}(\.{DNS_LABEL})*$"
EXTENDED_RESOURCE_PATTERN = rf"^{DNS_LABEL}(\.{DNS_LABEL})*/[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
# metadata.name is checked by a CEL rule on the CRD's root (the only place CEL may read it) and by name_problem().
NAME_RULES: list[dict[str, str]] = [
    {
        "rule": f"self.metadata.name.size() <= {MAX_NAME_LENGTH}",
        "message": f"metadata.name must be at most {MAX_NAME_LENGTH} characters (children add '-engine')",
    },
    {
        "rule": f"self.metadata.name.matches('{NAME_PATTERN}')",
        "message": "metadata.name must be a DNS-1035 label (lower-case letters, digits, '-'; a letter first)",
    },
]


STATUS_DECIMAL_PATTERN = r"^[0-9]+(\.[0-9]+)?$"


def _status_decimal(value: Any) -> Decimal:
    if isinstance(value, Decimal):
        return value
    if isinstance(value, str) and re.fullmatch(STATUS_DECIMAL_PATTERN, value, flags=re.ASCII):
        return Decimal(value)
    raise ValueError(f"{value!r} is not a decimal string")


# Decimals the operator writes to status: plain digits, any size (they are computed, not typed by people).
StatusDecimal = Annotated[
    Decimal,
    BeforeValidator(_status_decimal),
    WithJsonSchema({"type": "string", "pattern": STATUS_DECIMAL_PATTERN, "description": "a decimal string, >= 0"}),
]


class EngineKind(StrEnum):
    VLLM = "vllm"
    SGLANG = "sglang"
    TGI = "tgi"


class ModelSpec(SpecModel):
    name: str = Field(
        min_length=1, max_length=253, description="The model the engine loads, e.g. meta-llama/Llama-3.1-8B-Instruct."
    )
    served_name: str | None = Field(
        default=None,
        min_length=1,
        max_length=253,
        description="The model name clients send; defaults to metadata.name.",
    )


class GPUSpec(SpecModel):
    resource_name: str = Field(
        default="nvidia.com/gpu",
        min_length=1,
        max_length=253,
        pattern=EXTENDED_RESOURCE_PATTERN,
        description="Extended resource a replica requests for its GPUs.",
    )
    count: Whole = Field(default=1, ge=1, le=64, strict=True, description="GPUs per replica (tensor parallel size).")
    type: str | None = Field(
        default=None,
        max_length=63,
        pattern=LABEL_VALUE_PATTERN,
        description=(
            "GPU model as the cluster labels its nodes, e.g. NVIDIA-H100-80GB-HBM3 (the value GPU feature discovery "
            "writes to nvidia.com/gpu.product: `kubectl get nodes -L nvidia.com/gpu.product`). Engine pods get a "
            "node selector on that label (the operator's --gpu-product-label) unless the template sets that key."
        ),
    )


class EngineSpec(SpecModel):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.template) || !has(self.template.spec) || !has(self.template.spec.container) "
                    "|| !has(self.template.spec.container.resources) || "
                    "[has(self.gpu) && has(self.gpu.resourceName) ? self.gpu.resourceName : 'nvidia.com/gpu']"
                    ".all(g, !(has(self.template.spec.container.resources.requests) && "
                    "g in self.template.spec.container.resources.requests) && "
                    "!(has(self.template.spec.container.resources.limits) && "
                    "g in self.template.spec.container.resources.limits))",
                    "message": "the GPUs come from engine.gpu; template resources may not name the GPU resource",
                }
            ]
        }
    )
    kind: EngineKind = Field(
        default=EngineKind.VLLM, description="Serving engine: decides which metric names crossover reads."
    )
    image: str = Field(
        min_length=1,
        max_length=1024,
        pattern=r"^[!-~]+$",
        description="Engine container image, e.g. vllm/vllm-openai:v0.11.0.",
    )
    args: list[Annotated[str, Field(max_length=4096)]] = Field(
        default_factory=list, max_length=128, description="Extra engine arguments."
    )
    port: Whole = Field(
        default=8000, ge=1, le=65535, strict=True, description="Port the engine serves its API and /metrics on."
    )
    gpu: GPUSpec = Field(default_factory=GPUSpec, description="GPUs each replica requests.")
    cold_start_seconds: Whole = Field(
        default=300,
        ge=0,
        le=MAX_SECONDS,
        strict=True,
        description="Seconds from pod start to ready (model load); replicas pay while warming.",
    )
    capacity: Capacity = Field(description="What one replica processes per second, per phase.")
    drain_seconds: int = Field(
        default=120,
        ge=0,
        le=3600,
        description=(
            "Longest request an engine pod may still be finishing when it is told to stop: the pod's termination "
            "grace period is this plus the preStop delay that lets routers stop sending to it first."
        ),
    )
    template: EngineTemplate | None = Field(
        default=None,
        description=(
            "Partial pod template merged into the engine pods: tolerations, nodeSelector, affinity, env, envFrom, "
            "volumes, volumeMounts, securityContext, priorityClassName, serviceAccountName, labels, annotations, "
            "resources beside the GPUs."
        ),
    )

    @model_validator(mode="after")
    def _gpus_from_gpu_spec(self) -> EngineSpec:
        if self.template is not None:
            resources = self.template.spec.container.resources
            if self.gpu.resource_name in resources.requests or self.gpu.resource_name in resources.limits:
                raise ValueError("the GPUs come from engine.gpu; template resources may not name the GPU resource")
        return self


class SecretKeyRef(SpecModel):
    name: str = Field(
        min_length=1, max_length=253, pattern=DNS_SUBDOMAIN_PATTERN, description="Secret in the resource's namespace."
    )
    key: str = Field(
        min_length=1,
        max_length=253,
        pattern=r"^[-._a-zA-Z0-9]+$",
        description="Key within the Secret holding the API key.",
    )


class APISpec(SpecModel):
    base_url: str = Field(
        alias="baseURL",
        max_length=2048,
        pattern=r"^https?://[!-~]+$",
        description="Base URL of any OpenAI-compatible API, e.g. https://api.example.com/v1.",
    )
    model: str = Field(
        min_length=1, max_length=253, description="Model name sent to the API (requests are rewritten to it)."
    )
    credentials_secret_ref: SecretKeyRef | None = Field(
        default=None, description="Secret key holding the API key, sent as a bearer token. Never logged."
    )
    pricing: APIPricing = Field(description="The API's prices per million tokens.")
    limits: APILimits = Field(default_factory=APILimits, description="The provider's rate limits.")


class SLOSpec(SpecModel):
    ttft_p95_seconds: PositiveDecimal | None = Field(
        default=None,
        alias="ttftP95Seconds",
        description=(
            "Time to first token, 95th percentile, in seconds, as a decimal string. Above it the engines count as "
            "saturated: overflow spills to the API at once and one more replica is weighed against the spill."
        ),
    )


class InferenceDeploymentSpec(SpecModel):
    model: ModelSpec = Field(description="The model served.")
    engine: EngineSpec = Field(description="The self-hosted engine crossover creates and scales.")
    replicas: ReplicaBounds = Field(description="Bounds on engine replicas.")
    self_hosted: SelfHosted = Field(description="What self-hosting costs.")
    api: APISpec = Field(description="The hosted API traffic spills to.")
    policy: Policy = Field(default_factory=Policy, description="How crossover decides.")
    slo: SLOSpec = Field(default_factory=SLOSpec, description="Service levels the engines must keep.")

    def cost_spec(self) -> CostSpec:
        """The economics decide() needs, taken from this spec."""
        return CostSpec(
            replicas=self.replicas,
            gpus_per_replica=self.engine.gpu.count,
            cold_start_seconds=self.engine.cold_start_seconds,
            capacity=self.engine.capacity,
            self_hosted=self.self_hosted,
            api_pricing=self.api.pricing,
            api_limits=self.api.limits,
            policy=self.policy,
        )


# ---- status ---------------------------------------------------------------------------------------------


class StatusModel(BaseModel):
    """Status is written by crossover; unknown fields are tolerated so older operators can read newer status."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class Condition(StatusModel):
    """metav1.Condition: lastTransitionTime changes only when status flips."""

    type: str
    status: str = Field(pattern="^(True|False|Unknown)$")
    reason: str
    message: str = ""
    observed_generation: int | None = None
    last_transition_time: datetime


class ReplicasStatus(StatusModel):
    desired: int = 0
    ready: int = 0
    warming: int = 0
    unschedulable: int = 0


class RoutingAPIStatus(StatusModel):
    """The hosted API a router spills to, copied from the last spec that validated."""

    base_url: str = Field(alias="baseURL", description="Base URL of the OpenAI-compatible API.")
    model: str = Field(description="Model name requests to the API are rewritten to.")
    input_per_million: StatusDecimal = Field(description="Price of one million input tokens, in dollars.")
    output_per_million: StatusDecimal = Field(description="Price of one million output tokens, in dollars.")
    cached_input_per_million: StatusDecimal | None = Field(
        default=None, description="Price of one million cached input tokens (unset: the input price)."
    )


class RoutingStatus(StatusModel):
    """Everything a router needs, from the last spec that validated: routers read only this and their Secret."""

    mode: str = Field(description="The policy mode in force.")
    spill_fraction: StatusDecimal = Field(description="Share of requests sent to the API, 0..1.")
    spill_percent: str | None = Field(default=None, description="spillFraction as a percentage, for display.")
    api_available: bool = Field(
        default=True,
        description="False when the budget is exhausted or the provider throttles: stop spilling.",
    )
    served_model: str | None = Field(default=None, description="The model name clients send (/v1/models lists it).")
    api: RoutingAPIStatus | None = Field(default=None, description="Where and at what price spilled requests go.")
    # The spec's spill limits, which routers apply to the spill they decide on their own (no Ready pod, every pod
    # full, a failed pod) as well as to spillFraction. Absent in a status written by an older operator: the old
    # behaviour (spill allowed, no cap).
    max_spill_fraction: StatusDecimal = Field(
        default=Decimal(1), description="policy.spill.maxFraction: the largest share of requests ever sent to the API."
    )
    spill_on_cold_start: bool = Field(
        default=True, description="policy.spill.onColdStart: spill when no engine pod is Ready."
    )
    spill_on_saturation: bool = Field(
        default=True, description="policy.spill.onSaturation: spill when every engine pod is at its in-flight limit."
    )
    observed_generation: int | None = Field(
        default=None, description="metadata.generation of the spec this routing was computed from."
    )


class DemandStatus(StatusModel):
    input_tokens_per_second: StatusDecimal
    output_tokens_per_second: StatusDecimal


class HourlyCost(StatusModel):
    self_hosted: StatusDecimal
    api: StatusDecimal


SignedDecimal = Annotated[
    Decimal,
    WithJsonSchema({"type": "string", "pattern": r"^-?[0-9]+(\.[0-9]+)?$", "description": "a decimal string"}),
]


class CostLedger(StatusModel):
    """Month-to-date dollars: spent, and what the same tokens would have cost on the API alone (see the docs)."""

    month: str = Field(description="The calendar month (UTC) these figures cover, YYYY-MM.")
    as_of: datetime = Field(description="When replica time was last added.")
    replica_hours: StatusDecimal = Field(description="Engine replica-hours this month, warming included.")
    self_hosted: StatusDecimal = Field(description="Replica and fixed-overhead dollars this month.")
    api: StatusDecimal | None = Field(default=None, description="Dollars spent on the API this month.")
    actual: StatusDecimal | None = Field(default=None, description="selfHosted + api.")
    api_only: StatusDecimal | None = Field(
        default=None, description="The month's served tokens at API prices: the bill without crossover."
    )
    saved: SignedDecimal | None = Field(default=None, description="apiOnly - actual (negative: crossover cost more).")


class CostStatus(StatusModel):
    self_hosted_per_million_tokens: StatusDecimal | None = None
    api_per_million_tokens: StatusDecimal | None = None
    break_even_tokens_per_second: StatusDecimal | None = None
    hourly: HourlyCost | None = None
    ledger: CostLedger | None = None


class StageRecord(StatusModel):
    """One stage of the decision pipeline (break-even, tolerance, stabilisation, rate limit, bounds, ...)."""

    name: str
    replicas: int
    reason: str
    message: str = ""


class DecisionRecord(StatusModel):
    time: datetime
    action: str
    reason: str
    message: str
    replicas: int
    spill_fraction: StatusDecimal
    stages: list[StageRecord] = Field(
        default_factory=list, description="Stage by stage, what each step of the pipeline made of the replica count."
    )


class RecommendationRecord(StatusModel):
    """Raw recommendations while they change, persisted so a restarted operator keeps its windows."""

    since: datetime
    replicas: int


class SignalsStatus(StatusModel):
    """What the engines report, as read in the last reconcile; a field is absent when it is unknown."""

    gpu_utilization: StatusDecimal | None = Field(
        default=None, description="Mean GPU utilisation of the engine pods' GPUs (dcgm-exporter), percent 0..100."
    )
    requests_waiting: StatusDecimal | None = Field(
        default=None, description="Requests queued in the engines, summed over pods."
    )
    kv_cache_usage: StatusDecimal | None = Field(
        default=None, description="Mean KV cache usage of the engine pods, fraction 0..1."
    )
    ttft_p95_seconds: StatusDecimal | None = Field(
        default=None, alias="ttftP95Seconds", description="Time to first token, 95th percentile, seconds."
    )
    observed_at: datetime | None = Field(default=None, description="When these were read.")
    saturated_by: list[str] = Field(
        default_factory=list, description="Signals that make the fleet count as saturated now (empty: none)."
    )


class CapacityFigures(StatusModel):
    prefill_tokens_per_second: StatusDecimal
    decode_tokens_per_second: StatusDecimal


class ObservedCapacity(CapacityFigures):
    samples: int = Field(description="Windows at the limit the estimate rests on.")
    phases_separated: bool = Field(
        default=False,
        description="True when the input/output mixes varied enough to fit prefill and decode apart; "
        "false when the declared prefill:decode ratio was rescaled to fit.",
    )


class CapacityInUse(CapacityFigures):
    source: str = Field(description="Declared or Observed: which capacity decide() planned with.")


class CapacitySampleRecord(StatusModel):
    """One window during which a replica had requests waiting throughout: its token rates then."""

    time: datetime
    input_tokens_per_second: StatusDecimal
    output_tokens_per_second: StatusDecimal


class CapacityStatus(StatusModel):
    declared: CapacityFigures
    observed: ObservedCapacity | None = None
    in_use: CapacityInUse
    samples: list[CapacitySampleRecord] = Field(default_factory=list)


class ColdStartRecord(StatusModel):
    pod: str
    seconds: StatusDecimal


class ColdStartStatus(StatusModel):
    declared_seconds: int
    observed_seconds: StatusDecimal | None = Field(
        default=None, description="90th percentile of recent engine starts, from scheduled to Ready."
    )
    in_use_seconds: int = Field(description="What decide() charges a new replica: the larger of the two.")
    starts: list[ColdStartRecord] = Field(default_factory=list)


class DailyProfileStatus(StatusModel):
    """The daily profile decide() pre-warms ramps with (costpolicy.daily), persisted so a restarted operator keeps
    what it learned. Demand in tokens per second (input + output), sums in (tokens per second)²."""

    means: dict[str, StatusDecimal] = Field(
        default_factory=dict,
        description="Mean demand per hour of the day, keyed by its UTC start (HH:MM), averaged over days; an hour "
        "not yet seen long enough is absent (unknown, not zero).",
    )
    bin_start: datetime | None = Field(default=None, description="Start of the hour being accumulated.")
    bin_sum: StatusDecimal = Field(default=Decimal(0), description="Demand x seconds in that hour so far.")
    bin_seconds: StatusDecimal = Field(default=Decimal(0), description="Seconds of that hour covered by readings.")
    sxy: SignedDecimal = Field(default=Decimal(0), description="Decayed sum of expected x actual change over 600 s.")
    sxx: StatusDecimal = Field(default=Decimal(0), description="Decayed sum of the expected change squared.")
    syy: StatusDecimal = Field(default=Decimal(0), description="Decayed sum of the actual change squared.")
    pairs: int = Field(default=0, ge=0, description="(expected, actual) change pairs learned from; trusted from 288.")
    anchor_at: datetime | None = Field(default=None, description="When the pending prediction was made.")
    anchor_demand: StatusDecimal = Field(default=Decimal(0), description="Demand when it was made.")
    anchor_change: SignedDecimal | None = Field(
        default=None, description="The change over the next 600 s the profile then expected (absent: unknown)."
    )
    seen_at: datetime | None = Field(default=None, description="The newest demand reading learned from.")
    skill: StatusDecimal | None = Field(
        default=None,
        description="Derived, for people: share of the profile's expected change its track record supports, 0..1 "
        "(0 until trusted: no pre-warm).",
    )


class ForecastStatus(StatusModel):
    """The demand forecast decide() waits out short peaks with (costpolicy.reversion), persisted so a restarted
    operator keeps what it learned. Demand in tokens per second (input + output), sums in (tokens per second)²."""

    base: StatusDecimal = Field(description="EWMA of demand over one hour: what a deviation reverts to.")
    level: StatusDecimal = Field(description="EWMA of demand over twelve hours: what the base drifts back to.")
    sxy: SignedDecimal = Field(description="Decayed sum of deviation from the base now x deviation 600 s later.")
    sxx: StatusDecimal = Field(description="Decayed sum of the squared deviation from the base.")
    pairs: int = Field(default=0, ge=0, description="(anchor, 600 s later) pairs learned from; trusted from 12.")
    anchor_at: datetime | None = Field(default=None, description="When the pending anchor's deviation was taken.")
    anchor_deviation: SignedDecimal = Field(default=Decimal(0), description="Demand minus base at the anchor.")
    drift_sxy: SignedDecimal = Field(
        default=Decimal(0), description="Decayed sum of (base - level) x (base - level) 7200 s later."
    )
    drift_sxx: StatusDecimal = Field(default=Decimal(0), description="Decayed sum of (base - level) squared.")
    drift_anchor: SignedDecimal = Field(default=Decimal(0), description="base - level at the last drift anchor.")
    seen_at: datetime | None = Field(default=None, description="The newest demand reading learned from.")
    persistence: StatusDecimal | None = Field(
        default=None, description="Derived, for people: share of a deviation left 600 s later (1 until trusted)."
    )
    drift: StatusDecimal | None = Field(
        default=None, description="Derived, for people: share of base - level left 7200 s later (1 until trusted)."
    )
    daily: DailyProfileStatus | None = Field(
        default=None,
        description="The daily profile: what each hour of the day usually brings, and how well it has predicted.",
    )


class InferenceDeploymentStatus(StatusModel):
    observed_generation: int | None = None
    selector: str | None = Field(default=None, description="Label selector of the engine pods (scale subresource).")
    replicas: ReplicasStatus = Field(default_factory=ReplicasStatus)
    routing: RoutingStatus | None = None
    demand: DemandStatus | None = None
    cost: CostStatus | None = None
    last_decision: DecisionRecord | None = None
    history: list[DecisionRecord] = Field(default_factory=list)
    recommendations: list[RecommendationRecord] = Field(default_factory=list)
    conditions: list[Condition] = Field(default_factory=list)
    signals: SignalsStatus | None = None
    capacity: CapacityStatus | None = None
    cold_start: ColdStartStatus | None = None
    forecast: ForecastStatus | None = None


class InferenceDeployment(BaseModel):
    """A whole manifest, as users apply it."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    api_version: str = Field(alias="apiVersion", pattern=f"^{GROUP}/{VERSION}$")
    kind: str = Field(pattern=f"^{KIND}$")
    metadata: dict[str, Any]
    spec: InferenceDeploymentSpec
    status: InferenceDeploymentStatus | None = None

    @model_validator(mode="after")
    def _name_fits_children(self) -> InferenceDeployment:
        name = self.metadata.get("name")
        if isinstance(name, str):
            problem = name_problem(name)
            if problem is not None:
                raise ValueError(problem)
        return self

    @property
    def name(self) -> str:
        return str(self.metadata.get("name", ""))
