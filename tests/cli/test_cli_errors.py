"""Issue 17, point 8: every bad input to the CLI is one line on stderr and exit status 2, never a traceback, and
never a silent success. The issue's cases, then a hypothesis fuzz over manifests, traces and flags (in-process,
through crossover.cli.main, so an escaping exception fails the test)."""

from __future__ import annotations

import contextlib
import io
import itertools
import math
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crossover.cli import main

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "llama-8b-h100-vs-haiku.yaml"
TRACE = REPO / "examples" / "traces" / "azure_llm_2023_conv.csv"
AZURE = "TIMESTAMP,ContextTokens,GeneratedTokens\n"
WINDOWS = "window_start_s,input_tokens_per_s,output_tokens_per_s\n"


def cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as exit_:  # argparse
            code = int(exit_.code or 0)
    return code, out.getvalue(), err.getvalue()


def assert_refused(code: int, err: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err


def write(tmp: Path, name: str, content: str | bytes) -> str:
    path = tmp / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return str(path)


def manifest_with(tmp: Path, **spec_changes: object) -> str:
    body = yaml.safe_load(EXAMPLE.read_text())
    for dotted, value in spec_changes.items():
        node = body["spec"]
        *parents, leaf = dotted.split("__")
        for key in parents:
            node = node[key]
        node[leaf] = value
    return write(tmp, "m.yaml", yaml.safe_dump(body))


def sim(tmp: Path, trace: str, *extra: str) -> list[str]:
    return ["simulate", "--trace", trace, "-f", str(EXAMPLE), "--out", str(tmp / "o"), *extra]


UNSORTED = AZURE + "2023-11-16 18:20:00,10,5\n2023-11-16 18:10:00,10,5\n"
TWO_CENTURIES = AZURE + "1900-01-01 00:00:00,10,5\n2100-01-01 00:00:00,10,5\n"
ISSUE_CASES = [
    ("non-UTF-8 manifest", lambda t: ["breakeven", "-f", write(t, "bad.yaml", b"\xff\xfe\x00kind")]),
    ("1e30 price", lambda t: ["breakeven", "-f", manifest_with(t, selfHosted__overheadPerMonth="1e30")]),
    ("--input-tokens 1e30", lambda t: ["breakeven", "-f", str(EXAMPLE), "--input-tokens", "1e30"]),
    ("--plot into a missing folder", lambda t: ["breakeven", "-f", str(EXAMPLE), "--plot", "/nonexistent/dir/x.png"]),
    ("negative tokens", lambda t: sim(t, write(t, "n.csv", WINDOWS + "0,-5,3\n30,1,1\n"))),
    ("--scale-mean -5", lambda t: sim(t, str(TRACE), "--scale-mean", "-5")),
    ("--scale-mean nan", lambda t: sim(t, str(TRACE), "--scale-mean", "nan")),
    ("--control-interval 0", lambda t: sim(t, str(TRACE), "--control-interval", "0")),
    ("--control-interval -30", lambda t: sim(t, str(TRACE), "--control-interval", "-30")),
    ("--out under a file", lambda t: [*sim(t, str(TRACE))[:-1], write(t, "file", "x") + "/x"]),
    ("unsorted request trace", lambda t: sim(t, write(t, "u.csv", UNSORTED))),
    ("200-year request trace", lambda t: sim(t, write(t, "l.csv", TWO_CENTURIES))),
]


@pytest.mark.parametrize("build", [c[1] for c in ISSUE_CASES], ids=[c[0] for c in ISSUE_CASES])
def test_the_issue_s_cases_are_one_line_and_exit_2(build, tmp_path: Path):
    code, _, err = cli(*build(tmp_path))
    assert_refused(code, err)


# ---- fuzz ----------------------------------------------------------------------------------------------------

NUMBERS = st.one_of(
    st.sampled_from(["0", "-1", "1", "nan", "inf", "-inf", "1e30", "abc", "", "2.5", "30", "٣"]),
    st.integers(-10, 10**6).map(str),
)


def _valid_number(text: str, positive: bool) -> bool:
    try:
        value = float(text)
    except ValueError:
        return False
    return math.isfinite(value) and (value > 0 if positive else value >= 0)


@st.composite
def window_traces(draw: st.DrawFn) -> tuple[str, bool]:
    """A window series, and whether it is valid (increasing starts, finite non-negative rates, >= 2 rows)."""
    rows, valid, start = [], True, 0.0
    for _ in range(draw(st.integers(0, 5))):
        start += draw(st.sampled_from([30.0, 30.0, 60.0, 0.0, -30.0]))
        rate_in, rate_out = draw(NUMBERS), draw(NUMBERS)
        valid &= _valid_number(rate_in, False) and _valid_number(rate_out, False)
        rows.append(f"{start:g},{rate_in},{rate_out}")
    starts = [float(r.split(",")[0]) for r in rows]
    valid &= len(rows) >= 2 and all(b > a for a, b in itertools.pairwise(starts))
    return WINDOWS + "\n".join(rows) + "\n", valid


@st.composite
def request_traces(draw: st.DrawFn) -> tuple[str, bool]:
    rows: list[str] = []
    second = 0
    for _ in range(draw(st.integers(0, 5))):
        second += draw(st.sampled_from([1, 5, 60, 0, -5]))
        context, generated = (
            draw(st.sampled_from(["10", "0", "-3", "x", "400"])),
            draw(st.sampled_from(["5", "0", "-1"])),
        )
        rows.append(f"2023-11-16 18:{second // 60 % 60:02d}:{second % 60:02d},{context},{generated}")
    seconds = [int(r[14:16]) * 60 + int(r[17:19]) for r in rows]
    valid = (
        bool(rows)
        and all(b >= a for a, b in itertools.pairwise(seconds))
        and all(r.split(",")[1].isdigit() and r.split(",")[2].isdigit() for r in rows)
    )  # validity is judged on the timestamps as written: `second` wraps into the hour when it is formatted
    return AZURE + "\n".join(rows) + "\n", valid


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    trace=st.one_of(window_traces(), request_traces()),
    interval=st.sampled_from(["30", "0", "-30", "nan", "x", "15"]),
    scale=st.sampled_from([None, "-5", "nan", "100", "0"]),
)
def test_simulate_fuzz_never_tracebacks_and_never_succeeds_silently(trace, interval, scale):
    text, trace_valid = trace
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        args = ["simulate", "--trace", write(tmp, "t.csv", text), "-f", str(EXAMPLE), "--out", str(tmp / "out")]
        args += ["--control-interval", interval, "--warmup", "60"]
        if scale is not None:
            args += ["--scale-mean", scale]
        code, _, err = cli(*args)
        valid = trace_valid and _valid_number(interval, True) and (scale is None or _valid_number(scale, True))
        if code == 0:
            assert valid, f"accepted invalid input: {args} {text!r}"
            assert (tmp / "out" / "summary.json").is_file()
        else:
            assert_refused(code, err)
            if scale is None:  # with --scale-mean a valid trace without tokens is refused too ("no tokens")
                assert not valid, f"refused valid input: {err}"


