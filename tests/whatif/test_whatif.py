"""`crossover whatif`: history read back from a real Prometheus (a backfilled TSDB with a known demand), settings
applied under spec, both costs and the difference printed."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from crossover.whatif import read_history, seconds_of, with_settings
from crossover_lab import prometheus as lab_prometheus

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "llama-8b-h100-vs-haiku.yaml"
HOUR = 3600
# two hours of demand: an hour far below the break-even, then an hour that keeps a replica busy
LOW, HIGH = (200.0, 100.0), (4000.0, 2000.0)


@pytest.mark.parametrize(("text", "seconds"), [("90s", 90), ("30m", 1800), ("12h", 43200), ("7d", 604800)])
def test_durations_read_like_prometheus(text: str, seconds: int) -> None:
    assert seconds_of(text) == seconds


@pytest.mark.parametrize("text", ["7", "7days", "-1h", "0m", ""])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        seconds_of(text)


def test_settings_apply_under_spec_in_the_type_already_there() -> None:
    manifest = yaml.safe_load(EXAMPLE.read_text())
    changed = with_settings(manifest, ["api.pricing.outputPerMillion=4", "replicas.max=4", "spec.policy.mode=APIOnly"])
    assert changed["spec"]["api"]["pricing"]["outputPerMillion"] == "4"  # money stays a quoted decimal
    assert changed["spec"]["replicas"]["max"] == 4
    assert changed["spec"]["policy"]["mode"] == "APIOnly"
    assert manifest["spec"]["replicas"]["max"] == 8  # the input is not modified
    with pytest.raises(ValueError, match="want path=value"):
        with_settings(manifest, ["replicas.max"])
    with pytest.raises(ValueError, match="is not a int"):
        with_settings(manifest, ["replicas.max=four"])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, float]]:
    """A real Prometheus whose TSDB holds two hours of router counters ending a minute ago (promtool backfill)."""
    prometheus_binary, promtool = lab_prometheus.binary(), lab_prometheus.promtool()  # built by `make lab-deps`
    base = tmp_path_factory.mktemp("prom")
    end = float(int(time.time()) // 60 * 60 - 60)
    start = end - 2 * HOUR
    lines = ["# TYPE crossover_router_tokens counter"]
    totals = {"input": 0.0, "output": 0.0}
    for t in range(int(start), int(end) + 1, 15):
        rate = LOW if t < start + HOUR else HIGH
        for direction in ("input", "output"):
            lines.append(
                f'crossover_router_tokens_total{{namespace="shop",crossover_dev_inference_deployment="llama-8b",'
                f'app_kubernetes_io_component="router",pod="llama-8b-router-7d9f-x1",direction="{direction}",'
                f'backend="self",outcome="ok"}} {totals[direction]} {t}'
            )
        totals = {d: totals[d] + r * 15 for d, r in zip(("input", "output"), rate, strict=True)}
    # OpenMetrics wants the samples of one series together, in time order
    lines = [
        lines[0],
        *sorted(lines[1:], key=lambda line: ('direction="input"' not in line, int(line.rsplit(" ", 1)[1]))),
    ]
    (base / "history.om").write_text("\n".join(lines) + "\n# EOF\n")
    data = base / "data"
    subprocess.run(
        [promtool, "tsdb", "create-blocks-from", "openmetrics", str(base / "history.om"), str(data)],
        check=True, capture_output=True,
    )  # fmt: skip
    port = _free_port()
    (base / "prometheus.yml").write_text("global: {scrape_interval: 15s}\n")
    process = subprocess.Popen(
        [prometheus_binary, f"--config.file={base / 'prometheus.yml'}", f"--storage.tsdb.path={data}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{url}/-/ready", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.3)
        yield url, end
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.mark.lab
def test_history_reads_the_router_demand_back_per_step(prometheus: tuple[str, float]) -> None:
    url, end = prometheus
    history = read_history(url, "shop", "llama-8b", 2 * HOUR, 60, datetime.fromtimestamp(end, UTC))
    assert history.steps == 120
    windows = history.trace.windows
    # away from the edges (where a rate spans both hours or the series has not started), the known rates
    assert [round(w.input_tps) for w in windows[5:55]] == [LOW[0]] * 50
    assert [round(w.output_tps) for w in windows[65:118]] == [HIGH[1]] * 53
    assert history.missing <= 1  # the first step: no earlier sample to take an increase from
    with pytest.raises(ValueError, match="no router token series"):
        read_history(url, "shop", "other", 2 * HOUR, 60, datetime.fromtimestamp(end, UTC))


def _whatif(url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "crossover.cli", "whatif", "shop/llama-8b", "--prometheus", url, "--since", "3h",
         "--current", str(EXAMPLE), *extra],
        capture_output=True, text=True, check=False,
    )  # fmt: skip


def _dollars(output: str, label: str) -> float:
    match = re.search(rf"{label}\s+(-?)\$([\d,.]+)", output)
    assert match, output
    return float(match.group(2).replace(",", "")) * (-1 if match.group(1) else 1)


@pytest.mark.lab
def test_whatif_prints_both_costs_and_the_difference(prometheus: tuple[str, float], tmp_path: Path) -> None:
    url, _ = prometheus
    dearer = _whatif(url, "--set", "api.pricing.outputPerMillion=50", "--plot", str(tmp_path / "w.png"))
    assert dearer.returncode == 0, dearer.stderr
    live, changed = _dollars(dearer.stdout, "live spec"), _dollars(dearer.stdout, "changed spec")
    assert changed > live  # the quiet hour is served by the API, now at ten times the output price
    assert _dollars(dearer.stdout, "difference") == pytest.approx(changed - live, abs=0.011)
    assert (tmp_path / "w.png").stat().st_size > 10_000
    api_only = _whatif(url, "--set", "policy.mode=APIOnly")
    assert _dollars(api_only.stdout, "changed spec") > _dollars(api_only.stdout, "live spec")  # the busy hour pays
    other: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    other["spec"]["selfHosted"]["pricing"]["rented"]["pricePerGPUHour"] = "0.50"
    (tmp_path / "cheap.yaml").write_text(yaml.safe_dump(other))
    cheap = _whatif(url, "-f", str(tmp_path / "cheap.yaml"))
    assert _dollars(cheap.stdout, "changed spec") < _dollars(cheap.stdout, "live spec")
    nothing = _whatif(url)
    assert nothing.returncode == 2 and "nothing to compare" in nothing.stderr
