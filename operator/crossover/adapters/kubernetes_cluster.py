"""The Cluster port on the Kubernetes API: server-side apply for children, the scale subresource for replicas."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from decimal import Decimal
from functools import wraps
from typing import Any, ParamSpec, TypeVar, cast

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from crossover.contracts import (
    API_CREDENTIALS_LABEL,
    FIELD_MANAGER,
    Component,
    engine_name,
    router_name,
    selector_string,
)
from crossover.reconcile.ports import ChildRejected, ClusterError, EngineState, SecretCheck

log = logging.getLogger(__name__)

APPLY = "application/apply-patch+yaml"
DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
P = ParamSpec("P")
R = TypeVar("R")


def api_message(error: ApiException) -> str:
    """The API server's own one-line message (a Status object's `message`), with the HTTP status."""
    message = ""
    try:
        body = json.loads(error.body or "")
        message = str(body.get("message") or "") if isinstance(body, dict) else ""
    except (TypeError, ValueError):
        pass
    return f"{error.status} {error.reason}: {message}" if message else f"{error.status} {error.reason}"


def _refusals(call: Callable[P, R]) -> Callable[P, R]:
    """API errors leave the adapter as ClusterError carrying the API server's message, for a condition."""

    @wraps(call)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return call(*args, **kwargs)
        except ApiException as error:
            target = next((a for a in args if isinstance(a, dict) and "kind" in a), None)
            what = f"{target['kind']} {target['metadata']['name']}" if target is not None else call.__name__
            raise ClusterError(f"{what}: {api_message(error)}") from error

    return wrapper


