"""`crossover whatif` against the lab's Prometheus: record load (a compressed replay through the router), then ask
what the same demand would have cost under changed values."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.fixtures.lab import Lab

pytestmark = pytest.mark.lab

ROOT = Path(__file__).resolve().parents[2]
AZURE = ROOT / "examples" / "traces" / "azure_llm_2023_conv.csv"


def _dollars(output: str, label: str) -> float:
    match = re.search(rf"{label}\s+(-?)\$([\d,.]+)", output)
    assert match, output
    return float(match.group(2).replace(",", "")) * (-1 if match.group(1) else 1)


def test_whatif_reads_back_the_recorded_demand_and_prices_a_change(lab: Lab, tmp_path: Path) -> None:
    out = tmp_path / "replay"
    manifest = yaml.safe_load((ROOT / "examples/llama-8b-h100-vs-haiku.yaml").read_text())
    manifest["metadata"]["name"] = "whatif-probe"  # its own series: no other test's router counts
    (tmp_path / "probe.yaml").write_text(yaml.safe_dump(manifest))
    recorded = subprocess.run(
        [sys.executable, "-m", "crossover.cli", "replay", "--trace", str(AZURE),
         "-f", str(tmp_path / "probe.yaml"), "--hours", "0.25", "--compress", "12",
         "--out", str(out)],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert recorded.returncode == 0, recorded.stdout[-2000:] + recorded.stderr[-2000:]
    ledger = json.loads((out / "ledger.json").read_text())
    whatif = [sys.executable, "-m", "crossover.cli", "whatif", "crossover-demo/whatif-probe"]
    whatif += ["--prometheus", lab.prometheus_url, "--since", "10m", "--step", "5s", "--control-interval", "2.5"]
    whatif += ["--current", str(out / "manifest.yaml")]
    dearer = subprocess.run([*whatif, "--set", "api.pricing.outputPerMillion=50"], capture_output=True, text=True)
    assert dearer.returncode == 0, dearer.stderr
    # the demand read back is the demand sent: the replay's tokens over the same wall time
    mean = float(re.search(r"mean ([\d,.]+) tok/s", dearer.stdout).group(1).replace(",", ""))  # type: ignore[union-attr]
    sent = sum(
        (float(row.split(",")[2]) + float(row.split(",")[3])) * float(row.split(",")[1])
        for row in (out / "decisions.csv").read_text().splitlines()[1:]
    )
    assert mean * 600 == pytest.approx(sent, rel=0.15)  # tokens: wall rate x 10 min against trace rate x trace time
    live, changed = _dollars(dearer.stdout, "live spec"), _dollars(dearer.stdout, "changed spec")
    assert changed > live  # the replica warms while the API serves: at ten times the output price that costs more
    # all on the API, the recorded demand costs what the replay's served tokens cost at API prices
    api_only = subprocess.run([*whatif, "--set", "policy.mode=APIOnly"], capture_output=True, text=True)
    assert api_only.returncode == 0, api_only.stderr
    assert _dollars(api_only.stdout, "changed spec") == pytest.approx(float(ledger["apiOnlyDollars"]), rel=0.1)
