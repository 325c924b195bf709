"""costpolicy stays pure: it imports nothing from Kubernetes, kopf, HTTP clients or the operator."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import costpolicy

FORBIDDEN = (
    "kopf",
    "kubernetes",
    "aiohttp",
    "requests",
    "httpx",
    "urllib3",
    "prometheus_api_client",
    "http",
    "urllib",
    "socket",
    "crossover",
)
# pydantic itself loads the stdlib's urllib and socket; third-party clients and crossover must never load
RUNTIME_FORBIDDEN = tuple(name for name in FORBIDDEN if name not in ("http", "urllib", "socket"))
ROOT = Path(costpolicy.__file__).parent


def _imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_no_forbidden_imports_in_source():
    offenders = {
        str(path.relative_to(ROOT)): sorted(_imported_modules(path) & set(FORBIDDEN)) for path in ROOT.rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_importing_costpolicy_loads_no_forbidden_module():
    code = (
        "import sys, costpolicy, costpolicy.decide, costpolicy.breakeven, pkgutil, importlib\n"
        "for m in pkgutil.walk_packages(costpolicy.__path__, 'costpolicy.'): importlib.import_module(m.name)\n"
        f"bad = [m for m in sys.modules if m.split('.')[0] in {RUNTIME_FORBIDDEN!r}]\n"
        "print(','.join(sorted(bad)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""
