"""Generate the InferenceDeployment CRD from the pydantic models (the single source of the schema).

pydantic emits JSON Schema 2020-12; Kubernetes wants a structural OpenAPI v3 schema: no $ref, no anyOf for
optional fields, no `additionalProperties: false` beside `properties`, boolean `exclusiveMinimum`.
`make crds` writes the result to crds/; a test fails when the committed YAML drifts from the models.
"""

from __future__ import annotations

from typing import Any

import yaml

from crossover.api.v1alpha1 import (
    NAME_RULES,
    InferenceDeploymentSpec,
    InferenceDeploymentStatus,
)
from crossover.contracts import GROUP, KIND, PLURAL, SHORT_NAMES, SINGULAR, VERSION

CRD_FILENAME = f"{GROUP}_{PLURAL}.yaml"

PRINTER_COLUMNS: list[dict[str, Any]] = [
    {
        "name": "Desired",
        "type": "integer",
        "jsonPath": ".status.replicas.desired",
        "description": "Engine replicas crossover asks for",
    },
    {
        "name": "Ready",
        "type": "integer",
        "jsonPath": ".status.replicas.ready",
        "description": "Engine replicas ready",
    },
    {
        "name": "Spill",
        "type": "string",
        "jsonPath": ".status.routing.spillPercent",
        "description": "Share of requests sent to the hosted API",
    },
    {
        "name": "Self $/Mtok",
        "type": "string",
        "jsonPath": ".status.cost.selfHostedPerMillionTokens",
        "description": "Live self-hosted cost per million tokens",
    },
    {
        "name": "API $/Mtok",
        "type": "string",
        "jsonPath": ".status.cost.apiPerMillionTokens",
        "description": "Live API cost per million tokens at the current input/output mix",
    },
    {
        "name": "Saved",
        "type": "string",
        "jsonPath": ".status.cost.ledger.saved",
        "description": "Dollars saved this month against serving the same tokens on the API alone",
    },
    {
        "name": "GPU-Util",
        "type": "string",
        "jsonPath": ".status.signals.gpuUtilization",
        "description": "Mean GPU utilisation of the engine pods (dcgm-exporter), percent",
    },
    {
        "name": "Reason",
        "type": "string",
        "jsonPath": ".status.lastDecision.reason",
        "description": "Reason of the last decision",
    },
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def _resolve(node: Any, defs: dict[str, Any]) -> Any:
    """Inline $refs and rewrite JSON Schema 2020-12 into the structural OpenAPI v3 subset."""
    if isinstance(node, list):
        return [_resolve(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = defs[node["$ref"].split("/")[-1]]
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return _resolve(merged, defs)
    if "anyOf" in node:
        options = [o for o in node["anyOf"] if o.get("type") != "null"]
        if len(options) == 1:
            rest = {k: v for k, v in node.items() if k != "anyOf"}
            return _resolve({**options[0], **rest}, defs)
        if all(o.get("type") in ("number", "string") for o in options):  # Decimal with a declared string shape
            rest = {k: v for k, v in node.items() if k != "anyOf"}
            return _resolve({"type": "string", **rest}, defs)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in ("title", "$defs"):
            continue
        if key == "additionalProperties" and value is False:
            continue
        if key == "default" and value is None:
            continue
        if key in ("ge", "le", "gt", "lt"):  # constraints pydantic leaves as keywords on a validated integer
            bound = {"ge": "minimum", "gt": "minimum", "le": "maximum", "lt": "maximum"}[key]
            out[bound] = value + 1 if key == "gt" else value - 1 if key == "lt" else value
            continue
        if key == "exclusiveMinimum" and not isinstance(value, bool):
            if node.get("type") == "integer":
                out["minimum"] = int(value) + 1
            else:
                out["minimum"] = value
                out["exclusiveMinimum"] = True
            continue
        if key == "properties":
            out[key] = {name: _resolve(sub, defs) for name, sub in value.items()}
            continue
        out[key] = _resolve(value, defs)
    item_properties = out.get("items", {}).get("properties", {}) if out.get("type") == "array" else {}
    if {"type", "status", "reason"} <= set(item_properties):  # conditions: a map keyed by type, like metav1
        out["x-kubernetes-list-type"] = "map"
        out["x-kubernetes-list-map-keys"] = ["type"]
    return out


def schema_of(model: type[Any]) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    resolved: dict[str, Any] = _resolve(raw, raw.get("$defs", {}))
    return resolved


def build_crd() -> dict[str, Any]:
    spec_schema = schema_of(InferenceDeploymentSpec)
    spec_schema["description"] = "Desired state: the model, its engine, what both sides cost, and the policy."
    status_schema = schema_of(InferenceDeploymentStatus)
    status_schema["description"] = "Observed state, written by crossover."
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PLURAL}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": list(SHORT_NAMES),
                "categories": ["all", "crossover"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {
                        "status": {},
                        "scale": {
                            "specReplicasPath": ".spec.replicas.pinned",
                            "statusReplicasPath": ".status.replicas.ready",
                            "labelSelectorPath": ".status.selector",
                        },
                    },
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                    "schema": {
                        "openAPIV3Schema": {
                            "description": (
                                "InferenceDeployment serves one model from self-hosted GPU replicas and a hosted "
                                "OpenAI-compatible API, keeping the mix at the live cost break-even."
                            ),
                            "type": "object",
                            "required": ["spec"],
                            "x-kubernetes-validations": NAME_RULES,
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec_schema,
                                "status": status_schema,
                            },
                        }
                    },
                }
            ],
        },
    }


def render_crd() -> str:
    header = "# Generated by `make crds` from operator/crossover/api/v1alpha1.py. Do not edit by hand.\n"
    return header + yaml.safe_dump(build_crd(), sort_keys=False, width=110)
