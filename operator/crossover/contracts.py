"""Wire contracts: every name another program reads, defined once.

The API group and resource, the labels the operator puts on the objects it owns, the environment variables the
chart and the operator set, the router's metric names and label values (the operator's Prometheus queries read
them), and the policy modes. Producers and readers both import these, so a rename is one edit and a typo is an
ImportError, not a query that silently matches nothing. Names only the test rig uses live in `crossover_lab`.
"""

from __future__ import annotations

import re
from enum import StrEnum

from costpolicy.spec import PolicyMode

# ---- the resource ----------------------------------------------------------------------------------------------

GROUP = "crossover.dev"
VERSION = "v1alpha1"
KIND = "InferenceDeployment"
PLURAL = "inferencedeployments"
SINGULAR = "inferencedeployment"
SHORT_NAMES = ("infd",)
API_VERSION = f"{GROUP}/{VERSION}"
FIELD_MANAGER = "crossover"

# ---- the objects the operator owns, and their labels -----------------------------------------------------------

INSTANCE_LABEL = f"{GROUP}/inference-deployment"
# A Secret may be named as credentialsSecretRef only when it carries this label with value "true" (opt-in): whoever
# may create InferenceDeployments must not be able to send any Secret of the namespace to a host of their choice.
API_CREDENTIALS_LABEL = f"{GROUP}/api-credentials"
COMPONENT_LABEL = "app.kubernetes.io/component"


class Component(StrEnum):
    """The `app.kubernetes.io/component` label value of each kind of child."""

    ENGINE = "engine"
    ROUTER = "router"


ENGINE_SUFFIX = "-engine"
ROUTER_SUFFIX = "-router"
# Services carry `<name>` and `<name>-engine`: both must be DNS-1035 labels of at most 63 characters.
MAX_NAME_LENGTH = 63 - max(len(ENGINE_SUFFIX), len(ROUTER_SUFFIX))
NAME_PATTERN = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"


def name_problem(name: str) -> str | None:
    """Why an InferenceDeployment cannot have this name (every child's name must be valid), or None."""
    if len(name) > MAX_NAME_LENGTH:
        return f"metadata.name {name!r} is longer than {MAX_NAME_LENGTH} characters (children add {ENGINE_SUFFIX!r})"
    if re.fullmatch(NAME_PATTERN, name, flags=re.ASCII) is None:
        return (
            f"metadata.name {name!r} is not a DNS-1035 label (lower-case letters, digits and '-', starting with a "
            "letter): it names Services"
        )
    return None


def engine_name(name: str) -> str:
    """The engine Deployment; its pods are `<name>-engine-*`."""
    return f"{name}{ENGINE_SUFFIX}"


def router_name(name: str) -> str:
    """The router Deployment; its pods are `<name>-router-*`."""
    return f"{name}{ROUTER_SUFFIX}"


def service_name(name: str) -> str:
    """The client-facing Service carries the resource's own name."""
    return name


def selector(name: str, component: Component) -> dict[str, str]:
    return {INSTANCE_LABEL: name, COMPONENT_LABEL: component.value}


def selector_string(name: str, component: Component) -> str:
    """The same selector as a `label_selector` string for list calls and the scale subresource."""
    return ",".join(f"{k}={v}" for k, v in selector(name, component).items())


def labels(name: str, component: Component) -> dict[str, str]:
    return {
        **selector(name, component),
        "app.kubernetes.io/name": "crossover",
        "app.kubernetes.io/instance": name,
        "app.kubernetes.io/managed-by": FIELD_MANAGER,
    }


def prometheus_label(label: str) -> str:
    """A pod label as Prometheus names it on scraped series: kubernetes_sd's `__meta_kubernetes_pod_label_*` (with a
    labelmap) and a PodMonitor's podTargetLabels both replace every character outside [a-zA-Z0-9_] with `_`."""
    return "".join(c if c.isascii() and (c.isalnum() or c == "_") else "_" for c in label)


# the labels the operator's Prometheus queries group and select by: the pod's namespace and the two labels above
PROMETHEUS_NAMESPACE_LABEL = "namespace"
PROMETHEUS_INSTANCE_LABEL = prometheus_label(INSTANCE_LABEL)  # crossover_dev_inference_deployment
PROMETHEUS_COMPONENT_LABEL = prometheus_label(COMPONENT_LABEL)  # app_kubernetes_io_component

# ---- environment variables ---------------------------------------------------------------------------------------

ENV_API_KEY = "CROSSOVER_API_KEY"  # the router's API key, from the provider Secret; never logged
ENV_ADDRESS_MAP = "CROSSOVER_ADDRESS_MAP"  # see crossover.addressing
ENV_PROMETHEUS_URL = "CROSSOVER_PROMETHEUS_URL"
ENV_RECONCILE_INTERVAL = "CROSSOVER_RECONCILE_INTERVAL_SECONDS"
ENV_RATE_WINDOW = "CROSSOVER_RATE_WINDOW_SECONDS"
ENV_METRICS_LISTEN = "CROSSOVER_METRICS_LISTEN"
ENV_ROUTER_IMAGE = "CROSSOVER_ROUTER_IMAGE"
ENV_ROUTER_REPLICAS = "CROSSOVER_ROUTER_REPLICAS"
ENV_ROUTER_CLUSTER_ROLE = "CROSSOVER_ROUTER_CLUSTER_ROLE"
ENV_ROUTER_MAX_BODY_BYTES = "CROSSOVER_ROUTER_MAX_BODY_BYTES"  # the router's request body cap (--max-body-bytes)
ENV_PROMETHEUS_MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client's; set for router workers (--workers)
ENV_GPU_PRODUCT_LABEL = "CROSSOVER_GPU_PRODUCT_LABEL"  # node label matched against spec.engine.gpu.type
ENV_API_BASE_URL_ALLOWLIST = "CROSSOVER_API_BASE_URL_ALLOWLIST"  # comma-separated; empty allows any
ENV_PEERING = "CROSSOVER_PEERING"  # kopf peering name; unset: a standalone operator
ENV_RECONCILE_STUCK = "CROSSOVER_RECONCILE_STUCK_SECONDS"  # liveness fails once one reconcile runs this long

