"""`kubectl crossover`: explain and breakeven render what a real reconcile wrote into status."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import yaml

from costpolicy import Demand
from crossover.kubectl import main, render_breakeven, render_explain
from crossover.reconcile.children import RouterPodSettings
from crossover.reconcile.ports import MetricsReading
from crossover.reconcile.step import Resource, reconcile
from tests.operator.fakes import FakeCluster, FakeMetrics

REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def live_object(demand: Demand | None) -> dict:
    body = yaml.safe_load((REPO / "examples/llama-8b-h100-vs-haiku.yaml").read_text())
    spec = body["spec"]
    out = reconcile(
        Resource("llama-8b", "ml", "uid", 1, spec, {}),
        FakeCluster(ready=0),
        FakeMetrics(MetricsReading(demand, NOW if demand else None)),
        RouterPodSettings(image="crossover:test"),
        NOW,
    )
    return {**body, "metadata": {"name": "llama-8b", "namespace": "ml"}, "status": out.status}


def test_explain_shows_the_decision_the_costs_and_every_stage():
    resource = live_object(Demand(Decimal(30000), Decimal(6000)))
    text = render_explain(resource)
    last = resource["status"]["lastDecision"]
    assert f"{last['action']} to {last['replicas']} replica(s)" in text
    assert "demand       30000.0 input + 6000.0 output tok/s" in text
    assert f"${resource['status']['cost']['selfHostedPerMillionTokens']}/Mtok" in text
    assert f"${resource['status']['cost']['apiPerMillionTokens']}/Mtok" in text
    assert "cheaper      self-hosted" in text
    stages = last["stages"]
    assert len(stages) >= 3
    for i, stage in enumerate(stages, 1):
        assert f"  {i}. {stage['name']}" in text


def test_explain_says_demand_is_unknown_rather_than_zero():
    text = render_explain(live_object(None))
    assert "demand       unknown" in text


def test_explain_before_any_decision():
    assert "no decision yet" in render_explain({"metadata": {"name": "x", "namespace": "y"}})


def test_breakeven_runs_on_the_live_spec_and_places_live_demand():
    resource = live_object(Demand(Decimal(30000), Decimal(6000)))
    text = render_breakeven(resource, 800, 400)
    assert "break-even tokens/day" in text
    assert "live demand of ml/llama-8b: 36000.0 tok/s, above the break-even" in text


def test_unreachable_cluster_is_one_clear_line(tmp_path, capsys):
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:9"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    code = main(["--kubeconfig", str(kubeconfig), "explain", "llama-8b"])
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("kubectl crossover: cannot read InferenceDeployment llama-8b:") and err.count("\n") == 1


def test_installed_as_a_kubectl_plugin():
    script = Path(sys.executable).parent / "kubectl-crossover"
    assert script.is_file()  # kubectl finds plugins named kubectl-<name> on PATH
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, check=False)
    assert result.returncode == 0 and "explain" in result.stdout and "breakeven" in result.stdout
