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
    # Base URLs routers may call and send their key to (scheme, host, port, path prefix); empty allows any
    api_base_url_allowlist: tuple[str, ...] = ()


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


# kubelet runs the preStop hook before SIGTERM; meanwhile the pod's endpoint is already terminating (not ready),
# so routers watching the EndpointSlice stop sending it new requests before the engine is told to stop
PRE_STOP_SECONDS = 10
# pod fields a template sets as they are (tolerations, nodeSelector, affinity and volumes are merged apart)
POD_FIELDS = ("priorityClassName", "serviceAccountName", "runtimeClassName", "imagePullSecrets", "securityContext")


@dataclass(frozen=True)
class EngineSettings:
    """Operator-wide settings for the engine pods (from the Helm values)."""

    # the node label gpu.type is matched against: GPU feature discovery's product label by default
    gpu_product_label: str = "nvidia.com/gpu.product"


@dataclass(frozen=True)
class Launch:
    """How an engine image is started: `command` replaces the image's entrypoint when set."""

    command: list[str]
    args: list[str]


def engine_launch(spec: InferenceDeploymentSpec, name: str) -> Launch:
    """The command line per engine kind, written against each official image's entrypoint:

    - vLLM (vllm/vllm-openai): `vllm serve MODEL` (the `--model` flag is deprecated); the command is set so the
      line is right whatever entrypoint the image tag has (docs.vllm.ai/en/stable/deployment/k8s/).
    - SGLang (lmsysorg/sglang): the image has no entrypoint; its docs start `python3 -m sglang.launch_server
      --model-path MODEL --host 0.0.0.0 --port N` (the server binds 127.0.0.1 unless told otherwise).
    - TGI (ghcr.io/huggingface/text-generation-inference): the entrypoint is `text-generation-launcher`; the
      docs pass launcher arguments only (`--model-id MODEL`), so crossover sets args and leaves the command.
    """
    served = spec.model.served_name or name
    port = str(spec.engine.port)
    extra = list(spec.engine.args)
    if spec.engine.kind is EngineKind.VLLM:
        return Launch(["vllm", "serve"], [spec.model.name, "--served-model-name", served, "--port", port, *extra])
    if spec.engine.kind is EngineKind.SGLANG:
        return Launch(
            ["python3", "-m", "sglang.launch_server"],
            [
                "--model-path", spec.model.name, "--served-model-name", served,
                "--host", "0.0.0.0", "--port", port, "--enable-metrics", *extra,
            ],
        )  # fmt: skip
    return Launch([], ["--model-id", spec.model.name, "--port", port, *extra])


def _dump(model: Any) -> Any:
    """A template part as the API server wants it: camelCase, nothing unset, no empty lists or maps."""
    data = model.model_dump(mode="json", by_alias=True, exclude_none=True)
    return _prune(data)


def _prune(node: Any) -> Any:
    if isinstance(node, dict):
        pruned = {k: _prune(v) for k, v in node.items()}
        return {k: v for k, v in pruned.items() if v not in ({}, [])}
    if isinstance(node, list):
        return [_prune(item) for item in node]
    return node


def _affinity_mentions(affinity: dict[str, Any] | None, label: str) -> bool:
    """Does a required node affinity in the template already constrain this label?"""
    required = ((affinity or {}).get("nodeAffinity") or {}).get("requiredDuringSchedulingIgnoredDuringExecution")
    for term in (required or {}).get("nodeSelectorTerms") or []:
        for expression in term.get("matchExpressions") or []:
            if expression.get("key") == label:
                return True
    return False


def _node_selector(spec: InferenceDeploymentSpec, settings: EngineSettings) -> dict[str, str]:
    template = spec.engine.template
    selector = dict(template.spec.node_selector) if template is not None else {}
    gpu_type = spec.engine.gpu.type
    label = settings.gpu_product_label
    affinity = template.spec.affinity if template is not None else None
    if gpu_type and label not in selector and not _affinity_mentions(affinity, label):
        selector[label] = gpu_type
    return selector


