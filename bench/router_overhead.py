"""Router overhead, open loop: the same streaming load straight at the vLLM emulator and through the router.

Run: `.venv/bin/python bench/router_overhead.py [--rate 300] [--duration 20] [--workers N]`.

Open loop means requests start on a fixed schedule (request i at t0 + i/rate) whether or not earlier ones have
finished, and time to first token (TTFT) is measured from the scheduled start, so queueing anywhere (client, router,
engine) shows in the numbers instead of silently lowering the offered load as a closed loop would.

1. At `--rate` (300 req/s of `--max-tokens` (16) token streams) for `--duration` (20 s), direct then through the
   router: TTFT p50/p99 per path; the added TTFT is router minus direct. The router's CPU time (user + system of its
   process and any worker processes, from /proc) over that run, divided by the requests it served, is its CPU per
   request.
2. The highest sustained rate per path: the rate is stepped up (x`--step`, `--step-seconds` each) until a step has
   an error or its TTFT p99 exceeds `--slo-ms` (the queue is growing), twice in a row (the machine is shared: one
   neighbour's spike should not end the search); the last passing step is the maximum.

The emulator steps its scheduler every 1 ms (`--tick-seconds 0.001`; its default 20 ms would quantise TTFT and
hide sub-millisecond differences). `--router-pythonpath CHECKOUT` runs the router from another checkout (a
baseline) against the same emulator and client. Everything runs on 127.0.0.1; client, router and emulator share
the machine's cores (the client uses one process, uvloop when installed), so this measures the router's cost on
this machine, not a production ceiling. The LAST line printed is one JSON object: added_ttft_p50_ms,
added_ttft_p99_ms, router_cpu_us_per_request, max_rps_direct, max_rps_router, errors (failed requests in the
fixed-rate runs). Not a test: numbers go in the closing notes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import requests
import yaml

from crossover.contracts import ENV_API_KEY

ROOT = Path(__file__).resolve().parents[1]
ENGINE_PORT, ROUTER_PORT = 38000, 38080
TICKS = os.sysconf("SC_CLK_TCK")


def start(argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=cwd)


def wait_up(url: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


def process_tree(root: int) -> list[int]:
    """The process and all its descendants (router worker processes)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents.setdefault(int(fields[1]), []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(parents.get(pid, []))
    return tree


def cpu_seconds(root: int) -> float:
    """User + system CPU time of a process tree, from /proc/<pid>/stat (clock ticks)."""
    total = 0
    for pid in process_tree(root):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / TICKS


@dataclass
class Run:
    rate: float
    ttfts: list[float]
    errors: int
    elapsed: float

    def quantile(self, q: float) -> float:
        if len(self.ttfts) < 2:
            return float("inf")
        return statistics.quantiles(self.ttfts, n=1000, method="inclusive")[int(q * 1000) - 1]


async def one(session: aiohttp.ClientSession, url: str, body: bytes, scheduled: float) -> float | None:
    """TTFT from the scheduled start, or None on any failure (non-200, no [DONE], error, timeout)."""
    ttft = None
    try:
        async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as response:
            if response.status != 200:
                await response.read()
                return None
            tail = b""
            async for chunk in response.content.iter_any():
                if ttft is None and b"data:" in chunk:
                    ttft = time.perf_counter() - scheduled
                tail = (tail + chunk)[-32:]
            return ttft if b"[DONE]" in tail else None
    except (aiohttp.ClientError, OSError, TimeoutError):
        return None


async def open_loop(url: str, rate: float, duration: float, max_tokens: int) -> Run:
    body = json.dumps(
        {
            "model": "bench",
            "messages": [{"role": "user", "content": "abcd" * 50}],
            "max_tokens": max_tokens,
            "stream": True,
        }
    ).encode()
    total = max(1, int(rate * duration))
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        tasks: list[asyncio.Task[float | None]] = []
        started = time.perf_counter()
        for i in range(total):
            scheduled = started + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(session, url, body, scheduled)))
        results = await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - started
    ttfts = [r for r in results if r is not None]
    return Run(rate, ttfts, total - len(ttfts), elapsed)


def run_loop(coroutine: object) -> Run:
    try:
        import uvloop

        return uvloop.run(coroutine)  # type: ignore[arg-type,no-any-return]
    except ImportError:
        return asyncio.run(coroutine)  # type: ignore[arg-type]


def passes(run: Run, slo_ms: float) -> bool:
    return not run.errors and run.quantile(0.99) * 1000 <= slo_ms


