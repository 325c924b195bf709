"""The committed CRD is exactly what the models generate, and it is a structural schema."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from crossover.api.crd import CRD_FILENAME, build_crd, render_crd

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("directory", ["crds", "charts/crossover/files/crds"])
def test_committed_crd_matches_the_models(directory):
    committed = (REPO / directory / CRD_FILENAME).read_text()
    assert committed == render_crd(), f"{directory}/ is out of date: run `make crds`"


def _walk(node, path="$"):
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from _walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk(value, f"{path}[{i}]")


def test_schema_is_structural():
    schema = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for path, node in _walk(schema):
        assert "$ref" not in node, path
        assert "anyOf" not in node, path
        assert node.get("additionalProperties") is not False, path
        if "properties" in node:
            assert node.get("type") == "object", path
        if isinstance(node.get("exclusiveMinimum"), (int, float)) and not isinstance(node["exclusiveMinimum"], bool):
            raise AssertionError(f"{path}: exclusiveMinimum must be boolean in OpenAPI v3")


def test_crd_carries_cel_rules_printer_columns_and_subresources():
    crd = yaml.safe_load(render_crd())
    version = crd["spec"]["versions"][0]
    assert crd["spec"]["names"]["shortNames"] == ["infd"]
    assert set(version["subresources"]) == {"status", "scale"}
    names = [c["name"] for c in version["additionalPrinterColumns"]]
    assert names == ["Desired", "Ready", "Spill", "Self $/Mtok", "API $/Mtok", "Saved", "GPU-Util", "Reason", "Age"]
    rules = [rule["rule"] for _, node in _walk(version["schema"]) for rule in node.get("x-kubernetes-validations", [])]
    assert "self.min <= self.max" in rules
    assert "has(self.rented) != has(self.owned)" in rules
    mode = version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["policy"]["properties"]["mode"]
    assert mode["enum"] == ["CostOptimized", "Advisory", "SelfHostedOnly", "APIOnly"]
