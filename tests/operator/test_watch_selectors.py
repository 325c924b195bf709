"""The operator's watches ask the API server for crossover's own Deployments and engine Pods only."""

from __future__ import annotations

from pathlib import Path

import kopf
import pytest
import yaml
from kopf._cogs.structs.references import Resource
from kopf._core.intents.causes import Activity

from crossover import main
from crossover.api.v1alpha1 import InferenceDeploymentSpec
from crossover.reconcile.children import Owner, RouterPodSettings, children
from crossover.settings import OperatorConfig

REPO = Path(__file__).resolve().parents[2]


def _configured(monkeypatch: pytest.MonkeyPatch) -> kopf.OperatorSettings:
    """Run the operator's real startup handler on fresh kopf settings (no cluster, no Prometheus needed)."""
    monkeypatch.setattr(main, "load_kube_config", lambda: None)
    monkeypatch.setattr(main, "KubernetesCluster", lambda api: None)
    monkeypatch.setattr(main, "PrometheusMetrics", lambda *a, **k: None)
    registry = main.build_registry(OperatorConfig(), serve_metrics=False)
    (startup,) = registry._activities.get_handlers(activity=Activity.STARTUP)
    settings = kopf.OperatorSettings()
    startup.fn(settings=settings, memo=kopf.Memo())
    return settings


def _label_selector(settings: kopf.OperatorSettings, resource: Resource) -> str:
    """The labelSelector kopf sends when it lists and watches `resource` (kopf's own expression)."""
    return ",".join(sorted(set(settings.watching.label_selectors.collect(resource))))


@pytest.mark.parametrize(
    ("resource", "selector"),
    [
        (Resource("apps", "v1", "deployments"), "crossover.dev/inference-deployment"),
        (
            Resource("", "v1", "pods"),
            "crossover.dev/inference-deployment,app.kubernetes.io/component=engine",
        ),
        (Resource("autoscaling", "v2", "horizontalpodautoscalers"), ""),  # the user's, unlabelled: all of them
        (Resource("crossover.dev", "v1alpha1", "inferencedeployments"), ""),
    ],
)
def test_watches_are_filtered_by_the_api_server(monkeypatch: pytest.MonkeyPatch, resource: Resource, selector: str):
    assert _label_selector(_configured(monkeypatch), resource) == selector


def _matches(selector: str, labels: dict[str, str]) -> bool:
    """Equality and existence terms, the two kinds the operator's selectors use."""
    for term in selector.split(","):
        key, _, value = term.partition("=")
        if key not in labels or (value and labels[key] != value):
            return False
    return True


def test_the_selectors_match_what_the_operator_creates_and_nothing_else(monkeypatch: pytest.MonkeyPatch) -> None:
    """Selectors and children both come from crossover.contracts; this fails if either side drifts."""
    settings = _configured(monkeypatch)
    spec = yaml.safe_load((REPO / "examples/llama-8b-h100-vs-haiku.yaml").read_text())["spec"]
    parsed = InferenceDeploymentSpec.model_validate(spec)
    made = children(Owner("llama", "ml", "uid-1"), parsed, RouterPodSettings(image="crossover:test"))
    deployments = [child for child in made if child["kind"] == "Deployment"]
    watched = _label_selector(settings, Resource("apps", "v1", "deployments"))
    pods = _label_selector(settings, Resource("", "v1", "pods"))
    assert [d["metadata"]["name"] for d in deployments if _matches(watched, d["metadata"]["labels"])] == [
        "llama-engine",
        "llama-router",
    ]
    templates = {d["metadata"]["name"]: d["spec"]["template"]["metadata"]["labels"] for d in deployments}
    assert [name for name, labels in templates.items() if _matches(pods, labels)] == ["llama-engine"]
    assert not _matches(watched, {"app": "someone-elses"})
