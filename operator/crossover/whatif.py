"""What-if from history: one deployment's real demand, read back from Prometheus, through the simulator twice.

The demand is what its router counted (`crossover_router_tokens_total`, before the split between replicas and the
API), as a rate per fixed step over the period asked. Both runs use the same demand and the same simulated control
loop, so the difference is the change's alone. Steps where Prometheus has no router series are counted and said;
they are simulated as no demand (the simulator needs a value), never silently.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import requests
import yaml

from crossover.contracts import (
    DIRECTION_LABEL,
    PROMETHEUS_COMPONENT_LABEL,
    PROMETHEUS_INSTANCE_LABEL,
    PROMETHEUS_NAMESPACE_LABEL,
    ROUTER_TOKENS,
    Component,
    total,
)
from crossover.manifest import ManifestError, parse_inference_deployment
from crossover.sim.traces import Trace, Window

DURATION = re.compile(r"^(\d+)([smhdw])$")
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
MAX_POINTS = 11_000  # Prometheus refuses range queries of more than 11,000 points


def seconds_of(text: str) -> int:
    """'7d' -> 604800 (Prometheus duration syntax, one unit)."""
    match = DURATION.match(text.strip())
    if not match or int(match.group(1)) <= 0:
        raise ValueError(f"{text!r} is not a duration like 90s, 30m, 12h, 7d or 2w")
    return int(match.group(1)) * UNITS[match.group(2)]


@dataclass(frozen=True)
class History:
    trace: Trace
    steps: int
    missing: int  # steps without any router series


def router_selector(namespace: str, name: str) -> str:
    """The router's series by the labels the operator sets on its pods, as Prometheus sees them (never name prefixes:
    a resource `llama` must not count the pods of a resource `llama-router`)."""
    return (
        f'{PROMETHEUS_NAMESPACE_LABEL}="{namespace}",{PROMETHEUS_INSTANCE_LABEL}="{name}",'
        f'{PROMETHEUS_COMPONENT_LABEL}="{Component.ROUTER.value}"'
    )


def read_history(prometheus_url: str, namespace: str, name: str, since_s: int, step_s: int, end: datetime) -> History:
    """Router token rates by direction, one point per step over [end - since, end]."""
    if since_s // step_s > MAX_POINTS:
        raise ValueError(
            f"{since_s // step_s} steps is more than Prometheus answers ({MAX_POINTS}); use a longer --step"
        )
    start = end - timedelta(seconds=since_s)
    query = (
        f"sum by ({DIRECTION_LABEL}) (increase({total(ROUTER_TOKENS)}{{{router_selector(namespace, name)}}}"
        f"[{step_s}s])) / {step_s}"
    )
    try:
        reply = requests.get(
            f"{prometheus_url.rstrip('/')}/api/v1/query_range",
            params={"query": query, "start": str(start.timestamp()), "end": str(end.timestamp()), "step": str(step_s)},
            timeout=30,
        )
        body = reply.json()
    except (requests.RequestException, ValueError) as error:
        raise ValueError(f"Prometheus at {prometheus_url} did not answer: {type(error).__name__}") from None
    if body.get("status") != "success":
        raise ValueError(f"Prometheus refused the query: {body.get('error', reply.status_code)}")
    count = since_s // step_s
    first = end.timestamp() - count * step_s
    rates: dict[str, list[float | None]] = {"input": [None] * count, "output": [None] * count}
    for series in body["data"]["result"]:
        direction = series["metric"].get(DIRECTION_LABEL)
        if direction not in rates:
            continue
        for stamp, value in series["values"]:
            # the point at time t covers (t - step, t]: step index of its window's start
            index = round((float(stamp) - step_s - first) / step_s)
            if 0 <= index < count:
                rates[direction][index] = float(value)
    windows = []
    missing = 0
    for i in range(count):
        ins, outs = rates["input"][i], rates["output"][i]
        if ins is None and outs is None:
            missing += 1
        windows.append(Window(i * step_s, step_s, ins or 0.0, outs or 0.0))
    if missing == count:
        raise ValueError(f"Prometheus has no router token series for {namespace}/{name} in the last {since_s} s")
    return History(Trace(f"{namespace}/{name}", tuple(windows)), count, missing)


def _coerce(old: Any, text: str) -> Any:
    """The --set value in the type the manifest already has there (money stays a quoted string)."""
    if isinstance(old, str):
        return text
    if isinstance(old, bool):
        return text.lower() in ("1", "true", "yes")
    if isinstance(old, int):
        return int(text)
    return yaml.safe_load(text)


def with_settings(manifest: dict[str, Any], settings: list[str]) -> dict[str, Any]:
    """A copy with each `path=value` applied under spec (`replicas.max=4`, `api.pricing.outputPerMillion=4`)."""
    out = copy.deepcopy(manifest)
    for setting in settings:
        path, sep, value = setting.partition("=")
        if not sep or not path:
            raise ValueError(f"--set {setting!r}: want path=value, e.g. replicas.max=4")
        keys = path.removeprefix("spec.").split(".")
        node = out.setdefault("spec", {})
        for key in keys[:-1]:
            child = node.get(key)
            if child is None:
                child = node[key] = {}
            if not isinstance(child, dict):
                raise ValueError(f"--set {path}: {key} is not a mapping")
            node = child
        try:
            node[keys[-1]] = _coerce(node.get(keys[-1]), value)
        except ValueError:
            raise ValueError(f"--set {path}: {value!r} is not a {type(node.get(keys[-1])).__name__}") from None
    return out


def manifest_of(document: Any, source: str) -> dict[str, Any]:
    """Validated (a clear one-line error otherwise), returned as the plain mapping."""
    parse_inference_deployment(document, source)
    return dict(document)


def load_manifest(path: str) -> dict[str, Any]:
    try:
        with open(path) as handle:
            documents = [d for d in yaml.safe_load_all(handle) if isinstance(d, dict)]
    except OSError as error:
        raise ManifestError(f"{path}: cannot read: {error.strerror}") from None
    except yaml.YAMLError:
        raise ManifestError(f"{path}: not valid YAML") from None
    for document in documents:
        if document.get("kind") == "InferenceDeployment":
            return manifest_of(document, path)
    raise ManifestError(f"{path}: no InferenceDeployment found")
