"""`crossover breakeven` on the shipped examples, through the real console entry point."""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))


def crossover(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "crossover.cli", *args], capture_output=True, text=True, cwd=REPO)


def test_there_are_three_examples():
    assert len(EXAMPLES) >= 3


@pytest.mark.parametrize("manifest", EXAMPLES, ids=lambda p: p.name)
def test_table(manifest):
    result = crossover("breakeven", "-f", str(manifest))
    assert result.returncode == 0, result.stderr
    for label in (
        "replica cost/hour",
        "fixed cost/month",
        "API $/Mtok",
        "break-even tokens/day",
        "break-even calls/month",
        "10%:",
        "25%:",
        "50%:",
        "75%:",
        "100%:",
    ):
        assert label in result.stdout


def test_json_numbers_match_the_model():
    result = crossover(
        "breakeven",
        "-f",
        str(REPO / "examples/llama-8b-h100-vs-haiku.yaml"),
        "--json",
        "--input-tokens",
        "800",
        "--output-tokens",
        "400",
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout, parse_float=Decimal)
    assert data["selfHostedFixedPerMonth"] == Decimal("600.00")
    # Haiku 4.5 at $1/$5 with 800 in + 400 out: (800 + 2000) / 1200 = $2.333333/Mtok
    assert data["apiCostPerMillionTokens"] == Decimal("2.333333")
    # first replica: ($2.50 + $600/730) per hour over $2.333333/Mtok → 395.47 tok/s
    assert data["breakEvenTokensPerSecond"] == Decimal("395.47")
    assert data["breakEvenTokensPerDay"] == Decimal("34168297")
    assert data["breakEvenCallsPerMonth"] == Decimal("866071")
    assert [p["replicas"] for p in data["marginalReplicas"]] == list(range(1, 9))


def test_plot_is_written(tmp_path):
    out = tmp_path / "be.png"
    result = crossover("breakeven", "-f", str(EXAMPLES[0]), "--plot", str(out))
    assert result.returncode == 0, result.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (("min: 0, max: 8", "min: 9, max: 8"), "replicas.min (9) must be <= replicas.max (8)"),
        (('pricePerGPUHour: "2.50"', "pricePerGPUHour: 2.50"), 'quoted decimal string such as "2.50"'),
        (('decodeTokensPerSecond: "2000"', 'decodeTokensPerSecond: "0"'), "must be greater than zero"),
        (("kind: InferenceDeployment", "kind: Deployment"), "no InferenceDeployment found"),
        (("  replicas: {min: 0, max: 8}", "  replicas: {min: 0, max: 8"), "not valid YAML"),
    ],
)
def test_bad_manifest_gets_one_clear_line_and_exit_2(tmp_path, edit, expected):
    text = (REPO / "examples/llama-8b-h100-vs-haiku.yaml").read_text()
    assert edit[0] in text
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace(edit[0], edit[1]))
    result = crossover("breakeven", "-f", str(bad))
    assert result.returncode == 2
    assert expected in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stdout == ""


def test_missing_file():
    result = crossover("breakeven", "-f", "does-not-exist.yaml")
    assert result.returncode == 2
    assert "cannot read" in result.stderr
