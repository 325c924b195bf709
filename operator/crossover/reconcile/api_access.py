"""May this resource's routers call its API with its key? Closing the confused deputy.

Whoever may create an InferenceDeployment but not read Secrets must not be able to name any Secret of the namespace
and a host of their own and have the router send that Secret there as a bearer token. So a credentials Secret must
opt in (label `crossover.dev/api-credentials: "true"`), and the operator may restrict base URLs to an allowlist.
A refused reference is a condition and an event; the router gets no key and never calls the API: no request is
ever made with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from crossover.api.v1alpha1 import InferenceDeploymentSpec
from crossover.contracts import API_CREDENTIALS_LABEL
from crossover.reconcile.ports import Cluster, SecretCheck


@dataclass(frozen=True)
class APIAccess:
    usable: bool
    reason: str
    message: str


def base_url_allowed(url: str, allowlist: tuple[str, ...]) -> bool:
    """Same scheme, host and port as an allowed URL, and a path under its path (`https://api.x.com` does not allow
    `https://api.x.com.evil.example`). An empty allowlist allows any URL."""
    if not allowlist:
        return True
    wanted = urlsplit(url)
    for allowed in allowlist:
        rule = urlsplit(allowed)
        prefix = rule.path.rstrip("/")
        same_origin = (wanted.scheme, wanted.hostname, wanted.port) == (rule.scheme, rule.hostname, rule.port)
        if same_origin and (wanted.path == prefix or wanted.path.startswith(prefix + "/") or not prefix):
            return True
    return False


_SECRET_MESSAGES = {
    SecretCheck.NOT_FOUND: "Secret {name} does not exist in namespace {namespace}: create it (see README)",
    SecretCheck.UNREADABLE: "Secret {name} cannot be read by the operator (RBAC)",
    SecretCheck.NOT_OPTED_IN: (
        f'Secret {{name}} is not labelled {API_CREDENTIALS_LABEL}="true": label it to let routers send it to the API'
    ),
    SecretCheck.KEY_MISSING: "Secret {name} has no key {key!r}",
}


def api_access(
    spec: InferenceDeploymentSpec, namespace: str, cluster: Cluster, allowlist: tuple[str, ...]
) -> APIAccess:
    api = spec.api
    if not base_url_allowed(api.base_url, allowlist):
        return APIAccess(
            False,
            "BaseURLNotAllowed",
            f"{api.base_url} is not in the operator's API allowlist ({', '.join(allowlist)}): nothing is sent to it",
        )
    ref = api.credentials_secret_ref
    if ref is None:
        return APIAccess(False, "NoCredentials", "spec.api.credentialsSecretRef is unset: routers never call the API")
    check = cluster.check_secret(namespace, ref.name, ref.key)
    if check is not SecretCheck.READY:
        message = _SECRET_MESSAGES[check].format(name=ref.name, namespace=namespace, key=ref.key)
        return APIAccess(False, check.value, f"{message}; routers get no key and never call the API")
    return APIAccess(True, check.value, f"Secret {ref.name} key {ref.key!r} for {api.base_url}")