# ---- the router's metrics (prometheus_client appends `_total` to counters in the exposition) ---------------------

ROUTER_REQUESTS = "crossover_router_requests"
ROUTER_TOKENS = "crossover_router_tokens"
ROUTER_API_SPEND = "crossover_router_api_spend_dollars"
# input tokens the hosted API reported as cached (usage.prompt_tokens_details.cached_tokens): with the API's input
# tokens, the share of input the API bills at api.pricing.cachedInputPerMillion
ROUTER_API_CACHED_INPUT = "crossover_router_api_cached_input_tokens"
ROUTER_INFLIGHT = "crossover_router_inflight"
ROUTER_ADDED_LATENCY = "crossover_router_added_latency_seconds"
ROUTER_LOCAL_ERRORS = "crossover_router_local_errors"  # errors the router answered itself, by status and code
ROUTER_LOOP_LAG = "crossover_router_event_loop_lag_seconds"  # how late the event loop runs what is due: queueing
ROUTER_PORT = 8080  # the router serves the API and /metrics here


def total(counter: str) -> str:
    """The exposed series name of a counter."""
    return f"{counter}_total"


BACKEND_LABEL = "backend"
OUTCOME_LABEL = "outcome"
DIRECTION_LABEL = "direction"
STATUS_LABEL = "status"  # HTTP status of a router-made error
CODE_LABEL = "code"  # OpenAI error code of a router-made error ("" when null)


class Backend(StrEnum):
    """Label `backend`: where a request went."""

    SELF = "self"
    API = "api"


class Outcome(StrEnum):
    """Label `outcome`: how a request ended."""

    OK = "ok"
    ERROR = "error"  # upstream failed, after retries, or mid-stream
    THROTTLED = "throttled"  # the API answered 429
    REJECTED = "rejected"  # the router answered 429/503 itself (no capacity and no spill allowed)
    CLIENT_CLOSED = "client_closed"


class Direction(StrEnum):
    """Label `direction` of the token counter."""

    INPUT = "input"
    OUTPUT = "output"


# ---- the operator's cost ledger metric (dashboards read it) ------------------------------------------------------

COST_DOLLARS = "crossover_cost_dollars"  # month-to-date dollars per InferenceDeployment, a counter (`_total`)
BASIS_LABEL = "basis"


class Basis(StrEnum):
    """Label `basis` of the cost counter: what was spent, and what the same tokens would have cost on the API."""

    ACTUAL = "actual"
    API_ONLY = "api_only"


__all__ = [
    "API_CREDENTIALS_LABEL",
    "API_VERSION",
    "BACKEND_LABEL",
    "BASIS_LABEL",
    "CODE_LABEL",
    "COMPONENT_LABEL",
    "COST_DOLLARS",
    "DIRECTION_LABEL",
    "ENV_ADDRESS_MAP",
    "ENV_API_BASE_URL_ALLOWLIST",
    "ENV_API_KEY",
    "ENV_GPU_PRODUCT_LABEL",
    "ENV_METRICS_LISTEN",
    "ENV_PEERING",
    "ENV_PROMETHEUS_MULTIPROC_DIR",
    "ENV_PROMETHEUS_URL",
    "ENV_RATE_WINDOW",
    "ENV_RECONCILE_INTERVAL",
    "ENV_RECONCILE_STUCK",
    "ENV_ROUTER_CLUSTER_ROLE",
    "ENV_ROUTER_IMAGE",
    "ENV_ROUTER_MAX_BODY_BYTES",
    "ENV_ROUTER_REPLICAS",
    "FIELD_MANAGER",
    "GROUP",
    "INSTANCE_LABEL",
    "KIND",
    "MAX_NAME_LENGTH",
    "NAME_PATTERN",
    "OUTCOME_LABEL",
    "PLURAL",
    "PROMETHEUS_COMPONENT_LABEL",
    "PROMETHEUS_INSTANCE_LABEL",
    "PROMETHEUS_NAMESPACE_LABEL",
    "ROUTER_ADDED_LATENCY",
    "ROUTER_API_SPEND",
    "ROUTER_INFLIGHT",
    "ROUTER_LOCAL_ERRORS",
    "ROUTER_LOOP_LAG",
    "ROUTER_PORT",
    "ROUTER_REQUESTS",
    "ROUTER_TOKENS",
    "SHORT_NAMES",
    "SINGULAR",
    "STATUS_LABEL",
    "VERSION",
    "Backend",
    "Basis",
    "Component",
    "Direction",
    "Outcome",
    "PolicyMode",
    "engine_name",
    "labels",
    "name_problem",
    "prometheus_label",
    "router_name",
    "selector",
    "selector_string",
    "service_name",
    "total",
]
