"""The objects one InferenceDeployment owns, as plain manifests (server-side applied by the operator).

The engine Deployment's manifest carries no `replicas`: replicas are written only through the scale
subresource, so re-applying the template never fights the scaler (the Deployment is created with the
initial count once, by a plain create).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from crossover.api.v1alpha1 import EngineKind, InferenceDeploymentSpec
from crossover.contracts import (
    API_VERSION,
    ENV_API_KEY,
    KIND,
    ROUTER_PORT,
    Component,
    engine_name,
    labels,
    router_name,
    selector,
    service_name,
)


@dataclass(frozen=True)
class Owner:
    name: str
    namespace: str
    uid: str


@dataclass(frozen=True)
class RouterPodSettings:
    """Operator-wide settings for the router pods it deploys (from the Helm values)."""

    image: str
    replicas: int = 2
    cluster_role: str = "crossover-router"  # bound per InferenceDeployment to the router's ServiceAccount
    image_pull_policy: str = "IfNotPresent"


def _meta(owner: Owner, name: str, component: Component) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": owner.namespace,
        "labels": labels(owner.name, component),
        "ownerReferences": [
            {
                "apiVersion": API_VERSION,
                "kind": KIND,
                "name": owner.name,
                "uid": owner.uid,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ],
    }


_RESTRICTED_CONTAINER = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "readOnlyRootFilesystem": True,
}


def engine_args(spec: InferenceDeploymentSpec, name: str) -> list[str]:
    served = spec.model.served_name or name
    port = str(spec.engine.port)
    if spec.engine.kind is EngineKind.VLLM:
        base = ["--model", spec.model.name, "--served-model-name", served, "--port", port]
    elif spec.engine.kind is EngineKind.SGLANG:
        base = ["--model-path", spec.model.name, "--served-model-name", served, "--port", port, "--enable-metrics"]
    else:
        base = ["--model-id", spec.model.name, "--port", port]
    return base + list(spec.engine.args)


def engine_deployment(owner: Owner, spec: InferenceDeploymentSpec) -> dict[str, Any]:
    engine = spec.engine
    gpu = {engine.gpu.resource_name: str(engine.gpu.count)}
    probe_port = "http"
    # startup probe covers the cold start (model load) twice over; liveness only takes over afterwards
    startup_failures = max(3, (2 * engine.cold_start_seconds) // 10 + 1)
    container = {
        "name": Component.ENGINE.value,
        "image": engine.image,
        "args": engine_args(spec, owner.name),
        "ports": [{"name": "http", "containerPort": engine.port, "protocol": "TCP"}],
        "resources": {"limits": gpu, "requests": gpu},
        "startupProbe": {
            "httpGet": {"path": "/health", "port": probe_port},
            "periodSeconds": 10,
            "failureThreshold": startup_failures,
        },
        "readinessProbe": {
            "httpGet": {"path": "/health", "port": probe_port},
            "periodSeconds": 5,
            "failureThreshold": 2,
        },
        "livenessProbe": {
            "httpGet": {"path": "/health", "port": probe_port},
            "periodSeconds": 15,
            "failureThreshold": 4,
        },
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
    }
    pod_labels = labels(owner.name, Component.ENGINE)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(owner, engine_name(owner.name), Component.ENGINE),
        "spec": {
            "selector": {"matchLabels": selector(owner.name, Component.ENGINE)},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}},
            "template": {
                "metadata": {
                    "labels": pod_labels,
                    "annotations": {
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": str(engine.port),
                        "prometheus.io/path": "/metrics",
                    },
                },
                "spec": {
                    "containers": [container],
                    "terminationGracePeriodSeconds": 120,
                    "tolerations": [{"key": engine.gpu.resource_name, "operator": "Exists", "effect": "NoSchedule"}],
                },
            },
        },
    }


def engine_service(owner: Owner, spec: InferenceDeploymentSpec) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(owner, engine_name(owner.name), Component.ENGINE),
        "spec": {
            "selector": selector(owner.name, Component.ENGINE),
            "ports": [{"name": "http", "port": spec.engine.port, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def router_deployment(owner: Owner, spec: InferenceDeploymentSpec, settings: RouterPodSettings) -> dict[str, Any]:
    env: list[dict[str, Any]] = []
    ref = spec.api.credentials_secret_ref
    if ref is not None:
        env.append({"name": ENV_API_KEY, "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}})
    container = {
        "name": Component.ROUTER.value,
        "image": settings.image,
        "imagePullPolicy": settings.image_pull_policy,
        "args": ["router", "--name", owner.name, "--namespace", owner.namespace, "--listen", f"0.0.0.0:{ROUTER_PORT}"],
        "env": env,
        "ports": [{"name": "http", "containerPort": ROUTER_PORT, "protocol": "TCP"}],
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 5},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 10},
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
        "securityContext": _RESTRICTED_CONTAINER,
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(owner, router_name(owner.name), Component.ROUTER),
        "spec": {
            "replicas": settings.replicas,
            "selector": {"matchLabels": selector(owner.name, Component.ROUTER)},
            "template": {
                "metadata": {
                    "labels": labels(owner.name, Component.ROUTER),
                    "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": str(ROUTER_PORT)},
                },
                "spec": {
                    "serviceAccountName": router_name(owner.name),
                    "automountServiceAccountToken": True,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": 65532,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [container],
                    "terminationGracePeriodSeconds": 60,
                },
            },
        },
    }


def router_service(owner: Owner) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(owner, service_name(owner.name), Component.ROUTER),
        "spec": {
            "selector": selector(owner.name, Component.ROUTER),
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def router_service_account(owner: Owner) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _meta(owner, router_name(owner.name), Component.ROUTER),
    }


def router_role_binding(owner: Owner, settings: RouterPodSettings) -> dict[str, Any]:
    """Lets this router read its InferenceDeployment and the engine's EndpointSlices, in this namespace only."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": _meta(owner, router_name(owner.name), Component.ROUTER),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": settings.cluster_role},
        "subjects": [{"kind": "ServiceAccount", "name": router_name(owner.name), "namespace": owner.namespace}],
    }


def children(owner: Owner, spec: InferenceDeploymentSpec, settings: RouterPodSettings) -> list[dict[str, Any]]:
    """Every child, engine Deployment first (it is the one the scaler needs)."""
    return [
        engine_deployment(owner, spec),
        engine_service(owner, spec),
        router_service_account(owner),
        router_role_binding(owner, settings),
        router_deployment(owner, spec, settings),
        router_service(owner),
    ]
