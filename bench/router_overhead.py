"""Router overhead: the same streaming load straight at the vLLM emulator and through the router, in one run.

Run: `.venv/bin/python bench/router_overhead.py [--concurrency 200] [--requests 4000]`. Prints, for both paths,
time to first token p50/p99 and completed requests per second, and the router's own added-latency histogram
(arrival to upstream request sent, plus upstream headers to first byte out). Everything on 127.0.0.1; the client,
router and emulator share the machine's cores, so this measures the router's cost on this machine, not a
production ceiling. Not a test: numbers are reported in the closing notes with this command.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import requests
import yaml

from crossover.contracts import ENV_API_KEY, ROUTER_ADDED_LATENCY

ROOT = Path(__file__).resolve().parents[1]
ENGINE_PORT, ROUTER_PORT = 38000, 38080


def start(argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)


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


async def one(session: aiohttp.ClientSession, url: str, max_tokens: int) -> tuple[float, bool]:
    body = {
        "model": "bench",
        "messages": [{"role": "user", "content": "abcd" * 50}],
        "max_tokens": max_tokens,
        "stream": True,
    }
    started = time.perf_counter()
    ttft = None
    try:
        async with session.post(url, json=body) as response:
            if response.status != 200:
                return time.perf_counter() - started, False
            async for line in response.content:
                if ttft is None and line.startswith(b"data:"):
                    ttft = time.perf_counter() - started
        return ttft or time.perf_counter() - started, True
    except aiohttp.ClientError:
        return time.perf_counter() - started, False


async def load(url: str, concurrency: int, total: int, max_tokens: int) -> tuple[list[float], int, float]:
    connector = aiohttp.TCPConnector(limit=0)
    ttfts: list[float] = []
    errors = 0
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(total):
        queue.put_nowait(i)

    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            nonlocal errors
            while not queue.empty():
                queue.get_nowait()
                ttft, ok = await one(session, url, max_tokens)
                if ok:
                    ttfts.append(ttft)
                else:
                    errors += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return ttfts, errors, elapsed


def quantile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000)[int(q * 1000) - 1] if len(values) > 1 else float("nan")


def router_histogram() -> tuple[float, float, int]:
    """p50 and p99 upper bounds from the router's added-latency histogram buckets, and the count."""
    text = requests.get(f"http://127.0.0.1:{ROUTER_PORT}/metrics", timeout=5).text
    buckets: list[tuple[float, float]] = []
    count = 0.0
    for line in text.splitlines():
        if line.startswith(f"{ROUTER_ADDED_LATENCY}_bucket"):
            le = line.split('le="')[1].split('"')[0]
            buckets.append((float("inf") if le == "+Inf" else float(le), float(line.rsplit(" ", 1)[1])))
        elif line.startswith(f"{ROUTER_ADDED_LATENCY}_count"):
            count = float(line.rsplit(" ", 1)[1])

    def bound(q: float) -> float:
        return next(le for le, c in buckets if c >= q * count)

    return bound(0.5), bound(0.99), int(count)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--max-tokens", type=int, default=16)
    args = parser.parse_args()
    python = [sys.executable, "-m", "crossover.cli"]
    engine = start(
        [*python, "emulate", "vllm", "--port", str(ENGINE_PORT), "--model", "bench",
         "--prefill-tps", "1e9", "--decode-tps", "1e9", "--max-batch", "100000"]
    )  # fmt: skip
    manifest = yaml.safe_load((ROOT / "examples" / "llama-8b-h100-vs-haiku.yaml").read_text())
    manifest["spec"]["model"]["servedName"] = "bench"
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as handle:
        yaml.safe_dump(manifest, handle)
    router = start(
        [*python, "router", "--spec-file", handle.name, "--engine-url", f"http://127.0.0.1:{ENGINE_PORT}",
         "--listen", f"127.0.0.1:{ROUTER_PORT}", "--max-inflight-per-pod", "100000", "--mode", "SelfHostedOnly"],
        env={k: v for k, v in os.environ.items() if k != ENV_API_KEY},
    )  # fmt: skip
    try:
        wait_up(f"http://127.0.0.1:{ENGINE_PORT}/health")
        wait_up(f"http://127.0.0.1:{ROUTER_PORT}/readyz")
        paths = {
            "direct": f"http://127.0.0.1:{ENGINE_PORT}/v1/chat/completions",
            "router": f"http://127.0.0.1:{ROUTER_PORT}/v1/chat/completions",
        }
        asyncio.run(load(paths["direct"], 20, 200, args.max_tokens))  # warm both paths
        asyncio.run(load(paths["router"], 20, 200, args.max_tokens))
        requests.get(f"http://127.0.0.1:{ROUTER_PORT}/metrics", timeout=5)
        results = {}
        for name in ("direct", "router", "direct", "router"):  # interleaved, twice, to even out drift
            ttfts, errors, elapsed = asyncio.run(load(paths[name], args.concurrency, args.requests, args.max_tokens))
            results.setdefault(name, []).append((ttfts, errors, elapsed))
        print(
            f"{args.requests} streaming requests x2 per path, {args.concurrency} concurrent, {args.max_tokens} tokens"
        )
        for name, runs in results.items():
            ttfts = [t for run in runs for t in run[0]]
            errors = sum(run[1] for run in runs)
            rate = sum(len(run[0]) for run in runs) / sum(run[2] for run in runs)
            print(
                f"  {name:<7} TTFT p50 {quantile(ttfts, 0.5) * 1000:7.2f} ms"
                f"  p99 {quantile(ttfts, 0.99) * 1000:7.2f} ms  {rate:7.0f} req/s  errors {errors}"
            )
        p50, p99, count = router_histogram()
        print(f"  router's own added latency over {count} requests: p50 <= {p50 * 1000:g} ms, p99 <= {p99 * 1000:g} ms")
    finally:
        for process in (router, engine):
            process.terminate()
            process.wait(10)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
