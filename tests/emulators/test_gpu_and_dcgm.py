"""The lab's hardware: GPU profiles apart from any manifest, the measured utilisation curve, the dcgm-exporter
emulator's series and labels, and a vLLM emulator whose prefill and decode share one GPU's time."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer
from prometheus_client.parser import text_string_to_metric_families

from crossover_lab.emulators.dcgm import UTIL_METRIC, Assignment, DCGMEmulatorConfig, build_dcgm_app, exposition
from crossover_lab.emulators.gpu import EngineHardware, profile, utilization_percent
from crossover_lab.emulators.vllm import VLLMEmulatorConfig, build_vllm_app


@pytest.mark.parametrize(
    ("gpu_type", "gpus", "k", "prefill", "decode", "cold"),
    [
        ("h100-80gb", 1, 1.0, 32_000, 2_000, 90),
        ("H100-80GB", 2, 1.0, 64_000, 4_000, 90),
        ("a100-80gb", 1, 1.0, 11_000, 1_200, 120),
        ("l4", 1, 1.0, 3_800, 180, 150),
        (None, 1, 10.0, 320_000, 20_000, 9),  # no type: the lab's default H100; a 10x clock
    ],
)
def test_engine_hardware_comes_from_the_gpu_profile(
    gpu_type: str | None, gpus: int, k: float, prefill: float, decode: float, cold: float
) -> None:
    hardware = EngineHardware.of(gpu_type, gpus, k)
    assert (hardware.prefill_tokens_per_second, hardware.decode_tokens_per_second) == (prefill, decode)
    assert hardware.cold_start_seconds == pytest.approx(cold)


def test_unknown_gpu_type_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown GPU type 'tpu-v5'.*a100-80gb, h100-80gb, l4"):
        profile("tpu-v5")


@pytest.mark.parametrize(
    ("batch", "percent"),
    [(0, 0.0), (1, 72.0), (16, 89.0), (64, 95.0), (256, 100.0), (1024, 100.0), (4, 72 + 17 * 0.5), (32, 92.0)],
)
def test_utilization_follows_the_measured_curve_in_log_batch(batch: int, percent: float) -> None:
    assert utilization_percent(batch) == pytest.approx(percent)


def families(text: str) -> list[tuple[dict[str, str], float]]:
    found = [f for f in text_string_to_metric_families(text) if f.name == UTIL_METRIC]
    return [(s.labels, s.value) for f in found for s in f.samples]


def test_exposition_labels_held_gpus_with_their_pod_and_idle_ones_without() -> None:
    held = Assignment("node-a", (1, 2), "ml", "llama-engine-x", "engine", "http://127.0.0.1:1/metrics")
    series = families(exposition("node-a", 4, "h100-80gb", [held], {"ml/llama-engine-x": 16}))
    assert len(series) == 4
    by_gpu = {labels["gpu"]: (labels, value) for labels, value in series}
    for gpu in ("1", "2"):
        labels, value = by_gpu[gpu]
        assert (labels["pod"], labels["namespace"], labels["container"]) == ("llama-engine-x", "ml", "engine")
        assert labels["Hostname"] == "node-a" and labels["modelName"] == "NVIDIA H100 80GB HBM3"
        assert value == 89
    for gpu in ("0", "3"):
        labels, value = by_gpu[gpu]
        assert "pod" not in labels and value == 0


async def test_dcgm_emulator_reads_the_engines_batch_on_its_node(tmp_path: Path) -> None:
    engine = TestServer(
        build_vllm_app(VLLMEmulatorConfig(model="m", decode_tokens_per_s=2_000, max_batch=64)), host="127.0.0.1"
    )
    await engine.start_server()
    assignments = tmp_path / "assignments.json"
    items = [
        {"node": "n0", "gpus": [0], "namespace": "ml", "pod": "busy", "metrics_url": str(engine.make_url("/metrics"))},
        {"node": "n1", "gpus": [0], "namespace": "ml", "pod": "elsewhere", "metrics_url": "http://127.0.0.1:9/x"},
    ]
    assignments.write_text(json.dumps(items))
    exporter = TestServer(build_dcgm_app(DCGMEmulatorConfig("n0", assignments, gpu_count=2)), host="127.0.0.1")
    await exporter.start_server()
    try:
        async with ClientSession() as session:

            async def utilisation() -> float:
                async with session.get(exporter.make_url("/metrics")) as response:
                    series = families(await response.text())
                assert all(labels.get("pod") != "elsewhere" for labels, _ in series)  # another node's pod
                return next(v for labels, v in series if labels.get("pod") == "busy")

            assert await utilisation() == 0  # idle GPU

            async def one() -> None:
                body = {"model": "m", "prompt": "x", "max_tokens": 2_000}
                async with session.post(engine.make_url("/v1/completions"), json=body) as response:
                    await response.read()

            load = [asyncio.create_task(one()) for _ in range(16)]
            await asyncio.sleep(0.3)
            assert await utilisation() == 89  # 16 running: the measured 89 %
            for task in load:
                task.cancel()
    finally:
        await exporter.close()
        await engine.close()


async def test_vllm_prefill_and_decode_share_one_gpu_time() -> None:
    """A replica busy with both phases serves `in/prefill + out/decode = 1`, not each phase at its full rate."""
    prefill, decode = 20_000.0, 2_000.0
    server = TestServer(
        build_vllm_app(VLLMEmulatorConfig(model="m", prefill_tokens_per_s=prefill, decode_tokens_per_s=decode)),
        host="127.0.0.1",
    )
    await server.start_server()
    try:
        async with ClientSession() as session:

            async def one() -> None:
                body = {"model": "m", "prompt": "abcd" * 2_000, "max_tokens": 200}  # 2,000 in, 200 out
                async with session.post(server.make_url("/v1/completions"), json=body) as response:
                    assert (await response.json())["usage"]["completion_tokens"] == 200

            started = time.monotonic()
            await asyncio.gather(*(one() for _ in range(20)))
            elapsed = time.monotonic() - started
        busy = 20 * 2_000 / prefill + 20 * 200 / decode  # 2 s + 2 s of GPU time
        assert elapsed >= busy * 0.9  # phases in parallel would take 2 s
    finally:
        await server.close()


@pytest.mark.parametrize(
    ("product", "short"), [("NVIDIA-H100-80GB-HBM3", "h100-80gb"), ("NVIDIA-A100-SXM4-80GB", "a100-80gb")]
)
def test_gpu_feature_discovery_product_names_find_their_profile(product, short):
    from crossover_lab.emulators.gpu import profile

    assert profile(product) == profile(short)


async def test_vllm_keeps_the_gpu_busy_when_ticks_are_long() -> None:
    """A busy machine makes the scheduler's ticks long: slots freed mid-tick are refilled, nothing is wasted."""
    decode = 2_000.0
    config = VLLMEmulatorConfig(model="m", decode_tokens_per_s=decode, max_batch=2, tick_seconds=0.25)
    server = TestServer(build_vllm_app(config), host="127.0.0.1")
    await server.start_server()
    try:
        async with ClientSession() as session:

            async def one() -> None:
                body = {"model": "m", "prompt": "x", "max_tokens": 50}
                async with session.post(server.make_url("/v1/completions"), json=body) as response:
                    await response.read()

            started = time.monotonic()
            await asyncio.gather(*(one() for _ in range(40)))
            elapsed = time.monotonic() - started
        # 2,000 tokens at 2,000 tok/s: 1 s of GPU time; refilling only at tick edges would take 20 ticks (5 s)
        assert elapsed < 2.5
    finally:
        await server.close()