def max_rate(url: str, args: argparse.Namespace) -> tuple[float, list[Run]]:
    best, rate, runs = 0.0, float(args.start_rate), []
    while rate <= args.max_rate:
        run = run_loop(open_loop(url, rate, args.step_seconds, args.max_tokens))
        runs.append(run)
        if not passes(run, args.slo_ms):  # once more: one noisy neighbour's spike should not end the search
            run = run_loop(open_loop(url, rate, args.step_seconds, args.max_tokens))
            runs.append(run)
        if not passes(run, args.slo_ms):
            break
        best = rate
        rate = round(rate * args.step)
    return best, runs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=300.0, help="fixed request rate of the main runs (req/s)")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per path at --rate")
    parser.add_argument("--max-tokens", type=int, default=16, help="tokens per streamed response")
    parser.add_argument("--workers", type=int, default=1, help="router worker processes (--workers of the router)")
    parser.add_argument("--start-rate", type=float, default=300.0, help="first rate of the max-rate search")
    parser.add_argument("--step", type=float, default=1.25, help="rate multiplier between search steps")
    parser.add_argument("--step-seconds", type=float, default=5.0, help="seconds per search step")
    parser.add_argument("--max-rate", type=float, default=20000.0, help="stop the search here")
    parser.add_argument("--slo-ms", type=float, default=250.0, help="TTFT p99 above this: the rate is not sustained")
    parser.add_argument("--skip-max", action="store_true", help="only the fixed-rate runs")
    parser.add_argument(
        "--router-pythonpath", help="run the router from another checkout (its operator/ and root), e.g. a baseline"
    )
    args = parser.parse_args()
    python = [sys.executable, "-m", "crossover.cli"]
    engine = start(
        [*python, "emulate", "vllm", "--port", str(ENGINE_PORT), "--model", "bench",
         "--prefill-tps", "1e9", "--decode-tps", "1e9", "--max-batch", "100000", "--tick-seconds", "0.001"]
    )  # fmt: skip
    manifest = yaml.safe_load((ROOT / "examples" / "llama-8b-h100-vs-haiku.yaml").read_text())
    manifest["spec"]["model"]["servedName"] = "bench"
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as handle:
        yaml.safe_dump(manifest, handle)
    router_argv = [
        *python, "router", "--spec-file", handle.name, "--engine-url", f"http://127.0.0.1:{ENGINE_PORT}",
        "--listen", f"127.0.0.1:{ROUTER_PORT}", "--max-inflight-per-pod", "100000", "--mode", "SelfHostedOnly",
    ]  # fmt: skip
    if args.workers != 1:
        router_argv += ["--workers", str(args.workers)]
    router_env = {k: v for k, v in os.environ.items() if k != ENV_API_KEY}
    checkout = None
    if args.router_pythonpath:  # its own packages first (`-m` puts the working directory first on sys.path)
        checkout = Path(args.router_pythonpath).resolve()
        router_env["PYTHONPATH"] = f"{checkout / 'operator'}:{checkout}"
    router = start(router_argv, env=router_env, cwd=checkout)
    try:
        wait_up(f"http://127.0.0.1:{ENGINE_PORT}/health")
        wait_up(f"http://127.0.0.1:{ROUTER_PORT}/readyz")
        time.sleep(1)  # every worker listening
        paths = {
            "direct": f"http://127.0.0.1:{ENGINE_PORT}/v1/chat/completions",
            "router": f"http://127.0.0.1:{ROUTER_PORT}/v1/chat/completions",
        }
        load = os.getloadavg()
        print(f"load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs")
        for url in paths.values():  # warm both paths
            run_loop(open_loop(url, 100, 2, args.max_tokens))
        fixed: dict[str, Run] = {}
        cpu = 0.0
        for name, url in paths.items():
            before = cpu_seconds(router.pid)
            fixed[name] = run_loop(open_loop(url, args.rate, args.duration, args.max_tokens))
            if name == "router":
                cpu = cpu_seconds(router.pid) - before
        print(f"open loop, {args.rate:g} req/s of {args.max_tokens}-token streams, {args.duration:g} s per path")
        for name, run in fixed.items():
            print(
                f"  {name:<7} TTFT p50 {run.quantile(0.5) * 1000:7.2f} ms  p99 {run.quantile(0.99) * 1000:7.2f} ms"
                f"  ok {len(run.ttfts)}  errors {run.errors}"
            )
        served = len(fixed["router"].ttfts) + fixed["router"].errors
        cpu_us = cpu / served * 1e6 if served else float("nan")
        print(f"  router CPU {cpu:.2f} s over {served} requests: {cpu_us:.0f} us/request ({args.workers} worker(s))")
        maxima = {"direct": 0.0, "router": 0.0}
        if not args.skip_max:
            for name, url in paths.items():
                maxima[name], runs = max_rate(url, args)
                steps = ", ".join(
                    f"{r.rate:g}:{'ok' if not r.errors and r.quantile(0.99) * 1000 <= args.slo_ms else 'FAIL'}"
                    f"(p99 {r.quantile(0.99) * 1000:.0f} ms, {r.errors} err)"
                    for r in runs
                )
                print(f"  {name:<7} max sustained {maxima[name]:g} req/s  steps: {steps}")
        load = os.getloadavg()
        print(f"load average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
        result = {
            "added_ttft_p50_ms": round((fixed["router"].quantile(0.5) - fixed["direct"].quantile(0.5)) * 1000, 3),
            "added_ttft_p99_ms": round((fixed["router"].quantile(0.99) - fixed["direct"].quantile(0.99)) * 1000, 3),
            "router_cpu_us_per_request": round(cpu_us, 1),
            "max_rps_direct": maxima["direct"],
            "max_rps_router": maxima["router"],
            "errors": fixed["direct"].errors + fixed["router"].errors,
        }
        print(json.dumps(result))
    finally:
        for process in (router, engine):
            process.terminate()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
