"""Writes charts/crossover/README.md from Chart.yaml and the `# --` comments in values.yaml.

The comment convention is helm-docs' (a `# -- text` line, continued by plain `#` lines, documents the key below
it), so the chart can move to helm-docs without touching values.yaml; this script avoids building another Go
tool for one table. `--check` exits 1 when the committed README differs (a test runs it).
    .venv/bin/python tools/chart/readme.py [--check]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

CHART = Path(__file__).resolve().parents[2] / "charts" / "crossover"


def documented(values_text: str) -> list[tuple[str, str]]:
    """(dotted key, description) for every key with a `# --` comment, in file order."""
    out: list[tuple[str, str]] = []
    stack: list[tuple[int, str]] = []
    pending: list[str] = []
    for raw in values_text.splitlines():
        stripped = raw.strip()
        if stripped.startswith("# --"):
            pending = [stripped.removeprefix("# --").strip()]
            continue
        if stripped.startswith("#") and pending:
            pending.append(stripped.lstrip("#").strip())
            continue
        if not stripped or ":" not in stripped or stripped.startswith("-"):
            continue
        indent = len(raw) - len(raw.lstrip())
        key = stripped.split(":", 1)[0].strip()
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, key))
        if pending:
            out.append((".".join(k for _, k in stack), " ".join(pending)))
            pending = []
    return out


def lookup(values: dict[str, Any], dotted: str) -> Any:
    node: Any = values
    for part in dotted.split("."):
        node = node[part]
    return node


def render() -> str:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    text = (CHART / "values.yaml").read_text()
    values = yaml.safe_load(text)
    lines = [
        f"# {chart['name']}",
        "",
        f"{chart['description']}",
        "",
        f"Version {chart['version']}, app version {chart['appVersion']}, Kubernetes {chart['kubeVersion']}. "
        f"Home: {chart['home']}",
        "",
        "```sh",
        "helm install crossover charts/crossover -n crossover-system --create-namespace \\",
        "  --set prometheus.url=http://prometheus-operated.monitoring.svc:9090",
        "helm test crossover -n crossover-system   # the operator answers /healthz through its Service",
        "```",
        "",
        "With the Prometheus Operator installed, a PodMonitor scrapes every router and engine pod crossover creates "
        "(`podMonitor.enabled`); `dashboard.enabled` ships a Grafana dashboard. Values are checked against "
        "`values.schema.json`.",
        "",
        "Generated from `values.yaml` by `tools/chart/readme.py`; edit the `# --` comments there.",
        "",
        "| Key | Default | Description |",
        "|---|---|---|",
    ]
    for key, description in documented(text):
        default = json.dumps(lookup(values, key))
        lines.append(f"| `{key}` | `{default}` | {description} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    target = CHART / "README.md"
    if "--check" in argv:
        if not target.exists() or target.read_text() != render():
            print("charts/crossover/README.md is out of date: run .venv/bin/python tools/chart/readme.py")
            return 1
        return 0
    target.write_text(render())
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
