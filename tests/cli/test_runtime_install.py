"""The product apart from its rig: `pip install .` with no extras gives a working operator, router and CLI without
rich or matplotlib, and the rig's commands say in one line how to get them. Builds a fresh venv (about 30 s, from
the pip cache), so it is marked `install`; `make test` runs it."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("pyproject.toml", "README.md", "costpolicy", "operator")


def _copy_tree(dest: Path, *, rig: bool) -> Path:
    """The sources a build reads, copied so the build writes nothing into the checkout."""
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", *(() if rig else ("crossover_lab",)))
    dest.mkdir(parents=True)
    for name in SOURCES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, dest / name, ignore=ignore)
        else:
            shutil.copy2(source, dest / name)
    return dest


@pytest.fixture(scope="module")
def runtime_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("runtime")
    source = _copy_tree(work / "src", rig=True)
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([venv / "bin" / "pip", "install", "--quiet", str(source)], check=True)
    return venv


def _run(venv: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([venv / "bin" / "crossover", *args], capture_output=True, text=True, cwd=ROOT)


@pytest.mark.install
@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("operator", "--help"), "Run the crossover operator"),
        (("router", "--help"), "usage: crossover router"),
        (("breakeven", "-f", "examples/llama-8b-h100-vs-haiku.yaml"), "break-even tokens/day"),
    ],
)
def test_runtime_commands_work_without_extras(runtime_venv: Path, args: tuple[str, ...], says: str) -> None:
    done = _run(runtime_venv, *args)
    assert done.returncode == 0, done.stderr
    assert says in done.stdout


@pytest.mark.install
def test_runtime_install_has_neither_rich_nor_matplotlib(runtime_venv: Path) -> None:
    for module in ("rich", "matplotlib"):
        found = subprocess.run([runtime_venv / "bin" / "python", "-c", f"import {module}"], capture_output=True)
        assert found.returncode != 0, f"{module} is installed without an extra"


@pytest.mark.install
def test_simulate_without_plots_writes_everything_but_the_png(runtime_venv: Path, tmp_path: Path) -> None:
    trace = tmp_path / "trace.csv"
    rows = [f"{60 * k},{4000 + 400 * k},{400 + 40 * k}" for k in range(30)]
    trace.write_text("window_start_s,input_tokens_per_s,output_tokens_per_s\n" + "\n".join(rows) + "\n")
    out = tmp_path / "out"
    args = ("simulate", "--trace", str(trace), "-f", "examples/llama-8b-h100-vs-haiku.yaml", "--out", str(out))
    done = _run(runtime_venv, *args)
    assert done.returncode == 0, done.stderr
    assert "pip install 'crossover[plots]'" in done.stdout
    assert (out / "decisions.csv").exists() and (out / "summary.json").exists()
    assert not (out / "report.png").exists()


@pytest.mark.install
@pytest.mark.parametrize(
    ("args", "extra"),
    [
        (("lab", "status"), "lab"),
        (("demo",), "lab"),
        (("replay", "--trace", "t.csv", "-f", "examples/llama-8b-h100-vs-haiku.yaml"), "lab"),
        (("emulate", "vllm"), "lab"),
        (("breakeven", "-f", "examples/llama-8b-h100-vs-haiku.yaml", "--plot", "out.png"), "plots"),
    ],
)
def test_rig_and_plots_say_in_one_line_which_extra_they_need(
    runtime_venv: Path, args: tuple[str, ...], extra: str
) -> None:
    done = _run(runtime_venv, *args)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and f"pip install 'crossover[{extra}]'" in done.stderr
    assert not (ROOT / "out.png").exists()


@pytest.mark.install
def test_image_wheel_carries_no_rig(tmp_path: Path) -> None:
    """The Dockerfile copies costpolicy and operator/crossover only: the wheel it builds has no crossover_lab."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "COPY operator/crossover operator/crossover" in dockerfile and "COPY operator operator" not in dockerfile
    source = _copy_tree(tmp_path / "src", rig=False)
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(wheels), str(source)],
        check=True,
    )
    (wheel,) = wheels.glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert any(n.startswith("crossover/") for n in names)
    assert not any(n.startswith("crossover_lab/") for n in names)