class KubernetesCluster:
    def __init__(self, api: client.ApiClient) -> None:
        self._apps = client.AppsV1Api(api)
        self._core = client.CoreV1Api(api)
        self._autoscaling = client.AutoscalingV2Api(api)
        self._rbac = client.RbacAuthorizationV1Api(api)

    @_refusals
    def engine_state(self, namespace: str, name: str) -> EngineState | None:
        try:
            deployment = self._apps.read_namespaced_deployment(engine_name(name), namespace)
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        pods = self._core.list_namespaced_pod(namespace, label_selector=selector_string(name, Component.ENGINE)).items
        ready = warming = unschedulable = 0
        starts: list[tuple[str, Decimal]] = []
        for pod in pods:
            if pod.metadata is not None and pod.metadata.deletion_timestamp is not None:
                continue  # terminating: leaving, serves no new requests
            conditions = {c.type: c for c in ((pod.status.conditions if pod.status else None) or [])}
            scheduled = conditions.get("PodScheduled")
            if scheduled is not None and scheduled.status == "False":
                unschedulable += 1
            elif conditions.get("Ready") is not None and conditions["Ready"].status == "True":
                ready += 1
                took = _start_seconds(pod.metadata, scheduled, conditions["Ready"])
                if took is not None and pod.metadata is not None:
                    starts.append((str(pod.metadata.name), took))
            else:
                warming += 1
        return EngineState(
            replicas=deployment.spec.replicas if deployment.spec and deployment.spec.replicas is not None else 1,
            ready=ready,
            warming=warming,
            unschedulable=unschedulable,
            started=tuple(starts),
        )

    @_refusals
    def create(self, manifest: dict[str, Any]) -> None:
        """Plain create (an Update-operation owner), so later applies that omit a field never reset it."""
        namespace = manifest["metadata"]["namespace"]
        try:
            if manifest["kind"] == "Deployment":
                # the generated client validates the dict into a V1Deployment itself
                self._apps.create_namespaced_deployment(namespace, cast(Any, manifest), field_manager=FIELD_MANAGER)
            else:  # pragma: no cover - only the engine Deployment is created this way
                raise ValueError(f"create of {manifest['kind']} is not supported")
        except ApiException as error:
            if error.status in (400, 422):
                raise ChildRejected(
                    f"{manifest['kind']} {manifest['metadata']['name']} rejected by the API server: {_message(error)}"
                ) from error
            if error.status != 409:  # another reconcile created it first: fine, apply follows
                raise

    @_refusals
    def apply(self, manifest: dict[str, Any]) -> None:
        self.apply_returning_generation(manifest)

    def apply_returning_generation(self, manifest: dict[str, Any]) -> int | None:
        """Server-side apply; the object's metadata.generation afterwards (None for kinds without one)."""
        try:
            return self._apply(manifest)
        except ApiException as error:
            if error.status in (400, 422):  # Invalid / BadRequest: the manifest itself is wrong, retrying won't help
                raise ChildRejected(
                    f"{manifest['kind']} {manifest['metadata']['name']} rejected by the API server: {_message(error)}"
                ) from error
            raise

    def _apply(self, manifest: dict[str, Any]) -> int | None:
        """The answer is read as JSON, not deserialised into the client's models: that cost more than the request."""
        namespace = manifest["metadata"]["namespace"]
        name = manifest["metadata"]["name"]
        kwargs: dict[str, Any] = {
            "field_manager": FIELD_MANAGER,
            "force": True,
            "_content_type": APPLY,
            "_preload_content": False,
        }
        response: Any
        if manifest["kind"] == "Deployment":
            response = self._apps.patch_namespaced_deployment(name, namespace, manifest, **kwargs)
        elif manifest["kind"] == "Service":
            response = self._core.patch_namespaced_service(name, namespace, manifest, **kwargs)
        elif manifest["kind"] == "ServiceAccount":
            response = self._core.patch_namespaced_service_account(name, namespace, manifest, **kwargs)
        elif manifest["kind"] == "RoleBinding":
            response = self._rbac.patch_namespaced_role_binding(name, namespace, manifest, **kwargs)
        else:  # pragma: no cover
            raise ValueError(f"apply of {manifest['kind']} is not supported")
        try:
            generation = json.loads(response.data).get("metadata", {}).get("generation")
        finally:
            response.release_conn()
        return int(generation) if generation is not None else None

    @_refusals
    def scale(self, namespace: str, deployment: str, replicas: int) -> None:
        self._apps.patch_namespaced_deployment_scale(
            deployment, namespace, {"spec": {"replicas": replicas}}, field_manager=f"{FIELD_MANAGER}-scaler"
        )

    @_refusals
    def autoscalers_targeting(self, namespace: str, deployment: str) -> list[str]:
        hpas = self._autoscaling.list_namespaced_horizontal_pod_autoscaler(namespace).items
        return [
            f"HorizontalPodAutoscaler/{h.metadata.name if h.metadata else '?'}"
            for h in hpas
            if h.spec and h.spec.scale_target_ref.kind == "Deployment" and h.spec.scale_target_ref.name == deployment
        ]

    def engine_pods(self, namespace: str, name: str) -> list[str]:
        pods = self._core.list_namespaced_pod(namespace, label_selector=selector_string(name, Component.ENGINE)).items
        return [
            p.metadata.name
            for p in pods
            if p.metadata is not None and p.metadata.name and p.metadata.deletion_timestamp is None
        ]

    def set_deletion_cost(self, namespace: str, pod: str, cost: int) -> None:
        try:
            self._core.patch_namespaced_pod(pod, namespace, {"metadata": {"annotations": {DELETION_COST: str(cost)}}})
        except ApiException as error:
            if error.status == 403:  # ranking is best effort: an older RBAC without `patch pods` must not block scaling
                log.warning(
                    "cannot mark pod %s/%s with its deletion cost: forbidden (the chart grants patch)", namespace, pod
                )
            elif error.status != 404:  # 404: gone already, nothing to rank
                raise

    @_refusals
    def routers_ready(self, namespace: str, name: str) -> int:
        try:
            deployment = self._apps.read_namespaced_deployment(router_name(name), namespace)
        except ApiException as error:
            if error.status == 404:
                return 0
            raise
        return int((deployment.status.ready_replicas if deployment.status else None) or 0)

    def check_secret(self, namespace: str, name: str, key: str) -> SecretCheck:
        """Exists, readable, opted in, holds the key. Only metadata and key names are looked at; the value is
        dropped with the response."""
        try:
            secret = self._core.read_namespaced_secret(name, namespace)
        except ApiException as error:
            if error.status == 404:
                return SecretCheck.NOT_FOUND
            if error.status == 403:
                return SecretCheck.UNREADABLE
            raise ClusterError(f"Secret {name}: {api_message(error)}") from error
        labels = (secret.metadata.labels if secret.metadata else None) or {}
        if labels.get(API_CREDENTIALS_LABEL) != "true":
            return SecretCheck.NOT_OPTED_IN
        if key not in (secret.data or {}) and key not in (secret.string_data or {}):
            return SecretCheck.KEY_MISSING
        return SecretCheck.READY


def _message(error: ApiException) -> str:
    """The Status message of a refusal, on one line."""
    try:
        message = str(json.loads(error.body or "{}").get("message") or error.reason)
    except ValueError:
        message = str(error.reason)
    return " ".join(message.split())


def _start_seconds(meta: Any, scheduled: Any, ready: Any) -> Decimal | None:
    """Seconds from the later of creation and scheduling to Ready: the cold start, not the wait for a GPU."""
    begun = [
        t for t in (getattr(meta, "creation_timestamp", None), getattr(scheduled, "last_transition_time", None)) if t
    ]
    done = getattr(ready, "last_transition_time", None)
    if not begun or done is None:
        return None
    seconds = Decimal(str((done - max(begun)).total_seconds()))
    return seconds if seconds >= 0 else None