def engine_pod_template(
    owner: Owner, spec: InferenceDeploymentSpec, settings: EngineSettings | None = None
) -> dict[str, Any]:
    """What crossover generates for an engine pod, with spec.engine.template merged in.

    crossover owns the image, launch line, port, probes, GPUs and selector labels; the template adds to them (env,
    volumes, tolerations, resources beside the GPUs) or overrides what is the platform's to decide (security
    context keys, scheduling). The API server validates the merged result when the Deployment is applied.
    """
    settings = settings or EngineSettings()
    engine = spec.engine
    template = engine.template
    pod_t = template.spec if template is not None else None
    gpu = {engine.gpu.resource_name: str(engine.gpu.count)}
    probe_port = "http"
    # startup probe covers the cold start (model load) twice over; liveness only takes over afterwards
    startup_failures = max(3, (2 * engine.cold_start_seconds) // 10 + 1)
    launch = engine_launch(spec, owner.name)
    security: dict[str, Any] = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
    requests: dict[str, str] = {}
    limits: dict[str, str] = {}
    container_extra: dict[str, Any] = {}
    if pod_t is not None:
        security.update(_dump(pod_t.container.security_context) if pod_t.container.security_context else {})
        requests.update(pod_t.container.resources.requests)
        limits.update(pod_t.container.resources.limits)
        for key in ("env", "envFrom", "volumeMounts"):
            value = _dump(pod_t.container).get(key)
            if value:
                container_extra[key] = value
    container: dict[str, Any] = {
        "name": Component.ENGINE.value,
        "image": engine.image,
        **({"command": launch.command} if launch.command else {}),
        "args": launch.args,
        "ports": [{"name": "http", "containerPort": engine.port, "protocol": "TCP"}],
        **container_extra,
        "resources": {"limits": {**limits, **gpu}, "requests": {**requests, **gpu}},
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
        "lifecycle": {"preStop": {"sleep": {"seconds": PRE_STOP_SECONDS}}},
        "securityContext": security,
    }
    tolerations: list[dict[str, Any]] = [
        {"key": engine.gpu.resource_name, "operator": "Exists", "effect": "NoSchedule"}
    ]
    pod_spec: dict[str, Any] = {
        "containers": [container],
        "terminationGracePeriodSeconds": PRE_STOP_SECONDS + engine.drain_seconds,
    }
    annotations = {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(engine.port),
        "prometheus.io/path": "/metrics",
    }
    extra_labels: dict[str, str] = {}
    if template is not None:
        annotations.update(template.metadata.annotations)
        extra_labels = dict(template.metadata.labels)
    if pod_t is not None:
        dumped = _dump(pod_t)
        for item in dumped.get("tolerations", []):
            if item not in tolerations:
                tolerations.append(item)
        for key in POD_FIELDS:
            if key in dumped:
                pod_spec[key] = dumped[key]
        # open objects go as the user wrote them (an empty list inside an affinity may mean something)
        if pod_t.affinity is not None:
            pod_spec["affinity"] = pod_t.affinity
        if pod_t.volumes:
            pod_spec["volumes"] = list(pod_t.volumes)
    selector_ = _node_selector(spec, settings)
    if selector_:
        pod_spec["nodeSelector"] = selector_
    pod_spec["tolerations"] = tolerations
    return {
        "metadata": {"labels": {**extra_labels, **labels(owner.name, Component.ENGINE)}, "annotations": annotations},
        "spec": pod_spec,
    }


def engine_deployment(
    owner: Owner, spec: InferenceDeploymentSpec, settings: EngineSettings | None = None
) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(owner, engine_name(owner.name), Component.ENGINE),
        "spec": {
            "selector": {"matchLabels": selector(owner.name, Component.ENGINE)},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}},
            "template": engine_pod_template(owner, spec, settings),
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


def router_deployment(
    owner: Owner, spec: InferenceDeploymentSpec, settings: RouterPodSettings, credentials: bool = True
) -> dict[str, Any]:
    """`credentials` False (a Secret not opted in, or a base URL not allowed): the router gets no key at all."""
    env: list[dict[str, Any]] = []
    ref = spec.api.credentials_secret_ref
    if ref is not None and credentials:
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


def children(
    owner: Owner,
    spec: InferenceDeploymentSpec,
    settings: RouterPodSettings,
    engine: EngineSettings | None = None,
    credentials: bool = True,
) -> list[dict[str, Any]]:
    """Every child, engine Deployment first (it is the one the scaler needs)."""
    return [
        engine_deployment(owner, spec, engine),
        engine_service(owner, spec),
        router_service_account(owner),
        router_role_binding(owner, settings),
        router_deployment(owner, spec, settings, credentials),
        router_service(owner),
    ]