MANIFEST_VALUES = st.sampled_from(
    ["1e30", "2.4E+4", " 2.5", "2_500", "-1", "0", "2.50", 1.5, 5, None, "٢", "1" + "0" * 30, [], {}]
)
FIELDS = [
    "selfHosted__overheadPerMonth",
    "selfHosted__pricing__rented__pricePerGPUHour",
    "engine__capacity__decodeTokensPerSecond",
    "api__pricing__inputPerMillion",
    "policy__targetUtilization",
    "replicas__max",
    "engine__coldStartSeconds",
]


@settings(max_examples=80, deadline=None)
@given(field=st.sampled_from(FIELDS), value=MANIFEST_VALUES, tokens=st.sampled_from(["800", "0", "-1", "1e30", "x"]))
def test_breakeven_fuzz_never_tracebacks(field, value, tokens):
    from crossover.manifest import ManifestError, load_inference_deployment

    with tempfile.TemporaryDirectory() as folder:
        path = manifest_with(Path(folder), **{field: value})
        try:
            load_inference_deployment(path)
            manifest_ok = True
        except ManifestError:
            manifest_ok = False
        code, out, err = cli("breakeven", "-f", path, "--input-tokens", tokens)
        if code == 0:
            assert manifest_ok and tokens.isdigit() and "break-even" in out
        else:
            assert_refused(code, err)
            assert not (manifest_ok and tokens.isdigit() and tokens != "0") or "a call needs" in err
