"""Names and labels of the objects crossover creates for one InferenceDeployment."""

from __future__ import annotations

INSTANCE_LABEL = "crossover.dev/inference-deployment"
COMPONENT_LABEL = "app.kubernetes.io/component"
FIELD_MANAGER = "crossover"
ENGINE = "engine"
ROUTER = "router"


def engine_name(name: str) -> str:
    return f"{name}-engine"


def router_name(name: str) -> str:
    return f"{name}-router"


def service_name(name: str) -> str:
    """The client-facing Service carries the resource's own name."""
    return name


def selector(name: str, component: str) -> dict[str, str]:
    return {INSTANCE_LABEL: name, COMPONENT_LABEL: component}


def selector_string(name: str, component: str) -> str:
    return ",".join(f"{k}={v}" for k, v in selector(name, component).items())


def labels(name: str, component: str) -> dict[str, str]:
    return {
        **selector(name, component),
        "app.kubernetes.io/name": "crossover",
        "app.kubernetes.io/instance": name,
        "app.kubernetes.io/managed-by": "crossover",
    }
